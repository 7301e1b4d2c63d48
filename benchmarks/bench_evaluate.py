"""Profile one category's evaluation job (rule ``evaluate``) by protocol and by method.

Runs ``sopcorr.evaluate.protocols.evaluate_category`` on one category of a finished run as the
job does: the rule's inputs and params come from a dry run of this checkout's Snakefile with the
run's config, in a shadow workdir whose entries link to the run's (Snakemake writes its own
state into a workdir even for a dry run; nothing is written into the run, and outputs go to a
temporary folder). It prints, per protocol and per method: seconds, correspondence requests,
seconds per query (keypoints: K neighbour -> query correspondences each) or per pair (pairs,
dense) or per match (figures); the SVM baselines' seconds per descriptor; and the repeated
computations of the job: an image described twice by one checkpoint's network, an encoder pass
of an image repeated for another checkpoint with the same encoder weights, a (matcher, source,
target) correspondence computed more than once (across protocols, or inside another method such
as the pseudo ground truth's forward-backward check).

    python benchmarks/bench_evaluate.py --run results/default --category bird      # about 30 s
    python benchmarks/bench_evaluate.py --run results/default --tsv per_method.tsv

``--run`` is a finished run's ``results/<run>`` folder (its workdir is two levels up; the
config: ``--configfile``, default ``<workdir>/config/config.yaml``; a config path that climbs
above the workdir does not resolve in the shadow workdir). ``--category``: default the run's
first in alphabetical order. Seconds are wall clock on one torch thread, as the job runs
(``threads: 1``); a busy machine inflates them. The first request of a method on an image
includes that image's descriptors (features, dense SIFT, the network's encoding).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import sys
import tempfile
import time
import types
from pathlib import Path

from _cli import require_paths

PROTOCOLS = ("keypoints", "classify", "pairs", "dense", "figures")


def job_namespace(workdir: Path, configfiles: list[Path], category: str | None, snakefile: Path, outdir: Path):
    """The ``snakemake`` object the evaluate job of ``category`` gets (its rule's input, params,
    wildcards, threads; outputs redirected under ``outdir``), from a dry run of ``snakefile`` in
    ``workdir``. Returns (namespace, category, the run's categories)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, ResourceSettings,
                                          StorageSettings)

    # Snakemake writes its own state (.snakemake/: log, locks, iocache) into the workdir, even for
    # a dry run: it runs in a shadow workdir whose entries link to the run's, so nothing is
    # written into the run (paths that climb above the workdir do not resolve there)
    shadow = outdir / "workdir"
    shadow.mkdir()
    for entry in workdir.iterdir():
        if entry.name != ".snakemake":
            (shadow / entry.name).symlink_to(entry)
    cwd = os.getcwd()
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null), \
                SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                              config_settings=ConfigSettings(configfiles=[Path(c).resolve() for c in configfiles]),
                              storage_settings=StorageSettings(), snakefile=snakefile, workdir=shadow)
            dag_api = wf.dag(DAGSettings(forcerun=["evaluate"]))
            dag_api.execute_workflow(executor="dryrun")
            jobs = {j.wildcards_dict.get("category"): j for j in wf._workflow.dag.needrun_jobs(exclude_finished=False)
                    if j.rule.name == "evaluate"}
    finally:
        os.chdir(cwd)
    if not jobs:
        raise SystemExit("bench_evaluate: the run's workflow has no evaluate job")
    cats = sorted(jobs)
    category = category or cats[0]
    if category not in jobs:
        return None, category, cats
    job = jobs[category]
    out = types.SimpleNamespace(**{k: str(outdir / Path(str(job.output[i])).name)
                                   for k, i in ((k, v[0] if isinstance(v, tuple) else v)
                                                for k, v in job.output._names.items())})
    inp = job.input
    inputs = {k: str(workdir / str(inp[i[0] if isinstance(i, tuple) else i])) for k, i in inp._names.items()}

    class Named(types.SimpleNamespace):
        def keys(self):
            return list(vars(self))

    params = types.SimpleNamespace(**{k: job.params[i[0] if isinstance(i, tuple) else i]
                                      for k, i in job.params._names.items()})
    if callable(getattr(params, "devices", None)):  # a params function of resources: the config's devices
        params.devices = {"flow": "auto", "siamese": "auto", "backbone": "auto"}
    smk = types.SimpleNamespace(input=Named(**inputs), output=out, params=params, wildcards=job.wildcards,
                                threads=1, log=[str(outdir / "evaluate.log")])
    return smk, category, cats


