"""`sopcorr match`: with no run (the geometric matcher on raw features of the default backbone)
it writes the figure and the dense correspondence; with a run it calls the learned matcher's
one entry point and takes the boxes of the run's instances; with a Siamese checkpoint it uses
that network. Every bad flag is one line on stderr, exit status 1, before any compute, and
nothing is written."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import sopcorr.match as match_mod
import sopcorr.matchers as matchers_pkg
from sopcorr.cli import main, position_colours
from sopcorr.geometry import DenseCorrespondence, FeatureGrid, Letterbox
from sopcorr.match import (FeatureSettings, PhotoFeatures, no_run_matcher, read_correspondence,
                           run_instance)
from test_matchers_paper_network import make_checkpoint


def _photo(h, w, seed, shift=0):
    """A smooth textured image with a bright blob (a stand-in object) at a seeded place."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    base = np.stack([np.sin(xs / 7.0 + k) * np.cos(ys / 9.0 - k) for k in range(3)], -1)
    cx, cy = w * 0.45 + shift, h * 0.5
    blob = np.exp(-(((xs - cx) / (0.18 * w)) ** 2 + ((ys - cy) / (0.2 * h)) ** 2))[..., None]
    img = 0.35 * base + blob * np.array([1.0, 0.6, 0.2]) + 0.05 * rng.standard_normal((h, w, 3))
    return np.clip(127 + 110 * img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    Image.fromarray(_photo(96, 128, 0)).save(d / "a.png")
    Image.fromarray(_photo(120, 100, 1, shift=6)).save(d / "b.jpg")
    make_checkpoint(d / "m.pt", dx=3.0)
    (d / "broken.png").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, files):
    """A run folder whose prepared category names a.png and b.jpg (with boxes)."""
    run = tmp_path_factory.mktemp("run")
    (run / "data" / "thing").mkdir(parents=True)
    data = {"name": "t", "root": str(files), "categories": {"thing": {"keypoints": ["k"]}},
            "instances": [
                {"id": "thing/a", "image": "a.png", "category": "thing", "bbox": [10, 12, 90, 80],
                 "keypoints": {"k": [50, 40, 1]}, "split": "train"},
                {"id": "thing/b", "image": "b.jpg", "category": "thing", "bbox": [8, 20, 80, 100],
                 "keypoints": {"k": [40, 60, 1]}, "split": "test"}]}
    (run / "data" / "thing" / "instances.json").write_text(json.dumps(data))
    (run / "siamese" / "improved").mkdir(parents=True)
    (run / "siamese" / "improved" / "model.pt").write_bytes(b"")  # the learned matcher is faked below
    return run


class Shift:
    """A fake learned matcher: every source cell to its own position + (2, 1) px."""

    def correspondence(self, src, tgt):
        h, w = src.image.shape[:2]
        grid = FeatureGrid(Letterbox(h, w, 64), 8)
        xy = grid.cell_centers_image() + np.array([2.0, 1.0])
        return DenseCorrespondence(xy.astype(np.float32), np.ones(grid.shape, np.float32), grid.valid_mask(), grid)


@pytest.fixture
def fake_learned(monkeypatch):
    """Replaces sopcorr.matchers.best_learned_matcher; the list records its (run, category) calls."""
    calls = []

    def fake(run, category):
        calls.append((str(run), category))
        return Shift(), "a fake learned matcher"

    monkeypatch.setattr(matchers_pkg, "best_learned_matcher", fake, raising=False)
    return calls


def test_position_colours_injective_on_box():
    xy = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1)
    rgb, inside = position_colours(xy, (0, 0, 4, 3))
    assert inside.all()
    assert len({tuple(np.round(c, 6)) for c in rgb.reshape(-1, 3)}) == 20
    _, inside = position_colours(np.array([[5.0, 1.0]]), (0, 0, 4, 3))
    assert not inside[0]


