"""Feature store round trip, attrs and atomicity (sopcorr.features.store)."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from sopcorr.errors import DatasetError
from sopcorr.features.store import FeatureStore, masked_mean_descriptor, write_feature_store
from sopcorr.geometry import FeatureGrid, Letterbox


def _attrs(n):
    return {"backbone": "efficientnet_lite0", "layers": ["stage5", "stage6"], "input_size": 64,
            "stride": 16, "image_ids": [f"x/{i}" for i in range(n)],
            "image_hw": [[64, 32 + 8 * i] for i in range(n)], "normalisation": {"per_location": "L2"},
            "relu": True}


def _data(n=3, h=4, w=4, c=5):
    rng = np.random.default_rng(0)
    f = rng.random((n, h, w, c)).astype(np.float32)
    f /= np.linalg.norm(f, axis=-1, keepdims=True)
    valid = rng.random((n, h, w)) > 0.3
    return f, valid


def test_round_trip_array(tmp_path):
    f, valid = _data()
    g = np.eye(3, 7, dtype=np.float32)
    write_feature_store(tmp_path / "s.zarr", f, valid, g, _attrs(3))
    fs = FeatureStore.open(tmp_path / "s.zarr")
    assert len(fs) == 3 and fs.shape == (3, 4, 4, 5)
    np.testing.assert_allclose(fs.load_all(), f, atol=1e-3)  # float16 storage
    assert fs.load(1).dtype == np.float32
    np.testing.assert_allclose(fs.load(1), f[1], atol=1e-3)
    np.testing.assert_array_equal(fs.valid, valid)
    np.testing.assert_array_equal(fs.global_desc, g)
    assert fs.ids == ["x/0", "x/1", "x/2"] and fs.image_hw.tolist() == [[64, 32], [64, 40], [64, 48]]
    assert fs.stride == 16 and fs.input_size == 64
    assert fs.grid(2) == FeatureGrid(Letterbox(64, 48, 64), 16)
    assert fs.index("x/2") == 2
    # the on-disk contract: zarr v3, dims, chunking, dtypes
    grp = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert grp.metadata.zarr_format == 3
    assert grp["features"].dtype == np.float16 and grp["features"].chunks == (1, 4, 4, 5)
    assert tuple(grp["features"].metadata.dimension_names) == ("image", "row", "col", "channel")
    assert tuple(grp["valid"].metadata.dimension_names) == ("image", "row", "col")
    assert grp["valid"].dtype == bool and grp["global"].dtype == np.float32
    for key in ("backbone", "layers", "input_size", "stride", "image_ids", "image_hw",
                "normalisation", "relu"):
        assert key in grp.attrs


def test_round_trip_iterator_float32_and_default_global(tmp_path):
    f, valid = _data()
    write_feature_store(tmp_path / "e.zarr", (x for x in f), valid, None, _attrs(3), dtype=np.float32)
    fs = FeatureStore.open(tmp_path / "e.zarr")
    assert fs.features.dtype == np.float32
    np.testing.assert_array_equal(fs.load_all(), f)
    ref = (f * valid[..., None]).sum((1, 2))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(fs.global_desc, ref, rtol=1e-5)
    np.testing.assert_allclose(masked_mean_descriptor(f, valid), ref, rtol=1e-5)


def test_overwrite_replaces_store(tmp_path):
    f, valid = _data()
    write_feature_store(tmp_path / "s.zarr", f, valid, None, _attrs(3))
    write_feature_store(tmp_path / "s.zarr", f[:2], valid[:2], None, _attrs(2))
    assert len(FeatureStore.open(tmp_path / "s.zarr")) == 2


def test_killed_writer_leaves_no_store(tmp_path):
    f, valid = _data()

    def dying():
        yield f[0]
        raise KeyboardInterrupt  # e.g. the job is killed mid-way

    with pytest.raises(KeyboardInterrupt):
        write_feature_store(tmp_path / "s.zarr", dying(), valid, None, _attrs(3))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="2 feature maps for 3"):
        write_feature_store(tmp_path / "s.zarr", iter(f[:2]), valid, None, _attrs(3))
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path):
    f, valid = _data()
    attrs = _attrs(3)
    del attrs["relu"]
    with pytest.raises(ValueError, match="relu"):
        write_feature_store(tmp_path / "s.zarr", f, valid, None, attrs)
    with pytest.raises(ValueError, match="match"):
        write_feature_store(tmp_path / "s.zarr", f[:, :3], valid, None, _attrs(3))
    with pytest.raises(DatasetError, match="missing.zarr: feature store not found"):
        FeatureStore.open(tmp_path / "missing.zarr")
    (tmp_path / "junk.zarr").mkdir()
    with pytest.raises(DatasetError, match="junk.zarr"):
        FeatureStore.open(tmp_path / "junk.zarr")
