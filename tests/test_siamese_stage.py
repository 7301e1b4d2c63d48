"""The pipeline step of the correlation network on tiny real artifacts (EfficientNet-Lite0 at
64 px): training on cached grids, end-to-end training from images on the CPU, fine-tuning with
and without keypoint supervision, inference from images."""
import json

import numpy as np
import pytest
import torch

S = 64
BACKBONE = {"name": "efficientnet_lite0", "input_size": S, "layers": None, "relu": False, "batch_size": 4,
            "weights": None, "device": "cpu"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One category of 4 images (3 train, 1 test), its feature store and a flow store whose
    teacher moves every cell one cell to the right."""
    from PIL import Image

    from sopcorr.features.extract import extract_category
    from sopcorr.features.store import FeatureStore
    from sopcorr.flow.pseudo import write_flow_store

    tmp = tmp_path_factory.mktemp("stage")
    rng = np.random.default_rng(0)
    (tmp / "img").mkdir()
    insts = []
    for k, split in enumerate(["train", "train", "train", "test"]):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp / "img" / f"{k}.png")
        insts.append({"id": f"cat/{k}", "image": f"img/{k}.png", "category": "cat", "bbox": [0, 0, 63, 47],
                      "keypoints": {"a": [10.0 + k, 12.0, 1], "b": [40.0, 30.0, 1]}, "split": split})
    (tmp / "instances.json").write_text(json.dumps({"name": "t", "root": str(tmp),
                                                    "categories": {"cat": {"keypoints": ["a", "b"]}},
                                                    "instances": insts}))
    extract_category(tmp / "instances.json", tmp / "features.zarr", BACKBONE, device="cpu", progress=False)
    store = FeatureStore.open(tmp / "features.zarr")
    pairs = [(0, 1), (1, 2), (2, 0), (3, 0)]
    txy = np.stack([store.grid(j).cell_to_image(store.grid(i).image_to_cell(store.grid(i).cell_centers_image()) + [1.0, 0.0])
                    for i, j in pairs]).astype(np.float32)
    P, h, w = len(pairs), *store.valid.shape[1:]
    write_flow_store(tmp / "flow.zarr", pairs, txy, np.stack([store.valid[i] for i, _ in pairs]),
                     np.full((P, h, w), 0.8, np.float32), store.ids, store.image_hw, store.input_size, store.stride)
    return tmp


def _section(paper=None, **kw):
    from sopcorr.config import validate_config

    sec = {"device": "cpu", "checkpoint_every": 1,
           "correlation": {"steps": 3, "batch_size": 2, "finetune_steps": 2, "hidden_channels": 8,
                           "descriptor_dim": 8, "cells_per_pair": 6},
           "paper": paper or {}}
    sec.update(kw)
    return validate_config({"siamese": sec})["siamese"]


def _sources(run):
    return [(run / "features.zarr", run / "flow.zarr", run / "instances.json")]


def test_cached_grids_then_finetune_then_inference(run, tmp_path):
    from sopcorr.data.generic import read_image
    from sopcorr.features.store import FeatureStore
    from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher, CorrelationNetworkParams
    from sopcorr.matchers.networks import NetworkParams, network_matcher
    from sopcorr.siamese.checkpoint import load_checkpoint
    from sopcorr.siamese.stage import run_training

    sec = _section()
    h = run_training(_sources(run), sec, BACKBONE, 0, tmp_path / "model.pt", tmp_path / "loss.png", progress=False)
    assert len(h) == 3 and (tmp_path / "loss.png").is_file()
    ck = load_checkpoint(tmp_path / "model.pt")
    assert ck["spec"]["architecture"] == "correlation" and ck["spec"]["input_size"] == S
    assert not any(k.startswith("encoder.") for k in ck["model"])  # the frozen encoder is the registry's
    # fine-tuning: only train-split pairs; with keypoint supervision their labels teach cells
    sec_kp = _section(keypoint_supervision=True, keypoint_weight=2.0)
    h2 = run_training(_sources(run), sec_kp, BACKBONE, 0, tmp_path / "ft.pt", None,
                      init_checkpoint=tmp_path / "model.pt", progress=False)
    ft = load_checkpoint(tmp_path / "ft.pt")
    assert len(h2) == 2 and ft["config"]["train"]["keypoint_weight"] == 2.0
    assert ft["config"]["extra"]["data"]["n_pairs"] == 3  # (3, 0) has a test image
    assert any(not torch.equal(ck["model"][k], ft["model"][k]) for k in ck["model"])
    # inference from images: the encoder reproduces the feature store; one read-out per pair
    store = FeatureStore.open(run / "features.zarr")
    mt = CorrelationNetworkMatcher(CorrelationNetworkParams(device="cpu"), tmp_path / "model.pt")
    img0, img1 = read_image(run / "img" / "0.png"), read_image(run / "img" / "1.png")
    grid, fg = mt.grid(img0)
    assert np.allclose(grid, store.load(0), atol=2e-3) and fg == store.grid(0)
    corr = mt.match_images(img0, img1)
    assert corr.target_xy.shape == (*store.valid.shape[1:], 2) and corr.valid.shape == store.valid.shape[1:]
    desc, _ = mt.image_descriptors(img0)
    # the read-out's descriptor: the raw grid (C channels) beside the head's 8 (raw_weight > 0)
    assert mt.spec.raw_weight == 0.5 and desc.shape[-1] == store.load(0).shape[-1] + 8
    assert np.allclose(np.linalg.norm(desc, axis=-1), 1, atol=1e-4)
    assert np.allclose(np.linalg.norm(desc[..., -8:], axis=-1), 0.5 ** 0.5, atol=1e-4)  # the head's share
    # the descriptors of the cached grid are the image's
    assert np.allclose(mt.describe(store.load(0)), desc, atol=1e-2)
    via = mt.match_descriptors(mt.describe(store.load(0)), mt.describe(store.load(1)), store.grid(0), store.grid(1))
    assert np.abs(via.target_xy - corr.target_xy).max() < 0.5
    facade = network_matcher(tmp_path / "ft.pt", NetworkParams(device="cpu", backbone="efficientnet_lite0"))
    assert isinstance(facade, CorrelationNetworkMatcher) and facade.match_images(img0, img1).grid.stride == store.stride
    # on frames: each image is encoded once (descriptors cached on the frame), and the read-out
    # equals the batched pass of both images
    from sopcorr.matchers.base import Frame

    frames = [Frame(None, None, None, image_source=im, index=i) for i, im in enumerate((img0, img1))]
    calls = []
    encode = facade.model.encode
    facade.model.encode = lambda x: calls.append(x.shape[0]) or encode(x)
    a = facade.correspondence(frames[0], frames[1])
    b = facade.correspondence(frames[1], frames[0])
    facade.model.encode = encode
    assert calls == [1, 1]
    ref = facade.match_images(img0, img1)
    assert np.abs(a.target_xy - ref.target_xy).max() < 1e-3 and np.array_equal(a.valid, ref.valid)
    assert np.allclose(a.score, ref.score, atol=1e-5)
    assert np.abs(b.target_xy - facade.match_images(img1, img0).target_xy).max() < 1e-3


def test_end_to_end_from_images_on_the_cpu(run, tmp_path):
    from sopcorr.data.generic import read_image
    from sopcorr.features.backbones import build_backbone
    from sopcorr.matchers.networks import NetworkParams, network_matcher
    from sopcorr.siamese.checkpoint import load_checkpoint
    from sopcorr.siamese.stage import run_training

    sec = _section(freeze_encoder=False)
    run_training(_sources(run), sec, BACKBONE, 0, tmp_path / "e2e.pt", None, progress=False)
    ck = load_checkpoint(tmp_path / "e2e.pt")
    assert ck["spec"]["encoder_trained"]
    enc = {k[len("encoder.backbone."):]: v for k, v in ck["model"].items() if k.startswith("encoder.backbone.")}
    ref = build_backbone("efficientnet_lite0", S).state_dict()
    assert enc and any(not torch.equal(ref[k], v) for k, v in enc.items() if k in ref)  # the encoder learned
    mt = network_matcher(tmp_path / "e2e.pt", NetworkParams(device="cpu"))
    img = read_image(run / "img" / "2.png")
    assert np.isfinite(mt.match_images(img, img).target_xy).all()
    # the trained encoder is the checkpoint's, not the registry's
    got = mt.model.encoder.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in enc.items())


def test_architecture_mismatch_and_missing_pairs(run, tmp_path):
    from sopcorr.siamese.checkpoint import CheckpointError
    from sopcorr.siamese.stage import run_training

    run_training(_sources(run), _section(), BACKBONE, 0, tmp_path / "model.pt", None, progress=False)
    with pytest.raises(CheckpointError, match="architecture: paper"):
        run_training(_sources(run), _section(architecture="paper"), BACKBONE, 0, tmp_path / "x.pt", None,
                     init_checkpoint=tmp_path / "model.pt", progress=False)
    with pytest.raises(CheckpointError, match="backbone 'efficientnet_lite0'"):
        run_training(_sources(run), _section(), dict(BACKBONE, name="vgg16"), 0, tmp_path / "y.pt", None,
                     init_checkpoint=tmp_path / "model.pt", progress=False)


def test_best_learned_matcher_of_a_run(run, tmp_path):
    """sopcorr match --run's entry point: on a correlation network, ours_network_geometric on
    the run's trained network (model.pt before finetuned.pt, the pipeline's method on the same
    checkpoint); on the paper's network its own flow, fine-tuned first; one clear error when the
    run has none; frames need only their images."""
    import shutil

    from sopcorr.data.generic import read_image
    from sopcorr.errors import SopcorrError
    from sopcorr.matchers import Frame, best_learned_matcher, build
    from sopcorr.matchers.geometric import GeometricParams
    from sopcorr.matchers.network_geometric import NetworkGeometricMatcher, NetworkGeometricParams
    from sopcorr.matchers.paper_network import PaperNetworkMatcher
    from sopcorr.siamese.stage import run_training

    with pytest.raises(SopcorrError, match="no trained network"):
        best_learned_matcher(tmp_path / "empty")
    run_training(_sources(run), _section(), BACKBONE, 0, tmp_path / "model.pt", None, progress=False)
    rd = tmp_path / "results" / "r"
    sd = rd / "siamese" / "improved"
    sd.mkdir(parents=True)
    shutil.copy(tmp_path / "model.pt", sd / "finetuned.pt")
    m, desc = best_learned_matcher(rd, None, device="cpu")  # only a fine-tuned network: that one
    assert isinstance(m, NetworkGeometricMatcher) and "fine-tuned" in desc and "finetuned.pt" in desc
    shutil.copy(tmp_path / "model.pt", sd / "model.pt")
    m, desc = best_learned_matcher(rd, "bird", device="cpu")
    assert isinstance(m, NetworkGeometricMatcher) and m.readout == "soft"
    assert desc.startswith("ours_network_geometric") and "trained" in desc and str(sd / "model.pt") in desc
    img0, img1 = read_image(run / "img" / "0.png"), read_image(run / "img" / "1.png")
    frame = lambda img, i: Frame(None, None, None, image_source=img, id=str(i))  # noqa: E731
    corr = m.correspondence(frame(img0, 0), frame(img1, 1))
    ref = build("network_geometric", NetworkGeometricParams(GeometricParams(), device="cpu"), checkpoint=sd / "model.pt")
    assert np.array_equal(corr.target_xy, ref.correspondence(frame(img0, 0), frame(img1, 1)).target_xy)
    # the paper's architecture: its own flow, the fine-tuned checkpoint before the trained one
    pd = tmp_path / "results" / "p" / "siamese" / "improved"
    pd.mkdir(parents=True)
    run_training(_sources(run), _section(architecture="paper", paper={"steps": 1, "finetune_steps": 1, "batch_size": 2}),
                 BACKBONE, 0, pd / "model.pt", None, progress=False)
    m, desc = best_learned_matcher(pd.parents[1], None, device="cpu")
    assert isinstance(m, PaperNetworkMatcher) and "paper" in desc and "model.pt" in desc
    shutil.copy(pd / "model.pt", pd / "finetuned.pt")
    m, desc = best_learned_matcher(pd.parents[1], None, device="cpu")
    assert "fine-tuned" in desc and "finetuned.pt" in desc
    corr = m.correspondence(frame(img0, 0), frame(img1, 1))
    assert np.array_equal(corr.target_xy, m.match_images(img0, img1).target_xy)


def test_geometric_matcher_on_the_learned_descriptors(run, tmp_path):
    """ours_network_geometric: the frames' stored grids through the head equal the images
    through the whole network (a frozen encoder), and the matcher is the geometric matcher on
    exactly those descriptors; an end-to-end checkpoint describes the images."""
    from sopcorr.data.generic import read_image
    from sopcorr.features.store import FeatureStore
    from sopcorr.flow.geometric import geometric_correspondence
    from sopcorr.matchers import Frame, build
    from sopcorr.matchers.geometric import GeometricParams
    from sopcorr.matchers.network_geometric import NetworkGeometricParams
    from sopcorr.siamese.stage import run_training
    from dataclasses import replace

    run_training(_sources(run), _section(), BACKBONE, 0, tmp_path / "model.pt", None, progress=False)
    store = FeatureStore.open(run / "features.zarr")
    imgs = [read_image(run / "img" / f"{k}.png") for k in (0, 1)]
    p = GeometricParams(ransac_iterations=20, embedding_weight=0.0)
    m = build("network_geometric", NetworkGeometricParams(p, device="cpu", readout="argmax"), checkpoint=tmp_path / "model.pt")

    def stored(k):
        return Frame(store.load(k), store.valid[k], store.grid(k), image_source=imgs[k], id=str(k))

    def image_only(k):
        return Frame(None, None, None, image_source=imgs[k], id=str(k))

    a, b = stored(0), stored(1)
    da, ga = m.descriptors(a)
    assert ga == store.grid(0) and np.allclose(np.linalg.norm(da, axis=-1), 1, atol=1e-4)
    di, gi = m.descriptors(image_only(0))
    assert gi == store.grid(0) and np.allclose(da, di, atol=1e-2)
    corr = m.correspondence(a, b)
    ref = geometric_correspondence(da, m.descriptors(b)[0], store.grid(0), store.grid(1), store.valid[0],
                                   store.valid[1], strength=p.strength, consensus_radius=p.consensus_radius,
                                   consensus_gate=p.consensus_gate, prior=p.prior, max_models=p.max_models,
                                   min_support=p.min_support, bandwidth=p.bandwidth,
                                   ransac_threshold=p.ransac_threshold, ransac_iterations=p.ransac_iterations,
                                   seed=p.seed)
    assert np.array_equal(corr.target_xy, ref.target_xy) and np.array_equal(corr.valid, ref.valid)
    # the soft read-out without the prior is the network's own read-out on the same descriptors
    soft0 = build("network_geometric", NetworkGeometricParams(replace(p, strength=0.0), device="cpu"),
                  checkpoint=tmp_path / "model.pt")
    own = soft0.network.match_descriptors(da, m.descriptors(b)[0], store.grid(0), store.grid(1))
    got = soft0.correspondence(stored(0), stored(1))
    assert got.interpolation == "adaptive" and np.allclose(got.target_xy, own.target_xy, atol=1e-3)
    pts = store.grid(0).cell_centers_image()[2:5, 3] + np.array([3.3, -2.1])  # between cell centres
    assert np.allclose(got.transfer(pts)[0], own.transfer(pts)[0], atol=1e-3)
    assert np.allclose(got.transfer(pts)[1], own.transfer(pts)[1], atol=1e-5)
    # with a strong prior the soft read-out stays finite everywhere
    soft = build("network_geometric", NetworkGeometricParams(replace(p, strength=50.0), device="cpu"),
                 checkpoint=tmp_path / "model.pt")
    assert np.isfinite(soft.correspondence(stored(0), stored(1)).target_xy).all()
    # an end-to-end checkpoint: the stored grids are not its encoder's, so the images are used
    run_training(_sources(run), _section(freeze_encoder=False), BACKBONE, 0, tmp_path / "e2e.pt", None,
                 progress=False)
    e2e = build("network_geometric", NetworkGeometricParams(p, device="cpu"), checkpoint=tmp_path / "e2e.pt")
    de, _ = e2e.descriptors(stored(0))
    assert np.allclose(de, e2e.network.image_descriptors(imgs[0])[0], atol=1e-5)


def test_training_starts_from_a_checkpoint(run, tmp_path):
    """A self-training round that continues the round before (start_from): with no steps the
    checkpoint's weights are the start's, with steps it trains from them (not from a new
    network); start_from and a fine-tuning's init_checkpoint together are an error."""
    from sopcorr.errors import SopcorrError
    from sopcorr.siamese.checkpoint import read_checkpoint
    from sopcorr.siamese.stage import run_training

    run_training(_sources(run), _section(), BACKBONE, 0, tmp_path / "r1.pt", None, progress=False)
    first = read_checkpoint(tmp_path / "r1.pt").data["model"]
    zero = _section(correlation={"steps": 0, "batch_size": 2, "hidden_channels": 8, "descriptor_dim": 8,
                                 "cells_per_pair": 6})
    run_training(_sources(run), zero, BACKBONE, 1, tmp_path / "same.pt", None, progress=False,
                 start_from=tmp_path / "r1.pt")
    same = read_checkpoint(tmp_path / "same.pt").data["model"]
    assert all(torch.equal(first[k], same[k]) for k in first)
    run_training(_sources(run), _section(), BACKBONE, 1, tmp_path / "cont.pt", None, progress=False,
                 start_from=tmp_path / "r1.pt")
    run_training(_sources(run), _section(), BACKBONE, 1, tmp_path / "fresh.pt", None, progress=False)
    cont = read_checkpoint(tmp_path / "cont.pt").data["model"]
    fresh = read_checkpoint(tmp_path / "fresh.pt").data["model"]
    assert any(not torch.equal(cont[k], fresh[k]) for k in cont)
    assert any(not torch.equal(cont[k], first[k]) for k in cont)
    with pytest.raises(SopcorrError, match="not both"):
        run_training(_sources(run), _section(), BACKBONE, 1, tmp_path / "x.pt", None, progress=False,
                     init_checkpoint=tmp_path / "r1.pt", start_from=tmp_path / "r1.pt")
    # siamese.round_interpolation: the written network is that fraction of the way from the start
    # to the weights the same training ends with (training is deterministic for one seed)
    run_training(_sources(run), _section(), BACKBONE, 1, tmp_path / "half.pt", None, progress=False,
                 start_from=tmp_path / "r1.pt", interpolation=0.25)
    half = read_checkpoint(tmp_path / "half.pt").data
    assert half["round_interpolation"] == {"start": str(tmp_path / "r1.pt"), "weight": 0.25}
    for k in cont:
        assert torch.allclose(half["model"][k], 0.75 * first[k] + 0.25 * cont[k], atol=1e-6), k
    assert "round_interpolation" not in read_checkpoint(tmp_path / "cont.pt").data  # 1: the trained weights


def test_best_learned_matcher_takes_the_last_round(run, tmp_path):
    """With rounds of self-training, sopcorr match --run uses the last round's network
    (round<r>/model.pt, the highest r), then round 1's, then the fine-tuned one."""
    import shutil

    from sopcorr.matchers import best_learned_matcher
    from sopcorr.matchers.learned import learned_checkpoints
    from sopcorr.siamese.stage import run_training

    run_training(_sources(run), _section(), BACKBONE, 0, tmp_path / "model.pt", None, progress=False)
    sd = tmp_path / "r" / "siamese" / "improved"
    for rel in ("model.pt", "finetuned.pt", "round2/model.pt", "round3/model.pt", "round10/model.pt"):
        (sd / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "model.pt", sd / rel)
    found = learned_checkpoints(tmp_path / "r")
    assert [p.relative_to(sd).as_posix() for p in found] == [
        "round10/model.pt", "round3/model.pt", "round2/model.pt", "model.pt", "finetuned.pt"]
    m, desc = best_learned_matcher(tmp_path / "r", None, device="cpu")
    assert "round 10" in desc and str(sd / "round10" / "model.pt") in desc
