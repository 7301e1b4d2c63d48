"""A fork server for the workflow's heavy jobs: their third-party imports paid once per run.

Every job of the pipeline is a fresh Python process, and the heavy ones (features, manifold,
pseudo flow, training, evaluation, viewer) spend 2-5 s importing torch, scikit-learn,
matplotlib and zarr before they compute: about a quarter of the default run's job seconds
(docs/PERFORMANCE.md). The Snakefile's ``onstart`` hook starts one server per local Snakemake
run (:func:`start`); the server imports those libraries once (:data:`PRELOAD`, never sopcorr
itself, so an edited ``src/`` takes effect in the next job) and forks a child per job. A job
script's first statement, ``delegate(snakemake)``, hands the job to the server when one is up:
the script, its arguments, working directory, environment, ``sys.path`` and its standard
streams (passed as file descriptors) go over a Unix socket, the child runs the very same
script file, and the job process waits, forwards the signals Snakemake sends it, and exits with
the child's status. Without a server (a cluster job, a dry run, ``job_server: false``, another
interpreter, the server not ready yet, any error in the hand-over) the script runs in its own
process, as before: the server only ever saves time.

The child computes what a fresh process computes: it takes the job's environment, and the
thread counts a fresh process would read from it when loading BLAS and torch
(``OMP_NUM_THREADS``) are set on the libraries the server already loaded (threadpoolctl,
``torch.set_num_threads``); the server itself runs on one thread and starts no thread pool, so
a fork copies none (tests/test_jobserver.py checks byte-identical outputs).

Protocol (one connection per job): the client sends one JSON request (``script``, ``argv``,
``cwd``, ``env``, ``path``, ``prefix``, ``version``) with its fds 0, 1, 2; the server answers
``{"pid": n}`` (or ``{"refused": why}``), later ``{"exit": status}``. The client may send
``{"signal": n}`` lines, which the server delivers to the child; a client that disconnects
before the child ends gets its child terminated.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

__all__ = ["delegate", "start", "serve", "PRELOAD", "ENV_SOCKET"]

#: the environment variable that names the run's server socket (set by :func:`start`)
ENV_SOCKET = "SOPCORR_JOB_SERVER"
#: set in a child of the server: its ``delegate`` returns at once
ENV_CHILD = "SOPCORR_JOB_SERVER_CHILD"
#: the third-party modules the server imports once (what the heavy jobs import; never sopcorr)
PRELOAD = ("numpy", "scipy.ndimage", "scipy.linalg", "scipy.sparse", "PIL.Image", "zarr",
           "threadpoolctl", "torch", "torch.nn.functional", "efficientnet_lite_pytorch",
           "sklearn.svm", "sklearn.cluster", "sklearn.decomposition", "sklearn.metrics", "cv2",
           "matplotlib", "matplotlib.pyplot", "maxflow", "snakemake.script")
#: seconds a client waits for the server to accept and answer before it runs the job itself
HANDSHAKE_TIMEOUT = 5.0
#: seconds between the server's checks that the run is still there (requests, messages and
#: its children's exits wake it at once)
LOOP_TIMEOUT = 0.25
_MAX_MSG = 1 << 20


def _send(conn: socket.socket, obj: dict, fds=()) -> None:
    data = json.dumps(obj).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], list(fds))
    else:
        conn.sendall(data)


class _Lines:
    """Newline-separated JSON messages of a stream socket (the first may carry fds)."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buf, self.fds = conn, b"", []

    def read(self, with_fds: bool = False) -> dict | None:
        """The next message, or None at end of stream."""
        while b"\n" not in self.buf:
            if with_fds and not self.fds:
                data, fds, _, _ = socket.recv_fds(self.conn, 65536, 3)
                self.fds.extend(fds)
            else:
                data = self.conn.recv(65536)
            if not data:
                return None
            self.buf += data
            if len(self.buf) > _MAX_MSG:
                raise ValueError("job server message too long")
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


