"""Which categories a run's learned network has seen, and whether a pair is of one of them: the
rule behind ``sopcorr match --run``'s fall-back to the matcher that needs no run.

The learned network beats its teacher on the categories it trained on and loses to it on
categories it never saw (docs/RESULTS.md, "Generalisation"): on the synthetic default a network
trained without a category matches that category below raw nearest neighbour. So ``sopcorr
match --run`` uses the run's learned matcher only for a pair of a category the run trained on,
and otherwise the no-run matcher (``sopcorr match`` without ``--run``), which is then exactly
what the user gets: never worse than matching without the run.

The category is known when the user names it (``--category``) or when an image is one of the
run's prepared instances. It is not guessed from the photos: a nearest-prototype recogniser on
the run's own features (``benchmarks/match_coverage.py``) accepted most images of a left-out
category as one of the others (docs/RESULTS.md), so an unknown category falls back.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["run_categories", "Coverage", "coverage"]


def run_categories(run_dir: str | Path) -> list[str]:
    """The categories a run's network trained on: the run's prepared categories
    (``data/<cat>/instances.json``; the network's training data is every category's pseudo
    flow)."""
    return sorted(p.parent.name for p in (Path(run_dir) / "data").glob("*/instances.json"))


@dataclass(frozen=True)
class Coverage:
    """The rule's verdict for one pair: ``learned`` (use the run's learned matcher), the
    category it is of (None: unknown) and why, one line."""

    learned: bool
    category: str | None
    reason: str


def coverage(run_dir: str | Path, category: str | None) -> Coverage:
    """The verdict for a pair of ``category`` (None: not known) under the run ``run_dir``: learned
    exactly when the category is one of :func:`run_categories`."""
    cats = run_categories(run_dir)
    listed = ", ".join(cats) if cats else "none"
    if category is None:
        return Coverage(False, None, f"the photos are not among the run's instances and no --category was "
                                     f"given; the run's network trained on: {listed}")
    if category not in cats:
        return Coverage(False, category, f"category '{category}' is not one the run's network trained on "
                                         f"({listed})")
    return Coverage(True, category, f"category '{category}' is one the run's network trained on")
