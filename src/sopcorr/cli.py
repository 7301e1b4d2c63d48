"""The ``sopcorr`` command line.

``sopcorr match IMG_A IMG_B -o OUT`` matches two photos densely and draws the paper's Figure 1
view (A and B, A's object coloured by position, B coloured by the colour of its match in A),
with a colour legend and both image names; ``-o`` ending in .json or .npz writes the dense
correspondence itself instead (``--json`` writes it beside a figure). No pipeline run is needed:
by default the geometric matcher on the raw features of the default backbone at 448 px.
``--run results/<run>`` uses that finished run's best learned matcher for a pair of a category
the run trained on (named by ``--category``, or the category of the run's instance an image is),
and the no-run matcher otherwise (:mod:`sopcorr.matchers.coverage`; ``--method learned`` forces
the learned one), with the boxes of the run's instances when the images are among them;
``--checkpoint`` a Siamese checkpoint file.
Every flag is checked before anything is computed: an error is one line on stderr and exit
status 1, and nothing is written.

``sopcorr view results/<run>`` opens the run's interactive correspondence viewer
(``results/<run>/viewer/index.html``) in the browser, or prints its path where no browser can
open; a run folder that does not exist or has no viewer yet is one line and exit status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import SopcorrError
from .viz.colour import position_colours

__all__ = ["main", "build_parser", "position_colours", "FIGURE_SUFFIXES"]

#: output formats of the figure (matplotlib backends)
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
#: --method values that need a run or a checkpoint
LEARNED = "learned"


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit status 2, as argparse's)."""

    def error(self, message):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------- validation
