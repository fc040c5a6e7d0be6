"""One PNG per run: orders per second over time (placed, allocated, shipped) and the latency distributions."""

from __future__ import annotations

from pathlib import Path

from baton.bench.report import OrderTimeline, latencies, per_second

SERIES = (("placed", "tab:gray"), ("allocated", "tab:blue"), ("shipped", "tab:green"))


def plot_run(timeline: OrderTimeline, path: Path, title: str) -> Path:
    # imported here, not at the top: every `baton` command (services included) would pay ~0.6 s for it
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    origin = min(timeline.placed.values(), default=0.0)
    figure, (rates, spread) = plt.subplots(1, 2, figsize=(13, 4.8))
    series = {name: per_second(getattr(timeline, name).values(), origin) for name, _ in SERIES}
    seconds = max((len(counts) for counts in series.values()), default=0) + 1
    for name, colour in SERIES:
        counts = series[name] + [0] * (seconds - len(series[name]))  # a burst placed in one second still shows
        rates.plot(range(seconds), counts, label=name, color=colour, drawstyle="steps-post")
    rates.set(title="Orders per second", xlabel="seconds after the first order", ylabel="orders / s")
    flow_peak = max((max(series[name], default=0) for name in ("allocated", "shipped")), default=0)
    if max(series["placed"], default=0) > 3 * flow_peak > 0:  # a burst would flatten the flow: keep it off scale
        rates.set_ylim(0, flow_peak * 1.5)
        rates.annotate(f"placed: {len(timeline.placed):,} in a burst (off scale)", xy=(0.02, 0.95),
                       xycoords="axes fraction", va="top", color="tab:gray")
    rates.legend()
    rates.grid(alpha=0.3)
    for name, end, colour in (("placed → allocated", timeline.allocated, "tab:blue"),
                              ("placed → shipped", timeline.shipped, "tab:green")):
        gaps = sorted(max(g, 1e-4) * 1000.0 for g in latencies(timeline.placed, end))
        if gaps:
            share = [(i + 1) / len(gaps) for i in range(len(gaps))]
            spread.plot(gaps, share, label=name, color=colour)
    spread.set(title="Latency (cumulative share of orders)", xlabel="milliseconds (log)", ylabel="share of orders",
               xscale="log", ylim=(0, 1.01))
    spread.legend()
    spread.grid(alpha=0.3, which="both")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
