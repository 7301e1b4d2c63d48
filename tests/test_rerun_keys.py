"""The schema-walking rerun test (issue 12, Build 2): on a finished tiny run, changing one config
key (an overlay configfile with a valid, different value) makes exactly the jobs of the rules it
must rerun out of date — the rules whose jobs use the key and everything downstream of them —
and keys that cannot change a result (devices, checkpoint cadence, batch sizes that only set the
speed) make nothing out of date. Every key of workflow/schemas/config.schema.yaml is in the map
(or listed as not covered, with the reason), so a new key must be mapped to be merged.

The map is written by hand from the tiny run's DAG and what each stage computes, not derived
from the rules' params: ``DOWNSTREAM`` is the rule graph of tests/integration/tiny.yaml (synthetic
data, the improved manifold variant, the default methods), ``KEYS`` names for each key a new
value and the rules whose jobs read it. The dry runs use Snakemake's default rerun triggers
(mtime, params, input, software-env, code), as a user's ``snakemake`` does, built in one process
with Snakemake's API (tests/integration/dryrun_many.py) to keep the whole walk to a few minutes.

To map a new key: one line in KEYS, ``"section.key": (new value, "rules that read it")``.
"""
from __future__ import annotations


import pytest
import yaml

from integration.helpers import HERE, TINY, clone, dry_run_jobs, run_snakemake
from integration.helpers import dry_runs as run_dry_runs

from sopcorr.config import SCHEMA_PATH, deep_merge, load_config, validate_config

# ---------------------------------------------------------------------------------------------
# the tiny run's rule graph, by hand: rule -> the rules that read its outputs
# ---------------------------------------------------------------------------------------------
DOWNSTREAM: dict[str, list[str]] = {
    "generate_synthetic": ["prepare_category"],
    "prepare_category": ["data_summary", "contact_sheet", "extract_features", "manifold", "pseudo_flow",
                         "train_siamese", "finetune_siamese", "evaluate", "viewer"],
    "data_summary": [],
    "contact_sheet": [],
    "extract_features": ["manifold", "pseudo_flow", "train_siamese", "finetune_siamese", "evaluate", "viewer"],
    "manifold": ["pseudo_flow", "evaluate", "viewer"],  # embedded.zarr (+ labels.zarr)
    "pseudo_flow": ["train_siamese", "finetune_siamese"],
    "train_siamese": ["finetune_siamese", "evaluate", "viewer"],  # model.pt: ours_network_geometric
    "finetune_siamese": ["evaluate"],                   # ours_finetuned (+ its SVM descriptor)
    "evaluate": ["eval_table", "report_description"],   # every protocol's records and the figures
    "eval_table": ["eval_bars", "report_description"],
    "eval_bars": ["report_description"],
    "report_description": [],                           # the report's first screen
    "viewer": ["report_description"],                   # the viewer, linked from the first screen
    # rounds of self-training (siamese.rounds > 1; tiny.yaml runs one round)
    "pseudo_flow_round": ["train_siamese_round"],
    "train_siamese_round": ["finetune_siamese", "evaluate", "viewer"],  # the last round is the run's
}
#: every rule of the tiny run's default target
EVERY = "generate_synthetic"


def closure(roots: str) -> set[str]:
    """The rules of ``roots`` (space-separated) and every rule downstream of them."""
    out: set[str] = set()
    todo = roots.split()
    while todo:
        r = todo.pop()
        if r not in out:
            out.add(r)
            todo += DOWNSTREAM[r]
    return out


