"""Settings read from the environment (``BATON_*``), shared by every service and the CLI."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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

    def with_namespace(self, namespace: str) -> Settings:
        return self.model_copy(update={"namespace": namespace})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
