"""A lapsed claim's TaskUpdated is caused by the claim it ends (issue 10, seed 3): the timer tick that notices
the lapse is never written to the log, so naming it as the cause broke ``baton audit``'s cause_exists."""

from __future__ import annotations

from schemas.wms import ClaimTask, NodeTick, TaskUpdated
from tests.unit.wms_support import LOCATION, NodeHarness, of_type, one_task


def test_a_lapsed_claim_names_the_claim_it_ends_as_its_cause() -> None:
    n = NodeHarness(ledger={"TEE": 10})
    pick = one_task(n.send(n.fulfil("O-1", ("TEE", 1))))
    n.send(ClaimTask(task_id=pick.task_id, order_id="O-1", location=LOCATION, worker="ann", ttl_s=30),
           message_id="claim-1")
    n.advance(31)
    emits = n.send(NodeTick(location=LOCATION), message_id="tick-never-logged")
    assert [e.causationid for e in emits if isinstance(e.message, TaskUpdated)] == ["claim-1"]
    update = of_type(emits, TaskUpdated)[0]
    assert (update.status, update.worker) == ("open", None)
