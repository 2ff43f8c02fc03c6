"""Pareto fronts (score lower = better against a cost lower = better), budget choice and plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def pareto_front(cands: Sequence[dict[str, Any]], cost_key: str, score_key: str = "score") -> list[dict[str, Any]]:
    """Non-dominated candidates (no other is <= on both and < on one), sorted by cost."""
    pts = sorted(cands, key=lambda c: (c[cost_key], c[score_key]))
    front: list[dict[str, Any]] = []
    best = float("inf")
    for c in pts:
        if c[score_key] < best:  # strictly better than everything cheaper or equal in cost
            front.append(c)
            best = c[score_key]
    return front


def choose_for_budget(cands: Sequence[dict[str, Any]], limits: dict[str, float | None]) -> dict[str, Any] | None:
    """Best-scoring candidate within every limit (keys: macs, params, latency_ms); None if none fit."""
    ok = [c for c in cands if all(v is None or c[k] <= v for k, v in limits.items())]
    return min(ok, key=lambda c: c["score"]) if ok else None


def choose_distinct(cands: Sequence[dict[str, Any]], limits: dict[str, dict[str, float | None]]
                    ) -> dict[str, dict[str, Any] | None]:
    """One candidate per budget, each strictly cheaper (MACs) than every larger budget's pick.

    Budgets are taken from the largest MACs limit down (no limit first); each gets the best
    candidate within its limits that costs less than the pick before it. The best candidate under
    a MACs cap is on the Pareto front, so the picks are distinct points of the front at falling
    cost (without this, a small subnet that scores best under every limit is picked for all of them).
    A budget nothing cheaper fits repeats the pick before it (the search marks it `same_as`), or,
    if that one exceeds its limits, takes the best within them."""
    order = sorted(limits, key=lambda n: -(limits[n].get("macs") or float("inf")))
    out: dict[str, dict[str, Any] | None] = {}
    last: dict[str, Any] | None = None
    for name in order:
        ok = [c for c in cands if all(v is None or c[k] <= v for k, v in limits[name].items())]
        cheaper = [c for c in ok if last is None or c["macs"] < last["macs"]]
        if cheaper:
            last = out[name] = min(cheaper, key=lambda c: c["score"])
        else:
            out[name] = last if last is not None and any(c is last for c in ok) else (
                min(ok, key=lambda c: c["score"]) if ok else None)
    return out


def plot_pareto(cands: Sequence[dict[str, Any]], path: str | Path, chosen: dict[str, dict] | None = None,
                baselines: dict[str, float] | None = None) -> Path:
    """Two panels: score against GMACs and against latency; the fronts drawn, variants labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from salnas_core.utils.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, scale, label in ((axes[0], "macs", 1e-9, "GMACs"), (axes[1], "latency_ms", 1.0, "latency (ms)")):
        ax.scatter([c[key] * scale for c in cands], [c["score"] for c in cands], s=12, c="0.6", label="evaluated")
        f = pareto_front(cands, key)
        ax.plot([c[key] * scale for c in f], [c["score"] for c in f], "o-", c="C3", ms=4, label="Pareto front")
        for name, c in (chosen or {}).items():
            ax.scatter([c[key] * scale], [c["score"]], marker="*", s=140, c="C0", zorder=5)
            ax.annotate(name, (c[key] * scale, c["score"]), textcoords="offset points", xytext=(5, 5))
        for name, v in (baselines or {}).items():
            ax.axhline(v, ls="--", c="C2", lw=1)
            ax.annotate(name, (ax.get_xlim()[0], v), textcoords="offset points", xytext=(3, 3), color="C2")
        ax.set_xlabel(label)
        ax.set_ylabel("selection score (lower is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return path