class Recorder:
    """Counts and times what the job computes, by protocol (module docstring)."""

    def __init__(self):
        self.protocol = "setup"
        self.proto_seconds = collections.Counter()
        self.requests = collections.Counter()          # (protocol, method) -> correspondence requests
        self.request_seconds = collections.Counter()   # (protocol, method) -> seconds in them
        self.request_keys = collections.defaultdict(list)  # (base, src, tgt, frames) -> [protocol, ...]
        self.computations = collections.defaultdict(list)  # (matcher key, src frame, tgt frame) -> [(protocol, s)]
        self.encodings = collections.defaultdict(list)     # (checkpoint, image hash) -> [(protocol, s)]
        self.encoder_passes = collections.defaultdict(list)  # (encoder weights hash, input hash) -> [checkpoint]
        self.svm = collections.defaultdict(lambda: [0.0, 0.0])  # descriptor -> [describe s, svm s]
        self.units = {}                                 # protocol -> (queries or pairs, unit)


def _hash_array(a) -> str:
    import numpy as np

    a = np.ascontiguousarray(a)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()[:16]


def instrument(rec: Recorder):
    """Patch the library so that ``rec`` sees every protocol, request, computation and encoding."""
    import torch

    from sopcorr.evaluate import classify, dense, keypoints, pairs
    from sopcorr.matchers import methods
    from sopcorr.matchers.correlation_network import CorrelationNetworkMatcher
    from sopcorr.matchers.geometric import GeometricMatcher
    from sopcorr.matchers.network_geometric import NetworkGeometricMatcher
    from sopcorr.matchers.nn import NearestNeighbourMatcher
    from sopcorr.matchers.paper_network import PaperNetworkMatcher
    from sopcorr.matchers.siftflow import SiftFlowMatcher
    from sopcorr.siamese.correlation.net import CorrelationNet
    from sopcorr.viz import correspondence as vizc
    from sopcorr.viz import keypoints as vizk

    def protocol(mod, fname, name):
        orig = getattr(mod, fname)

        def wrapped(*a, **kw):
            prev, rec.protocol = rec.protocol, name
            t = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                rec.proto_seconds[name] += time.perf_counter() - t
                rec.protocol = prev
        setattr(mod, fname, wrapped)

    protocol(keypoints, "run_keypoint_evaluation", "keypoints")
    protocol(classify, "run_svm_baselines", "classify")
    protocol(pairs, "run_pair_evaluation", "pairs")
    protocol(dense, "run_dense_evaluation", "dense")
    protocol(vizc, "correspondence_figure", "figures")
    protocol(vizk, "keypoint_figure", "figures")

    orig_corr = methods.Method.correspondence

    def method_corr(self, src, tgt):
        t = time.perf_counter()
        try:
            return orig_corr(self, src, tgt)
        finally:
            key = (rec.protocol, self.name)
            rec.requests[key] += 1
            rec.request_seconds[key] += time.perf_counter() - t
            rec.request_keys[(self.base, int(src), int(tgt), id(self.frames))].append(rec.protocol)
    methods.Method.correspondence = method_corr

    def matcher_key(m):
        path = getattr(m, "path", None) or getattr(getattr(m, "network", None), "path", None)
        return (type(m).__name__, repr(getattr(m, "params", None)), str(path))

    for cls in (GeometricMatcher, SiftFlowMatcher, NearestNeighbourMatcher, CorrelationNetworkMatcher,
                NetworkGeometricMatcher, PaperNetworkMatcher):
        def make(orig):
            def corr(self, src, tgt):
                t = time.perf_counter()
                try:
                    return orig(self, src, tgt)
                finally:
                    rec.computations[(matcher_key(self), id(src), id(tgt))].append(
                        (rec.protocol, time.perf_counter() - t))
            return corr
        if "correspondence" in cls.__dict__:
            cls.correspondence = make(cls.__dict__["correspondence"])

    for cls in (CorrelationNetworkMatcher, PaperNetworkMatcher):
        def make_desc(orig):
            def image_descriptors(self, img):
                t = time.perf_counter()
                try:
                    return orig(self, img)
                finally:
                    rec.encodings[(Path(str(self.path)).name, _hash_array(img))].append(
                        (rec.protocol, time.perf_counter() - t))
            return image_descriptors
        cls.image_descriptors = make_desc(cls.__dict__["image_descriptors"])

    orig_peers = getattr(CorrelationNetworkMatcher, "describe_with_peers", None)  # absent before issue 25

    def describe_with_peers(self, frame):
        todo = [m for m in (self, *self.encoder_peers) if m.descriptor_key() not in frame.cache]
        t = time.perf_counter()
        try:
            return orig_peers(self, frame)
        finally:
            s = (time.perf_counter() - t) / max(1, len(todo))
            h = _hash_array(frame.image)
            for m in todo:  # one encoder pass, each network's descriptors of the image
                rec.encodings[(Path(str(m.path)).name, h)].append((rec.protocol, s))
    if orig_peers is not None:
        CorrelationNetworkMatcher.describe_with_peers = describe_with_peers

    weights = {}

    def encoder_hash(module):
        if id(module) not in weights:
            h = hashlib.sha1()
            for k, v in sorted(module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
            weights[id(module)] = (h.hexdigest()[:12], module)
        return weights[id(module)][0]

    orig_encode = CorrelationNet.encode

    def encode(self, images):
        t = time.perf_counter()
        out = orig_encode(self, images)
        rec.encoder_passes[(encoder_hash(self.encoder), _hash_array(images.cpu().numpy()))].append(
            (rec.protocol, time.perf_counter() - t))
        return out
    CorrelationNet.encode = encode

    orig_fns = classify.descriptor_functions

    def descriptor_functions(*a, **kw):
        fns = orig_fns(*a, **kw)

        def timed(name, f):
            def g(i, pts):
                t = time.perf_counter()
                try:
                    return f(i, pts)
                finally:
                    rec.svm[name][0] += time.perf_counter() - t
                    rec._svm_current = name
            return g
        return {n: timed(n, f) for n, f in fns.items()}
    classify.descriptor_functions = descriptor_functions
    orig_svm = classify.svm_accuracy

    def svm_accuracy(*a, **kw):
        t = time.perf_counter()
        try:
            return orig_svm(*a, **kw)
        finally:
            rec.svm[getattr(rec, "_svm_current", "?")][1] += time.perf_counter() - t
    classify.svm_accuracy = svm_accuracy
    _ = torch


def report(rec: Recorder, total: float, names: list[str], ev, tsv: str | None) -> None:
    rows = []
    print(f"\n{'protocol':<10} {'method':<24} {'seconds':>8} {'requests':>8} {'s/unit':>8}  unit")
    units = {"keypoints": "query", "pairs": "pair", "dense": "pair", "figures": "match"}
    n_units = {"keypoints": ev.keypoints_queries, "pairs": ev.n_pairs, "dense": ev.n_dense_pairs,
               "figures": None}
    for proto in ("keypoints", "pairs", "dense", "figures"):
        groups = collections.OrderedDict()
        for (p, m), n in rec.requests.items():
            if p == proto:
                groups[m] = n
        for m in names:
            if m not in groups:
                continue
            n = groups[m]
            s = rec.request_seconds[(proto, m)]
            per = n_units[proto] if proto != "figures" else n
            unit_s = s / per if per else float("nan")
            rows.append((proto, m, s, n, unit_s, units[proto]))
            print(f"{proto:<10} {m:<24} {s:8.2f} {n:8d} {unit_s:8.4f}  {units[proto]}")
        other = rec.proto_seconds[proto] - sum(rec.request_seconds[(proto, m)] for m in groups)
        print(f"{proto:<10} {'(protocol, rest)':<24} {other:8.2f}")
        print(f"{proto:<10} {'= total':<24} {rec.proto_seconds[proto]:8.2f}")
    for d, (desc_s, svm_s) in rec.svm.items():
        rows.append(("classify", d, desc_s + svm_s, 0, float("nan"), "descriptor"))
        print(f"{'classify':<10} {d + '_svm':<24} {desc_s + svm_s:8.2f}   (describe {desc_s:.2f} s, svm {svm_s:.2f} s)")
    print(f"{'classify':<10} {'= total':<24} {rec.proto_seconds['classify']:8.2f}")
    accounted = sum(rec.proto_seconds.values())
    print(f"{'job':<10} {'(setup: stores, matchers)':<24} {total - accounted:8.2f}")
    print(f"{'job':<10} {'= evaluate_category':<24} {total:8.2f}")

    print("\nnetwork descriptors of an image (image_descriptors, or one shared encoder pass) by checkpoint:")
    by_ck = collections.defaultdict(lambda: [0, 0, 0.0, 0.0])
    for (ck, _), calls in rec.encodings.items():
        by_ck[ck][0] += len(calls)
        by_ck[ck][1] += len(calls) - 1
        by_ck[ck][2] += sum(s for _, s in calls)
        by_ck[ck][3] += sum(s for _, s in calls[1:])
    for ck, (n, rep, s, rep_s) in sorted(by_ck.items()):
        print(f"  {ck:<16} {n:4d} encodings, {s:6.2f} s; the same image again: {rep} ({rep_s:.2f} s)")
    passes = sum(len(v) for v in rec.encoder_passes.values())
    rep_passes = [c for v in rec.encoder_passes.values() for c in v[1:]]
    print(f"  encoder passes: {passes}; the same input through identical encoder weights again: "
          f"{len(rep_passes)} ({sum(s for _, s in rep_passes):.2f} s; by protocol "
          f"{dict(collections.Counter(p for p, _ in rep_passes))})")

    print("\nrepeated correspondence computations (same matcher and settings, same source and target frames):")
    rep = collections.defaultdict(lambda: [0, 0.0])
    for (mkey, _, _), calls in rec.computations.items():
        for proto, s in calls[1:]:
            rep[(mkey[0], calls[0][0], proto)][0] += 1
            rep[(mkey[0], calls[0][0], proto)][1] += s
    if not rep:
        print("  none")
    for (cls, first, again), (n, s) in sorted(rep.items()):
        print(f"  {cls:<26} first in {first:<9} again in {again:<9} {n:4d} times, {s:6.2f} s")
    req_rep = collections.Counter()
    for key, protos in rec.request_keys.items():
        for p in protos[1:]:
            req_rep[(protos[0], p)] += 1
    print("repeated (method, source, target) requests, by (first protocol, later protocol): "
          + (", ".join(f"{a}->{b}: {n}" for (a, b), n in sorted(req_rep.items())) or "none"))
    if tsv:
        with open(tsv, "w") as fh:
            fh.write("protocol\tmethod\tseconds\trequests\tseconds_per_unit\tunit\n")
            for r in rows:
                fh.write("\t".join(str(round(v, 5)) if isinstance(v, float) else str(v) for v in r) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, metavar="DIR", help="a finished run's results/<run> folder")
    ap.add_argument("--category", default=None, help="the category (default: the run's first)")
    ap.add_argument("--configfile", action="append", default=None, metavar="FILE",
                    help="the run's config file(s) (default: <workdir>/config/config.yaml)")
    ap.add_argument("--tsv", default=None, metavar="FILE", help="also write the per-method table here")
    args = ap.parse_args()
    if args.run is None:
        ap.error("needs a finished run: pass its results/<run> folder, e.g. --run results/default")
    run = Path(args.run).resolve()
    require_paths(ap, [run / "eval", run / "features"], "a finished run (--run results/<run>)")
    workdir = run.parent.parent
    configs = [Path(c) for c in args.configfile] if args.configfile else [workdir / "config" / "config.yaml"]
    require_paths(ap, configs, "the run's config (--configfile)")
    snakefile = Path(__file__).resolve().parents[1] / "Snakefile"

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        smk, category, cats = job_namespace(workdir, configs, args.category, snakefile, Path(tmp))
        if smk is None:
            ap.error(f"--category {category}: not a category of the run ({', '.join(cats)})")
        if not (run / "eval" / category).is_dir():
            ap.error(f"needs a finished run: {run / 'eval' / category} not found")
        parse = time.perf_counter() - t0

        import torch

        from sopcorr.evaluate.category import EvalCategory
        from sopcorr.evaluate.protocols import CategoryEvaluation, CategoryOutputs, evaluate_category
        from sopcorr.matchers.methods import MatcherSettings
        from sopcorr.scriptutil import evaluation_inputs

        torch.set_num_threads(1)
        rec = Recorder()
        instrument(rec)
        p = smk.params
        t1 = time.perf_counter()
        frames, checkpoints = evaluation_inputs(smk)
        outputs = CategoryOutputs.from_rule_outputs(smk.output)
        evaluation = CategoryEvaluation.from_params(p.protocols, p.seed, p.devices["backbone"])
        settings = MatcherSettings.from_params(p.matchers, p.devices)
        cat = EvalCategory.from_frames(frames["raw"])
        n_train = len(cat.split_indices("train"))
        kpq = (min(evaluation.keypoints.threshold_queries or n_train, n_train) + len(cat.split_indices("test")))
        ev = types.SimpleNamespace(
            keypoints_queries=kpq,
            n_pairs=len(cat.pairs(evaluation.pairs.max_pairs, evaluation.seed)) if evaluation.pairs else 0,
            n_dense_pairs=len(cat.pairs(evaluation.dense.max_pairs, evaluation.seed)) if evaluation.dense else 0)
        evaluate_category(frames, checkpoints, settings, evaluation, outputs, progress=False)
        total = time.perf_counter() - t1
        import resource

        print(f"bench_evaluate: {run.name}/{category} ({len(cat.instances)} images; keypoint queries per method "
              f"{kpq}, pairs {ev.n_pairs}, dense pairs {ev.n_dense_pairs}); workflow parse {parse:.1f} s; "
              f"evaluate_category {total:.1f} s on 1 torch thread; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average "
              f"{os.getloadavg()[0]:.1f}")
        report(rec, total, evaluation.method_names(), ev, args.tsv)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
