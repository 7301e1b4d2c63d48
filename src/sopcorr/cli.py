"""The ``sopcorr`` command line.

``sopcorr match IMG_A IMG_B --checkpoint CKPT -o OUT.png [--lines N] [--box-a X0 Y0 X1 Y1]
[--device auto|cpu|cuda] [--backbone NAME]`` draws the dense correspondence of two images with a
trained Siamese checkpoint, as in the paper's Figure 1: image A coloured by position (inside
``--box-a``, default the whole image), image B coloured by the colour of the point of A each of
its pixels matches (network run B -> A), side by side, with optional lines between a sample of
A -> B matches (the most confident of a random sample). Errors (missing file, unreadable or
mismatched checkpoint) print one line and exit with status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .errors import SopcorrError
from .viz.colour import overlay as _overlay
from .viz.colour import pixel_coords as _pixel_coords
from .viz.colour import position_colours

__all__ = ["main", "build_parser", "draw_match", "position_colours"]


def _valid_at(corr, pts: np.ndarray) -> np.ndarray:
    """Nearest-cell validity of a correspondence at image points (K, 2) -> (K,) bool."""
    cr = corr.grid.image_to_cell(pts)
    h, w = corr.valid.shape
    c = np.rint(cr[:, 0]).astype(int)
    r = np.rint(cr[:, 1]).astype(int)
    ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
    out = np.zeros(len(pts), bool)
    out[ok] = corr.valid[r[ok], c[ok]]
    return out


def draw_match(frame_a, frame_b, matcher, out: str | Path, lines: int = 0,
               box_a=None, seed: int = 0, title: str | None = None) -> None:
    """Render the Figure-1 view of two frames (:class:`sopcorr.matchers.base.Frame`; their
    images uint8 (H, W, 3)) matched by ``matcher`` (any matcher of :mod:`sopcorr.matchers`)
    to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import save_figure

    img_a, img_b = frame_a.image, frame_b.image
    ha, wa = img_a.shape[:2]
    hb, wb = img_b.shape[:2]
    box = tuple(box_a) if box_a is not None else (0.0, 0.0, wa - 1.0, ha - 1.0)
    pa = _pixel_coords(ha, wa)
    col_a, in_a = position_colours(pa, box)
    # B -> A: colour each pixel of B by the colour of its match in A
    corr_ba = matcher.correspondence(frame_b, frame_a)
    pb = _pixel_coords(hb, wb).reshape(-1, 2)
    to_a, _ = corr_ba.transfer(pb)
    col_b, in_b = position_colours(to_a.reshape(hb, wb, 2), box)
    in_b &= _valid_at(corr_ba, pb).reshape(hb, wb)
    left = _overlay(img_a, col_a, in_a)
    right = _overlay(img_b, col_b, in_b)
    H = max(ha, hb)
    canvas = np.ones((H, wa + wb, 3))
    canvas[:ha, :wa] = left
    canvas[:hb, wa:] = right
    fig, ax = plt.subplots(figsize=(min(16, (wa + wb) / 60 + 1), min(9, H / 60 + 1)))
    ax.imshow(canvas, interpolation="nearest")
    if lines > 0:
        corr_ab = matcher.correspondence(frame_a, frame_b)
        rng = np.random.default_rng(seed)
        cand = pa[in_a].reshape(-1, 2)
        cand = cand[_valid_at(corr_ab, cand)]
        if len(cand):
            pick = cand[rng.choice(len(cand), size=min(len(cand), 20 * lines), replace=False)]
            tgt, score = corr_ab.transfer(pick)
            keep = np.argsort(-score)[:lines]
            rgb, _ = position_colours(pick[keep], box)
            for (x0, y0), (x1, y1), c in zip(pick[keep], tgt[keep], rgb):
                ax.plot([x0, x1 + wa], [y0, y1], "-", color=c, lw=0.8, alpha=0.9)
                ax.plot([x0], [y0], "o", color=c, ms=2.5)
                ax.plot([x1 + wa], [y1], "o", color=c, ms=2.5)
    ax.set_xlim(-0.5, wa + wb - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)


def _cmd_match(args) -> int:
    from .data.generic import read_image
    from .matchers import build
    from .matchers.base import Frame
    from .matchers.siamese import SiameseParams

    for p in (args.img_a, args.img_b):
        if not Path(p).is_file():
            raise SopcorrError(f"{p}: image file not found")
    if not Path(args.checkpoint).is_file():
        raise SopcorrError(f"{args.checkpoint}: checkpoint not found")
    if args.lines < 0:
        raise SopcorrError(f"--lines: must be >= 0, got {args.lines}")
    img_a, img_b = read_image(args.img_a), read_image(args.img_b)
    box = None
    if args.box_a is not None:
        x0, y0, x1, y1 = args.box_a
        if not (x1 > x0 and y1 > y0):
            raise SopcorrError(f"--box-a: need x0 < x1 and y0 < y1, got {args.box_a}")
        box = (x0, y0, x1, y1)
    matcher = build("siamese", SiameseParams(device=args.device), checkpoint=args.checkpoint,
                    backbone=args.backbone)
    title = f"{Path(args.img_a).name} -> {Path(args.img_b).name} ({matcher.spec.backbone}, {Path(args.checkpoint).name})"
    frames = [Frame(None, None, None, image_source=img, id=str(p)) for img, p in ((img_a, args.img_a), (img_b, args.img_b))]
    draw_match(frames[0], frames[1], matcher, args.output, lines=args.lines, box_a=box, title=title)
    print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sopcorr", description="Dense semantic object correspondence tools.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("match", help="draw the dense correspondence of two images (paper Fig. 1 view)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    m.add_argument("img_a", help="source image A")
    m.add_argument("img_b", help="target image B")
    m.add_argument("--checkpoint", required=True, help="Siamese checkpoint (results/<run>/siamese/model.pt or finetuned.pt)")
    m.add_argument("-o", "--output", required=True, help="output figure (.png, .pdf, ...)")
    m.add_argument("--lines", type=int, default=0, help="draw lines between this many matches (default 0)")
    m.add_argument("--box-a", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), default=None,
                   help="colour only this box of A (the object); default the whole image")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    m.add_argument("--backbone", default=None, help="require a checkpoint of this backbone")
    m.set_defaults(func=_cmd_match)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sopcorr`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SopcorrError as err:
        print(f"sopcorr error: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
