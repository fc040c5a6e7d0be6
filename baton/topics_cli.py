"""``baton topics``: create and list the catalog's topics."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table

from services.runtime.admin import ensure_topics, planned_topics
from services.runtime.settings import Settings

topics_app = typer.Typer(help="The Kafka topics of a namespace.", no_args_is_help=True)
console = Console()


@topics_app.command("create")
def create(
    location: list[str] = typer.Option([], "--location", "-l", help="Also create this location's WMS topics."),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
) -> None:
    """Create every missing topic (idempotent)."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    created, existing = asyncio.run(ensure_topics(settings, location))
    console.print(f"created {len(created)} topic(s), {len(existing)} already there")
    for name in created:
        console.print(f"  + {name}")


@topics_app.command("list")
def list_topics(
    location: list[str] = typer.Option([], "--location", "-l"),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
) -> None:
    """Show the catalog: names, keys, partitions, cleanup and retention."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    table = Table("topic", "key", "partitions", "cleanup", "retention", "public")
    for t in planned_topics(settings, location or ["{location}"]):
        retention = t.config.get("retention.ms", "-")
        table.add_row(t.name, t.spec.key, str(t.partitions), t.spec.cleanup_policy,
                      "forever" if retention == "-1" else retention, "yes" if t.spec.public else "")
    console.print(table)
