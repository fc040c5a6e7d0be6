"""Generate the published contract from the pydantic models and the topic catalog.

Writes, under ``schemas/generated/``:

- ``json/<event_type>.schema.json``: one JSON Schema (draft 2020-12) per message type, describing the whole
  CloudEvents envelope with ``type`` fixed to the message's event type and ``data`` the message itself;
- ``json/envelope.schema.json``: the generic envelope, any registered type;
- ``asyncapi.yaml``: an AsyncAPI 3.0.0 document with every topic as a channel, its Kafka bindings, its
  messages and who sends and receives them.

The output is deterministic (no timestamps, sorted JSON keys), so regenerating is byte-stable and
``python -m schemas.generate --check`` (and the contract test) can tell when the checked-in files are stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from schemas.base import Message
from schemas.envelope import Envelope
from schemas.registry import ALL_MESSAGES
from schemas.topics import ALL_TOPICS, TopicSpec

JsonDict = dict[str, Any]

GENERATED_DIR = Path(__file__).resolve().parent / "generated"
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"
ENVELOPE_FILE = "envelope.schema.json"

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
# An identifier, not a download location (the .example domain is reserved).
ID_BASE = "https://baton.example/schemas/json/"
CONTRACT_VERSION = "1.0.0"
CONTENT_TYPE = "application/cloudevents+json"
KAFKA_BINDING_VERSION = "0.5.0"

# Only these are ours to write, compare and delete inside the target directory.
_MANAGED_GLOBS = (f"{JSON_DIR}/*.json", "*.yaml")


# ---------------------------------------- JSON Schema


def schema_filename(event_type: str) -> str:
    return f"{event_type}.schema.json"


def envelope_schema() -> JsonDict:
    """The generic CloudEvents envelope: any type, ``data`` any object."""
    schema = Envelope.model_json_schema()
    _require(schema, "specversion")  # CloudEvents requires it; the model only defaults it when decoding
    return _with_header(
        schema,
        schema_id=ID_BASE + ENVELOPE_FILE,
        title="baton CloudEvents envelope",
        description="A CloudEvents 1.0 event in JSON structured mode, with the correlationid and causationid "
        "extensions that trace every message back to the order that caused it.",
    )


def message_schema(model: type[Message]) -> JsonDict:
    """The envelope of one message type: ``type`` is its event type, ``data`` its model."""
    schema = envelope_schema()
    data = model.model_json_schema()
    definitions = data.pop("$defs", None)
    data.setdefault("description", model.summary)
    schema["properties"]["type"] = {"const": model.event_type, "title": "Type", "type": "string"}
    schema["properties"]["data"] = data
    if definitions:
        # hoisted to the root, where the models' "#/$defs/..." references resolve
        schema["$defs"] = definitions
    return _with_header(
        schema,
        schema_id=ID_BASE + schema_filename(model.event_type),
        title=f"{model.__name__} ({model.event_type})",
        description=model.summary,
    )


def json_schemas() -> dict[str, JsonDict]:
    """Every JSON Schema by its file name."""
    schemas = {ENVELOPE_FILE: envelope_schema()}
    schemas.update({schema_filename(m.event_type): message_schema(m) for m in ALL_MESSAGES})
    return schemas


def _require(schema: JsonDict, name: str) -> None:
    required: list[str] = schema.setdefault("required", [])
    if name not in required:
        required.insert(0, name)


def _with_header(schema: JsonDict, *, schema_id: str, title: str, description: str) -> JsonDict:
    schema.update({"$schema": DIALECT, "$id": schema_id, "title": title, "description": description})
    return schema


# ---------------------------------------- AsyncAPI


def asyncapi_document() -> JsonDict:
    """The AsyncAPI 3.0.0 document of every topic, message and producer/consumer."""
    channels = {channel_id(t): _channel(t) for t in ALL_TOPICS}
    return {
        "asyncapi": "3.0.0",
        "info": _info(),
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": _operations(),
        "components": _components(),
    }


def channel_id(topic: TopicSpec) -> str:
    """``wms.{location}.commands.v1`` -> ``wmsLocationCommandsV1``."""
    return _camel(topic.name)


def _camel(text: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _info() -> JsonDict:
    return {
        "title": "baton",
        "version": CONTRACT_VERSION,
        "description": (
            "The event contract of baton, an event-driven order management and warehouse management system "
            "over Apache Kafka.\n\n"
            "Every message is a CloudEvents 1.0 event in JSON structured mode (the Kafka value is the whole "
            "event); its `type` names the message and its version, its `data` is the message, and the "
            "`correlationid` and `causationid` extensions trace it back to the order that caused it.\n\n"
            "Topic names are relative to a namespace (`baton` by default, one per scenario run); topics of "
            "a location's WMS node also carry the location id. Messages marked `x-message-kind: command` ask "
            "for an action; the others (`event`) state a fact.\n\n"
            "Generated by `python -m schemas.generate` from the pydantic models and the topic catalog: "
            "do not edit by hand."
        ),
    }


def _channel(topic: TopicSpec) -> JsonDict:
    parameters = {"namespace": {"$ref": "#/components/parameters/namespace"}}
    if topic.per_location:
        parameters["location"] = {"$ref": "#/components/parameters/location"}
    channel: JsonDict = {
        "address": "{namespace}." + topic.name,
        "title": topic.name,
        "description": f"{topic.description}\n\nKafka key: `{topic.key}`.",
        "parameters": parameters,
        "messages": {m.__name__: {"$ref": f"#/components/messages/{m.event_type}"} for m in topic.messages},
        "bindings": {"kafka": _kafka_channel_binding(topic)},
        "x-key": topic.key,
        "x-public": topic.public,
    }
    if topic.public:
        channel["tags"] = [{"name": "public"}]
    return channel


def _kafka_channel_binding(topic: TopicSpec) -> JsonDict:
    configuration: JsonDict = {"cleanup.policy": [topic.cleanup_policy], "retention.ms": topic.retention_ms}
    configuration.update({k: _config_value(v) for k, v in sorted(topic.extra_config.items())})
    binding: JsonDict = {"topicConfiguration": configuration, "bindingVersion": KAFKA_BINDING_VERSION}
    if topic.partitions is not None:
        binding["partitions"] = topic.partitions
    return binding


def _config_value(value: str) -> int | str:
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def _operations() -> JsonDict:
    operations: JsonDict = {}
    for topic in ALL_TOPICS:
        for service in topic.producers:
            operations[_operation_id(service, "send", topic)] = _operation(service, "send", topic)
        for service in topic.consumers:
            operations[_operation_id(service, "receive", topic)] = _operation(service, "receive", topic)
    return operations


def _operation_id(service: str, action: str, topic: TopicSpec) -> str:
    return f"{_camel(service)}.{action}.{channel_id(topic)}"


def _operation(service: str, action: str, topic: TopicSpec) -> JsonDict:
    cid = channel_id(topic)
    verb = "sends to" if action == "send" else "receives from"
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{cid}"},
        "title": f"{service} {verb} {topic.name}",
        "messages": [{"$ref": f"#/channels/{cid}/messages/{m.__name__}"} for m in topic.messages],
        "tags": [{"name": service}],
        "x-service": service,
    }


def _components() -> JsonDict:
    models = sorted(ALL_MESSAGES, key=lambda m: m.event_type)
    schemas = {"envelope": _schema_component(ENVELOPE_FILE)}
    schemas.update({m.event_type: _schema_component(schema_filename(m.event_type)) for m in models})
    return {
        "schemas": schemas,
        "messages": {m.event_type: _message(m) for m in models},
        "parameters": _parameters(),
        "correlationIds": {
            "correlationid": {
                "description": "The id of the order (or the outside request) this message descends from.",
                "location": "$message.payload#/correlationid",
            }
        },
    }


def _schema_component(filename: str) -> JsonDict:
    return {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./{JSON_DIR}/{filename}"}}


def _message(model: type[Message]) -> JsonDict:
    return {
        "name": model.event_type,
        "title": model.__name__,
        "summary": model.summary,
        "contentType": CONTENT_TYPE,
        "payload": {"$ref": f"#/components/schemas/{model.event_type}"},
        "correlationId": {"$ref": "#/components/correlationIds/correlationid"},
        "bindings": {"kafka": {"key": _key_schema(model), "bindingVersion": KAFKA_BINDING_VERSION}},
        "tags": [{"name": model.message_kind}],
        "x-message-kind": model.message_kind,
    }


def _key_schema(model: type[Message]) -> JsonDict:
    keys = [f"{t.key} on {t.name}" for t in ALL_TOPICS if model in t.messages]
    return {"type": "string", "description": "The Kafka key: " + "; ".join(keys) + "."}


def _parameters() -> JsonDict:
    return {
        "namespace": {
            "description": "The namespace every topic name starts with: `baton` by default, its own for "
            "each scenario run.",
            "default": "baton",
            "examples": ["baton", "run-5f2c"],
        },
        "location": {
            "description": "The id of a location (warehouse or store) of the network, whose WMS node owns "
            "the topic.",
            "examples": ["WH-PAR", "ST-LYO"],
        },
    }


# ---------------------------------------- files


class _Dumper(yaml.SafeDumper):
    """No anchors and aliases: every repeated object is written out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def render_json(schema: JsonDict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_yaml(document: JsonDict) -> str:
    header = "# Generated by `python -m schemas.generate`: do not edit by hand.\n"
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return header + body


def render() -> dict[str, str]:
    """Every generated file's text, by its path relative to the target directory (POSIX separators)."""
    files = {f"{JSON_DIR}/{name}": render_json(s) for name, s in sorted(json_schemas().items())}
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document())
    return files