def _check_output(path: str, what: str, suffixes: tuple[str, ...]) -> Path:
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise SopcorrError(f"{what} {path}: unknown output format '{p.suffix or '(none)'}' "
                           f"(use {', '.join(suffixes)})")
    if p.is_dir():
        raise SopcorrError(f"{what} {path}: is a folder")
    parent = next((q for q in [p.parent, *p.parent.parents] if q.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SopcorrError(f"{what} {path}: cannot write into {parent}")
    return p


def _read(path: str):
    from .data.generic import read_image

    if Path(path).is_dir():
        raise SopcorrError(f"{path}: is a folder, not an image")
    if Path(path).is_file() and not os.access(path, os.R_OK):
        raise SopcorrError(f"{path}: image file not readable (permission denied)")
    return read_image(path)  # DatasetError: not found / not decodable


def _check_box(box, img, flag: str):
    if box is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = img.shape[:2]
    if not (x1 > x0 and y1 > y0):
        raise SopcorrError(f"{flag}: need X0 < X1 and Y0 < Y1, got {' '.join(f'{v:g}' for v in box)}")
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise SopcorrError(f"{flag} {' '.join(f'{v:g}' for v in box)}: outside the image "
                           f"({w} x {h} px: x in [0, {w}], y in [0, {h}])")
    return (x0, y0, x1, y1)


def _plan(args):
    """Everything checked before any compute: (outputs, images, boxes, method, run instances)."""
    from .match import CORRESPONDENCE_SUFFIXES, NO_RUN_METHODS, learned_entry_point, run_instance

    out = _check_output(args.output, "-o", FIGURE_SUFFIXES + CORRESPONDENCE_SUFFIXES)
    corr_out = _check_output(args.json, "--json", CORRESPONDENCE_SUFFIXES) if args.json else None
    if corr_out is not None and out.suffix.lower() in CORRESPONDENCE_SUFFIXES:
        raise SopcorrError("--json: -o already writes the correspondence; give --json with a figure -o")
    if args.lines < 0:
        raise SopcorrError(f"--lines: must be >= 0, got {args.lines}")
    if args.run and args.checkpoint:
        raise SopcorrError("--run and --checkpoint: give one of them")
    method = args.method or (LEARNED if (args.run or args.checkpoint) else "geometric")
    if method not in (*NO_RUN_METHODS, LEARNED):
        raise SopcorrError(f"--method: unknown method '{method}' (valid: {', '.join(NO_RUN_METHODS)}; "
                           f"{LEARNED} with --run or --checkpoint)")
    if method == LEARNED and not (args.run or args.checkpoint):
        raise SopcorrError(f"--method {LEARNED}: needs --run results/<run> or --checkpoint FILE")
    if args.checkpoint and method != LEARNED:
        raise SopcorrError(f"--checkpoint: only for the learned matcher, not --method {method}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise SopcorrError(f"{args.checkpoint}: checkpoint not found")
    if args.run and not Path(args.run).is_dir():
        raise SopcorrError(f"--run {args.run}: no such run folder (a finished run's results/<run>)")
    if args.run and method == LEARNED:
        from .matchers.learned import learned_checkpoints

        learned_entry_point()
        learned_checkpoints(args.run)  # a run without a trained network is an error, fall-back or not
    img_a, img_b = _read(args.img_a), _read(args.img_b)
    inst_a = run_instance(args.run, args.img_a) if args.run else None
    inst_b = run_instance(args.run, args.img_b) if args.run else None
    box_a = _check_box(args.box_a, img_a, "--box-a") or (inst_a.bbox if inst_a else None)
    box_b = _check_box(args.box_b, img_b, "--box-b") or (inst_b.bbox if inst_b else None)
    category = args.category or (inst_a.category if inst_a else None) or (inst_b.category if inst_b else None)
    return out, corr_out, (img_a, img_b), (box_a, box_b), method, category


# ---------------------------------------------------------------------- the command
def _matcher(args, method: str, category: str | None):
    """(matcher, frames of the two images, what it is: one line, the method it runs). With
    ``--run`` and no ``--method``, the learned matcher only for a category the run trained on,
    else the no-run matcher (:mod:`sopcorr.matchers.coverage`)."""
    from .match import FeatureSettings, PhotoFeatures, image_frames, learned_matcher, no_run_matcher
    from .matchers.coverage import coverage

    if method == LEARNED and args.run:
        cov = coverage(args.run, category)
        if cov.learned or args.method == LEARNED:
            matcher, desc = learned_matcher(args.run, cov.category)
            note = "" if cov.learned else f" (--method {LEARNED} although {cov.reason})"
            return matcher, image_frames, f"learned matcher of run {args.run}: {desc}{note}", LEARNED
        method = "geometric"
        fallback = (f"; no-run fall-back: {cov.reason}, and a network does not beat the no-run matcher on "
                    f"categories it never trained on (docs/RESULTS.md); give --category or --method {LEARNED} "
                    f"to use the run's learned matcher")
    else:
        fallback = ""
    if method == LEARNED:
        from .matchers.networks import NetworkParams, network_matcher

        matcher = network_matcher(args.checkpoint, NetworkParams(device=args.device, backbone=args.backbone))
        return matcher, image_frames, (f"learned: the Siamese network of {args.checkpoint} "
                                       f"({matcher.spec.backbone}, {matcher.size} px)"), LEARNED
    matcher, desc = no_run_matcher(method, device=args.device)
    settings = FeatureSettings(input_size=args.size, device=args.device,
                               **({"backbone": args.backbone} if args.backbone else {}))
    try:
        feats = PhotoFeatures(settings)
    except SopcorrError as err:  # the backbone's messages name config keys: say the flag too
        raise SopcorrError(f"--backbone/--size: {str(err).removeprefix('config error: ')}") from None
    return matcher, feats.frames, f"{method}: {desc}; model {feats.describe()} (no run needed){fallback}", method


def _cmd_match(args) -> int:
    from .match import CORRESPONDENCE_SUFFIXES, correspondence_record, write_correspondence
    from .viz.match import match_figure

    out, corr_out, (img_a, img_b), (box_a, box_b), method, category = _plan(args)
    name_a, name_b = Path(args.img_a).name, Path(args.img_b).name
    matcher, make_frames, what, method = _matcher(args, method, category)
    print(f"sopcorr match: {what}", flush=True)
    t0 = time.perf_counter()
    fa, fb = make_frames([img_a, img_b], [name_a, name_b])
    figure = out.suffix.lower() not in CORRESPONDENCE_SUFFIXES
    corr_ab = matcher.correspondence(fa, fb) if (not figure or corr_out or args.lines) else None
    corr_ba = matcher.correspondence(fb, fa) if figure else None
    t_match = time.perf_counter() - t0
    if corr_out is not None or not figure:
        rec = correspondence_record(corr_ab, {"image": args.img_a, "size": img_a.shape[:2]},
                                    {"image": args.img_b, "size": img_b.shape[:2]}, method=method, model=what)
        write_correspondence(corr_out or out, rec)
        print(f"wrote {corr_out or out} (dense correspondence A -> B on A's "
              f"{rec['grid']['shape'][0]}x{rec['grid']['shape'][1]} grid)")
    if figure:
        match_figure(img_a, img_b, corr_ba, out, corr_ab=corr_ab, names=(name_a, name_b), box_a=box_a,
                     box_b=box_b, lines=args.lines, title=f"{name_a} → {name_b}: {method}")
        coloured = "object box" if box_a is not None else "whole image (no box known)"
        print(f"wrote {out} (A coloured: {coloured})")
    print(f"matched in {t_match:.2f} s")
    return 0


# ---------------------------------------------------------------------- sopcorr view
#: where a run keeps its viewer (rule viewer, workflow/rules/viewer.smk)
VIEWER_INDEX = ("viewer", "index.html")


def viewer_index(run: str) -> Path:
    """``<run>/viewer/index.html`` of a run folder; SopcorrError (one line) when the folder does
    not exist or has no viewer yet."""
    path = Path(run)
    if not path.is_dir():
        raise SopcorrError(f"{run}: no such run folder (give a run's results/<run>)")
    index = path.joinpath(*VIEWER_INDEX)
    if not index.is_file():
        raise SopcorrError(f"{run}: this run has no viewer yet; make it with "
                           f"`snakemake --cores all {path.as_posix().rstrip('/')}/viewer` (and the run's --configfile)")
    return index


def _gui_browser_possible() -> bool:
    """A browser window can open here: macOS, Windows, a display, or $BROWSER set by the user
    (a console browser cannot draw the viewer, so a bare terminal gets the path instead)."""
    return (sys.platform in ("darwin", "win32") or bool(os.environ.get("BROWSER"))
            or bool(os.environ.get("DISPLAY")) or bool(os.environ.get("WAYLAND_DISPLAY")))


def _cmd_view(args) -> int:
    import webbrowser

    index = viewer_index(args.run)
    url = index.resolve().as_uri()
    if not args.print_path and _gui_browser_possible():
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
        if opened:
            print(f"opened {url}")
            return 0
    print(f"open in a browser: {index.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .match import NO_RUN_METHODS

    p = _Parser(prog="sopcorr", description="Dense semantic object correspondence tools.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    m = sub.add_parser("match", help="match two photos densely and draw it (paper Fig. 1 view)",
                       description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None)
    m.add_argument("img_a", help="source image A")
    m.add_argument("img_b", help="target image B")
    m.add_argument("-o", "--output", required=True,
                   help=f"the figure ({', '.join(FIGURE_SUFFIXES)}) or the dense correspondence (.json, .npz)")
    m.add_argument("--json", default=None, metavar="FILE",
                   help="also write the dense correspondence A -> B (.json or .npz) beside the figure")
    m.add_argument("--method", default=None,
                   help=f"matcher: {', '.join(NO_RUN_METHODS)} (no run needed; default geometric), or "
                        f"{LEARNED} (default with --run / --checkpoint)")
    m.add_argument("--run", default=None, metavar="DIR",
                   help="a finished run (results/<run>): its best learned matcher for a category it trained on "
                        "(else the no-run matcher; --method learned forces it), and the boxes of its "
                        "instances when the images are among them")
    m.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="a Siamese checkpoint (results/<run>/siamese/<variant>/model.pt or finetuned.pt)")
    m.add_argument("--category", default=None,
                   help="the photos' category for --run: the learned matcher is used when the run trained on "
                        "it (default: the category of the run's instance an image is; none: the no-run matcher)")
    m.add_argument("--box-a", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), default=None,
                   help="A's object box in pixels: colour only the object (default: the run's box, else the whole image)")
    m.add_argument("--box-b", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), default=None,
                   help="B's object box: colour only B's object")
    m.add_argument("--lines", type=int, default=0, help="draw lines between this many confident matches (default 0)")
    m.add_argument("--size", type=int, default=448, help="input size of the backbone in px (default 448)")
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    m.add_argument("--backbone", default=None,
                   help="backbone of the no-run methods (default efficientnet_lite0); with --checkpoint, "
                        "require a checkpoint of this backbone")
    m.set_defaults(func=_cmd_match)
    v = sub.add_parser("view", help="open a run's interactive correspondence viewer",
                       description="Open results/<run>/viewer/index.html (written by the workflow's viewer "
                                   "rule) in the browser, or print its path where no browser can open.")
    v.add_argument("run", help="the run folder, results/<run>")
    v.add_argument("--print", dest="print_path", action="store_true",
                   help="only print the viewer's path, open no browser")
    v.set_defaults(func=_cmd_view)
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