# --------------------------------------------------------------------------- client
def delegate(smk=None) -> None:
    """Run this job script in the run's job server, when one is up, and exit with its status;
    otherwise (or in the server's child) return, and the script runs here. Call it before the
    script's heavy imports. ``smk``: the script's ``snakemake`` object (unused; it documents
    where the call belongs)."""
    if os.environ.get(ENV_CHILD) or not os.environ.get(ENV_SOCKET):
        return
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not script or not os.path.isfile(script):
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    child: list[int] = []           # the child's pid, once the server has answered
    pending: list[int] = []         # signals that came before that

    def forward(signum, _frame):
        if not child:
            pending.append(signum)
            return
        try:
            _send(conn, {"signal": signum})
        except OSError:
            try:
                os.kill(child[0], signum)
            except OSError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        conn.settimeout(HANDSHAKE_TIMEOUT)
        conn.connect(os.environ[ENV_SOCKET])
        request = {"script": script, "argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ),
                   "path": sys.path, "prefix": sys.prefix, "version": list(sys.version_info[:3])}
        sys.stdout.flush()
        sys.stderr.flush()
        _send(conn, request, fds=(0, 1, 2))
        lines = _Lines(conn)
        answer = lines.read()
    except (OSError, ValueError):
        answer = None
    if not answer or "pid" not in answer:
        conn.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:            # the job runs here: what came meanwhile is its own
            os.kill(os.getpid(), sig)
        return
    conn.settimeout(None)
    child.append(int(answer["pid"]))
    for sig in pending:
        forward(sig, None)
    while True:
        try:
            msg = lines.read()
        except InterruptedError:  # pragma: no cover - PEP 475 retries recv
            continue
        except (OSError, ValueError):
            msg = None
        if msg is None:
            print(f"sopcorr: the job server ended before job {script} did", file=sys.stderr, flush=True)
            os._exit(1)
        if "exit" in msg:
            os._exit(int(msg["exit"]))


# --------------------------------------------------------------------------- child
def _thread_count(env: dict) -> int:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        try:
            return max(1, int(env[var]))
        except (KeyError, ValueError):
            continue
    return os.cpu_count() or 1


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job's process and run its script; never returns."""
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[ENV_CHILD] = "1"
        sys.argv = list(request["argv"])
        sys.path[:] = list(request["path"])
        n = _thread_count(request["env"])
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
        import runpy

        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as err:
        c = err.code
        code = c if isinstance(c, int) else (0 if c is None else 1)
        if not isinstance(c, int) and c is not None:
            print(c, file=sys.stderr)
    except BaseException:  # the job's own traceback, as its process would print it
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# --------------------------------------------------------------------------- server
#: niceness of the thread that preloads (Linux nice values are per thread): the server starts
#: beside the run's first job, which renders the synthetic data on every core; the children fork
#: from the main thread, which keeps the run's own priority
PRELOAD_NICE = 10


def _preload(log) -> None:
    """Import :data:`PRELOAD` in a thread of lower priority, and wait for it (no thread is left
    when the server forks)."""
    import threading

    def work():
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRELOAD_NICE)
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            pass
        _import_all(log)

    t = threading.Thread(target=work, name="preload")
    t.start()
    t.join()


def _import_all(log) -> None:
    import importlib

    for name in PRELOAD:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as err:  # an optional module that is not installed: the jobs import it themselves
            print(f"job server: {name} not preloaded ({type(err).__name__}: {err})", file=log, flush=True)
            continue
        print(f"job server: {name} {time.perf_counter() - t0:.2f} s", file=log, flush=True)