def _managed_files(target_dir: Path) -> set[str]:
    found: set[str] = set()
    for pattern in _MANAGED_GLOBS:
        found.update(p.relative_to(target_dir).as_posix() for p in target_dir.glob(pattern) if p.is_file())
    return found


def write_all(target_dir: Path = GENERATED_DIR) -> list[Path]:
    """Write every generated file (only those whose text changed) and remove stale extra ones."""
    files = render()
    for extra in sorted(_managed_files(target_dir) - files.keys()):
        (target_dir / extra).unlink()
    written: list[Path] = []
    for relative, text in files.items():
        path = target_dir / relative
        written.append(path)
        if not path.is_file() or path.read_bytes() != text.encode():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode())
    return written


def check(target_dir: Path = GENERATED_DIR) -> list[str]:
    """The generated files that are stale, missing or extra in target_dir; empty when up to date."""
    files = render()
    problems = [
        f"{relative} ({status})"
        for relative, text in files.items()
        if (status := _status(target_dir / relative, text))
    ]
    problems += [f"{extra} (extra)" for extra in _managed_files(target_dir) - files.keys()]
    return sorted(problems)


def _status(path: Path, text: str) -> str:
    if not path.is_file():
        return "missing"
    return "" if path.read_bytes() == text.encode() else "stale"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.generate",
        description="Generate the JSON Schemas and AsyncAPI document of the contract.",
    )
    parser.add_argument("--check", action="store_true", help="only tell whether the files are up to date")
    parser.add_argument("--target", type=Path, default=GENERATED_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        return _report(check(args.target), args.target)
    paths = write_all(args.target)
    print(f"{len(paths)} files up to date in {args.target}")
    return 0


def _report(problems: Iterable[str], target_dir: Path) -> int:
    problems = list(problems)
    if not problems:
        print(f"generated contract files in {target_dir} are up to date")
        return 0
    listing = "\n".join(f"  {p}" for p in problems)
    print(
        f"generated contract files are out of date:\n{listing}\nrun: python -m schemas.generate",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
