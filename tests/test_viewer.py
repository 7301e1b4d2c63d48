"""sopcorr.viewer: the encoding (round trip and its stated error), the image choice, the EXIF
orientation the page shows, and write_viewer on small stores against the matcher it encodes
(no Snakemake, no browser: tests/test_viewer_browser.py drives the page)."""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import zarr
from PIL import Image

from sopcorr.data.generic import read_image
from sopcorr.data.prepare import prepare_category
from sopcorr.errors import SopcorrError
from sopcorr.features.store import write_feature_store
from sopcorr.geometry import FeatureGrid, Letterbox
from sopcorr.matchers.base import frame_sources
from sopcorr.matchers.methods import MatcherSettings, build_method
from sopcorr.viewer.build import (DATA_GLOBAL, ViewerSettings, _jpeg_data_uri, label_codes, render_index,
                                  select_images, write_viewer)
from sopcorr.viewer.encode import (decode_pairs, dequantise_score, dequantise_xy, encode_pairs, pair_offset,
                                   position_error_px, quantise_score, quantise_xy)


# ------------------------------------------------------------------------------------ encoding
def test_positions_come_back_within_the_stated_error():
    rng = np.random.default_rng(0)
    for w, h in [(256, 256), (500, 333), (97, 1200)]:
        xy = rng.uniform(-0.5, 1, size=(5000, 2)) * [w, h] - [0, 0]
        xy = np.clip(xy, -0.5, [w - 0.5, h - 0.5])
        back = dequantise_xy(quantise_xy(xy, (w, h)), (w, h))
        ex, ey = position_error_px((w, h))
        assert np.abs(back[:, 0] - xy[:, 0]).max() <= ex + 1e-9
        assert np.abs(back[:, 1] - xy[:, 1]).max() <= ey + 1e-9
        # the bound is tight: the worst case is half a step
        assert np.abs(back[:, 0] - xy[:, 0]).max() > 0.9 * ex
    # the image's corners are levels 0 and 255
    assert quantise_xy(np.array([[-0.5, -0.5], [255.5, 99.5]]), (256, 100)).tolist() == [[0, 0], [255, 255]]
    assert quantise_xy(np.array([[np.nan, np.inf]]), (10, 10)).tolist() == [[0, 0]]  # not finite: 0


def test_scores_quantise_over_their_range_and_zero_is_invalid():
    s = np.array([0.2, 0.6, 1.0, 0.4, np.nan])
    v = np.array([True, True, True, False, True])
    q = quantise_score(s, v, 0.2, 1.0)
    assert q.tolist() == [1, 128, 255, 0, 0]
    back, valid = dequantise_score(q, 0.2, 1.0)
    assert valid.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(back[:3], [0.2, 0.6, 1.0], atol=0.8 / 254 / 2 + 1e-12)


def test_pairs_are_laid_out_source_by_source():
    n = 4
    assert [pair_offset(s, t, n) for s in range(n) for t in range(n) if s != t] == list(range(n * (n - 1)))
    with pytest.raises(ValueError):
        pair_offset(1, 1, n)
    rng = np.random.default_rng(1)
    h, w = 3, 5
    sizes = np.array([[50, 40], [64, 64], [30, 90], [80, 20]], float)
    xy = np.zeros((n, n - 1, h, w, 2))
    for s in range(n):
        for t in range(n):
            if s != t:
                xy[s, t - (t > s)] = rng.uniform(0, 1, (h, w, 2)) * (sizes[t] - 1)
    score = rng.uniform(-1, 1, (n, n - 1, h, w))
    valid = rng.random((n, n - 1, h, w)) > 0.2
    data = encode_pairs(xy, score, valid, sizes, -1, 1)
    assert data.shape == (n, n - 1, h * w, 3) and data.dtype == np.uint8
    back, sc, ok = decode_pairs(data, sizes, -1, 1)
    flat = data.reshape(-1, h * w, 3)
    for s in range(n):
        for t in range(n):
            if s == t:
                continue
            j = t - (t > s)
            # the flat offset the page computes holds pair (s, t), in the target's pixels
            assert np.array_equal(flat[pair_offset(s, t, n)], data[s, j])
            err = np.abs(back[s, j].reshape(h, w, 2) - xy[s, j])
            assert (err <= np.array(position_error_px(sizes[t])) + 1e-9).all()
    assert np.array_equal(ok.reshape(valid.shape), valid)


# ------------------------------------------------------------------------------------ pieces
class _Inst:
    def __init__(self, split):
        self.split = split


def test_select_images_takes_the_test_split_first():
    insts = [_Inst(s) for s in ["train", "test", "train", "test", "train"]]
    assert select_images(insts, None) == [1, 3, 0, 2, 4]
    assert select_images(insts, 3) == [1, 3, 0]
    with pytest.raises(SopcorrError, match="viewer.max_images"):
        ViewerSettings(max_images=1)


def test_label_codes_mark_cells_without_a_label():
    lab = np.array([[[0, -1], [2, 1]]], np.int16)
    codes, n_parts = label_codes(lab)
    assert codes.tolist() == [[0, 255, 2, 1]] and n_parts == 3


