"""``baton bench --returns`` under chaos (issue 11): 300 orders, a third of those shipped returned (by mail or in
store, sellable, damaged or defective, some partial, some requested twice), the payment adapter failing its first
answers, and each of orchestrator, inventory, a WMS node and the payment adapter killed -9 once while it flows.
Every order and every return settles; no order is refunded beyond what it paid; each return's refund is requested
under one idempotency key and paid once. No speed is asserted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from services.runtime.settings import Settings
from tests.support import run_bench

pytestmark = [pytest.mark.e2e, pytest.mark.long]  # a bench under chaos, about a minute: `make test-long`
ORDERS = 300
KILLS = ("orchestrator:1", "inventory:1", "wms:1", "payments:1")
FAIL_FIRST = 2


def test_returns_under_kills_settle_refunded_once_within_what_was_paid(settings: Settings, tmp_path: Path) -> None:
    kills = [arg for kill in KILLS for arg in ("--kill", kill)]
    # with returns, one kill of each service lands in the seconds after the first refund
    done = run_bench(settings, tmp_path, "--orders", str(ORDERS), "--returns", "0.3", "--seed", "3",
                  "--payments-fail-first", str(FAIL_FIRST), *kills, timeout_s=400, process_timeout_s=840)
    assert done.stdout, done.stderr.decode()[-3000:]
    report = orjson.loads(done.stdout)
    assert report["invariants"]["ok"] is True, report["invariants"]["violations"]
    assert done.returncode == 0 and report["completed"] is True, done.stderr.decode()[-3000:]
    _every_service_killed_and_back(report["chaos"])
    _every_return_refunded_once(report["returns"])
    checks = {c["name"]: c["held"] for c in report["invariants"]["checks"]}
    assert checks["refunds_within_paid"] and checks["refund_one_key"] and checks["settled"]
    assert report["dead_letters"] == 0


def _every_service_killed_and_back(chaos: dict[str, Any]) -> None:
    assert not chaos["skipped"]
    assert sorted(r["service"].split("-")[0] for r in chaos["restarts"]) == ["inventory", "orchestrator",
                                                                             "payments", "wms"]
    assert all(r["seconds"] is not None for r in chaos["restarts"]), chaos["restarts"]


def _every_return_refunded_once(returns: dict[str, Any]) -> None:
    assert returns["sent"] == returns["planned"] > 60, returns  # every order planned for a return shipped
    assert returns["sent_twice"] > 0 and returns["partial"] > 0 and len(returns["by_method"]) == 2
    assert len(returns["by_condition"]) == 3
    assert returns["settled"] == returns["sent"]
    assert returns["by_status"] == {"refunded": returns["sent"]}, returns["by_status"]
    # one key per return, each paid once; the failed answers were retried under the same key
    assert returns["refund_keys"] == returns["refunds_paid"] == returns["sent"]
    assert returns["refunds_failed"] >= FAIL_FIRST
    assert returns["refund_retries"] >= returns["refunds_failed"]
    assert returns["refunded_amount"] > 0
    assert returns["kills_during_refunds"], "no service was killed while refunds were asked for"
