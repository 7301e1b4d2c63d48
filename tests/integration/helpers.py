"""Run the workflow the way a user does, on tiny configs, in a throw-away copy.

``copy_workflow(dest)`` copies the Snakefile, workflow/, config/ and profiles/ into ``dest`` (the
library is imported from the installed package, ``src/`` is linked), ``run_snakemake(workdir,
...)`` runs ``python -m snakemake`` there with one thread per library, and the helpers below
read the tables and parse dry-run job lists; :func:`write_generic_dataset` writes a small
dataset in the generic format. The finished runs the tests share are in
:mod:`integration.references` (fixtures ``reference_a``, ``reference_b`` in tests/conftest.py).
The one home of these helpers: every test and tests/slurm/run.sh use them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny.yaml"
#: run name of tiny.yaml
TINY_RUN = "tiny"
#: what a run needs besides the library
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles", "envs")
#: stop after the tables (skips figure-only jobs) for runs that only compare tables
TABLES_ONLY = ("--until", "eval_table")
#: snakemake time limit per call (seconds); generous: CI has 2 cores
TIMEOUT = int(os.environ.get("SOPCORR_IT_TIMEOUT", "900"))


def copy_workflow(dest: Path) -> Path:
    """A runnable copy of the workflow in ``dest`` (created); returns ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / item)
    if not (dest / "src").exists():
        (dest / "src").symlink_to(REPO / "src")
    return dest


def env(extra: dict | None = None) -> dict:
    """Environment of a test run: one thread per numeric library, offline torch cache."""
    e = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        e[var] = "1"
    e.setdefault("PYTHONHASHSEED", "0")
    e.setdefault("SOPCORR_TEST", "1")
    if extra:
        e.update(extra)
    return e


def snakemake_argv(targets=(), configfiles=(), cores: int = 1, extra=()) -> list[str]:
    """Targets first: --configfile (like -R, --until) swallows the words after it."""
    argv = [sys.executable, "-m", "snakemake", *map(str, targets), "--cores", str(cores)]
    if configfiles:
        argv += ["--configfile", *map(str, configfiles)]
    argv += list(map(str, extra))
    return argv


