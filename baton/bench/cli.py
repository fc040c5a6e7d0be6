"""``baton bench``: throughput, latency, cost per order and crash survival, beside raw Kafka in the same run."""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
import uuid
from pathlib import Path

import orjson
import typer
from rich.console import Console

from baton.bench.chaos import KillPlan, KillPlanError
from baton.bench.display import LiveProgress, print_report, print_restart_report
from baton.bench.load import default_network, network_only
from baton.bench.restart import TRICKLE_ORDERS, RestartBench
from baton.bench.run import Bench, BenchOptions, exit_status
from baton.scenario.model import ScenarioError, load_scenario
from baton.scenario.runner import stack_for
from services.runtime.settings import Settings

EXIT_OK, EXIT_SLOW, EXIT_USAGE = 0, 1, 2


def bench_command(
    orders: int | None = typer.Option(None, "--orders", min=1, max=1_000_000,
                                      help="A burst: this many orders placed as fast as the producer can."),
    rate: float | None = typer.Option(None, "--rate", min=0.1,
                                      help="Open loop: orders per second on a fixed schedule."),
    duration: float | None = typer.Option(None, "--duration", min=1, help="Open loop: seconds of load (with --rate)."),
    scenario: Path | None = typer.Option(None, "--scenario", help="Bench this scenario file's network and stock."),
    no_workers: bool = typer.Option(False, "--no-workers",
                                    help="WMS nodes accept requests but nobody confirms tasks (allocation alone)."),
    kill: list[str] = typer.Option([], "--kill", help="SERVICE:N, repeatable: kill -9 and restart while orders flow "
                                   "(orchestrator, inventory, payments, wms = a random node, wms:LOCATION; on a stack "
                                   "`baton stack up` started: broker = a random Kafka node killed -9 and started 3 s "
                                   "later, broker-K that node, redis = Redis restarted empty)."),
    kill_window: float | None = typer.Option(None, "--kill-window", help="Seconds over which the kills are spread."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON document on stdout."),
    out: Path | None = typer.Option(None, "--out", help="Where the JSON and PNG go (default .baton/bench/<time>)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for every order to settle."),
    namespace: str | None = typer.Option(None, "--namespace", help="Run in this namespace (default: a fresh one)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the services, stack and namespace for inspection."),
    seed: int = typer.Option(8, "--seed", help="The order mix and the chaos moments follow this seed."),
    returns: float = typer.Option(0.0, "--returns", min=0.0, max=1.0,
                                  help="This share of the orders shipped to a customer is returned once shipped (by "
                                       "mail or in store, some partial, some sent twice); the bench waits for the "
                                       "refunds too."),
    payments_fail_first: int = typer.Option(0, "--payments-fail-first", min=0,
                                            help="The simulated payment adapter fails its first N refund requests."),
    restart_after: int | None = typer.Option(
        None, "--restart-after", min=1, max=1_000_000,
        help="Restart time instead: place N orders without workers, then kill -9 and restart the orchestrator, "
             "the inventory and one WMS node in turn, timing each back to processing (issue 9: <= 10 s)."),
) -> None:
    """Bring the network up, place the load, wait until it settled, report every figure from the topics."""
    err = Console(stderr=True)
    # "Topic ... not found in cluster metadata", logged as an error while the run's fresh topics propagate
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    if restart_after is not None:
        _restart_bench(restart_after, scenario, as_json, out, namespace, keep, seed, err)
    count = _order_count(orders, rate, duration, err)
    try:
        plans = [KillPlan.parse(text) for text in kill]
        network = network_only(load_scenario(scenario)) if scenario else default_network(count)
    except (KillPlanError, ScenarioError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from exc
    options = BenchOptions(orders=count, rate=rate, workers=not no_workers, kills=plans, kill_window_s=kill_window,
                           timeout_s=timeout, namespace=namespace, keep=keep, out_dir=out, seed=seed,
                           command=shlex.join(["baton", "bench", *sys.argv[2:]]), returns=returns,
                           payments_fail_first=payments_fail_first)
    settings = Settings().with_namespace(namespace or f"bench-{uuid.uuid4().hex[:6]}")
    with stack_for(settings, keep=keep), LiveProgress(err) as live:
        document = asyncio.run(Bench(network, settings, options, live).run())
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_report(document, Console())
    raise typer.Exit(exit_status(document))


def _restart_bench(orders: int, scenario: Path | None, as_json: bool, out: Path | None, namespace: str | None,
                   keep: bool, seed: int, err: Console) -> None:
    try:
        network = network_only(load_scenario(scenario)) if scenario else default_network(orders + TRICKLE_ORDERS)
    except ScenarioError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from exc
    settings = Settings().with_namespace(namespace or f"restart-{uuid.uuid4().hex[:6]}")
    bench = RestartBench(network, settings, orders, shlex.join(["baton", "bench", *sys.argv[2:]]), out, seed=seed,
                         keep=keep)
    with stack_for(settings, keep=keep), LiveProgress(err) as live:
        bench.live = live
        document = asyncio.run(bench.run())
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_restart_report(document, Console())
    raise typer.Exit(EXIT_OK if document["ok"] else EXIT_SLOW)


def _order_count(orders: int | None, rate: float | None, duration: float | None, err: Console) -> int:
    if orders is not None and rate is None and duration is None:
        return orders
    if orders is None and rate is not None and duration is not None:
        return max(1, round(rate * duration))
    if orders is None and rate is None and duration is None:
        return 2_000
    err.print("[red]give either --orders N, or --rate R with --duration S[/red]")
    raise typer.Exit(EXIT_USAGE)