# ---------------------------------------------------------------------------------------------
# key -> (a valid value different from tiny.yaml's, the rules whose jobs read the key[, other
# keys the value needs to be valid]); "" = no job's result depends on it in the tiny run. The
# values are checked against the schema.
# ---------------------------------------------------------------------------------------------
_EV = "evaluate"                                         # every protocol of a category (one job)
KEYS: dict[str, tuple] = {
    "run": ("tiny_other", EVERY),                        # a new results/<run>/: every job
    "seed": (1, EVERY),
    "job_server": (False, ""),                           # how jobs start, not what they compute
    "categories": (["bird"], "data_summary train_siamese eval_table viewer"),  # pooled jobs lose car
    # the threads of the jobs whose numbers depend on them (their results change)
    "numeric_threads.features": (1, "extract_features"),
    "numeric_threads.manifold": (2, "manifold"),
    "numeric_threads.training": (1, "train_siamese"),    # + finetune_siamese (downstream)
    "numeric_threads.finetuning": (2, "finetune_siamese"),
    "numeric_threads.ablation": (1, ""),                 # the ablation target only
    # dataset (synthetic): the generator and what reads the split
    "dataset.path": ("elsewhere", ""),                   # generic only
    "dataset.synthetic.categories": (["bird", "car", "fish"], EVERY),
    "dataset.synthetic.images_per_category": (5, EVERY),
    "dataset.synthetic.image_size": (80, EVERY),
    "dataset.synthetic.pairs_per_category": (3, EVERY),
    "dataset.synthetic.occluders": (2, EVERY),
    "dataset.synthetic.image_format": ("png", EVERY),
    "dataset.train_fraction": (0.7, EVERY),
    # dataset.voc: read by the VOC reader and the download rules only (voc_berkeley runs)
    "dataset.voc.voc_root": ("elsewhere/VOC2012", ""),
    "dataset.voc.keypoints_root": ("elsewhere/keypoints", ""),
    "dataset.voc.voc_url": ("file:///nowhere/voc.tar", ""),
    "dataset.voc.voc_sha256": ("0" * 64, ""),
    "dataset.voc.keypoints_url": ("file:///nowhere/kp.tgz", ""),
    "dataset.voc.keypoints_sha256": ("0" * 64, ""),
    "dataset.voc.include_truncated": (False, ""),
    "dataset.voc.include_difficult": (True, ""),
    "dataset.voc.max_instances_per_category": (3, ""),
    # backbone: the features and every network built on them
    "backbone.name": ("vgg16", "extract_features train_siamese", {"backbone.layers": None}),
    "backbone.layers": (["stage5"], "extract_features"),
    "backbone.input_size": (128, "extract_features"),
    "backbone.batch_size": (2, ""),                      # throughput only (bit-identical features)
    "backbone.weights": ("weights.pth", "extract_features train_siamese"),
    "backbone.device": ("auto", ""),
    "backbone.relu": (True, "extract_features"),
    # manifold (the improved variant: manifold.improved replaces pairwise/subclasses/n_components)
    "manifold.variant": ("paper", "manifold"),           # the paper variant's chain feeds the tables
    "manifold.n_parts": (4, "manifold"),
    "manifold.n_components": (5, ""),                    # improved.n_components is set
    "manifold.subclasses": (2, ""),                      # improved.subclasses is set
    "manifold.kernel_degree": (3, "manifold"),
    "manifold.kernel_coef0": (0.5, "manifold"),
    "manifold.regularization": (0.01, "manifold"),
    "manifold.landmarks": (20, "manifold"),
    "manifold.kernel_rank": (8, "manifold"),
    "manifold.exact_max_samples": (100, "manifold"),
    "manifold.fit_samples": (150, "manifold"),
    "manifold.precluster": (10, "manifold"),
    "manifold.init_dims": (8, "manifold"),
    "manifold.max_iter": (1, "manifold"),
    "manifold.tol": (0.05, "manifold"),
    "manifold.covariance_shrinkage": (0.2, "manifold"),
    "manifold.pairwise": ("metric", ""),                 # improved.pairwise is set
    "manifold.pairwise_weight": (0.5, "manifold"),
    "manifold.sigma2": (2.0, "manifold"),
    "manifold.solver": ("expansion", "manifold"),
    "manifold.max_sweeps": (2, "manifold"),
    "manifold.improved.posterior_temperature": (2.0, "manifold"),
    "manifold.improved.uniform_prior": (False, "manifold"),
    "manifold.improved.min_part_fraction": (0.05, "manifold"),
    "manifold.improved.anchor_weight": (0.25, "manifold"),
    "manifold.improved.pairwise": ("paper", "manifold"),
    "manifold.improved.subclasses": (3, "manifold"),
    "manifold.improved.n_components": (5, "manifold"),
    "manifold.improved.raw_weight": (0.5, "manifold"),
    "manifold.improved.recluster_until": (None, "manifold"),
    # flow: the improved variant's pseudo flow is the geometric matcher (flow.geometric); the
    # pseudo_gt evaluation row is the same matcher with the same settings; the SIFT-flow keys
    # set the siftflow / convflow methods
    "flow.pairs_per_category": (3, "pseudo_flow"),
    "flow.pairs_split": ("train", "pseudo_flow"),
    # the collection-consistent teacher (issue 23; tiny inherits config.yaml's 2 hubs, cycle_min 1)
    "flow.cycle_images": (3, "pseudo_flow"),            # other hubs: other confirmations
    "flow.cycle_tolerance": (2.0, "pseudo_flow"),
    "flow.cycle_min": (0, "train_siamese"),              # every valid cell: the training (and after)
    "flow.mutual": (False, ""),                          # paper variant's nearest-neighbour pseudo flow
    "flow.min_similarity": (0.2, ""),
    "flow.refine": ("softargmax", ""),
    "flow.pseudo_method": ("siftflow", ""),
    "flow.device": ("cpu", ""),
    "flow.siftflow_levels": (2, _EV),
    "flow.siftflow_iterations": (3, _EV),
    "flow.siftflow_window": (3, _EV),
    "flow.siftflow_fine_window": (2, _EV),
    "flow.siftflow_alpha": (0.02, _EV),
    "flow.siftflow_d": (0.2, _EV),
    "flow.siftflow_eta": (0.002, _EV),
    "flow.siftflow_data_trunc": (0.7, _EV),
    "flow.siftflow_schedule": ("sequential", _EV),
    "flow.geometric.strength": (4.0, "pseudo_flow"),     # + the ours_geometric and pseudo_gt rows
    "flow.geometric.consensus_radius": (0, "pseudo_flow"),
    "flow.geometric.consensus_gate": (2.0, "pseudo_flow"),
    "flow.geometric.prior": ("global", "pseudo_flow"),
    "flow.geometric.max_models": (2, "pseudo_flow"),
    "flow.geometric.min_support": (0.2, "pseudo_flow"),
    "flow.geometric.bandwidth": (0.2, "pseudo_flow"),
    "flow.geometric.ransac_threshold": (0.1, "pseudo_flow"),
    "flow.geometric.ransac_iterations": (200, "pseudo_flow"),
    "flow.geometric.embedding_weight": (0.25, "pseudo_flow"),
    "flow.geometric.fb_tolerance": (2.0, "pseudo_flow"),
    # siamese (architecture: correlation, the default): the shared keys and the correlation
    # network's sub-section; training keys -> train_siamese, fine-tuning keys -> finetune_siamese.
    # The paper architecture's sub-section is not used by it and reruns nothing (checked on
    # architecture: paper only through test_siamese_paper_train / the ablation target)
    "siamese.architecture": ("paper", "train_siamese"),
    "siamese.device": ("auto", ""),
    "siamese.checkpoint_every": (2, ""),
    "siamese.freeze_encoder": (False, "train_siamese"),
    "siamese.keypoint_supervision": (True, "finetune_siamese"),
    "siamese.keypoint_weight": (0.5, "finetune_siamese"),  # a fine-tuning setting (used with supervision)
    "siamese.grad_clip": (5.0, "train_siamese"),
    "siamese.rounds": (2, "pseudo_flow_round"),          # a second round; round 1 stays
    "siamese.round_teacher": ("ours_network", ""),       # read by rounds > 1 only
    "siamese.round_start": ("afresh", ""),
    "siamese.round_interpolation": (1.0, ""),        # read by rounds > 1 only
    "siamese.correlation.steps": (7, "train_siamese"),
    "siamese.correlation.batch_size": (3, "train_siamese"),
    "siamese.correlation.lr": (0.002, "train_siamese"),
    "siamese.correlation.weight_decay": (0.001, "train_siamese"),
    "siamese.correlation.warmup": (2, "train_siamese"),
    "siamese.correlation.hidden_channels": (8, "train_siamese"),
    "siamese.correlation.descriptor_dim": (8, "train_siamese"),
    "siamese.correlation.kernel_size": (1, "train_siamese"),
    "siamese.correlation.reduce_first": (False, "train_siamese"),
    "siamese.correlation.temperature": (0.1, "train_siamese"),
    "siamese.correlation.cells_per_pair": (16, "train_siamese"),
    "siamese.correlation.target_sigma": (0.5, "train_siamese"),
    "siamese.correlation.readout_sigma": (1.0, "train_siamese"),
    "siamese.correlation.raw_weight": (0.25, "train_siamese"),
    "siamese.correlation.consensus": (0.125, "train_siamese"),
    "siamese.correlation.mutual": (False, "train_siamese"),
    "siamese.correlation.flow_weight": (0.5, "train_siamese"),
    "siamese.correlation.truncation": (0.5, "train_siamese"),
    "siamese.correlation.symmetric": (False, "train_siamese"),
    "siamese.correlation.flip": (False, "train_siamese"),
    "siamese.correlation.finetune_steps": (3, "finetune_siamese"),
    "siamese.correlation.finetune_lr": (0.001, "finetune_siamese"),
    "siamese.paper.input_size": (96, ""),
    "siamese.paper.steps": (4, ""),
    "siamese.paper.batch_size": (3, ""),
    "siamese.paper.lr": (0.001, ""),
    "siamese.paper.weight_decay": (0.001, ""),
    "siamese.paper.warmup": (1, ""),
    "siamese.paper.finetune_steps": (3, ""),
    "siamese.paper.finetune_lr": (0.001, ""),
    "siamese.paper.rotation_deg": (8, ""),
    "siamese.paper.scale_range": ([0.8, 1.5], ""),
    "siamese.paper.truncation": (0.1, ""),
    "siamese.paper.encoder_layers": (["stage3", "stage5", "stage7"], ""),
    "siamese.paper.fuse_channels": (64, ""),
    "siamese.paper.decoder_channels": (32, ""),
    # evaluate
    "evaluate.k_neighbors": (3, _EV),
    "evaluate.alpha": (0.15, f"{_EV} eval_bars"),        # + the bars' alpha row
    "evaluate.pair_alphas": ([0.1], _EV),
    "evaluate.sift_radii": ([30], _EV),
    "evaluate.crop_size": (64, _EV),
    "evaluate.max_eval_pairs": (3, _EV),
    "evaluate.figures_per_category": (1, _EV),
    "evaluate.siftflow_radius": (30, _EV),         # dense SIFT of the siftflow methods
    "evaluate.localisation_methods": (["nn_raw", "nn_embed"], _EV),
    "evaluate.pair_methods": (["nn_raw", "nn_embed"], _EV),
    "evaluate.dense_methods": (["nn_raw", "nn_embed"], _EV),
    "evaluate.figure_methods": (["nn_raw"], _EV),
    "evaluate.classification_descriptors": (["sift"], _EV),
    "evaluate.conv_layers": (["stage4", "stage6"], _EV),
    "evaluate.svm_c": (2.0, _EV),
    "evaluate.threshold_queries": (4, _EV),
    "evaluate.prior_sigma_min": (0.2, _EV),              # the *_prior localisation rows
    "evaluate.vote_sigma": (0.2, _EV),                   # classification by transfer
    "evaluate.dense_alphas": ([0.1], _EV),
    "evaluate.dense_stride": (8, _EV),
    "evaluate.ablation_layer_sets": ([["stage4"]], ""),  # the ablation target only
    "evaluate.transfer_from": ("other_run", ""),         # tables/transfer_from_<source>.csv only

    # viewer: the one job that writes results/<run>/viewer/ (its methods read flow.geometric and
    # the seed too: those keys rerun it through train_siamese / EVERY)
    "viewer.max_images": (3, "viewer"),
    "viewer.image_size": (64, "viewer"),
    "viewer.methods": (["nn_raw"], "viewer"),
}

