"""Fast feedback (issue 19): the Snakefile's parse and every job that runs no tensor code start
without torch (importing torch is the largest fixed cost of a process: docs/PERFORMANCE.md).

* the parse is checked in a fresh process: Snakemake's API builds the default target's DAG of
  the default config and of the paper's (VGG16), and torch / torchvision must not be loaded;
* the jobs are checked where they really ran: every job of the shared finished tiny run ends
  its log with ``sopcorr.scriptutil.startup_line``, which names the heavy modules the job had
  loaded by its end (lazy imports inside its work included).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from integration.helpers import HERE, copy_workflow, env, results

#: the rules whose jobs run no tensor code (data, the manifold's numpy/scipy loop, tables,
#: figures of tables, the report's first screen)
LIGHT_RULES = {"generate_synthetic", "prepare_category", "data_summary", "contact_sheet", "manifold",
               "eval_table", "eval_bars", "report_description"}
HEAVY = ("torch", "torchvision")

_PARSE = """
import json, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from integration.dryrun_many import needrun_jobs
jobs = needrun_jobs(Path({wd!r}), [Path(p) for p in {configfiles!r}])
print(json.dumps({{"jobs": len(jobs), "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


@pytest.mark.parametrize("overlays", [[], ["paper.yaml"]], ids=["default", "paper"])
def test_the_snakefile_parses_without_torch(overlays, tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    files = [str(wd / "config" / "config.yaml")] + [str(wd / "config" / o) for o in overlays]
    code = _PARSE.format(tests=str(HERE.parent), wd=str(wd), configfiles=files, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], cwd=wd, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["jobs"] > 10, out  # the DAG of a whole run was built
    assert out["heavy"] == [], f"the Snakefile's parse imported {out['heavy']} (python -X importtime shows where)"


_LINE = re.compile(r"job time: (\S+) s start, (\S+) s work; heavy modules loaded: (.*)$", re.M)


@pytest.mark.slow
def test_jobs_without_tensor_code_load_no_torch(reference_a):
    logs = results(reference_a) / "logs"
    seen: dict[str, list[str]] = {}
    for path in sorted(logs.rglob("*.log")):
        rule = path.relative_to(logs).parts[0].removesuffix(".log")
        found = _LINE.findall(path.read_text())
        assert found, f"{path.relative_to(logs)}: no 'job time' line (sopcorr.scriptutil.run ends every job's log)"
        seen.setdefault(rule, []).append(found[-1][2])
    assert LIGHT_RULES <= set(seen), sorted(LIGHT_RULES - set(seen))
    loaded = {rule: mods for rule, mods in seen.items() if rule in LIGHT_RULES and set(mods) != {"none"}}
    assert not loaded, f"jobs that run no tensor code loaded heavy modules: {loaded}"
    # the check can fail: the jobs that do run tensor code report torch
    assert all("torch" in m for m in seen["extract_features"] + seen["train_siamese"]), seen


def test_the_startup_line_names_what_was_loaded():
    from sopcorr.scriptutil import startup_line

    code = ("import sys; from sopcorr.scriptutil import startup_line; print(startup_line(0.5, 1.25)); "
            "import torch; print(startup_line(None, 2.0))")
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    assert out == ["job time: 0.50 s start, 1.25 s work; heavy modules loaded: none",
                   "job time: ? s start, 2.00 s work; heavy modules loaded: torch"]
    assert _LINE.search(startup_line(0.1, 0.2))


def test_the_prepare_stage_imports_no_pandas_until_it_writes_the_summary():
    """prepare_category's jobs run before the job server is up, in fresh processes: pandas
    (0.3 s) is imported by the data summary only, when it builds its table."""
    code = ("import sys; import sopcorr.data.prepare as p; print('pandas' in sys.modules); "
            "p.summarize([]); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["False", "True"]