def serve(sock_path: str, parent: int | None = None, log=None, idle_exit: float = 3600.0) -> None:
    """Serve jobs on the Unix socket ``sock_path`` until ``parent`` (a pid) has exited, or no job
    came for ``idle_exit`` seconds with none running. Imports :data:`PRELOAD` first; the socket
    appears when the server is ready."""
    log = log or sys.stderr
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # ends through the cleanup below
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"       # no BLAS or OpenMP worker threads in the process that forks
    t0 = time.perf_counter()
    _preload(log)
    import gc

    gc.collect()
    gc.freeze()     # the children's collections skip (and so do not write to) the preloaded objects
    print(f"job server: ready in {time.perf_counter() - t0:.2f} s, pid {os.getpid()}", file=log, flush=True)
    tmp = f"{sock_path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    os.chmod(tmp, 0o600)             # only this user's jobs may hand work to it
    listener.listen(64)
    os.replace(tmp, sock_path)       # clients see the socket only once it accepts
    children: dict[int, socket.socket] = {}
    by_conn: dict[socket.socket, tuple[int, _Lines]] = {}
    # a child's exit wakes the loop at once (its job process waits for the answer): SIGCHLD's
    # C handler writes to this pipe, which the select below watches
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    last = time.monotonic()
    try:
        while True:
            if parent is not None and not _alive(parent):
                break
            if not children and time.monotonic() - last > idle_exit:
                break
            ready, _, _ = select.select([listener, wake_r, *by_conn], [], [], LOOP_TIMEOUT)
            for r in ready:
                if r == wake_r:
                    _drain(wake_r)
                elif r is listener:
                    conn, _ = listener.accept()
                    last = time.monotonic()
                    _accept(listener, conn, children, by_conn, log, (wake_r, wake_w))
                else:
                    pid, lines = by_conn[r]
                    try:
                        msg = lines.read()
                    except (OSError, ValueError):
                        msg = None
                    if msg is None:            # the job's process went away: so does its child
                        _kill(pid, signal.SIGTERM)
                        by_conn.pop(r, None)
                    elif "signal" in msg:
                        _kill(pid, int(msg["signal"]))
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is None:
                    continue
                by_conn.pop(conn, None)
                try:
                    code = os.waitstatus_to_exitcode(status)
                    _send(conn, {"exit": code if code >= 0 else 128 - code})
                except OSError:
                    pass
                conn.close()
                last = time.monotonic()
    finally:
        signal.set_wakeup_fd(-1)
        for fd in (wake_r, wake_w):
            os.close(fd)
        for pid in children:
            _kill(pid, signal.SIGTERM)
        listener.close()
        try:
            os.unlink(sock_path)
        except OSError:
            pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _accept(listener, conn, children, by_conn, log, wake=()) -> None:
    lines = _Lines(conn)
    try:
        conn.settimeout(HANDSHAKE_TIMEOUT)
        request = lines.read(with_fds=True)
        conn.settimeout(None)
    except (OSError, ValueError):
        request = None
    fds = lines.fds
    why = None
    if request is None or len(fds) != 3:
        why = "incomplete request"
    elif request.get("prefix") != sys.prefix or list(request.get("version", [])) != list(sys.version_info[:3]):
        why = f"another interpreter ({request.get('prefix')})"
    elif _interpreter_env(request.get("env", {})) != _START_ENV:
        why = "other interpreter settings (PYTHON* variables)"
    if why:
        for fd in fds:
            os.close(fd)
        try:
            _send(conn, {"refused": why})
        except OSError:
            pass
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for fd in wake:
            os.close(fd)
        for sock in (listener, conn, *by_conn):
            sock.close()
        _run_child(request, fds)
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    by_conn[conn] = (pid, lines)
    try:
        _send(conn, {"pid": pid})
    except OSError:
        _kill(pid, signal.SIGTERM)
    print(f"job server: {os.path.basename(request['script'])} -> pid {pid}", file=log, flush=True)


def _interpreter_env(env: dict) -> dict:
    """The variables a Python process reads when it starts (PYTHONHASHSEED, PYTHONPATH, ...): a
    child of the server cannot take other values than the server started with."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


_START_ENV = _interpreter_env(dict(os.environ))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


# --------------------------------------------------------------------------- start
def supported() -> bool:
    """Linux only: a fork of a process that has loaded torch, OpenBLAS and OpenMP is safe there
    when no thread pool has started (macOS's system libraries are not fork-safe)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "send_fds")


def start(run_dir: str | Path, log_path: str | Path | None = None) -> str | None:
    """Start the server for this process's Snakemake run, in the background (it exits when this
    process does; it stays in this process's session and process group, so that an interrupt or
    a kill of the run's group reaches it and its children, and so that Linux's per-session
    scheduling groups do not give its preload a core of its own), and export its socket path (:data:`ENV_SOCKET`) to the jobs this process
    starts. Returns the socket path (None where :func:`supported` is False). ``run_dir``: where the socket goes (a short path:
    a Unix socket's path holds about 100 bytes at most, so a long one falls back to /tmp)."""
    import subprocess
    import tempfile

    if not supported():
        return None
    name = f"sopcorr-jobs-{os.getpid()}.sock"
    path = Path(run_dir).resolve() / name
    if len(str(path)) > 100:
        path = Path(tempfile.gettempdir()) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    out = open(log_path, "a") if log_path else subprocess.DEVNULL
    env = dict(os.environ)
    env.pop(ENV_SOCKET, None)
    subprocess.Popen([sys.executable, "-m", "sopcorr.jobserver", "--socket", str(path), "--parent",
                      str(os.getpid())], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                     close_fds=True)   # in the run's session: its nice values compare with the jobs' (autogroups)
    if out is not subprocess.DEVNULL:
        out.close()
    os.environ[ENV_SOCKET] = str(path)
    return str(path)


def _main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--parent", type=int, default=None)
    ap.add_argument("--idle-exit", type=float, default=3600.0)
    a = ap.parse_args(argv)
    serve(a.socket, a.parent, sys.stdout, a.idle_exit)


if __name__ == "__main__":
    _main()
