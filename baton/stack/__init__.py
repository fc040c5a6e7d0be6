"""The local stack (real Kafka in KRaft mode and Redis) that the services and tests run against."""

from baton.stack.local import LocalStack, ServiceStatus, StackError, StackStatus, ensured_stack

__all__ = ["LocalStack", "ServiceStatus", "StackError", "StackStatus", "ensured_stack"]
