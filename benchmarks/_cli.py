"""Command-line glue shared by the benchmarks (not a benchmark itself).

Every benchmark runs with no flags in about two minutes on a 2-core CPU, or prints its usage and
what it needs and exits with status 2; a bad flag or value prints the usage and exits 2 (argparse's
``error``), never a traceback. ``python benchmarks/<name>.py`` puts this folder on ``sys.path``.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} is not >= 1")
    return v


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} is not >= 0")
    return v


def require_paths(ap: argparse.ArgumentParser, paths, what: str) -> None:
    """Exit 2 with the usage and one line naming the first missing path and what makes it."""
    for p in paths:
        if not Path(p).exists():
            ap.error(f"needs {what}: {p} not found")


def add_pair_options(ap: argparse.ArgumentParser) -> None:
    """The pair studies' options: which pairs of each category (``--max-pairs``, ``--all-pairs``;
    :func:`pairs_per_category`) and the bootstrap's resamples (``--boot``)."""
    ap.add_argument("--max-pairs", type=positive_int, default=None,
                    help="pairs per category (default: the config's evaluate.max_eval_pairs)")
    ap.add_argument("--all-pairs", action="store_true", help="every dataset pair of each category")
    ap.add_argument("--boot", type=positive_int, default=2000, help="bootstrap resamples")


def pairs_per_category(args: argparse.Namespace, config: dict) -> int | None:
    """The pairs per category :func:`add_pair_options` asks for (None: every pair)."""
    if args.all_pairs:
        return None
    return args.max_pairs if args.max_pairs is not None else config["evaluate"].get("max_eval_pairs")
