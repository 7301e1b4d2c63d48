"""Helpers the Snakemake rules call at parse time (kept out of the rules so they are tested)."""
from __future__ import annotations

from pathlib import Path

from .data.generic import load_dataset
from .data.model import Dataset
from .errors import ConfigError, DatasetError

#: PASCAL VOC / Berkeley keypoint categories
VOC_CATEGORIES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def check_dataset(config: dict) -> Dataset | None:
    """Parse-time check of a ``dataset.kind: generic`` dataset: read and validate its
    ``dataset.json`` at the JSON level (top-level keys, categories, instance ids, fields and their
    types, boxes, pairs; not the images, which the prepare job checks). Raises the
    DatasetError the loader (:func:`sopcorr.data.generic.load_dataset`) raises, so a broken
    dataset fails ``snakemake -n`` with the same one line as the job would. Returns the parsed
    dataset (None for the other kinds, whose annotations a job generates or reads)."""
    ds = config["dataset"]
    if ds["kind"] != "generic":
        return None
    path = Path(ds["path"]) / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{path}: dataset.json not found (dataset.path: {ds['path']})")
    return load_dataset(path, check_images=False, train_fraction=float(ds["train_fraction"]))


def dataset_categories(config: dict) -> list[str]:
    """Categories the configured dataset offers (generic: after :func:`check_dataset`)."""
    ds = config["dataset"]
    if ds["kind"] == "synthetic":
        return list(ds["synthetic"]["categories"])
    if ds["kind"] == "voc_berkeley":
        return list(VOC_CATEGORIES)
    return sorted(check_dataset(config).categories)


def resolve_categories(config: dict) -> list[str]:
    """The categories to process: ``config['categories']`` (checked against the dataset) or all."""
    available = dataset_categories(config)
    wanted = config.get("categories")
    if not wanted:
        return available
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ConfigError(
            f"config error: categories: unknown category '{unknown[0]}' (the dataset has: {', '.join(available)})"
        )
    return list(wanted)


# ---- the settings each job of the data, features and manifold stages uses (its rule's params):
# exactly the keys that change its result, so Snakemake's params trigger reruns what a change
# affects and nothing else (tests/test_rerun_keys.py). Snakemake compares params by repr, and a
# dict's repr follows its key order, which follows the order the config files were merged in:
# every mapping a rule passes goes through stable() first.