#: schema keys this test does not change, and why
NOT_COVERED: dict[str, str] = {
    "dataset.kind": "switches the whole dataset and its DAG (another kind's run is a different run)",
}
#: what the tiny run does not exercise, so KEYS maps it to nothing there (documented, not tested):
#: the voc_berkeley reader and download keys, dataset.path of a generic dataset (its dataset.json is
#: an input), the paper variant's pseudo-flow keys (flow.mutual, min_similarity, refine,
#: pseudo_method) and top-level manifold keys the improved variant overrides, the ablation
#: target (evaluate.ablation_layer_sets) and the generalisation targets (evaluate.transfer_from;
#: tests/test_generalisation_targets.py), which are not part of the default target.


def schema_keys(props: dict, prefix: str = ""):
    """Every leaf key of the schema, dotted (objects with properties are walked)."""
    for k, v in props.items():
        if v.get("type") == "object" and "properties" in v:
            yield from schema_keys(v["properties"], prefix + k + ".")
        else:
            yield prefix + k


def overlay(key: str, value, extra: dict | None = None) -> dict:
    """The overlay config setting dotted ``key`` to ``value`` (and the dotted keys of ``extra``)."""
    out: dict = {}
    for k, v in {key: value, **(extra or {})}.items():
        node = out
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def key_overlay(key: str) -> dict:
    value, _, *extra = KEYS[key]
    return overlay(key, value, extra[0] if extra else None)


