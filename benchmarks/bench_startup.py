"""Fixed cost of every job and of every ``snakemake`` call (issue 19): the time and peak memory
from process start to the first line of a job's own work, for every ``workflow/scripts/*.py``,
and of ``snakemake -n`` on the default config.

A job's start is measured as Snakemake runs it: a fresh Python process that imports
``snakemake.script`` (the preamble Snakemake prepends unpickles a ``snakemake.script.Snakemake``
object), then executes the script, whose imports run and which then calls
``sopcorr.scriptutil.run(main, snakemake)``. The probe replaces ``run`` by a stop watch: the
figure is the wall time from just before the process was spawned to that call, and the
process's peak RSS at that moment, with whether torch was loaded by then. The job's own work
(``main``, and any import it does lazily inside it) is not counted. Each figure is the median of
``--repeats`` starts.

``snakemake -n --cores 2 --configfile config/config.yaml`` runs in a throw-away copy of the
workflow (a fresh run: every job is listed), or in ``--workdir DIR`` (e.g. a finished run, where
Snakemake says "Nothing to be done"); its wall time and peak RSS are the median over the repeats.

    python benchmarks/bench_startup.py                  # about 1 min on an idle 2-core machine
    python benchmarks/bench_startup.py --repeats 5 --workdir .

Prints one table: script, median seconds, peak RSS (MB), torch loaded before the work; then the
median over the scripts that load no torch, and the dry run's line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import positive_int

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles", "envs")

#: runs in the probed process: Snakemake's preamble imports, then the script up to run(main, ...)
_PROBE = r"""
import json, resource, sys, time, runpy
import snakemake.script  # what the preamble's pickle.loads of the Snakemake object imports
import sopcorr.scriptutil as su

class _Started(BaseException):
    pass

def _stop(main, smk):
    raise _Started

su.run = _stop
t0 = float(sys.argv[2])
try:
    runpy.run_path(sys.argv[1], init_globals={"snakemake": object()}, run_name="__main__")
    reached = False
except _Started:
    reached = True
print(json.dumps({"s": time.time() - t0, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": "torch" in sys.modules, "reached": reached}))
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def probe_script(script: Path, env: dict) -> dict:
    """One start of ``script`` up to its ``run(main, snakemake)`` call."""
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", _PROBE, str(script), repr(t0)], env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"bench_startup: {script.name} failed to start:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_process(argv: list[str], cwd: Path, env: dict) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit status) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode


def workflow_copy(dest: Path) -> Path:
    """A runnable copy of the workflow in ``dest`` (the library is linked)."""
    for item in WORKFLOW_ITEMS:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / item)
    (dest / "src").symlink_to(REPO / "src")
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=positive_int, default=3, help="starts per figure (median; default 3)")
    ap.add_argument("--workdir", help="run `snakemake -n` here (a finished run) instead of a fresh copy")
    ap.add_argument("--scripts", nargs="*", help="only these script names (default: all)")
    args = ap.parse_args(argv)
    if args.workdir and not (Path(args.workdir) / "Snakefile").is_file():
        ap.error(f"--workdir {args.workdir}: no Snakefile there")
    scripts = sorted(SCRIPTS.glob("*.py"))
    if args.scripts:
        unknown = sorted(set(args.scripts) - {p.name for p in scripts} - {p.stem for p in scripts})
        if unknown:
            ap.error(f"--scripts: unknown script {unknown[0]} (in workflow/scripts/)")
        scripts = [p for p in scripts if p.name in args.scripts or p.stem in args.scripts]
    env = _env()
    print(f"bench_startup: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}, "
          f"{args.repeats} starts per figure (median)", flush=True)
    rows = []
    for script in scripts:
        runs = [probe_script(script, env) for _ in range(args.repeats)]
        if not all(r["reached"] for r in runs):
            print(f"  {script.name}: never calls sopcorr.scriptutil.run(main, snakemake)", flush=True)
        rows.append((script.stem, statistics.median(r["s"] for r in runs),
                     max(r["rss_mb"] for r in runs), runs[0]["torch"]))
        print(f"  {script.stem:22s} {rows[-1][1]:6.2f} s {rows[-1][2]:7.0f} MB  torch: "
              f"{'yes' if rows[-1][3] else 'no'}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sopcorr-bench-startup-") as tmp:
        wd = Path(args.workdir).resolve() if args.workdir else workflow_copy(Path(tmp))
        dry = [timed_process([sys.executable, "-m", "snakemake", "-n", "--cores", "2",
                              "--configfile", "config/config.yaml"], wd, env) for _ in range(args.repeats)]
    if any(code != 0 for *_, code in dry):
        raise SystemExit(f"bench_startup: snakemake -n failed in {wd}")

    print("\n| job script | start (s) | peak RSS (MB) | torch loaded |")
    print("|---|--:|--:|---|")
    for name, s, rss, torch in rows:
        print(f"| `{name}` | {s:.2f} | {rss:.0f} | {'yes' if torch else 'no'} |")
    light = [s for _, s, _, torch in rows if not torch]
    if light:
        print(f"\nmedian start of the {len(light)} scripts that load no torch: {statistics.median(light):.2f} s")
    heavy = [s for _, s, _, torch in rows if torch]
    if heavy:
        print(f"median start of the {len(heavy)} scripts that load torch: {statistics.median(heavy):.2f} s")
    where = args.workdir or "a fresh copy of the workflow"
    print(f"snakemake -n --cores 2 --configfile config/config.yaml ({where}): "
          f"{statistics.median(d[0] for d in dry):.2f} s, peak RSS {max(d[1] for d in dry):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
