"""Stand-ins for the evaluation tests: a toy category whose instances are affine images of one
canonical object, so the exact correspondence between any two is known."""
from __future__ import annotations

import numpy as np

from sopcorr.data.model import CategorySpec, Dataset, Instance
from sopcorr.evaluate.category import EvalCategory
from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.matchers.methods import Method

SIZE = 64
NAMES = ["a", "b", "c", "d"]
CANON = np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.8], [0.3, 0.6]])


def affine(i: int):
    """Scale and offset of instance i: x = s * u + o."""
    s = 30.0 + 3.0 * (i % 5)
    o = np.array([8.0 + (i % 3), 10.0 + (i % 4)])
    return s, o


def exact_correspondence(s: int, t: int, shift=(0.0, 0.0)) -> DenseCorrespondence:
    grid = FeatureGrid(Letterbox(SIZE, SIZE, SIZE), 4)
    c = grid.cell_centers_image()
    ss, os_ = affine(s)
    st, ot = affine(t)
    u = (c - os_) / ss
    txy = st * u + ot + np.asarray(shift)
    return DenseCorrespondence(txy.astype(np.float64), np.ones(grid.shape, np.float32),
                               np.ones(grid.shape, bool), grid)


def toy_context(n: int = 10, invisible=()) -> EvalCategory:
    insts = []
    for i in range(n):
        s, o = affine(i)
        xy = CANON * s + o
        kps = {nm: (float(x), float(y), 0 if (i, nm) in invisible else 1) for nm, (x, y) in zip(NAMES, xy)}
        insts.append(Instance(id=f"toy/{i:03d}", image=f"{i}.png", category="toy",
                              bbox=(float(o[0]), float(o[1]), float(o[0] + s), float(o[1] + s)),
                              keypoints=kps, split="test" if i % 4 == 0 else "train"))
    pairs = [(insts[i].id, insts[(i + 1) % n].id) for i in range(n)]
    ds = Dataset("toy", ".", {"toy": CategorySpec(NAMES)}, insts, pairs)
    g = np.random.default_rng(0).normal(size=(n, 8))
    return EvalCategory(ds, global_desc=g)


class ExactMatcher:
    """The exact correspondence between toy instances (frames are instance indices)."""

    def __init__(self, shift=(0.0, 0.0)):
        self.shift = shift

    def correspondence(self, src: int, tgt: int) -> DenseCorrespondence:
        return exact_correspondence(src, tgt, self.shift)


def exact_method(name="exact", shift=(0.0, 0.0), prior=False) -> Method:
    """A Method whose frames are the instance indices themselves."""
    return Method(name, name, ExactMatcher(shift), range(10 ** 6), prior)
