"""The run's job server (sopcorr.jobserver): a job handed to it runs as its own process would,
with the job's working directory, arguments, environment, streams, exit status and thread
counts, and computes the same bits; signals reach it, a dead job process takes its child with
it, and a job the server cannot take runs in its own process. The whole pipeline through the
server is compared byte for byte with fresh processes by tests/test_determinism.py (the
reference run ``b`` uses the server, ``a`` does not)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integration.helpers import env as job_env

from sopcorr.jobserver import ENV_SOCKET

_HEADER = "from sopcorr.jobserver import delegate\ndelegate()\n"

#: a job that reports where and how it ran
_REPORT = _HEADER + """import json, os, sys
print(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:], "x": os.environ.get("X"),
                  "ppid": os.getppid(), "pid": os.getpid()}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("CODE", "0")))
"""

#: numbers whose bits depend on the thread counts the job's environment asks for
_NUMBERS = _HEADER + """import hashlib, json, os
import numpy as np
import torch
from threadpoolctl import threadpool_info
rng = np.random.default_rng(0)
a = rng.standard_normal((700, 300)).astype(np.float32)
b = rng.standard_normal((300, 500)).astype(np.float32)
x = torch.from_numpy(rng.standard_normal((2, 64, 40, 40)).astype(np.float32))
w = torch.from_numpy(rng.standard_normal((96, 64, 3, 3)).astype(np.float32))
y = torch.nn.functional.conv2d(x, w, padding=1)
h = hashlib.sha256((a @ b).tobytes() + y.numpy().tobytes() + (x.flatten(1) @ x.flatten(1).T).numpy().tobytes())
print(json.dumps({"torch": torch.get_num_threads(), "digest": h.hexdigest(),
                  "blas": sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}),
                  "ppid": os.getppid()}))
"""

_SLEEP = _HEADER + """import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(120)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A job server (its pid, socket path), started as the Snakefile's onstart starts one."""
    d = tmp_path_factory.mktemp("jobserver")
    sock = d / "jobs.sock"
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "sopcorr.jobserver", "--socket", str(sock), "--parent",
                             str(os.getpid())], env=job_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    t0 = time.monotonic()
    while not sock.exists():
        assert proc.poll() is None, (d / "server.log").read_text()
        assert time.monotonic() - t0 < 180, "the job server did not come up in 180 s"
        time.sleep(0.1)
    yield proc.pid, str(sock)
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _script(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _run(script: Path, sock: str | None, cwd: Path, args=(), timeout=120, **extra) -> subprocess.CompletedProcess:
    e = job_env(extra)
    if sock:
        e[ENV_SOCKET] = sock
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)


def test_a_job_runs_in_the_server_as_its_own_process_would(server, tmp_path):
    pid, sock = server
    script = _script(tmp_path, "job_report.py", _REPORT)
    work = tmp_path / "work"
    work.mkdir()
    proc = _run(script, sock, work, args=["a", "b c"], X="42", CODE="3")
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ppid"] == pid                     # forked from the server
    assert (out["cwd"], out["argv"], out["x"]) == (str(work), ["a", "b c"], "42")
    assert "to stderr" in proc.stderr
    alone = _run(script, None, work, args=["a", "b c"], X="42", CODE="3")
    assert alone.returncode == 3
    mine = json.loads(alone.stdout.strip().splitlines()[-1])
    assert mine["ppid"] != pid and mine["pid"] != out["pid"]
    assert (mine["cwd"], mine["argv"], mine["x"]) == (out["cwd"], out["argv"], out["x"])


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_and_bits_are_a_fresh_processs(server, tmp_path, threads):
    pid, sock = server
    script = _script(tmp_path, "job_numbers.py", _NUMBERS)
    n = str(threads)
    got = _run(script, sock, tmp_path, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    ref = _run(script, None, tmp_path, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    assert got.returncode == 0 and ref.returncode == 0, got.stderr + ref.stderr
    g, r = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (got, ref))
    assert g["ppid"] == pid and r["ppid"] != pid
    assert g["torch"] == r["torch"] == threads
    assert g["blas"] == r["blas"] == [threads]
    assert g["digest"] == r["digest"]


def test_an_exception_exits_1_with_its_traceback(server, tmp_path):
    _, sock = server
    script = _script(tmp_path, "job_fail.py", _HEADER + "raise RuntimeError('broken on purpose')\n")
    proc = _run(script, sock, tmp_path)
    assert proc.returncode == 1
    assert "RuntimeError: broken on purpose" in proc.stderr and "Traceback" in proc.stderr


def _wait_for(path: Path, timeout=60) -> int:
    t0 = time.monotonic()
    while not (path.exists() and path.read_text()):
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)
    return int(path.read_text())


