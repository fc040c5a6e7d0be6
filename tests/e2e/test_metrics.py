"""Every service serves ``GET /metrics`` (on the port its heartbeat names): scraped after an order went through
and parsed with ``prometheus_client``'s own parser."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.publish import Publisher
from schemas.topics import ORDERS_INBOUND
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings
from tests.support import order_statuses, running_services, ship_order, wait_for, warehouse

pytestmark = pytest.mark.e2e
LOC = "WH-1"


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))


def test_every_service_serves_its_metrics(settings: Settings) -> None:
    with running_services(settings, [warehouse(LOC)], {(LOC, "TEE"): 10}):
        async def place_and_wait() -> dict[str, dict[str, object]]:
            async with Publisher(settings) as publisher:
                await publisher.publish(ORDERS_INBOUND, "M-1", ship_order("M-1", {"TEE": 1}))

            async def shipped() -> bool:
                return (await order_statuses(settings, ["M-1"])).get("M-1") == "shipped"

            await wait_for(shipped, timeout_s=60, what="order M-1 shipped")
            await asyncio.sleep(11)  # a sample of the orders per status (every 10 s) and of the lag
            read_model = ReadModel(settings.redis_url, settings.namespace)
            try:
                return await read_model.services()
            finally:
                await read_model.close()

        beats = asyncio.run(place_and_wait())
        assert {"orchestrator", "inventory", "payments", f"wms-{LOC}"} <= beats.keys()
        scraped = {name: scrape(int(str(beat["web_port"]))) for name, beat in beats.items()}

    orchestrator = scraped["orchestrator"]
    assert total(orchestrator, "baton_records_handled_total", service="orchestrator", type="order.placed.v1") >= 1
    assert total(orchestrator, "baton_handling_seconds_count", service="orchestrator") >= 1
    assert total(orchestrator, "baton_transaction_seconds_count", service="orchestrator", outcome="committed") >= 1
    assert total(orchestrator, "baton_batch_records_count", service="orchestrator") >= 1
    assert total(orchestrator, "baton_orders", status="shipped") == 1
    lag = [v for labels, v in orchestrator["baton_consumer_lag_records"] if labels["service"] == "orchestrator"]
    assert lag and sum(lag) == 0  # caught up: the transaction markers that end the partitions are no lag
    for name, samples in scraped.items():
        assert "python_info" in samples, name  # every endpoint answers in the text format
        if name != "payments":  # no refund in this story: the payment adapter handled nothing
            assert total(samples, "baton_records_handled_total", service=name) >= 1, name