def _get(cfg: dict, key: str):
    for p in key.split("."):
        cfg = cfg[p]
    return cfg


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    return load_config(HERE.parents[1] / "config" / "config.yaml", TINY)


# --------------------------------------------------------------------------- the map itself
def test_every_schema_key_is_mapped():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    keys = set(schema_keys(schema["properties"]))
    mapped = set(KEYS) | set(NOT_COVERED)
    assert not keys - mapped, f"schema keys missing from tests/test_rerun_keys.py KEYS: {sorted(keys - mapped)}"
    assert not mapped - keys, f"KEYS names keys the schema does not have: {sorted(mapped - keys)}"
    assert not set(KEYS) & set(NOT_COVERED)


def test_map_names_rules_of_the_graph():
    for key, (_, roots, *_extra) in KEYS.items():
        assert set(roots.split()) <= set(DOWNSTREAM), f"{key}: unknown rule in {roots!r}"


@pytest.mark.parametrize("key", sorted(KEYS))
def test_new_value_is_valid_and_different(tiny_config, key):
    cfg = validate_config(deep_merge(tiny_config, key_overlay(key)))
    assert _get(cfg, key) != _get(tiny_config, key), f"{key}: {KEYS[key][0]!r} is tiny.yaml's value"


# --------------------------------------------------------------------------- the dry runs
@pytest.fixture(scope="module")
def finished(reference_a, tmp_path_factory):
    """A copy of the finished tiny run (dry runs only: nothing is written to results/)."""
    return clone(reference_a, tmp_path_factory.mktemp("rerun_keys") / "run")


