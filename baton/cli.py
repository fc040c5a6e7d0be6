"""The ``baton`` command: one entry point for the stack, the services, scenarios and ops queries."""

from __future__ import annotations

import typer

from baton.stack.cli import stack_app

app = typer.Typer(
    name="baton",
    help="baton: an event-driven OMS/WMS over Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_app, name="stack")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
