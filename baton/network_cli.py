"""``baton network apply FILE`` and ``baton rules apply FILE``: master data as versioned events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from baton.publish import Publisher
from schemas.base import Message
from schemas.network import Location, LocationConfigured, RuleSetPublished
from schemas.topics import NETWORK, RULES
from services.orchestrator.domain.rules import RuleSetError, parse_rule_set
from services.runtime.feed import TopicFeed
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name

network_app = typer.Typer(help="Locations (warehouses, stores) as versioned master data.", no_args_is_help=True)
rules_app = typer.Typer(help="Sourcing rule sets as versioned master data.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _load(path: Path) -> Any:
    text = path.read_text()
    return orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _settings(namespace: str | None) -> Settings:
    return Settings() if namespace is None else Settings().with_namespace(namespace)


@network_app.callback()
def _network() -> None:
    """Network master data."""


@network_app.command("apply")
def apply_network(
    file: Path = typer.Argument(..., help="YAML/JSON with `locations:` (the scenario format's locations)."),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
) -> None:
    """Publish every location of FILE as the next network version (compacted topic network.v1)."""
    document = _load(file)
    rows = document.get("locations") if isinstance(document, dict) else document
    try:
        locations = [Location.model_validate(row) for row in rows or []]
    except ValidationError as exc:
        err.print(f"[red]invalid network[/red] {file}: {exc.errors(include_url=False)[0]}")
        raise typer.Exit(2) from exc
    settings = _settings(namespace)
    version = asyncio.run(_latest_version(settings)) + 1
    asyncio.run(_publish(settings, [(NETWORK, loc.id, LocationConfigured(location=loc, network_version=version))
                                    for loc in locations]))
    console.print(f"network version {version}: {len(locations)} location(s) published")


@rules_app.callback()
def _rules() -> None:
    """Sourcing rule sets."""


@rules_app.command("apply")
def apply_rules(
    file: Path = typer.Argument(..., help="A rule set (YAML/JSON), format in the README."),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
) -> None:
    """Validate FILE and publish it as the rule set in force (compacted topic rules.v1)."""
    document = _load(file)
    try:
        rules = parse_rule_set(document, str(file))
    except RuleSetError as exc:
        err.print(f"[red]invalid rule set[/red]: {exc}")
        raise typer.Exit(2) from exc
    published = RuleSetPublished(name=rules.name, version=rules.version, document=document)
    asyncio.run(_publish(_settings(namespace), [(RULES, rules.name, published)]))
    console.print(f"rule set {rules.name} v{rules.version}: {len(rules.rules)} rule(s), fallback {rules.fallback}")


async def _publish(settings: Settings, messages: list[tuple[Any, str, Message]]) -> None:
    async with Publisher(settings, source="baton/cli") as publisher:
        for spec, key, message in messages:
            await publisher.publish(spec, key, message)
        await publisher.flush()


async def _latest_version(settings: Settings) -> int:
    versions = [0]

    def seen(message: Message) -> None:
        if isinstance(message, LocationConfigured):
            versions.append(message.network_version)

    feed = TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, NETWORK), seen)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.caught_up.wait(), timeout=30)
    finally:
        task.cancel()
    return max(versions)