def test_page_images_keep_the_orientation_the_pipeline_reads(tmp_path):
    """A photo with an EXIF orientation tag: the pipeline's loader reads the stored pixels (no
    rotation); the page's image is those pixels, downscaled, with no EXIF left for a browser
    to rotate by."""
    arr = np.zeros((40, 100, 3), np.uint8)
    arr[:, :50] = (255, 0, 0)                     # left half red, right half blue as stored
    arr[:, 50:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6                              # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == 6
    img = read_image(path)
    assert img.shape[:2] == (40, 100)             # the pipeline does not rotate
    uri, tw, th = _jpeg_data_uri(img, 50)
    assert (tw, th) == (50, 20)
    page = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert page.size == (50, 20) and page.getexif().get(0x0112) is None
    px = np.asarray(page.convert("RGB"), int)
    assert px[10, 5, 0] > 200 and px[10, 5, 2] < 60 and px[10, 45, 2] > 200 and px[10, 45, 0] < 60


def test_render_index_inlines_the_manifest_safely():
    html = render_index({"run": "r</script>x", "categories": []})
    m = re.search(r"window.SOPCORR_VIEWER = (.*?);</script>", html)
    assert m and json.loads(m.group(1))["run"] == "r</script>x"
    assert "<title>sopcorr viewer: run r&lt;/script&gt;x</title>" in html


# ------------------------------------------------------------------------------------ a whole viewer
@pytest.fixture(scope="module")
def stores(tiny_synthetic, tmp_path_factory):
    """instances.json, a feature store (features that make nearest neighbours meaningful: the
    image's colour at the cell plus its position) and a labels.zarr of category bird."""
    root = tmp_path_factory.mktemp("viewer_stores")
    inst = root / "data" / "bird" / "instances.json"
    ds = prepare_category(tiny_synthetic, "bird", inst)
    size, stride = 96, 16
    feats, valid, hw = [], [], []
    for i in ds.instances:
        img = read_image(ds.path(i.image)).astype(np.float32) / 255
        h, w = img.shape[:2]
        grid = FeatureGrid(Letterbox(h, w, size), stride)
        c = grid.cell_centers_image()
        xi = np.clip(np.rint(c[..., 0]), 0, w - 1).astype(int)
        yi = np.clip(np.rint(c[..., 1]), 0, h - 1).astype(int)
        f = np.concatenate([img[yi, xi], c / size], axis=-1)
        f /= np.linalg.norm(f, axis=-1, keepdims=True)
        feats.append(f)
        valid.append(grid.valid_mask())
        hw.append([h, w])
    n = len(ds.instances)
    attrs = {"backbone": "test", "layers": ["x"], "input_size": size, "stride": stride,
             "image_ids": [i.id for i in ds.instances], "image_hw": hw, "normalisation": {}, "relu": False}
    feat_path = root / "features" / "bird.zarr"
    write_feature_store(feat_path, np.stack(feats), np.stack(valid), None, attrs)
    lab = np.where(np.stack(valid), np.arange(36).reshape(1, 6, 6) % 3, -1).astype(np.int16)
    lab_path = root / "labels.zarr"
    arr = zarr.create_array(store=str(lab_path), shape=lab.shape, chunks=(1, 6, 6), dtype=np.int16)
    arr[:] = lab
    return {"instances": [str(inst)], "features": [str(feat_path)], "labels": [str(lab_path)], "n": n,
            "label_array": lab}


def _payload(path):
    text = path.read_text()
    m = re.fullmatch(rf"\(window\.{DATA_GLOBAL} = window\.{DATA_GLOBAL} \|\| \{{\}}\)\[(\"[^\"]+\")\] = (.*);\n",
                     text, re.S)
    assert m, text[:200]
    return json.loads(m.group(1)), json.loads(m.group(2))


MATCHERS = {"nn": {}}
DEVICES = {"flow": "cpu"}


def test_write_viewer_encodes_what_the_matcher_returns(stores, tmp_path):
    out = tmp_path / "viewer"
    settings = ViewerSettings(max_images=4, image_size=48, methods=("nn_raw",))
    man = write_viewer(out, "t", ["bird"], stores, settings, MATCHERS, DEVICES)
    assert sorted(p.name for p in out.iterdir()) == ["data", "index.html", "viewer.css", "viewer.js"]
    assert man["categories"][0]["methods"] == {"nn_raw": "data/bird/nn_raw.js"}
    key, images = _payload(out / "data" / "bird" / "images.js")
    assert key == "bird/images"
    key, data = _payload(out / "data" / "bird" / "nn_raw.js")
    assert key == "bird/nn_raw" and data["interpolation"] == "nearest" and data["n"] == 4

    frames = frame_sources(stores["instances"][0], stores["features"][0], category="bird")
    method = build_method("nn_raw", MatcherSettings.from_params(MATCHERS, DEVICES), frames)
    idx = select_images(frames["raw"].instances, 4)
    assert [im["id"] for im in images["images"]] == [frames["raw"].ids[i] for i in idx]
    sizes = np.array([[im["w"], im["h"]] for im in images["images"]], float)
    raw = np.frombuffer(base64.b64decode(data["data"]), np.uint8).reshape(4, 3, 36, 3)
    xy, score, valid = decode_pairs(raw, sizes, data["score_lo"], data["score_hi"])
    step = (data["score_hi"] - data["score_lo"]) / 254
    for a, s in enumerate(idx):
        for b, t in enumerate(idx):
            if a == b:
                continue
            c = method.correspondence(s, t)
            j = b - (b > a)
            err = np.abs(xy[a, j] - c.target_xy.reshape(-1, 2))
            assert (err <= np.array(position_error_px(sizes[b])) + 1e-6).all()
            assert np.array_equal(valid[a, j], c.valid.reshape(-1))
            ok = c.valid.reshape(-1)
            assert np.abs(score[a, j][ok] - c.score.reshape(-1)[ok]).max() <= step / 2 + 1e-6
    # the part labels of the chosen images, cell by cell
    codes = np.frombuffer(base64.b64decode(images["labels"]), np.uint8).reshape(4, 36)
    want = stores["label_array"][idx].reshape(4, 36)
    assert np.array_equal(np.where(want < 0, 255, want), codes) and images["n_parts"] == 3
    # keypoints and images as the dataset has them
    inst0 = frames["raw"].instances[idx[0]]
    names = images["keypoint_names"]
    for k, name in enumerate(names):
        kp = images["images"][0]["keypoints"][k]
        if name in inst0.keypoints:
            assert kp == pytest.approx(list(inst0.keypoints[name]), abs=0.01)
        else:
            assert kp is None
    assert max(images["images"][0]["tw"], images["images"][0]["th"]) == 48


def test_write_viewer_is_deterministic_and_fails_whole(stores, tmp_path):
    settings = ViewerSettings(max_images=3, image_size=32, methods=("nn_raw",))
    write_viewer(tmp_path / "a", "t", ["bird"], stores, settings, MATCHERS, DEVICES)
    write_viewer(tmp_path / "b", "t", ["bird"], stores, settings, MATCHERS, DEVICES)
    for name in ["index.html", "data/bird/images.js", "data/bird/nn_raw.js"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # labels of another category's size: one line naming the file, nothing written
    bad = tmp_path / "bad_labels.zarr"
    arr = zarr.create_array(store=str(bad), shape=(2, 6, 6), chunks=(1, 6, 6), dtype=np.int16)
    arr[:] = 0
    with pytest.raises(SopcorrError, match="bad_labels.zarr"):
        write_viewer(tmp_path / "c", "t", ["bird"], {**stores, "labels": [str(bad)]}, settings, MATCHERS, DEVICES)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))
    with pytest.raises(SopcorrError, match="2 paths for 1 categories"):
        write_viewer(tmp_path / "d", "t", ["bird"], {**stores, "features": stores["features"] * 2}, settings,
                     MATCHERS, DEVICES)


