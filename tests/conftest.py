"""Shared fixtures. ``tiny_synthetic`` is a generated synthetic dataset (2 categories x 6 images
at 96 px) that every stage's tests may use; treat it as read-only."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """A :class:`sopcorr.data.Dataset` of 2 categories (bird, car) x 6 images at 96 px with
    part maps, canonical maps and evaluation pairs, under a session temp dir (``ds.root``)."""
    from sopcorr.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny_synthetic")
    return generate(root, categories=["bird", "car"], images_per_category=6, image_size=96,
                    pairs_per_category=4, seed=0, occluders=2)
