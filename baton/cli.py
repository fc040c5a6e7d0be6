"""The ``baton`` command: one entry point for the stack, the services, scenarios and ops queries."""

from __future__ import annotations

import typer

from baton.audit.cli import audit_command, export_command, replay_app, whatif_command
from baton.bench.cli import bench_command
from baton.demo import demo_command
from baton.explain_cli import explain_command
from baton.network_cli import network_app, rules_app
from baton.orders_cli import orders_app
from baton.returns_cli import returns_app
from baton.run_cli import run_app
from baton.scenario.cli import scenario_app
from baton.sim.cli import sim_command
from baton.stack.cli import stack_app
from baton.stock_cli import stock_app
from baton.topics_cli import topics_app
from baton.web.cli import web_command
from baton.wms_cli import wms_app

app = typer.Typer(
    name="baton",
    help="baton: an event-driven OMS/WMS over Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(run_app, name="run")
app.add_typer(scenario_app, name="scenario")
app.add_typer(orders_app, name="orders")
app.add_typer(returns_app, name="returns")
app.add_typer(stock_app, name="stock")
app.command("demo")(demo_command)
app.command("web")(web_command)
app.command("bench")(bench_command)
app.command("sim")(sim_command)
app.command("audit")(audit_command)
app.command("export")(export_command)
app.add_typer(replay_app, name="replay")
app.command("whatif")(whatif_command)
app.add_typer(wms_app, name="wms")
app.add_typer(network_app, name="network")
app.add_typer(rules_app, name="rules")
orders_app.command("explain")(explain_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