def stable(value):
    """``value`` with every mapping's keys sorted (recursively): equal settings, equal repr."""
    if isinstance(value, dict):
        return {k: stable(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(stable(v) for v in value)
    return value

#: keys of the ``backbone`` section that change where and how fast features are computed, not
#: the features (the rule passes them as params Snakemake's trigger ignores)
BACKBONE_RUNTIME_KEYS = ("device", "batch_size")
#: keys of ``dataset.voc`` the VOC/Berkeley reader uses (the URLs and checksums are the download rules')
_VOC_READER_KEYS = ("voc_root", "keypoints_root", "include_truncated", "include_difficult",
                    "max_instances_per_category")


def prepare_settings(dataset: dict) -> dict:
    """What rule prepare_category passes to :func:`sopcorr.data.prepare.source_dataset`: the kind,
    the split fraction and, for voc_berkeley, the reader's keys (synthetic and generic data
    arrive as the dataset.json input)."""
    out = {"kind": dataset["kind"], "train_fraction": dataset["train_fraction"]}
    if dataset["kind"] == "voc_berkeley":
        out["voc"] = {k: dataset["voc"][k] for k in _VOC_READER_KEYS}
    return stable(out)


def backbone_settings(backbone: dict) -> dict:
    """The ``backbone`` keys that change the features (all but :data:`BACKBONE_RUNTIME_KEYS`)."""
    return stable({k: v for k, v in backbone.items() if k not in BACKBONE_RUNTIME_KEYS})


def manifold_settings(manifold: dict, variant: str) -> dict:
    """The flat settings of one variant's manifold job: the top-level keys, and for the
    ``improved`` variant the non-null ``manifold.improved`` values in their place. A ``paper``
    job does not see ``manifold.improved``; an ``improved`` job does not see the top-level keys
    improved overrides. Mirrors :meth:`sopcorr.manifold.refine.ManifoldParams.from_config`
    (kept free of its imports for parse time): ``from_config`` of the result equals that of the
    section with ``variant`` set (tested)."""
    out = {k: v for k, v in manifold.items() if k not in ("variant", "improved")}
    if variant == "improved":
        out.update({k: v for k, v in (manifold.get("improved") or {}).items() if v is not None})
    return stable(out)


#: keys of the ``siamese`` section that change where and how often state is written, not the
#: trained network (the rules pass them as params Snakemake's trigger ignores)
SIAMESE_RUNTIME_KEYS = ("device", "checkpoint_every")
_SIAMESE_TUNE_KEYS = ("keypoint_supervision", "keypoint_weight")


def siamese_settings(siamese: dict, finetune: bool, architecture: str | None = None) -> dict:
    """The ``siamese`` settings a training (``finetune=False``) or fine-tuning job of
    ``architecture`` (default: the configured one) uses: the shared keys but
    :data:`SIAMESE_RUNTIME_KEYS` and that architecture's sub-section (``siamese.paper`` or
    ``siamese.correlation``); training leaves the fine-tuning keys out, so changing them reruns
    only ``finetune_siamese``."""
    arch = architecture or siamese["architecture"]
    shared = ("freeze_encoder", "grad_clip") + (_SIAMESE_TUNE_KEYS if finetune else ())
    out = {"architecture": arch, **{k: siamese[k] for k in shared}}
    out[arch] = {k: v for k, v in siamese[arch].items() if finetune or not k.startswith("finetune_")}
    return stable(out)


#: images per category assumed for PASCAL VOC before it is downloaded (the largest single-object
#: categories of VOC 2012 trainval hold a few hundred; an upper bound for memory requests)
VOC_IMAGES_PER_CATEGORY = 1000


def images_per_category(config: dict, categories: list[str]) -> dict[str, int]:
    """How many images each category has (synthetic: the generator's count; generic: the
    dataset's; voc_berkeley: ``max_instances_per_category`` or :data:`VOC_IMAGES_PER_CATEGORY`)."""
    ds = config["dataset"]
    if ds["kind"] == "synthetic":
        return {c: int(ds["synthetic"]["images_per_category"]) for c in categories}
    if ds["kind"] == "generic":
        counts: dict[str, int] = {}
        for inst in check_dataset(config).instances:
            counts[inst.category] = counts.get(inst.category, 0) + 1
        return {c: counts.get(c, 0) for c in categories}
    cap = ds["voc"].get("max_instances_per_category")
    return {c: int(cap or VOC_IMAGES_PER_CATEGORY) for c in categories}


def siamese_memory_mb(config: dict, categories: list[str], architecture: str | None = None) -> int:
    """The ``mem_mb`` of a Siamese training job of ``architecture`` (default: the configured one),
    a formula of the config (:mod:`sopcorr.features.memory`; no network is built):

    * paper: the encoder's share at ``siamese.paper.input_size`` for both images of a batch
      (trained end to end unless ``freeze_encoder``) plus 2 GB for the pairs, flows and network;
    * correlation with a frozen encoder: the cached grids of every image, the teacher and the head
      (:func:`~sopcorr.features.memory.correlation_training_mb`), no backbone;
    * correlation end to end: that plus the backbone trained at the features' input size."""
    from .features.memory import correlation_training_mb, grid_shape, job_memory_mb

    s, bb = config["siamese"], config["backbone"]
    arch = architecture or s["architecture"]
    train_encoder = not s["freeze_encoder"]
    if arch == "paper":
        p = s["paper"]
        return 2000 + job_memory_mb(bb["name"], p["input_size"], 2 * p["batch_size"], training=train_encoder)
    c = s["correlation"]
    counts = images_per_category(config, categories)
    pairs = sum(min(int(config["flow"]["pairs_per_category"]), n * (n - 1)) for n in counts.values())
    side, channels = grid_shape(bb["name"], bb["input_size"], bb["layers"])
    mb = correlation_training_mb(side, channels, sum(counts.values()), pairs, c["batch_size"], c["cells_per_pair"],
                                 c["hidden_channels"], c["descriptor_dim"])
    if train_encoder:
        mb += job_memory_mb(bb["name"], bb["input_size"], 2 * c["batch_size"], bb["layers"], training=True)
    return mb


def check_transfer_source(config: dict, results_root: str | Path = "results") -> None:
    """Parse-time check of ``evaluate.transfer_from`` (the run whose network
    ``tables/transfer_from_<source>.csv`` evaluates): when the source run's feature stores exist,
    its backbone (their ``backbone`` attribute, which its network was trained with) must be this
    run's ``backbone.name``: a network runs only on the backbone it was trained with. ConfigError
    naming the key otherwise. Reads the stores' ``zarr.json`` only (no zarr, no torch); a source
    run that does not exist yet is left to the job (the checkpoint's own check)."""
    import json

    source = (config.get("evaluate") or {}).get("transfer_from")
    if not source:
        return
    want = config["backbone"]["name"]
    for meta in sorted((Path(results_root) / str(source) / "features").glob("*.zarr/zarr.json")):
        try:
            got = json.loads(meta.read_text()).get("attributes", {}).get("backbone")
        except (OSError, ValueError):
            continue
        if got and got != want:
            raise ConfigError(f"config error: evaluate.transfer_from: run '{source}' was trained on backbone "
                              f"'{got}' ({meta.parent}), this run uses backbone.name: {want}; a network "
                              f"runs only on the backbone it was trained with")
        return


def report_is_zip(argv) -> bool:
    """True when a Snakemake command line ``argv`` asks for a .zip report (``--report X.zip`` or
    ``--report=X.zip``). Snakemake's single-file report.html refuses a directory registered with
    an HTML index (WorkflowError); a .zip report stores it beside report.html, so the viewer is
    registered in the report only then (workflow/rules/viewer.smk)."""
    argv = [str(a) for a in argv]
    for k, a in enumerate(argv):
        if a == "--report" and k + 1 < len(argv):
            return argv[k + 1].lower().endswith(".zip")
        if a.startswith("--report="):
            return a.split("=", 1)[1].lower().endswith(".zip")
    return False
