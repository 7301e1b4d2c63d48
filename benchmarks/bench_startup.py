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

Prints one table: script, median seconds, peak RSS (MB), torch loaded before the work, and the
median of the whole probe process, from its spawn to its exit (with a job server: until the
server has relayed the child's exit); then the median over the scripts that load no torch, and
the dry run's line.

``--job-server`` starts the scripts as a local run does with its job server (config
``job_server``, :mod:`sopcorr.jobserver`): a server is started first (its own start, until it
accepts jobs, is printed), and each figure is from spawning the job's process to the script's
``run`` call in the child forked from the server (its imports preloaded there); the column
"torch loaded" is then always yes, and the peak RSS is the child's::

    python benchmarks/bench_startup.py --job-server     # about 1 min
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
    from sopcorr.jobserver import ENV_SOCKET

    env = dict(os.environ)
    env.pop(ENV_SOCKET, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


#: the probe as a file handed to the job server: a job script's first statement, then the probe
_SERVED_PROBE = "from sopcorr.jobserver import delegate\ndelegate()\n" + _PROBE


def probe_script(script: Path, env: dict, served: Path | None = None) -> dict:
    """One start of ``script`` up to its ``run(main, snakemake)`` call (through the job server
    when ``served`` is the probe's file and ``env`` names the server's socket)."""
    t0 = time.time()
    argv = [sys.executable, str(served)] if served else [sys.executable, "-c", _PROBE]
    out = subprocess.run(argv + [str(script), repr(t0)], env=env,
                         capture_output=True, text=True, timeout=300)
    wall = time.time() - t0
    if out.returncode != 0:
        raise SystemExit(f"bench_startup: {script.name} failed to start:\n{out.stderr[-2000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process": wall}


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
    ap.add_argument("--job-server", action="store_true",
                    help="start the scripts through a job server, as a local run does (module docstring)")
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
    with tempfile.TemporaryDirectory(prefix="sopcorr-bench-startup-") as tmp:
        served = None
        server = None
        if args.job_server:
            server, served = _start_server(Path(tmp), env)
        try:
            rows = _probe_all(scripts, env, args.repeats, served)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
        _dry_run(args, env, rows)
    return 0


def _start_server(tmp: Path, env: dict):
    """A job server on a socket in ``tmp``: (its process, the probe's file); sets ``env``'s
    socket variable. Prints the server's start."""
    from sopcorr.jobserver import ENV_SOCKET

    sock = tmp / "jobs.sock"
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "sopcorr.jobserver", "--socket", str(sock), "--parent",
                               str(os.getpid())], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not sock.exists():
        if server.poll() is not None or time.perf_counter() - t0 > 300:
            raise SystemExit("bench_startup: the job server did not start")
        time.sleep(0.02)
    print(f"  job server: accepting jobs {time.perf_counter() - t0:.2f} s after its start "
          "(once per run, beside the first jobs)", flush=True)
    env[ENV_SOCKET] = str(sock)
    served = tmp / "probe.py"
    served.write_text(_SERVED_PROBE)
    return server, served


def _probe_all(scripts, env, repeats, served) -> list:
    rows = []
    for script in scripts:
        runs = [probe_script(script, env, served) for _ in range(repeats)]
        if not all(r["reached"] for r in runs):
            print(f"  {script.name}: never calls sopcorr.scriptutil.run(main, snakemake)", flush=True)
        rows.append((script.stem, statistics.median(r["s"] for r in runs),
                     max(r["rss_mb"] for r in runs), runs[0]["torch"]))
        print(f"  {script.stem:22s} {rows[-1][1]:6.2f} s {rows[-1][2]:7.0f} MB  torch: "
              f"{'yes' if rows[-1][3] else 'no'}  (whole process, to its exit: "
              f"{statistics.median(r['process'] for r in runs):.2f} s)", flush=True)
    return rows


def _dry_run(args, env, rows) -> None:
    from sopcorr.jobserver import ENV_SOCKET

    env = {k: v for k, v in env.items() if k != ENV_SOCKET}
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


if __name__ == "__main__":
    sys.exit(main())
