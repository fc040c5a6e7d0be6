"""Settings read from the environment (``BATON_*``), shared by every service and the CLI."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NAMESPACE = "baton"


def project_root() -> Path:
    """The folder holding ``pyproject.toml`` (the checkout), where ignored runtime data lives."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()


class Settings(BaseSettings):
    """Where the stack is and which namespace (topic prefix, groups, Redis prefix) a process lives in."""

    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field(default=DEFAULT_NAMESPACE, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,40}$")
    home: Path = Field(default_factory=lambda: project_root() / ".baton")
    partitions: int = 4
    replication_factor: int = 1
    log_level: str = "INFO"
    web_port: int = 0
    # A secured cluster (``baton stack up --secure``): SASL/SCRAM credentials from the environment, from one
    # file (``username=`` / ``password=`` lines), or from ``<dir>/<BATON_INSTANCE_ID>.properties`` so that each
    # service process a runner starts connects as its own principal. Never logged: the password is a SecretStr.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_credentials_file: Path | None = None
    kafka_credentials_dir: Path | None = None
    instance_id: str | None = None
    kafka_ca_file: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.home / "state" / self.namespace

    @property
    def redis_prefix(self) -> str:
        return f"{self.namespace}:"

    def topic(self, name: str) -> str:
        """The full topic name in this namespace, e.g. ``baton.orders.inbound.v1``."""
        return f"{self.namespace}.{name}"

    def group(self, service: str) -> str:
        """The consumer group (and faust app id) of a service in this namespace."""
        return f"{self.namespace}-{service}"

    def kafka_client_options(self) -> dict[str, Any]:
        """The connection keyword arguments of every aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap}
        if self.kafka_security_protocol == "PLAINTEXT":
            return options
        username, password = self.kafka_credentials()
        options.update(
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_plain_username=username,
            sasl_plain_password=password,
        )
        if self.kafka_security_protocol == "SASL_SSL":
            options["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ca_file)
        return options

    def kafka_credentials(self) -> tuple[str, str]:
        """(username, password): this instance's own file first (a service started by a runner that itself runs
        as an operator), then the environment, then the credentials file."""
        if self.kafka_credentials_dir is not None and self.instance_id:
            own = self.kafka_credentials_dir / f"{self.instance_id}.properties"
            if own.exists():
                return read_credentials(own)
        if self.kafka_username and self.kafka_password:
            return self.kafka_username, self.kafka_password.get_secret_value()
        path = self.kafka_credentials_file
        if path is None:
            raise ValueError("a secured Kafka needs BATON_KAFKA_USERNAME/PASSWORD or a credentials file")
        return read_credentials(path)

    def with_namespace(self, namespace: str) -> Settings:
        return self.model_copy(update={"namespace": namespace})


def read_credentials(path: Path) -> tuple[str, str]:
    """``username=`` and ``password=`` lines of a credentials file (properties syntax)."""
    entries = dict(
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    return entries["username"].strip(), entries["password"].strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def kafka_connection(bootstrap: str) -> dict[str, Any]:
    """Client kwargs for a component handed only a bootstrap string: this process's security settings."""
    return {**get_settings().kafka_client_options(), "bootstrap_servers": bootstrap}


def redis_connection_url(url: str) -> str:
    """``url`` as this process's principal when it has its own credentials file (a secured stack's Redis ACL
    user has the principal's name and password), else unchanged."""
    settings = get_settings()
    if settings.kafka_credentials_dir is None or not settings.instance_id:
        return url
    own = settings.kafka_credentials_dir / f"{settings.instance_id}.properties"
    if not own.exists():
        return url
    username, password = read_credentials(own)
    parts = urlsplit(url)
    netloc = f"{quote(username)}:{quote(password)}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
