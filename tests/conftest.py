"""Shared fixtures.

* ``tiny_synthetic``: a generated synthetic dataset (2 categories x 6 images at 96 px) that
  every stage's tests may use; treat it as read-only.
* ``reference_a``, ``reference_b``: the two finished runs of tests/integration/tiny.yaml that
  the integration tests share (tests/integration/references.py); read only, clone to write.
  They are built in background threads from the start of the session (pytest-xdist worker gw0
  builds ``a``, gw1 builds ``b``; without xdist one process builds both), only when a collected
  test needs them, so they overlap each other and the unit tests.

Scheduling: the tests that run Snakemake (marker ``slow``) are collected first, so that the
longest ones start first; ``make test`` runs ``pytest -n 2 --dist worksteal`` so an idle worker
takes tests from a busy one.
"""
from __future__ import annotations

import os

import pytest

from integration import references

_NEEDED: list[str] = []


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda it: 0 if it.get_closest_marker("slow") else 1)  # stable: slow first
    _NEEDED[:] = [n for n in references.NAMES if any(f"reference_{n}" in it.fixturenames for it in items)]


@pytest.fixture(scope="session", autouse=True)
def _references_in_background(tmp_path_factory):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        mine = list(_NEEDED)
    else:
        index = int(worker.removeprefix("gw"))
        mine = [references.NAMES[index]] if index < len(references.NAMES) else []
        mine = [n for n in mine if n in _NEEDED]
    references.start_in_background(tmp_path_factory, mine)
    yield
    references.join_background()


@pytest.fixture(scope="session")
def reference_a(tmp_path_factory):
    """The uninterrupted finished tiny run with its HTML report (read only)."""
    return references.reference(tmp_path_factory, "a")


@pytest.fixture(scope="session")
def reference_b(tmp_path_factory):
    """The killed-and-resumed finished tiny run (tables; read only)."""
    return references.reference(tmp_path_factory, "b")


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """A :class:`sopcorr.data.Dataset` of 2 categories (bird, car) x 6 images at 96 px with
    part maps, canonical maps and evaluation pairs, under a session temp dir (``ds.root``)."""
    from sopcorr.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny_synthetic")
    return generate(root, categories=["bird", "car"], images_per_category=6, image_size=96,
                    pairs_per_category=4, seed=0, occluders=2)
