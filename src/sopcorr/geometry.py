"""Image <-> network-input <-> feature-grid geometry shared by every stage.

Conventions (the generic dataset format's): pixel coordinates are 0-based, x to the right,
y down, the centre of the top-left pixel at (0, 0).

*Letterboxing.* An image of size (h, w) is resized by ``scale = size / max(h, w)`` to
``(round(h * scale), round(w * scale))`` and placed at the top-left corner of a
``size x size`` canvas; the rest is padding. An image point x maps to the input point
``(x + 0.5) * scale - 0.5`` (same for y).

*Feature grid.* A map of stride s over a ``size`` input has ``size // s`` cells per side; cell
(r, c) is centred at input point ``((c + 0.5) * s - 0.5, (r + 0.5) * s - 0.5)``. A cell is
*valid* when its centre lies inside the resized image (not in the padding).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Letterbox transform of one image: original (height, width) and input ``size``."""

    height: int
    width: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / max(self.height, self.width)

    @property
    def resized_hw(self) -> tuple[int, int]:
        s = self.scale
        return max(1, round(self.height * s)), max(1, round(self.width * s))

    def image_to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) image coordinates -> (..., 2) input coordinates."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) * self.scale - 0.5

    def input_to_image(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) input coordinates -> (..., 2) image coordinates."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) / self.scale - 0.5


@dataclass(frozen=True)
class FeatureGrid:
    """A feature grid of ``stride`` over a letterboxed image."""

    letterbox: Letterbox
    stride: int

    @property
    def shape(self) -> tuple[int, int]:
        n = self.letterbox.size // self.stride
        return n, n

    def cell_centers_input(self) -> np.ndarray:
        """(H, W, 2) input coordinates (x, y) of the cell centres."""
        h, w = self.shape
        xs = (np.arange(w) + 0.5) * self.stride - 0.5
        ys = (np.arange(h) + 0.5) * self.stride - 0.5
        return np.stack(np.meshgrid(xs, ys), axis=-1)

    def cell_centers_image(self) -> np.ndarray:
        """(H, W, 2) image coordinates (x, y) of the cell centres."""
        return self.letterbox.input_to_image(self.cell_centers_input())

    def image_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) image coordinates -> (..., 2) continuous cell coordinates (col, row);
        integer values are cell centres."""
        inp = self.letterbox.image_to_input(xy)
        return (inp + 0.5) / self.stride - 0.5

    def cell_to_image(self, cr: np.ndarray) -> np.ndarray:
        """(..., 2) continuous cell coordinates (col, row) -> (..., 2) image coordinates."""
        inp = (np.asarray(cr, dtype=np.float64) + 0.5) * self.stride - 0.5
        return self.letterbox.input_to_image(inp)

    def valid_mask(self) -> np.ndarray:
        """(H, W) bool: cell centre inside the resized image."""
        rh, rw = self.letterbox.resized_hw
        c = self.cell_centers_input()
        return (c[..., 0] < rw - 0.5 + 1e-9) & (c[..., 1] < rh - 0.5 + 1e-9)


def bilinear_sample(field: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Bilinearly sample ``field`` (H, W, ...) at continuous cell coordinates ``cr`` (K, 2)
    given as (col, row); coordinates are clamped to the grid. Returns (K, ...)."""
    field = np.asarray(field)
    h, w = field.shape[:2]
    c = np.clip(np.asarray(cr, dtype=np.float64)[:, 0], 0, w - 1)
    r = np.clip(np.asarray(cr, dtype=np.float64)[:, 1], 0, h - 1)
    c0 = np.floor(c).astype(int)
    r0 = np.floor(r).astype(int)
    c1 = np.minimum(c0 + 1, w - 1)
    r1 = np.minimum(r0 + 1, h - 1)
    fc = (c - c0).reshape((-1,) + (1,) * (field.ndim - 2))
    fr = (r - r0).reshape((-1,) + (1,) * (field.ndim - 2))
    top = field[r0, c0] * (1 - fc) + field[r0, c1] * fc
    bot = field[r1, c0] * (1 - fc) + field[r1, c1] * fc
    return top * (1 - fr) + bot * fr


