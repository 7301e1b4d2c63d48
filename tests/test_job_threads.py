"""The threads a job computes with (sopcorr.scriptutil.job_threads / limit_threads): the rules
whose numbers depend on their thread count declare ``params.numeric_threads`` (the config's
``numeric_threads``), and their jobs compute with that many whatever ``--cores`` scaled the
scheduled threads to, so ``snakemake --cores 1`` gives the tables of ``--cores 2``
(docs/PERFORMANCE.md, "Threads per job")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from snakemake.iocontainers import Params

from sopcorr.scriptutil import job_threads

_LIMIT = """
import json, sys
from types import SimpleNamespace
from snakemake.iocontainers import Params
from threadpoolctl import threadpool_info
from sopcorr.scriptutil import limit_threads
smk = SimpleNamespace(threads={scheduled}, params=Params(fromdict={params!r}))
n = limit_threads(smk, torch={torch})
import numpy, scipy.linalg  # loaded after the call, as a job's later imports are
blas = sorted({{i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}})
out = {{"n": n, "blas": blas, "torch_loaded": "torch" in sys.modules}}
if {torch}:
    import torch
    out["torch"] = torch.get_num_threads()
print(json.dumps(out))
"""


def _smk(scheduled, **params):
    return SimpleNamespace(threads=scheduled, params=Params(fromdict=params))


def test_the_declared_count_wins_over_the_scheduled_one():
    # --cores 1 scales a two-thread rule's job to one thread; it still computes with two
    assert job_threads(_smk(1, numeric_threads=2, seed=0)) == 2
    assert job_threads(_smk(8, numeric_threads=3)) == 3  # --set-threads gives more: still 3
    # rules that declare none compute with what Snakemake gave them
    assert job_threads(_smk(1, seed=0)) == 1
    assert job_threads(_smk(4)) == 4


def _limit(scheduled, params, torch):
    code = _LIMIT.format(scheduled=scheduled, params=params, torch=torch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": str(scheduled), "OPENBLAS_NUM_THREADS": str(scheduled),
                              "MKL_NUM_THREADS": str(scheduled), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


#: OpenBLAS never runs more threads than the machine has cores (the guarantee holds on machines
#: with at least ``numeric_threads`` cores)
needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")


@needs_two_cores
def test_limit_threads_sets_blas_and_torch_above_snakemakes_environment():
    # Snakemake exports OMP_NUM_THREADS & co. = the scheduled threads (here scaled down to 1)
    got = _limit(1, {"numeric_threads": 2}, torch=True)
    assert got["n"] == 2 and got["torch"] == 2
    assert got["blas"] == [2]


@needs_two_cores
def test_limit_threads_without_torch_loads_no_torch():
    # the manifold job runs no tensor code and must start without torch (tests/test_startup.py)
    got = _limit(1, {"numeric_threads": 2}, torch=False)
    assert got == {"n": 2, "blas": [2], "torch_loaded": False}
