"""The engine's observer counts into Prometheus, and ``/metrics`` answers in the text format that
``prometheus_client``'s own parser reads (no Kafka: the observer is called as the engine calls it)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.metrics import EngineMetrics, with_metrics


def samples(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def test_what_the_engine_reports_is_served_and_parses() -> None:
    observer = EngineMetrics("unit-svc")
    for _ in range(3):
        observer.handled("order.placed.v1", 0.0004)
    observer.handled("order.cancel_requested.v1", 0.002)
    observer.batch(4)
    observer.batch(0)  # an empty batch is no batch
    observer.transaction(0.02, committed=True)
    observer.transaction(1.5, committed=False)
    observer.dead_lettered("ns.orders.inbound.v1")

    async with TestClient(TestServer(with_metrics(None))) as client:
        answer = await client.get("/metrics")
        assert answer.status == 200
        text = await answer.text()

    assert samples(text, "baton_records_handled_total", service="unit-svc", type="order.placed.v1") == 3
    assert samples(text, "baton_records_handled_total", service="unit-svc") == 4
    assert samples(text, "baton_handling_seconds_count", service="unit-svc") == 4
    assert samples(text, "baton_handling_seconds_bucket", service="unit-svc", le="0.0005") == 3
    assert samples(text, "baton_batch_records_count", service="unit-svc") == 1
    assert samples(text, "baton_batch_records_sum", service="unit-svc") == 4
    assert samples(text, "baton_transaction_seconds_count", service="unit-svc", outcome="committed") == 1
    assert samples(text, "baton_transaction_seconds_count", service="unit-svc", outcome="failed") == 1
    assert samples(text, "baton_dead_letters_total", service="unit-svc", topic="ns.orders.inbound.v1") == 1
