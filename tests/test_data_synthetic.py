"""The synthetic benchmark: determinism and ground-truth invariants."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sopcorr.data import synthetic as syn
from sopcorr.data.generic import load_dataset, read_image
from sopcorr.data.groundtruth import dense_correspondence, read_canonical, read_parts


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generate_is_deterministic(tmp_path):
    kw = dict(categories=["fish"], images_per_category=3, image_size=64, pairs_per_category=2, seed=5)
    syn.generate(tmp_path / "a", **kw)
    syn.generate(tmp_path / "b", **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    syn.generate(tmp_path / "c", **{**kw, "seed": 6})
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_worker_processes_write_the_same_files(tmp_path):
    """Rendering in worker processes (the rule's threads) changes no byte: every instance has
    its own generator, and the dataset lists the instances in the same order. Run in a fresh
    interpreter, as the job runs (the workers are forked)."""
    import subprocess
    import sys

    kw = dict(categories=["bird", "car"], images_per_category=5, image_size=64, pairs_per_category=3, seed=3)
    syn.generate(tmp_path / "one", **kw)
    code = (f"from sopcorr.data.synthetic import generate; "
            f"generate({str(tmp_path / 'three')!r}, workers=3, **{kw!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "three")
    a = load_dataset(tmp_path / "one" / "dataset.json")
    assert [i.id for i in a.instances] == [f"{c}/{k:04d}" for c in ("bird", "car") for k in range(5)]


def test_categories_are_independent(tmp_path):
    a = syn.generate(tmp_path / "a", categories=["car"], images_per_category=2, image_size=64, pairs_per_category=1)
    b = syn.generate(tmp_path / "b", categories=["bird", "car"], images_per_category=2, image_size=64, pairs_per_category=1)
    ka = {i.id: i.keypoints for i in a.instances}
    kb = {i.id: i.keypoints for i in b.instances if i.category == "car"}
    assert ka == kb


@pytest.mark.parametrize("cat", syn.CATEGORIES)
def test_templates_meet_the_brief(cat):
    t = syn.template(cat)
    assert len(t.parts) >= 5
    spec = syn.category_spec(cat)
    assert len(spec.keypoints) >= 8
    assert len(spec.flip_pairs) >= 2
    for left, right in spec.flip_pairs:
        assert left.startswith("L_") and right == "R_" + left[2:]


def test_loader_accepts_generated(tiny_synthetic):
    ds = load_dataset(tiny_synthetic.root / "dataset.json")
    assert sorted(ds.categories) == ["bird", "car"]
    assert len(ds.instances) == 12
    assert {i.split for i in ds.instances} == {"train", "test"}
    test_ids = {i.id for i in ds.instances if i.split == "test"}
    assert ds.pairs and all(a in test_ids and b in test_ids and a != b for a, b in ds.pairs)


def test_ground_truth_invariants(tiny_synthetic):
    ds = tiny_synthetic
    tk = {c: syn.template_keypoints(c) for c in ds.categories}
    names = {c: syn.part_names(c) for c in ds.categories}
    n_visible = n_hidden = 0
    for inst in ds.instances:
        t = syn.template(inst.category)
        img = read_image(ds.path(inst.image))
        parts = read_parts(ds.path(inst.parts))
        canon = read_canonical(ds.path(inst.canonical))
        h, w = parts.shape
        assert img.shape == (h, w, 3) and canon.shape == (h, w, 2)
        # canonical coordinates exactly where a part is shown
        assert np.array_equal(np.isfinite(canon).all(-1), parts > 0)
        assert parts.max() <= len(names[inst.category])
        x0, y0, x1, y1 = inst.bbox
        ys, xs = np.nonzero(parts)
        assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1
        for name, (x, y, v) in inst.keypoints.items():
            assert -0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5
            xi, yi = int(round(x)), int(round(y))
            own = names[inst.category].index(t.keypoints[name][0]) + 1
            if v:
                n_visible += 1
                # on the object, on the keypoint's own part ...
                assert parts[yi, xi] == own, (inst.id, name)
                # ... and the canonical coordinate there is the keypoint's template position
                err = np.linalg.norm(canon[yi, xi] - tk[inst.category][name])
                assert err < 0.06, (inst.id, name, err)
            else:
                n_hidden += 1
                # occluded: the pixel shows something else (background, occluder, another part)
                assert parts[yi, xi] != own, (inst.id, name)
    assert n_visible > 0 and n_hidden > 0


def test_flip_mirrors_and_swaps_names():
    for cat in ("bird", "aircraft"):
        t = syn.template(cat)
        tk = syn.template_keypoints(cat)
        params = syn.sample_params(t, np.random.default_rng(3), occluders=1)
        params.flip = False
        a = syn.render_instance(t, params, 80)
        params.flip = True
        b = syn.render_instance(t, params, 80)
        assert np.array_equal(b.image, a.image[:, ::-1])
        names = syn.part_names(cat)
        # part labels swap left/right partners
        perm = np.array([0] + [names.index(t.part_flip[n]) + 1 for n in names])
        assert np.array_equal(b.parts, perm[a.parts[:, ::-1]])
        for name, (x, y, v) in a.keypoints.items():
            other = t.kp_flip[name]
            if name.startswith("L_"):
                assert other == "R_" + name[2:]
            bx, by, bv = b.keypoints[other]
            assert (bx, by, bv) == pytest.approx((79 - x, y, v))
        # the canonical coordinate at a visible (renamed) keypoint is its template position
        for name, (x, y, v) in b.keypoints.items():
            if v:
                c = b.canonical[int(round(y)), int(round(x))]
                assert np.linalg.norm(c - tk[name]) < 0.1


def test_dense_correspondence_maps_keypoints(tiny_synthetic):
    ds = tiny_synthetic
    insts = [i for i in ds.instances if i.category == "bird"]
    src, tgt = insts[0], insts[1]
    cs, ps = read_canonical(ds.path(src.canonical)), read_parts(ds.path(src.parts))
    ct, pt = read_canonical(ds.path(tgt.canonical)), read_parts(ds.path(tgt.parts))
    flow = dense_correspondence(cs, ps, ct, pt)
    assert flow.shape == cs.shape
    ok = np.isfinite(flow).all(-1)
    assert ok.any() and not (ok & (ps == 0)).any()
    # matched target pixels carry the same part label
    ys, xs = np.nonzero(ok)
    tx, ty = flow[ys, xs, 0].astype(int), flow[ys, xs, 1].astype(int)
    assert np.array_equal(pt[ty, tx], ps[ys, xs])
    # a keypoint visible in both maps close to its annotated position in the target
    errs = []
    for name, (x, y, v) in src.keypoints.items():
        tv = tgt.keypoints[name]
        if v and tv[2]:
            f = flow[int(round(y)), int(round(x))]
            if np.isfinite(f).all():
                errs.append(np.hypot(f[0] - tv[0], f[1] - tv[1]))
    assert errs and max(errs) < 4.0


def test_dense_correspondence_identity():
    t = syn.template("fish")
    r = syn.render_instance(t, syn.sample_params(t, np.random.default_rng(1), occluders=0), 64)
    flow = dense_correspondence(r.canonical, r.parts, r.canonical, r.parts, max_dist=1e-6)
    ys, xs = np.nonzero(r.parts)
    assert np.array_equal(flow[ys, xs, 0], xs) and np.array_equal(flow[ys, xs, 1], ys)
