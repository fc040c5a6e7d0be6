"""``baton stock show SKU``: is it available, and where? Live from the Redis read model, or as of a past moment
replayed from the ledger's commands (time-travel ATP)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from schemas.inventory import AvailabilityChanged
from schemas.network import Location
from services.runtime.atp import parse_near, parse_time, position_of, stock_document
from services.runtime.readmodel import ReadModel
from services.runtime.settings import Settings

stock_app = typer.Typer(help="Stock positions and available-to-promise.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT_UNKNOWN, EXIT_USAGE = 1, 2
FIELDS = ("on_hand", "reserved", "safety_stock", "available", "incoming", "backordered")
HEADERS = ("on hand", "reserved", "safety", "available", "incoming", "backordered")
NETWORK_TIMEOUT_S = 8.0


@stock_app.callback()
def _stock() -> None:
    """Stock: on hand, reserved, safety, available, incoming and ATP per location."""


@stock_app.command("show")
def show(
    sku: str = typer.Argument(..., help="The SKU, e.g. TEE-M."),
    near: str | None = typer.Option(None, "--near", help="LAT,LON: nearest locations first, with distances."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="ISO time: the positions of that moment, replayed from the ledger's commands."
    ),
    by: str | None = typer.Option(None, "--by", help="ISO time: ATP for delivery by then, counting supply."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Default: BATON_NAMESPACE."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
) -> None:
    """A SKU's position at every location that holds or expects it, the network total and what is promisable."""
    settings = Settings() if namespace is None else Settings().with_namespace(namespace)
    try:
        point, when, deadline = parse_near(near), parse_time(as_of), parse_time(by)
    except ValueError as exc:
        err.print(f"[red]invalid option[/red]: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    positions, locations = asyncio.run(_gather(settings, sku, when))
    if not positions:
        moment = f" as of {as_of}" if when else ""
        err.print(f"[red]unknown SKU[/red] {sku!r} in namespace {settings.namespace!r}: "
                  f"no location has a stock position for it{moment}")
        raise typer.Exit(EXIT_UNKNOWN)
    document = stock_document(sku, positions, locations, near=point, by=deadline)
    document["namespace"] = settings.namespace
    document["as_of"] = when.isoformat().replace("+00:00", "Z") if when else None
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return
    console.print(_table(document))
    console.print(_atp_line(document))


async def _gather(
    settings: Settings, sku: str, as_of: datetime | None
) -> tuple[dict[str, AvailabilityChanged], dict[str, Location]]:
    from baton.stock_history import read_network

    positions = await (positions_as_of(settings, sku, as_of) if as_of else read_positions(settings, sku))
    try:
        locations = await asyncio.wait_for(read_network(settings), NETWORK_TIMEOUT_S)
    except Exception:  # the network only adds distances and per-mode ATP: without it, the positions still
        locations = {}
    return positions, locations


async def read_positions(settings: Settings, sku: str) -> dict[str, AvailabilityChanged]:
    """Location -> the live position, from the read model."""
    read_model = ReadModel(settings.redis_url, settings.namespace)
    try:
        docs = (await read_model.read_availability([sku])).get(sku, {})
    finally:
        await read_model.close()
    return {location: position_of(doc) for location, doc in sorted(docs.items())}


async def positions_as_of(settings: Settings, sku: str, when: datetime) -> dict[str, AvailabilityChanged]:
    """Location -> the position at ``when``: the SKU's ledger replayed from every command sent by then."""
    from baton.stock_history import rebuilt_ledgers

    ledger = (await rebuilt_ledgers(settings, sku, until=when)).get(sku)
    if ledger is None:
        return {}
    return {location: ledger.availability(location) for location in ledger.locations()}


def _table(document: dict[str, Any]) -> Table:
    moment = f" as of {document['as_of']}" if document.get("as_of") else ""
    near = "near" in document
    by = "by" in document
    columns = ["location", *(["km"] if near else []), *HEADERS, "next ETA", *(["ATP by"] if by else [])]
    table = Table(*columns, title=f"Stock of {document['sku']}{moment}")
    for column in table.columns[1:]:
        column.justify = "right"
    for location, row in document["locations"].items():
        cells = [location]
        if near:
            cells.append(str(row.get("distance_km", "?")))
        cells += [str(row[name]) for name in FIELDS]
        cells.append(row["next_eta"] or "")
        if by:
            cells.append(str(row["atp_by"]))
        table.add_row(*cells)
    table.add_section()
    total = document["total"]
    cells = ["[bold]total[/bold]", *([""] if near else []), *(f"[bold]{total[name]}[/bold]" for name in FIELDS),
             total.get("next_eta") or "", *([str(document["atp"]["network_by"])] if by else [])]
    table.add_row(*cells)
    return table


def _atp_line(document: dict[str, Any]) -> str:
    atp = document["atp"]
    parts = [f"ATP now: network {atp['network']}"]
    modes = atp.get("by_mode")
    if modes:
        parts.append(f"ship {modes['ship']}")
        for mode in ("pickup", "reserve"):
            if modes[mode]:
                parts.append(f"{mode} " + ", ".join(f"{loc} {n}" for loc, n in modes[mode].items()))
    if "by" in document:
        parts.append(f"by {document['by']}: network {atp['network_by']}")
    return " · ".join(parts)
