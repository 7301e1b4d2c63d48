"""Measure a finished run's interactive viewer (``results/<run>/viewer/``, rule viewer).

Prints the viewer's size (in all, per category: the images file and each method's data file,
bytes per ordered pair), the viewer job's seconds (``results/<run>/benchmarks/viewer.tsv``),
and, in headless Debian Chromium driven by Playwright (the ``dev`` extras), the page's time from
navigation start to its first category drawn and to its first match drawn (the page draws one
on load), and the redraw time of ``--moves`` pointer moves over the largest category (from the
pointer event to the end of its redraw: median and maximum). ``--screenshot FILE`` saves the
page after the moves, with the part labels and keypoints on.

About 10 s once the run exists (docs/VIEWER.md has the figures)::

    python benchmarks/bench_viewer.py                        # results/default
    python benchmarks/bench_viewer.py --run results/pfwillow --screenshot viewer.png
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from _cli import positive_int


def _kb(n: int) -> str:
    return f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.2f} MB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="results/default", help="the run folder (default results/default)")
    ap.add_argument("--moves", type=positive_int, default=20, help="pointer moves timed (default 20)")
    ap.add_argument("--screenshot", default=None, metavar="PNG", help="save the page after the moves")
    args = ap.parse_args(argv)
    run = Path(args.run)
    index = run / "viewer" / "index.html"
    if not index.is_file():
        ap.error(f"needs a finished run's viewer: {index} not found (snakemake --cores all {run}/viewer)")

    from sopcorr.viewer import browser

    why = browser.missing()
    if why:
        ap.error(f"needs a browser: {why}; {browser.INSTALL_HINT}")

    total = sum(p.stat().st_size for p in (run / "viewer").rglob("*") if p.is_file())
    print(f"viewer {index}: {_kb(total)} in all")
    tsv = run / "benchmarks" / "viewer.tsv"
    if tsv.is_file():
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        print(f"viewer job: {float(row['s']):.1f} s ({tsv})")
    with browser.viewer_page(index) as page:
        import json
        import re

        man = json.loads(re.search(r"window.SOPCORR_VIEWER = (.*?);</script>", index.read_text(), re.S).group(1))
        for c in man["categories"]:
            n = c["n_images"]
            files = {"images": c["images"], **c["methods"]}
            sizes = ", ".join(f"{k} {_kb((run / 'viewer' / v).stat().st_size)}" for k, v in files.items())
            per_pair = (run / "viewer" / next(iter(c["methods"].values()))).stat().st_size / max(1, n * (n - 1))
            print(f"  {c['name']}: {n} images, {n * (n - 1)} ordered pairs; {sizes}; "
                  f"{per_pair:.0f} B per pair and method; positions within {c['max_error_px']} px")
        t = page.load_times()
        print(f"load: first category drawn {t['ready_ms']:.0f} ms, first match drawn {t['first_match_ms']:.0f} ms "
              f"after navigation start ({man['categories'][0]['name']}, {man['methods'][0]['name']})")
        cat = max(man["categories"], key=lambda c: c["n_images"])["name"]
        page.select_category(cat)
        imgs = page.images(cat)
        n0 = len(page.timings())
        for k in range(args.moves):
            i = k % len(imgs)
            f = (k * 0.618) % 1.0
            page.move_to(i, (0.15 + 0.7 * f) * imgs[i]["w"], (0.85 - 0.7 * f) * imgs[i]["h"])
        ms = page.timings()[n0:]
        print(f"redraw over {len(ms)} moves on {cat} ({len(imgs)} images): median {statistics.median(ms):.1f} ms, "
              f"max {max(ms):.1f} ms")
        if args.screenshot:
            page.page.check("#labels")
            page.page.check("#keypoints")
            page.move_to(0, imgs[0]["w"] * 0.5, imgs[0]["h"] * 0.5)
            page.page.screenshot(path=args.screenshot, full_page=True)
            print(f"wrote {args.screenshot}")
        if page.errors:
            print("page errors: " + "; ".join(page.errors), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
