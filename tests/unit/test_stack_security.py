"""The stack's plan, without starting anything: node ports, credentials precedence, the ACLs and Redis users."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from baton.stack import security
from baton.stack.local import Endpoint, kafka_nodes
from services.runtime.settings import Settings


def test_one_node_keeps_its_ports_and_a_cluster_counts_up(tmp_path: Path) -> None:
    single = kafka_nodes(Endpoint("127.0.0.1", 9092), 1, tmp_path)
    assert [(n.name, n.endpoint.port, n.controller_port) for n in single] == [("kafka", 9092, 9093)]
    cluster = kafka_nodes(Endpoint("127.0.0.1", 19092), 3, tmp_path)
    assert [(n.node_id, n.name, n.endpoint.port, n.controller_port) for n in cluster] == [
        (1, "kafka-1", 19092, 19192), (2, "kafka-2", 19093, 19193), (3, "kafka-3", 19094, 19194)
    ]


def test_a_service_instance_connects_with_its_own_file_before_the_operator_credentials(tmp_path: Path) -> None:
    security.ensure_credentials(tmp_path, ["admin", "orchestrator"])
    operator = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_credentials_file=tmp_path / "admin.properties",
        kafka_credentials_dir=tmp_path,
    )
    assert operator.kafka_credentials()[0] == "admin"
    service = operator.model_copy(update={"instance_id": "orchestrator"})
    options = service.kafka_client_options()
    assert options["sasl_plain_username"] == "orchestrator"
    assert options["security_protocol"] == "SASL_PLAINTEXT" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (tmp_path / "orchestrator.properties").stat().st_mode & 0o777 == 0o600


def test_a_password_never_shows_in_the_settings_repr() -> None:
    settings = Settings(kafka_username="ops", kafka_password=SecretStr("s3cret-value"))
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())
    assert settings.kafka_credentials() == ("ops", "s3cret-value")


def test_plaintext_needs_no_credentials() -> None:
    assert Settings(kafka_bootstrap="h:1").kafka_client_options() == {"bootstrap_servers": "h:1"}
    with pytest.raises(ValueError):
        Settings(kafka_security_protocol="SASL_PLAINTEXT").kafka_client_options()


def _granted(acls: list[security.Acl], principal: str) -> set[tuple[int, str, int, int]]:
    return {(a.resource_type, a.name, a.pattern, a.operation) for a in acls if a.principal == principal}


def test_acls_least_privilege() -> None:
    settings = Settings(namespace="ns")
    acls = security.namespace_acls(settings, ["WH-A", "WH-B"])
    channel = _granted(acls, "channel")
    writes = {name for kind, name, _, op in channel if kind == security.TOPIC and op == security.WRITE}
    reads = {name for kind, name, _, op in channel if kind == security.TOPIC and op == security.READ}
    assert writes == {"ns.orders.inbound.v1"} and reads == {"ns.orders.status.v1"}
    ops = _granted(acls, "ops")
    assert not [g for g in ops if g[3] in (security.WRITE, security.ALL, security.CREATE)]
    wms_a = {name for kind, name, _, _ in _granted(acls, "wms-WH-A") if kind == security.TOPIC}
    assert "ns.wms.WH-A." in wms_a and not [name for name in wms_a if "WH-B" in name]
    assert (security.TRANSACTIONAL_ID, "ns-inventory-", security.PREFIXED, security.ALL) in _granted(acls, "inventory")
    assert "admin" not in {a.principal for a in acls}  # a super user, by the brokers' configuration


def test_redis_users_default_off_and_prefixes() -> None:
    acl_file = security.redis_acl_file("ns", {"admin": "a", "inventory": "i", "wms-WH-A": "w", "ops": "o"})
    lines = acl_file.splitlines()
    assert lines[0] == "user default off"
    assert "user inventory on >i resetkeys ~ns:stock:* ~ns:skus ~ns:service:*" in acl_file
    assert any(line.startswith("user wms-WH-A on >w resetkeys ~ns:wms:WH-A:*") for line in lines)
    assert any(line.startswith("user ops on >o resetkeys ~ns:* +@read") for line in lines)
