"""The benchmarks as a newcomer runs them (issue 14, Build 6): a bad flag prints the usage and
exits with status 2, never a traceback; a benchmark that needs a finished run says so and exits
2. (That each runs with no flags within two minutes on 2 cores is measured, not tested: the
figures are in the benchmarks' docstrings.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
PY_BENCHMARKS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))
# the whole-pipeline timers; gpu_check.sh only forwards its arguments to bench_siamese.py
SH_BENCHMARKS = ["bench_demo.sh", "ablation.sh"]


def _run(argv, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _py(name, *args, cwd):
    return _run([sys.executable, str(BENCH / name), *args], cwd)


def _assert_usage_exit(proc, *needles):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert "usage:" in proc.stderr, out[-2000:]
    for n in needles:
        assert n in proc.stderr, proc.stderr[-2000:]


def test_the_benchmarks_are_listed():
    assert {"bench_features.py", "bench_generator.py", "bench_manifold.py", "bench_siamese.py",
            "bench_siftflow.py", "matcher_study.py"} <= set(PY_BENCHMARKS)
    for name in SH_BENCHMARKS:
        assert (BENCH / name).is_file()


@pytest.mark.parametrize("name", PY_BENCHMARKS)
def test_python_benchmark_rejects_a_bad_flag(name, tmp_path):
    # argparse names the bad flag, or first a missing required argument (matcher_study.py)
    _assert_usage_exit(_py(name, "--no-such-flag", cwd=tmp_path), "error:")


@pytest.mark.parametrize("name", SH_BENCHMARKS)
def test_shell_benchmark_rejects_a_bad_flag_and_says_how_long_it_takes(name, tmp_path):
    proc = _run(["bash", str(BENCH / name), "--no-such-flag"], tmp_path)
    _assert_usage_exit(proc, " min")
    proc = _run(["bash", str(BENCH / name), "--cores"], tmp_path)  # a flag without its value
    _assert_usage_exit(proc)


@pytest.mark.parametrize("name, args, needle", [
    ("bench_generator.py", ["--images", "0"], "--images"),
    ("bench_generator.py", ["--categories", "unicorn"], "unicorn"),
    ("bench_manifold.py", ["--sizes", "ten"], "--sizes"),
    ("bench_manifold.py", ["--full", "--sizes", "50"], "--full"),
    ("bench_manifold.py", ["--config", "no_such.yaml"], "no_such.yaml"),
    ("backbone_study.py", ["--config", "no_such.yaml"], "no_such.yaml"),
    ("bench_siamese.py", ["--batch", "-1"], "--batch"),
    ("bench_features.py", ["throughput", "--backbone", "nope"], "nope"),
    ("bench_siftflow.py", ["sideways"], "sideways"),
])
def test_a_bad_value_is_a_usage_error(name, args, needle, tmp_path):
    _assert_usage_exit(_py(name, *args, cwd=tmp_path), needle)


def test_benchmarks_that_need_a_run_say_so(tmp_path):
    # run from an empty folder: no results/ there
    _assert_usage_exit(_py("matcher_study.py", cwd=tmp_path), "needs", "finished run")
    _assert_usage_exit(_py("matcher_study.py", "syn", cwd=tmp_path), "needs", "not found")
    _assert_usage_exit(_py("matcher_study.py", "syn", "no_such_variant", cwd=tmp_path), "no_such_variant")
    _assert_usage_exit(_py("bench_siftflow.py", "quality", "--run", "nothing", cwd=tmp_path),
                       "needs", "results/nothing/")
    _assert_usage_exit(_py("bench_evaluate.py", cwd=tmp_path), "needs a finished run", "results/default")
    _assert_usage_exit(_py("bench_evaluate.py", "--run", "nothing", cwd=tmp_path), "needs", "not found")
    _assert_usage_exit(_py("cycle_study.py", cwd=tmp_path), "needs a finished run", "results/default")
    for name in ("rounds_study.py", "cycle_training_study.py", "keypoint_breakdown.py", "point_readout_study.py",
                 "round_interpolation_study.py"):
        _assert_usage_exit(_py(name, "--run", "nothing", cwd=tmp_path), "needs a finished run", "nothing")
    _assert_usage_exit(_py("cycle_study.py", "--ks", "0", cwd=tmp_path), "--ks")


def test_bench_manifold_takes_the_loop_settings_from_config_files(tmp_path):
    """--config: the manifold section of the merged files (config/paper.yaml's paper variant:
    1000 landmarks, kernel rank 512, no re-clustering limit) runs the iteration, not the
    dataclass defaults (500, 256); a section the schema rejects is a usage error."""
    out = _py("bench_manifold.py", "--sizes", "3", "--channels", "8", "--threads", "1", "--config",
              str(REPO / "config" / "paper.yaml"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "landmarks 1000, kernel_rank 512" in out.stdout and "recluster_until None" in out.stdout, out.stdout
    assert "3 images:" in out.stdout, out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("manifold:\n  landmarks: -3\n")
    _assert_usage_exit(_py("bench_manifold.py", "--sizes", "3", "--config", str(bad), cwd=tmp_path), "landmarks")


def test_bench_siamese_without_cuda_refuses_cuda_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _assert_usage_exit(_py("bench_siamese.py", "--device", "cuda", cwd=tmp_path), "CUDA")


def _pairs_run(root, per_pair):
    """A finished run's pair records: {category: {method: per-pair PCK list}}."""
    import json

    for cat, methods in per_pair.items():
        d = root / "eval" / cat
        d.mkdir(parents=True)
        recs = [{"method": m, "alpha": 0.1, "per_pair": v, "total": 10 * len(v)} for m, v in methods.items()]
        (d / "pairs.json").write_text(json.dumps({"pairs": recs}))
    return root


def test_pair_significance_within_a_run_and_across_runs(tmp_path):
    """B - A per pair: within one run, and B from a second run of the same pairs; runs whose
    pairs differ are refused in one line."""
    a = _pairs_run(tmp_path / "a", {"c": {"nn_raw": [0.0, 0.0, 50.0, 50.0], "m": [100.0] * 4}})
    b = _pairs_run(tmp_path / "b", {"c": {"m": [50.0, 50.0, 50.0, 50.0]}})
    out = _py("pair_significance.py", "--run", str(a), "--a", "nn_raw", "--b", "m", cwd=tmp_path)
    assert out.returncode == 0 and "+75.0" in out.stdout and "B above A" in out.stdout, out.stderr
    out = _py("pair_significance.py", "--run", str(a), "--a", "m", "--b", "m", "--run-b", str(b), cwd=tmp_path)
    assert out.returncode == 0 and "-50.0" in out.stdout and "B below A" in out.stdout, out.stderr
    c = _pairs_run(tmp_path / "c", {"c": {"m": [50.0, 50.0]}})
    _assert_usage_exit(_py("pair_significance.py", "--run", str(a), "--a", "m", "--b", "m", "--run-b", str(c),
                           cwd=tmp_path), "not the same pairs")