def run_snakemake(workdir: Path, targets=(), configfiles=(TINY,), cores: int = 1, extra=(),
                  check: bool = True, env_extra: dict | None = None,
                  timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; stdout and stderr together in ``.stdout``. With ``check``,
    a non-zero exit fails the test with the tail of the output."""
    argv = snakemake_argv(targets, configfiles, cores, extra)
    proc = subprocess.run(argv, cwd=workdir, env=env(env_extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed (exit {proc.returncode}) in {workdir}: {' '.join(argv[1:])}\n"
            + tail(proc.stdout, 60))
    return proc


def dry_runs(workdir: Path, cases: dict[str, dict], configfiles=(TINY,)) -> dict[str, dict]:
    """Many dry runs of ``workdir`` in one process (tests/integration/dryrun_many.py: a Python
    start and the imports once, then one parse and DAG per case). ``cases``: {name: overlay
    mapping on top of ``configfiles``}. Returns {name: {"jobs", "error", "exit", "output"}}."""
    workdir = Path(workdir)
    spec = {"configfiles": [str(p) for p in configfiles], "cases": cases}
    (workdir / "dry_cases.json").write_text(json.dumps(spec))
    out = workdir / "dry_results.json"
    proc = subprocess.run([sys.executable, str(HERE / "dryrun_many.py"), str(workdir),
                           str(workdir / "dry_cases.json"), str(out)], cwd=workdir, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"dryrun_many failed (exit {proc.returncode}):\n{tail(proc.stdout, 60)}")
    return json.loads(out.read_text())


def tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


def start_snakemake(workdir: Path, logfile: Path, targets=(), configfiles=(TINY,), cores: int = 1,
                    extra=()) -> subprocess.Popen:
    """Start snakemake in its own process group (so the whole tree can be killed)."""
    argv = snakemake_argv(targets, configfiles, cores, extra)
    fh = open(logfile, "w")
    return subprocess.Popen(argv, cwd=workdir, env=env(), stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)


def log_matches(logfile: Path, pattern: str):
    """A predicate for :func:`kill_when`: a line of ``logfile`` matches ``pattern``."""
    rx = re.compile(pattern, re.M)
    return lambda: rx.search(Path(logfile).read_text(errors="replace")) is not None


def kill_when(proc: subprocess.Popen, predicate, delay: float = 0.0, timeout: float = TIMEOUT,
              poll: float = 0.05) -> bool:
    """SIGKILL the process group of ``proc`` ``delay`` seconds after ``predicate()`` first holds.
    Returns False when the run ended before that."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if predicate():
            if delay:
                time.sleep(delay)
            if proc.poll() is not None:
                return False
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise AssertionError(f"the kill condition did not hold within {timeout} s")


def clone(workdir: Path, dest: Path) -> Path:
    """Copy a run directory with its .snakemake metadata and file times."""
    shutil.copytree(workdir, dest, symlinks=True)
    return Path(dest)


def results(workdir: Path, run: str = TINY_RUN) -> Path:
    return Path(workdir) / "results" / run


def table_files(workdir: Path, run: str = TINY_RUN) -> dict[str, bytes]:
    """The run's final tables (results/<run>/tables/*.csv|md|tex) as name -> bytes."""
    tdir = results(workdir, run) / "tables"
    return {p.name: p.read_bytes() for p in sorted(tdir.glob("*"))
            if p.is_file() and p.suffix in (".csv", ".md", ".tex")}


def comparable_files(workdir: Path, run: str = TINY_RUN) -> dict[str, bytes]:
    """What two runs of one config must agree on byte for byte: the tables. Before the
    evaluate stage existed (a partial workflow): every CSV / JSON artifact except logs,
    benchmarks and the evaluation records (see :func:`records_mismatches`)."""
    tables = table_files(workdir, run)
    if tables:
        return {f"tables/{k}": v for k, v in tables.items()}
    base = results(workdir, run)
    out = {}
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(base)
        if rel.parts[0] in ("logs", "benchmarks", "eval") or not p.is_file():
            continue
        if p.suffix in (".csv", ".json") and not any(part.endswith(".tmp") for part in rel.parts):
            out[str(rel)] = p.read_bytes()
    return out


def records_mismatches(a_dir: Path, b_dir: Path, run: str = TINY_RUN, rtol: float = 1e-6) -> list[str]:
    """Compare the per-category evaluation records ``eval/<cat>/*.json`` of two runs (full
    precision, unlike the rounded tables): the same structure, equal strings and integers,
    floats within ``rtol``. Returns the differing paths (empty when they agree). Measured:
    two runs of tiny.yaml differ in the Siamese methods' thresholds by ~1e-8 relative while
    the network weights are bit-identical (float32 inference), hence a tolerance."""
    import math

    out: list[str] = []

    def walk(x, y, where):
        if isinstance(x, dict) and isinstance(y, dict):
            if sorted(x) != sorted(y):
                out.append(f"{where}: keys {sorted(x)} != {sorted(y)}")
                return
            for k in x:
                walk(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                out.append(f"{where}: length {len(x)} != {len(y)}")
                return
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, float) or isinstance(y, float):
            if not (isinstance(x, (int, float)) and isinstance(y, (int, float))
                    and (x == y or math.isclose(x, y, rel_tol=rtol, abs_tol=rtol))):
                out.append(f"{where}: {x!r} != {y!r}")
        elif x != y:
            out.append(f"{where}: {x!r} != {y!r}")

    base_a, base_b = results(a_dir, run) / "eval", results(b_dir, run) / "eval"
    names_a = sorted(str(p.relative_to(base_a)) for p in base_a.rglob("*.json"))
    names_b = sorted(str(p.relative_to(base_b)) for p in base_b.rglob("*.json"))
    if names_a != names_b:
        return [f"eval records: {names_a} != {names_b}"]
    for name in names_a:
        walk(json.loads((base_a / name).read_text()), json.loads((base_b / name).read_text()), name)
    return out


_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$")
_WC = re.compile(r"^\s+wildcards: (.*)$")


def dry_run_jobs(output: str) -> list[tuple[str, dict]]:
    """Jobs of a ``snakemake -n`` listing as (rule, wildcards) pairs."""
    jobs: list[tuple[str, dict]] = []
    for line in output.splitlines():
        m = _JOB.match(line)
        if m:
            jobs.append((m.group(1), {}))
            continue
        m = _WC.match(line)
        if m and jobs:
            for item in m.group(1).split(", "):
                if "=" in item:
                    k, v = item.split("=", 1)
                    jobs[-1][1][k.strip()] = v.strip()
    return jobs


def leftover_temporaries(path: Path) -> list[Path]:
    """Temporary siblings atomic_path leaves only when a process is killed mid-write."""
    return sorted(p for p in Path(path).rglob("*.tmp") if p.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# a small generic dataset (the format of docs/ARCHITECTURE.md), for the bad-input suite
# ----------------------------------------------------------------------------------------------
KEYPOINTS = ["head", "tail", "left", "right"]


def write_generic_dataset(root: Path, categories=("bird", "car"), per_category: int = 4,
                          size: int = 64, seed: int = 0) -> dict:
    """Write ``root/dataset.json`` and JPEG images (a coloured ellipse on noise, keypoints on
    its extremities). Returns the JSON object, which tests mutate and rewrite with
    :func:`write_dataset_json`."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    data = {"name": "generic-test",
            "categories": {c: {"keypoints": KEYPOINTS, "flip_pairs": [["left", "right"]]}
                           for c in categories},
            "instances": [], "pairs": []}
    for c in categories:
        ids = []
        for k in range(per_category):
            iid = f"{c}/{k:04d}"
            rel = f"images/{c}/{k:04d}.jpg"
            arr = (rng.random((size, size, 3)) * 80).astype(np.uint8)
            img = Image.fromarray(arr)
            draw = ImageDraw.Draw(img)
            x0, y0 = rng.integers(4, size // 4, size=2)
            x1, y1 = rng.integers(3 * size // 4, size - 4, size=2)
            colour = tuple(int(v) for v in rng.integers(100, 256, size=3))
            draw.ellipse([int(x0), int(y0), int(x1), int(y1)], fill=colour)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            img.save(root / rel, quality=90)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            kps = {"head": [float(x1), float(cy), 1], "tail": [float(x0), float(cy), 1],
                   "left": [float(cx), float(y0), 1], "right": [float(cx), float(y1), 0]}
            data["instances"].append({"id": iid, "image": rel, "category": c,
                                      "bbox": [float(x0), float(y0), float(x1), float(y1)],
                                      "keypoints": kps,
                                      "split": "train" if k < per_category - 1 else "test"})
            ids.append(iid)
        data["pairs"] += [[ids[0], ids[1]], [ids[1], ids[2]]]
    write_dataset_json(root, data)
    return data


def write_dataset_json(root: Path, data: dict) -> Path:
    path = Path(root) / "dataset.json"
    path.write_text(json.dumps(data, indent=1))
    return path


# the dataset defects a loader must name (the instance and field at fault), each a mutation of
# a dataset.json object as write_generic_dataset returns it; the JSON-level ones, which the
# workflow catches at parse time (tests/test_validate_before_jobs.py, tests/test_bad_input.py)
def _dup_ids(data):
    data["instances"][2]["id"] = data["instances"][1]["id"]


def _pair_unknown(data):
    data["pairs"].append(["bird/0000", "dog/0000"])


def _empty_category(data):
    data["categories"]["fish"] = {"keypoints": ["head"]}


def _bbox_inverted(data):
    x0, y0, x1, y1 = data["instances"][1]["bbox"]
    data["instances"][1]["bbox"] = [x1, y0, x0, y1]


def _visible_not_a_flag(data):
    data["instances"][0]["keypoints"]["head"][2] = "yes"


def _id_not_a_string(data):
    data["instances"][0]["id"] = 7


def _pairs_not_a_list(data):
    data["pairs"] = {"a": "b"}


def _unknown_keypoint(data):
    data["instances"][0]["keypoints"]["wing"] = [1.0, 1.0, 1]


JSON_DEFECTS = {f.__name__[1:]: f for f in (_dup_ids, _pair_unknown, _empty_category, _bbox_inverted,
                                             _visible_not_a_flag, _id_not_a_string, _pairs_not_a_list,
                                             _unknown_keypoint)}