# ---------------------------------------------------------------------- no run
def test_no_run_match_writes_figure_and_correspondence(files, tmp_path, capsys):
    out, js = tmp_path / "figs" / "m.png", tmp_path / "m.json"
    rc = main(["match", str(files / "a.png"), str(files / "b.jpg"), "-o", str(out), "--json", str(js),
               "--lines", "4", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "geometric" in printed and "efficientnet_lite0" in printed and "no run needed" in printed
    assert "whole image" in printed  # no box known: A coloured whole
    rec = read_correspondence(js)
    assert rec["grid"]["shape"] == [28, 28] and rec["source"]["size"] == [96, 128]
    assert rec["target"]["size"] == [120, 100] and rec["method"] == "geometric"

    # the file holds exactly what the library computes for the pair (A -> B)
    pf = PhotoFeatures(FeatureSettings(device="cpu"))
    fa, fb = pf.frames([np.asarray(Image.open(files / "a.png")), np.asarray(Image.open(files / "b.jpg"))])
    matcher, _ = no_run_matcher("geometric", device="cpu")
    corr = matcher.correspondence(fa, fb)
    assert np.array_equal(rec["valid"], corr.valid)
    v = corr.valid
    np.testing.assert_allclose(rec["target_xy"][v], corr.target_xy[v], atol=1e-3)
    np.testing.assert_allclose(rec["score"][v], corr.score[v], atol=1e-3)
    np.testing.assert_allclose(rec["source_xy"], corr.grid.cell_centers_image(), atol=1e-3)
    # matches land inside B
    t = rec["target_xy"][v]
    assert (t[:, 0] >= -0.5).all() and (t[:, 0] <= 99.5).all() and (t[:, 1] <= 119.5).all()


def test_npz_output_equals_json(files, tmp_path):
    a, b = str(files / "a.png"), str(files / "b.jpg")
    assert main(["match", a, b, "-o", str(tmp_path / "c.npz"), "--device", "cpu", "--method", "nn_raw"]) == 0
    assert main(["match", a, b, "-o", str(tmp_path / "c.json"), "--device", "cpu", "--method", "nn_raw"]) == 0
    assert not list(tmp_path.glob("*.png"))  # a correspondence output draws no figure
    z, j = read_correspondence(tmp_path / "c.npz"), read_correspondence(tmp_path / "c.json")
    assert z["method"] == j["method"] == "nn_raw"
    assert np.array_equal(z["valid"], j["valid"])
    np.testing.assert_allclose(z["target_xy"], j["target_xy"], atol=1e-3)


def test_run_boxes_and_the_learned_entry_point(files, run_dir, tmp_path, fake_learned, capsys):
    """--run: the images' boxes come from the run's instances; the learned matcher comes from
    sopcorr.matchers.best_learned_matcher(run_dir, category)."""
    inst = run_instance(run_dir, files / "." / "a.png")
    assert inst.category == "thing" and inst.id == "thing/a" and inst.bbox == (10, 12, 90, 80)
    assert run_instance(run_dir, files / "m.pt") is None

    a, b = str(files / "a.png"), str(files / "b.jpg")
    assert main(["match", a, b, "-o", str(tmp_path / "g.png"), "--run", str(run_dir), "--method", "geometric",
                 "--device", "cpu"]) == 0
    assert "A coloured: object box" in capsys.readouterr().out
    assert fake_learned == []

    js = tmp_path / "l.json"
    assert main(["match", a, b, "-o", str(js), "--run", str(run_dir)]) == 0
    assert "a fake learned matcher" in capsys.readouterr().out
    assert fake_learned == [(str(run_dir), "thing")]
    rec = read_correspondence(js)
    assert rec["method"] == "learned"
    np.testing.assert_allclose(rec["target_xy"], rec["source_xy"] + np.array([2.0, 1.0]), atol=1e-3)


@pytest.fixture(scope="module")
def outside(files, tmp_path_factory):
    """Copies of the two photos that are not among the run's instances."""
    d = tmp_path_factory.mktemp("outside")
    for n in ("a.png", "b.jpg"):
        (d / n).write_bytes((files / n).read_bytes())
    return d


@pytest.fixture(scope="module")
def no_run_json(outside, tmp_path_factory):
    """The dense correspondence `sopcorr match` writes with no run."""
    js = tmp_path_factory.mktemp("norun") / "n.json"
    assert main(["match", str(outside / "a.png"), str(outside / "b.jpg"), "-o", str(js), "--device", "cpu"]) == 0
    return read_correspondence(js)


@pytest.mark.parametrize("category", [None, "other"], ids=["unknown", "not_trained"])
def test_run_falls_back_to_the_no_run_matcher_off_its_categories(outside, run_dir, tmp_path, fake_learned, capsys,
                                                                no_run_json, category):
    """A pair the run cannot place in a category it trained on (photos not among its instances
    and no --category, or a --category it never saw) gets exactly the no-run matcher's
    correspondence, and says why; the learned matcher is not built."""
    js = tmp_path / "f.json"
    extra = ["--category", category] if category else []
    assert main(["match", str(outside / "a.png"), str(outside / "b.jpg"), "-o", str(js), "--run", str(run_dir),
                 "--device", "cpu", *extra]) == 0
    out = capsys.readouterr().out
    assert fake_learned == []
    assert "no-run fall-back" in out and ("trained on: thing" in out or "(thing)" in out)
    rec = read_correspondence(js)
    assert rec["method"] == "geometric"
    for k in ("source_xy", "target_xy", "score", "valid"):
        np.testing.assert_array_equal(rec[k], no_run_json[k])


def test_run_uses_the_learned_matcher_for_a_named_trained_category(outside, run_dir, tmp_path, fake_learned, capsys):
    """Photos outside the run, named as one of its categories (--category), or any pair with an
    explicit --method learned, get the learned matcher."""
    a, b = str(outside / "a.png"), str(outside / "b.jpg")
    assert main(["match", a, b, "-o", str(tmp_path / "l.json"), "--run", str(run_dir), "--category", "thing"]) == 0
    assert fake_learned == [(str(run_dir), "thing")]
    assert main(["match", a, b, "-o", str(tmp_path / "m.json"), "--run", str(run_dir), "--method", "learned"]) == 0
    assert fake_learned[-1] == (str(run_dir), None)
    out = capsys.readouterr().out
    assert "--method learned although" in out
    assert read_correspondence(tmp_path / "m.json")["method"] == "learned"


def test_checkpoint_match_writes_png(files, capsys, tmp_path):
    out = tmp_path / "match.png"
    rc = main(["match", str(files / "a.png"), str(files / "b.jpg"), "--checkpoint", str(files / "m.pt"),
               "-o", str(out), "--lines", "5", "--device", "cpu", "--box-a", "5", "5", "50", "40"])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "Siamese" in printed and "object box" in printed


# ---------------------------------------------------------------------- errors
ERRORS = [
    ("bad_format", ["-o", "{t}/o.xyz"], "o.xyz: unknown output format '.xyz'"),
    ("bad_json_format", ["-o", "{t}/o.png", "--json", "{t}/c.txt"], "--json {t}/c.txt: unknown output format"),
    ("box_outside", ["-o", "{t}/o.png", "--box-a", "0", "0", "500", "20"], "--box-a 0 0 500 20: outside the image (128 x 96 px"),
    ("box_inverted", ["-o", "{t}/o.png", "--box-a", "10", "10", "5", "20"], "--box-a: need X0 < X1"),
    ("box_b_outside", ["-o", "{t}/o.png", "--box-b", "0", "0", "10", "121"], "--box-b 0 0 10 121: outside the image (100 x 120"),
    ("missing_image", ["-o", "{t}/o.png", "@a={t}/nope.png"], "nope.png: image file not found"),
    ("unreadable_image", ["-o", "{t}/o.png", "@a={f}/broken.png"], "broken.png: unreadable or corrupt image"),
    ("folder_image", ["-o", "{t}/o.png", "@b={t}"], ": is a folder, not an image"),
    ("unknown_method", ["-o", "{t}/o.png", "--method", "magic"], "--method: unknown method 'magic' (valid: geometric, nn_raw"),
    ("learned_without_run", ["-o", "{t}/o.png", "--method", "learned"], "--method learned: needs --run"),
    ("missing_run", ["-o", "{t}/o.png", "--run", "{t}/no_run"], "--run {t}/no_run: no such run folder"),
    ("missing_ckpt", ["-o", "{t}/o.png", "--checkpoint", "{t}/missing.pt"], "missing.pt: checkpoint not found"),
    ("ckpt_with_other_method", ["-o", "{t}/o.png", "--checkpoint", "{f}/m.pt", "--method", "geometric"],
     "--checkpoint: only for the learned matcher"),
    ("negative_lines", ["-o", "{t}/o.png", "--lines", "-1"], "--lines: must be >= 0"),
    ("output_is_folder", ["-o", "{t}/sub.png"], "sub.png: is a folder"),
]


@pytest.mark.parametrize("case,argv,needle", ERRORS, ids=[c for c, _, _ in ERRORS])
def test_errors_are_one_line_before_any_compute(files, tmp_path, capsys, monkeypatch, case, argv, needle):
    def no_compute(*a, **k):
        raise AssertionError("the model was loaded before the flags were checked")

    monkeypatch.setattr(match_mod, "PhotoFeatures", no_compute)
    (tmp_path / "sub.png").mkdir()
    fmt = dict(t=tmp_path, f=files)
    a, b, rest = str(files / "a.png"), str(files / "b.jpg"), []
    for x in argv:
        x = x.format(**fmt)
        if x.startswith("@a="):
            a = x[3:]
        elif x.startswith("@b="):
            b = x[3:]
        else:
            rest.append(x)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["match", a, b, "--device", "cpu", *rest])
    cap = capsys.readouterr()
    assert rc == 1
    assert cap.err.startswith("sopcorr error:") and cap.err.count("\n") == 1, cap.err
    assert needle.format(**fmt) in cap.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_run_without_a_learned_matcher_is_one_line(files, tmp_path, capsys):
    """An empty run folder: one line (no entry point in this version, or the entry point's own
    message about the missing run outputs)."""
    (tmp_path / "empty_run").mkdir()
    rc = main(["match", str(files / "a.png"), str(files / "b.jpg"), "-o", str(tmp_path / "o.png"),
               "--run", str(tmp_path / "empty_run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("sopcorr error:") and err.count("\n") == 1, err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("case,needle", [
    ("bad_ckpt", "bad.pt: not a readable torch checkpoint"),
    ("other_backbone", "not 'vgg16'"),
])
def test_checkpoint_errors(files, tmp_path, capsys, case, needle):
    ck = str(files / "m.pt")
    extra = []
    if case == "bad_ckpt":
        (tmp_path / "bad.pt").write_text("garbage")
        ck = str(tmp_path / "bad.pt")
    else:
        extra = ["--backbone", "vgg16"]
    out = tmp_path / "o.png"
    rc = main(["match", str(files / "a.png"), str(files / "b.jpg"), "--checkpoint", ck, "-o", str(out),
               "--device", "cpu", *extra])
    err = capsys.readouterr().err
    assert rc == 1
    assert needle in err and err.startswith("sopcorr error:") and err.count("\n") == 1
    assert not out.exists()


def test_usage_errors_are_one_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["match", "a.png"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "required" in err and "--help" in err


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sopcorr.cli", "match", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                        "-o", str(tmp_path / "o.xyz")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("sopcorr error:") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "unknown output format" in r.stderr  # the output is checked first, before the images


def test_no_run_features_are_the_default_configs():
    """`sopcorr match` extracts features as the default config's feature stage does (backbone,
    its default layers, normalisation), at the dev split's 448 px."""
    from pathlib import Path

    import yaml

    from sopcorr.features.registry import get_spec

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())["backbone"]
    s = FeatureSettings()
    assert s.backbone == cfg["name"] and s.relu == cfg["relu"] and s.input_size == 448
    assert s.layers is None and list(cfg["layers"]) == list(get_spec(s.backbone).default_layers)


# ---------------------------------------------------------------------- sopcorr view
def _view_env(tmp_path, **extra):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    env.update(extra)
    return env


def test_view_prints_the_path_without_a_browser_and_opens_with_one(tmp_path):
    run = tmp_path / "results" / "r"
    (run / "viewer").mkdir(parents=True)
    (run / "viewer" / "index.html").write_text("<html></html>")
    cmd = [sys.executable, "-m", "sopcorr.cli", "view", str(run)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_view_env(tmp_path))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.strip() == f"open in a browser: {(run / 'viewer' / 'index.html').resolve()}"
    # a browser (here $BROWSER, a script recording what it was asked to open) gets the file:// URL
    rec = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {rec}\n')
    browser.chmod(0o755)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_view_env(tmp_path, BROWSER=str(browser)))
    url = (run / "viewer" / "index.html").resolve().as_uri()
    assert r.returncode == 0 and r.stdout.strip() == f"opened {url}"
    for _ in range(50):  # webbrowser may start the command in the background
        if rec.exists():
            break
        import time
        time.sleep(0.1)
    assert rec.read_text().strip() == url
    # --print never opens a browser
    rec.unlink()
    r = subprocess.run(cmd + ["--print"], capture_output=True, text=True, timeout=60,
                       env=_view_env(tmp_path, BROWSER=str(browser)))
    assert r.returncode == 0 and r.stdout.startswith("open in a browser: ") and not rec.exists()


@pytest.mark.parametrize("case, needle", [("missing", "no such run folder"), ("no_viewer", "has no viewer yet")])
def test_view_errors_are_one_line(tmp_path, case, needle):
    run = tmp_path / "results" / "r"
    if case == "no_viewer":
        (run / "tables").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "sopcorr.cli", "view", str(run)], capture_output=True, text=True,
                       timeout=60, env=_view_env(tmp_path))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("sopcorr error:") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert needle in r.stderr and str(run) in r.stderr