def _gone(pid: int, timeout=10) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_signal_to_the_job_reaches_its_child(server, tmp_path, sig):
    """SIGTERM is forwarded (the job exits as a terminated process does); a SIGKILLed job
    process cannot forward it, and the server ends the child when the job's connection drops."""
    _, sock = server
    script = _script(tmp_path, "job_sleep.py", _SLEEP)
    pidfile = tmp_path / "child.pid"
    e = job_env()
    e[ENV_SOCKET] = sock
    proc = subprocess.Popen([sys.executable, str(script), str(pidfile)], cwd=tmp_path, env=e)
    child = _wait_for(pidfile)
    assert child != proc.pid
    os.kill(proc.pid, sig)
    code = proc.wait(timeout=30)
    assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    assert _gone(child), "the job's child outlived it"


def test_a_job_the_server_cannot_take_runs_in_its_own_process(server, tmp_path):
    pid, sock = server
    script = _script(tmp_path, "job_report.py", _REPORT)
    # another hash seed than the server's: a forked child cannot take it, so the job runs here
    other = _run(script, sock, tmp_path, PYTHONHASHSEED="12345")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout.strip().splitlines()[-1])["ppid"] != pid
    # no server at that path
    missing = _run(script, str(tmp_path / "none.sock"), tmp_path)
    assert missing.returncode == 0 and json.loads(missing.stdout.strip().splitlines()[-1])["ppid"] != pid


def test_the_server_exits_with_the_run(tmp_path):
    """The server ends with the process that started it (the Snakemake run) and removes its
    socket."""
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    sock = tmp_path / "jobs.sock"
    server = subprocess.Popen([sys.executable, "-m", "sopcorr.jobserver", "--socket", str(sock), "--parent",
                               str(parent.pid)], env=job_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while not sock.exists():
            assert server.poll() is None and time.monotonic() - t0 < 180
            time.sleep(0.1)
        assert oct(sock.stat().st_mode & 0o777) == oct(0o600)   # this user's jobs only
        parent.kill()
        parent.wait()
        assert server.wait(timeout=30) == 0
        assert not sock.exists()
    finally:
        for p in (parent, server):
            if p.poll() is None:
                p.kill()


@pytest.mark.slow
def test_the_reference_run_forked_its_heavy_jobs_from_the_server(reference_b):
    """The run that tests/test_determinism.py compares with fresh processes did use the server."""
    log = Path(reference_b) / ".snakemake" / "log" / "sopcorr-job-server.log"
    assert log.exists(), "no job server log: the run started no server"
    text = log.read_text()
    assert "job server: torch" in text, "the server did not preload"
    # on a loaded machine (CI: two test processes beside the two reference runs) the preload,
    # at nice 10, can outlast the tiny run; then every job ran in its own process
    if "job server: ready in" not in text:
        pytest.skip("the server was not ready before the tiny run's jobs had started")
    forked = [line for line in text.splitlines() if " -> pid " in line]
    assert all(line.split(" -> pid ")[1].strip().isdigit() for line in forked)
