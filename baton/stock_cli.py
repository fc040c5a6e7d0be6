"""``baton stock show SKU``: is it available, and where? Read from the Redis read model."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from baton.runtime.readmodel import ReadModel
from baton.runtime.settings import Settings

stock_app = typer.Typer(help="Stock positions from the read model.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT_UNKNOWN = 1
FIELDS = ("on_hand", "reserved", "safety_stock", "available", "incoming")
HEADERS = ("on hand", "reserved", "safety", "available", "incoming")


@stock_app.callback()
def _stock() -> None:
    """Stock: on hand, reserved, safety, available and incoming per location."""


@stock_app.command("show")
def show(
    sku: str = typer.Argument(..., help="The SKU, e.g. TEE-M."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """A SKU's position at every location that holds or expects it, and the network total."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    positions = asyncio.run(read_positions(settings, sku))
    if not positions:
        err.print(f"[red]unknown SKU[/red] {sku!r} in namespace {settings.namespace!r}: "
                  "no location has a stock position for it")
        raise typer.Exit(EXIT_UNKNOWN)
    total = totals(positions)
    if as_json:
        document = {"sku": sku, "namespace": settings.namespace, "locations": positions, "total": total}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    console.print(_table(sku, positions, total))


async def read_positions(settings: Settings, sku: str) -> dict[str, dict[str, int]]:
    """Location -> the position's numbers, sorted by location."""
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        docs = (await read_model.read_availability([sku])).get(sku, {})
    finally:
        await read_model.close()
    return {location: _numbers(doc) for location, doc in sorted(docs.items())}


def _numbers(doc: dict[str, Any]) -> dict[str, int]:
    return {name: int(doc.get(name) or 0) for name in FIELDS}


def totals(positions: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name: sum(p[name] for p in positions.values()) for name in FIELDS}


def _table(sku: str, positions: dict[str, dict[str, int]], total: dict[str, int]) -> Table:
    table = Table("location", *HEADERS, title=f"Stock of {sku}", show_footer=False)
    for column in table.columns[1:]:
        column.justify = "right"
    for location, numbers in positions.items():
        table.add_row(location, *(str(numbers[name]) for name in FIELDS))
    table.add_section()
    table.add_row("[bold]total[/bold]", *(f"[bold]{total[name]}[/bold]" for name in FIELDS))
    return table
