"""Glue for workflow scripts: ``run(main)`` sets up logging to the rule's log file and turns a
:class:`~sopcorr.errors.SopcorrError` into one line on stderr and a non-zero exit."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from .errors import SopcorrError


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    from .progress import ConsoleBarFilter

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].addFilter(ConsoleBarFilter())  # the console shows progress as tqdm bars instead
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        handlers=handlers, force=True)


def run(main: Callable, smk) -> None:
    """Call ``main(smk)`` with logging to ``smk.log[0]`` (when the rule has a log)."""
    log = smk.log[0] if len(smk.log) else None
    setup_logging(log)
    try:
        main(smk)
    except SopcorrError as err:
        msg = f"sopcorr error: {err}"
        logging.getLogger("sopcorr").error(msg)
        print(msg, file=sys.stderr, flush=True)
        sys.exit(1)


def category_context(smk):
    """The evaluation context of a per-category rule: limits torch to the rule's threads and
    reads results/<run>/ from its input results/<run>/data/<category>/instances.json."""
    from pathlib import Path

    import torch

    from .evaluate.methods import CategoryContext

    torch.set_num_threads(max(1, int(smk.threads)))
    return CategoryContext(smk.wildcards.category, Path(smk.input.instances).parents[2], smk.config)
