"""Glue for workflow scripts: ``run(main)`` sets up logging to the rule's log file and turns a
:class:`~sopcorr.errors.SopcorrError` into one line on stderr and a non-zero exit;
:func:`evaluation_inputs` opens the stores an evaluation rule declares (scripts read only
``snakemake.input/params/output/threads/log/wildcards``)."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable

from .errors import SopcorrError


class FileOnlyFilter(logging.Filter):
    """Drops records logged with ``extra={"file_only": True}`` (install it on the console
    handler: what the job prints to stderr itself goes to the log file only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    from .progress import ConsoleBarFilter

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].addFilter(ConsoleBarFilter())  # the console shows progress as tqdm bars instead
    handlers[0].addFilter(FileOnlyFilter())
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        handlers=handlers, force=True)


#: the modules whose import is a job's largest fixed cost (docs/PERFORMANCE.md)
HEAVY_MODULES = ("torch", "torchvision")


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), or None where that is unknown."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def startup_line(started: float | None, worked: float) -> str:
    """The job log's last line: seconds before ``main`` (interpreter, Snakemake's preamble,
    the script's imports; in a child of the run's job server, :mod:`sopcorr.jobserver`: from
    the fork), seconds of work, and which of :data:`HEAVY_MODULES` the job loaded
    (``tests/test_startup.py`` reads it: a job that runs no tensor code loads none; a job
    forked from the job server has them preloaded, and the line says so)."""
    heavy = [m for m in HEAVY_MODULES if m in sys.modules]
    before = "?" if started is None else f"{started:.2f}"
    forked = " (forked from the run's job server, which preloads them)" if os.environ.get(
        "SOPCORR_JOB_SERVER_CHILD") else ""
    return (f"job time: {before} s start, {worked:.2f} s work; heavy modules loaded: "
            f"{', '.join(heavy) if heavy else 'none'}{forked}")


def run(main: Callable, smk) -> None:
    """Call ``main(smk)`` with logging to ``smk.log[0]`` (when the rule has a log). A
    :class:`SopcorrError` is printed once on stderr (one line) and written to the log file,
    and the job exits with status 1. The log's last line is :func:`startup_line`."""
    started = process_age()
    t0 = time.perf_counter()
    log = smk.log[0] if len(smk.log) else None
    setup_logging(log)
    try:
        main(smk)
    except SopcorrError as err:
        msg = f"sopcorr error: {err}"
        logging.getLogger("sopcorr").error(msg, extra={"file_only": True})
        print(msg, file=sys.stderr, flush=True)
        sys.exit(1)
    logging.getLogger("sopcorr").info(startup_line(started, time.perf_counter() - t0),
                                      extra={"file_only": True})


def job_threads(smk) -> int:
    """The number of threads a job computes with.

    A rule whose numbers depend on its thread count (torch's convolutions and products, the
    manifold's BLAS products split their sums differently with more threads) declares
    ``params.numeric_threads`` (the config's ``numeric_threads``): its job computes with that
    many whatever ``--cores`` or ``--set-threads`` gave it, so ``snakemake --cores 1`` and a
    cluster profile give the tables of ``--cores all`` (on a machine with at least that many
    cores: OpenBLAS runs no more threads than the machine has). Any other rule computes with the
    threads Snakemake gave it: one, for every such rule of the pipeline but
    ``generate_synthetic``, whose threads are rendering processes that leave its files
    byte-identical."""
    declared = smk.params.get("numeric_threads")
    return max(1, int(declared if declared is not None else smk.threads))


def limit_threads(smk, torch: bool = True) -> int:
    """Set BLAS (through threadpoolctl) and, with ``torch``, torch's intra-op threads to
    :func:`job_threads`; returns the count. Snakemake's OMP_NUM_THREADS & co. follow the job's
    scheduled threads, which ``--cores`` can scale down: this call is what fixes the count, for
    the libraries already loaded (threadpoolctl) and for those loaded later (the variables,
    which OpenBLAS, MKL and OpenMP read when they load)."""
    n = job_threads(smk)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        pass
    else:
        threadpool_limits(n)
    if torch:
        import torch as _torch

        _torch.set_num_threads(n)
    return n


def _get(named, key):
    """``named[key]`` of a Snakemake Namedlist, or None when the rule declares no such entry."""
    return getattr(named, key, None) if key in named.keys() else None


def evaluation_inputs(smk, suffix: str = ""):
    """(frames, checkpoints) of an evaluation job from the inputs its rule declares:
    frames = :func:`sopcorr.matchers.base.frame_sources` of ``instances``, ``features`` and the
    optional ``embedding``, ``embedding_iter1``, ``labels`` (each name + ``suffix``);
    checkpoints = {name: path} of the declared checkpoints (names:
    :data:`sopcorr.matchers.methods.CHECKPOINTS`)."""
    from .matchers.base import frame_sources
    from .matchers.methods import CHECKPOINTS

    inp = smk.input
    frames = frame_sources(inp.instances, inp.features, embedding=_get(inp, "embedding" + suffix),
                           embedding_iter1=_get(inp, "embedding_iter1" + suffix),
                           labels=_get(inp, "labels" + suffix), category=smk.wildcards.category)
    checkpoints = {k: _get(inp, k + suffix) for k in CHECKPOINTS if _get(inp, k + suffix)}
    return frames, checkpoints
