"""What the engine does with a task's batch once its transaction committed, minus Kafka: shared by the unit
tests that drive a service's ``StreamService`` in memory (orchestrator, inventory, WMS node)."""

from __future__ import annotations

import asyncio

from services.runtime.processing import Outgoing, TaskContext

Changelog = list[tuple[str, bytes | None]]


def commit_in_memory(ctx: TaskContext) -> tuple[dict[str, Changelog], list[Outgoing]]:
    """The batch's changelog per store becomes the stores' truth, its after-commit work runs; returns the
    changelog records and the records sent."""
    changes = {name: store.changelog() for name, store in ctx.stores.items()}
    for name, store in ctx.stores.items():
        store.committed(changes[name])
    out, after = ctx.take()

    async def run_after() -> None:
        for work in after:
            await work()

    asyncio.run(run_after())
    return changes, out