@dataclass
class DenseCorrespondence:
    """A dense map from a source image to a target image, defined on the source's grid.

    target_xy: (H, W, 2) float target *image* coordinates (x, y) matched to each source cell.
    score:     (H, W) float confidence, higher is better (e.g. cosine similarity).
    valid:     (H, W) bool, cells whose match is defined/trusted.
    grid:      the source FeatureGrid (maps source image coordinates to cells).
    interpolation: how ``transfer`` maps a point between cell centres by default: 'bilinear'
               interpolates the cells' matches, which suits smooth flows (SIFT-flow);
               'nearest' takes the nearest cell's match, which suits nearest-neighbour
               matches, whose neighbouring cells may match far-apart targets (averaging them
               lands between the two); 'readout' asks ``point_readout``, a matcher that can
               match a point between cells itself (the correlation network reads out the
               bilinear interpolation of the four cells' correlation rows); 'adaptive'
               interpolates the four cells' matches where they agree (all four valid and each
               within ``AGREE_CELLS`` target cells of their mean: one smooth piece of the map,
               which interpolation resolves below a cell) and asks ``point_readout`` where they
               do not (a rim, a fold, an occlusion).
    point_readout: for 'readout' and 'adaptive': source cells (K, 2) continuous (col, row) ->
               ((K, 2) target image points, (K,) scores); at a cell centre it returns that
               cell's ``target_xy`` and ``score``.
    target_grid: the target image's FeatureGrid (for 'adaptive': the size of a target cell).

    Every correspondence method of the project (nearest neighbours, SIFT-flow, the Siamese
    network) returns one of these, so evaluation treats them all alike.
    """

    target_xy: np.ndarray
    score: np.ndarray
    valid: np.ndarray
    grid: FeatureGrid
    interpolation: str = "bilinear"
    point_readout: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, repr=False, compare=False)
    target_grid: FeatureGrid | None = field(default=None, repr=False, compare=False)

    #: 'adaptive': the four cells' matches agree when each lies within this many target cells
    #: of their mean (one cell: the grid's own resolution; nothing fitted)
    AGREE_CELLS: ClassVar[float] = 1.0

    def __post_init__(self):
        if self.interpolation in ("readout", "adaptive") and self.point_readout is None:
            raise ValueError(f"DenseCorrespondence: interpolation {self.interpolation!r} needs a point_readout")
        if self.interpolation == "adaptive" and self.target_grid is None:
            raise ValueError("DenseCorrespondence: interpolation 'adaptive' needs the target_grid")

    def agreeing(self, cells: np.ndarray) -> np.ndarray:
        """(K,) bool: for source cells (K, 2) continuous (col, row), whether the four cells
        around each (clipped at the border, as :func:`bilinear_sample`) are all valid and their
        matches lie within ``AGREE_CELLS`` target cells of their mean (needs ``target_grid``)."""
        if self.target_grid is None:
            raise ValueError("DenseCorrespondence.agreeing: needs the target_grid (the size of a target cell)")
        cr = np.asarray(cells, np.float64).reshape(-1, 2)
        h, w = self.score.shape
        c0 = np.clip(np.floor(cr[:, 0]).astype(int), 0, w - 1)
        r0 = np.clip(np.floor(cr[:, 1]).astype(int), 0, h - 1)
        c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
        corners = [(r0, c0), (r0, c1), (r1, c0), (r1, c1)]
        q = np.stack([self.target_xy[r, c] for r, c in corners], 1).astype(np.float64)    # (K, 4, 2)
        ok = np.stack([self.valid[r, c] for r, c in corners], 1).all(1)
        cell_px = self.target_grid.stride / self.target_grid.letterbox.scale
        spread = np.linalg.norm(q - q.mean(1, keepdims=True), axis=2).max(1) / cell_px
        return ok & (spread <= self.AGREE_CELLS)

    def transfer(self, points_xy: np.ndarray, mode: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Map source image points (K, 2) to target image points (K, 2); also returns (K,)
        scores. ``mode``: 'bilinear' interpolates the target coordinates; 'nearest' takes the
        nearest cell's match; 'readout' the matcher's own read-out of each point
        (``point_readout``); 'adaptive' 'bilinear' where :meth:`agreeing`, else 'readout'; None
        uses ``self.interpolation``."""
        mode = mode or self.interpolation
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        cr = self.grid.image_to_cell(pts)
        if mode == "nearest":
            h, w = self.score.shape
            c = np.clip(np.rint(cr[:, 0]).astype(int), 0, w - 1)
            r = np.clip(np.rint(cr[:, 1]).astype(int), 0, h - 1)
            return self.target_xy[r, c].astype(np.float64), self.score[r, c].astype(np.float64)
        if mode == "readout":
            if self.point_readout is None:
                raise ValueError("DenseCorrespondence.transfer: mode 'readout' without a point_readout")
            if len(pts) == 0:
                return np.zeros((0, 2)), np.zeros(0)
            xy, score = self.point_readout(cr)
            return np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(score, np.float64).reshape(-1)
        if mode == "adaptive":
            if self.point_readout is None:
                raise ValueError("DenseCorrespondence.transfer: mode 'adaptive' without a point_readout")
            xy, score = bilinear_sample(self.target_xy, cr).astype(np.float64), bilinear_sample(self.score, cr).astype(np.float64)
            apart = np.flatnonzero(~self.agreeing(cr))
            if len(apart):
                rx, rs = self.point_readout(cr[apart])
                xy[apart] = np.asarray(rx, np.float64).reshape(-1, 2)
                score[apart] = np.asarray(rs, np.float64).reshape(-1)
            return xy, score
        return bilinear_sample(self.target_xy, cr), bilinear_sample(self.score, cr)
