"""Topic names and configs of the catalog in a namespace, free of any faust import (the engine uses them)."""

from __future__ import annotations

from typing import Any

from schemas.topics import ALL_TOPICS, TopicSpec
from services.runtime.settings import Settings

_SPECS = {spec.name: spec for spec in ALL_TOPICS}
# A compacted topic (availability, network, catalog) is read whole by every service that starts: Kafka only
# compacts closed segments (a week or a gigabyte by default), so without these every update stays, and a
# restart with 100,000 orders placed re-read every availability change ever made before its first batch.
COMPACTED_CONFIG = {"segment.ms": "60000", "min.cleanable.dirty.ratio": "0.2"}


def spec_named(name: str) -> TopicSpec:
    return _SPECS[name]


def topic_config(spec: TopicSpec) -> dict[str, Any]:
    config = {"cleanup.policy": spec.cleanup_policy,
              **(COMPACTED_CONFIG if spec.cleanup_policy == "compact" else {}), **spec.extra_config}
    if spec.cleanup_policy == "delete":
        config["retention.ms"] = str(spec.retention_ms)
    return config


def full_topic_name(settings: Settings, spec: TopicSpec, location: str | None = None) -> str:
    return settings.topic(spec.resolve(location))