@pytest.fixture(scope="module")
def dry_runs(finished):
    """One dry run per key (plus the unchanged config) on a copy of the finished tiny run."""
    return run_dry_runs(finished, {"<unchanged>": {}, **{k: key_overlay(k) for k in KEYS}})


@pytest.mark.slow
def test_the_finished_run_is_up_to_date(dry_runs):
    assert (dry_runs["<unchanged>"]["jobs"], dry_runs["<unchanged>"]["error"]) == ([], None)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(KEYS))
def test_changing_a_key_reruns_exactly_its_rules(dry_runs, key):
    roots = KEYS[key][1]
    res = dry_runs[key]
    assert res["error"] is None, f"{key}: the dry run failed: {res['error']}"
    observed = {rule for rule, _ in res["jobs"]}
    expected = closure(roots)
    extra, missing = sorted(observed - expected), sorted(expected - observed)
    assert not extra and not missing, (
        f"{key}: would rerun {sorted(observed) or 'nothing'}; must rerun {sorted(expected) or 'nothing'} "
        f"(extra: {extra}, missing: {missing})")


@pytest.mark.slow
def test_in_process_dry_runs_agree_with_the_command_line(finished, dry_runs, tmp_path):
    # the API-built DAG is the one `snakemake -n` builds (a key that reruns a chain)
    key = "manifold.n_parts"
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(key_overlay(key)))
    out = run_snakemake(finished, configfiles=[TINY, path], extra=["-n"]).stdout

    def norm(jobs):
        return sorted((r, sorted(w.items())) for r, w in jobs if r != "all")

    cli, api = norm(dry_run_jobs(out)), norm(dry_runs[key]["jobs"])
    assert cli == api and cli, (cli, api)