def test_the_viewer_is_registered_in_zip_reports_only():
    from sopcorr.workflow_support import report_is_zip

    assert report_is_zip(["snakemake", "--cores", "1", "--report", "results/r/report.zip"])
    assert report_is_zip(["snakemake", "--report=R.ZIP"])
    assert not report_is_zip(["snakemake", "--report", "results/r/report.html"])
    assert not report_is_zip(["snakemake", "--cores", "2", "results/r/report.zip"])  # a target, not a report
    assert not report_is_zip(["snakemake", "--report"])


def test_a_category_with_one_image_is_left_out(stores, tmp_path):
    """One image leaves nothing to match: the page leaves the category out and the job goes on."""
    settings = ViewerSettings(max_images=None, image_size=32, methods=("nn_raw",))
    inst = json.loads(open(stores["instances"][0]).read())
    inst["instances"], inst["pairs"] = inst["instances"][:1], []
    one = tmp_path / "one" / "instances.json"
    one.parent.mkdir()
    one.write_text(json.dumps(inst))
    from sopcorr.features.store import FeatureStore

    fs = FeatureStore.open(stores["features"][0])
    feats_one = tmp_path / "one" / "f.zarr"
    first = dict(zarr.open_group(stores["features"][0], mode="r").attrs)
    first["image_ids"], first["image_hw"] = first["image_ids"][:1], first["image_hw"][:1]
    write_feature_store(feats_one, fs.load(0)[None], np.asarray(fs.valid[:1]), None, first)
    lab = zarr.open(stores["labels"][0], mode="r")[:1]
    lab_one = tmp_path / "one" / "labels.zarr"
    zarr.create_array(store=str(lab_one), shape=lab.shape, chunks=(1, 6, 6), dtype=np.int16)[:] = lab
    man = write_viewer(tmp_path / "v", "t", ["bird", "bird"],
                       {"instances": [str(one), stores["instances"][0]],
                        "features": [str(feats_one), stores["features"][0]],
                        "labels": [str(lab_one), stores["labels"][0]]}, settings, MATCHERS, DEVICES)
    assert man["skipped"] == ["bird"] and [c["name"] for c in man["categories"]] == ["bird"]
    assert man["categories"][0]["n_images"] == stores["n"]
