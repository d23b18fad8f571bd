"""The card's figure: who is for or against whom, the holder x target matrix of the gold stances as a PNG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

FIGURE = "stance_by_actor.png"


def actor_stances(records: Collection[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """Counts of gold stances by (holder actor, target actor, label); an unlinked entity is named by its text."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for rec in records:
        if rec["status"] != "gold":
            continue
        ents = rec["entities"]
        for s in rec["stances"]:
            h, t = ents[s["holder"]], ents[s["target"]]
            counts[(h.get("actor") or f'"{h["text"]}"', t.get("actor") or f'"{t["text"]}"', s["label"])] += 1
    return counts


def stance_by_actor(records: Collection[dict[str, Any]], path: Path, max_actors: int) -> None:
    """Draw the holder x target matrix of gold stances, coloured by net count (blue favour, red against, grey none), as a deterministic PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    counts = actor_stances(records)
    plt.rcParams.update({"svg.hashsalt": "geonews", "font.family": "DejaVu Sans"})
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=100)
    if not counts:
        ax.text(0.5, 0.5, "No human-annotated (gold) stances yet", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
    else:
        weight: Counter[str] = Counter()
        for (h, t, _), n in counts.items():
            weight[h] += n
            weight[t] += n
        actors = sorted(sorted(weight), key=lambda a: -weight[a])[:max_actors]
        holders = [a for a in actors if any(h == a for h, _, _ in counts)]
        targets = [a for a in actors if any(t == a for _, t, _ in counts)]
        favor = np.zeros((len(holders), len(targets)))
        against = np.zeros_like(favor)
        for (h, t, label), n in counts.items():
            # only favor and against have a sign; other stance labels (e.g. neutral) are left out of the matrix
            if h in holders and t in targets and label in ("favor", "against"):
                (favor if label == "favor" else against)[holders.index(h), targets.index(t)] += n
        net = favor - against
        lim = max(1.0, float(np.abs(net).max()))
        cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#d9d9d9")  # grey: no gold stance in the cell
        shown = np.ma.masked_where((favor + against) == 0, net)
        im = ax.imshow(shown, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(holders)):
            for j in range(len(targets)):
                if favor[i, j] or against[i, j]:
                    dark = abs(net[i, j]) > 0.6 * lim
                    ax.text(j, i, f"+{favor[i, j]:.0f}/−{against[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(targets)), targets, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(len(holders)), holders, fontsize=9)
        ax.set_xlabel("target (the stance is about)")
        ax.set_ylabel("holder (who takes the stance)")
        bar = fig.colorbar(im, ax=ax, label="net gold stances in the cell: favour count − against count")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no fractional ticks
        ax.set_facecolor("#d9d9d9")
        ax.set_title("Who is for or against whom: gold stances by actor\n(cell: +favour/−against counts)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
