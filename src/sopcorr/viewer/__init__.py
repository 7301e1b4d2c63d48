"""A run's interactive correspondence viewer (``results/<run>/viewer/index.html``).

:mod:`.encode` is the compact encoding of dense correspondences (numpy only);
:mod:`.build` computes a run's correspondences with the evaluation's matchers and writes the
page, its code (``static/``, package data) and one ``<script>`` data file per category and
method. Nothing here imports torch at import time (the matchers do, when they are built).
"""
from __future__ import annotations

__all__ = ["write_viewer", "ViewerSettings"]


def __getattr__(name: str):
    if name in __all__:
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
