"""The picture of ``baton whatif``: shipments per location in both runs, and each figure's change."""

from __future__ import annotations

from pathlib import Path

from baton.audit.whatif import METRICS, WhatIf


def plot_whatif(result: WhatIf, path: Path) -> Path:
    # imported here, not at the top: every `baton` command would pay ~0.6 s for it
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    figure, (per_location, changes) = plt.subplots(1, 2, figsize=(13, 4.8))
    locations = sorted(set(result.baseline.shipments_per_location) | set(result.candidate.shipments_per_location))
    xs = range(len(locations))
    per_location.bar([x - 0.2 for x in xs], [result.baseline.shipments_per_location[loc] for loc in locations],
                     width=0.4, label="rules in force", color="tab:gray")
    per_location.bar([x + 0.2 for x in xs], [result.candidate.shipments_per_location[loc] for loc in locations],
                     width=0.4, label=result.candidate_rules.name, color="tab:blue")
    per_location.set_xticks(list(xs), locations, rotation=30, ha="right")
    per_location.set(title="Shipments per location", ylabel="shipments")
    per_location.legend()
    differences = result.differences()
    shown = [m for m in METRICS if m != "orders"]
    relative = [_relative(differences[m], result.baseline.metrics[m]) for m in shown]
    colours = ["tab:green" if r < 0 else "tab:red" if r > 0 else "tab:gray" for r in relative]
    changes.barh(shown, relative, color=colours)
    for y, (metric, share) in enumerate(zip(shown, relative, strict=True)):
        changes.annotate(f"{differences[metric]:+,.2f}", xy=(share, y), va="center",
                         ha="left" if share >= 0 else "right", fontsize=8)
    changes.axvline(0, color="black", linewidth=0.8)
    changes.set(title=f"{result.candidate_rules.name} vs the rules in force (change, % of baseline)", xlabel="%")
    changes.invert_yaxis()
    figure.suptitle(f"what if: {int(result.baseline.metrics['orders'])} recorded orders under "
                    f"{result.candidate_rules.name} v{result.candidate_rules.version}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _relative(change: float, base: float) -> float:
    if base:
        return 100.0 * change / base
    return 100.0 if change else 0.0
