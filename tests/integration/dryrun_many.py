"""Many dry runs of one workflow copy in one process (Snakemake's Python API), for the
schema-walking rerun test (tests/test_rerun_keys.py): a subprocess call of ``snakemake -n`` per
config key costs a Python start, the imports and a parse each; here only the parse and the DAG.

    python dryrun_many.py WORKDIR CASES.json OUT.json

CASES.json: {"configfiles": [base configfile, ...], "cases": {name: overlay mapping}}. For each
case the overlay is written next to OUT.json and the default target's DAG is built on top of
the base configfiles, as ``snakemake -n --configfile BASE... OVERLAY`` would. OUT.json:
{name: {"jobs": [[rule, {wildcard: value}], ...], "error": null | message, "exit": 0 | status,
"output": what the parse printed}}: the jobs a run would execute (Snakemake's default rerun
triggers), the same list a dry run prints; a config or dataset error caught at parse time
(common.smk prints one line and exits 1) gives its exit status and output.
:func:`integration.helpers.dry_runs` runs it.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path


def needrun_jobs(workdir: Path, configfiles: list[Path]) -> list[tuple[str, dict]]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, ResourceSettings,
                                          StorageSettings)

    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=configfiles),
                          storage_settings=StorageSettings(), snakefile=workdir / "Snakefile",
                          workdir=workdir)
        dag_api = wf.dag(DAGSettings())
        dag_api.execute_workflow(executor="dryrun")
        dag = wf._workflow.dag
        # the dry-run executor marks the jobs finished: ask for them all
        jobs = [(job.rule.name, dict(job.wildcards_dict)) for job in dag.needrun_jobs(exclude_finished=False)]
    return sorted(((r, w) for r, w in jobs if r != "all"), key=lambda j: (j[0], sorted(j[1].items())))


def main(workdir: str, cases_json: str, out_json: str) -> None:
    workdir = Path(workdir).resolve()
    spec = json.loads(Path(cases_json).read_text())
    base = [Path(p).resolve() for p in spec["configfiles"]]
    out_dir = Path(out_json).resolve().parent
    results: dict = {}
    for name, overlay in spec["cases"].items():
        files = list(base)
        if overlay:
            path = out_dir / f"overlay_{len(results):03d}.json"
            path.write_text(json.dumps(overlay))  # JSON is YAML
            files.append(path)
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                jobs = needrun_jobs(workdir, files)
            results[name] = {"jobs": jobs, "error": None, "exit": 0, "output": log.getvalue()}
        except SystemExit as exc:  # common.smk: a config error, one line, exit 1
            results[name] = {"jobs": [], "error": f"exit {exc.code}: {log.getvalue().strip()[-500:]}",
                             "exit": exc.code, "output": log.getvalue()}
        except Exception as exc:  # noqa: BLE001 (reported per case)
            results[name] = {"jobs": [], "error": f"{type(exc).__name__}: {exc}"[-800:], "exit": None,
                             "output": log.getvalue()}
    Path(out_json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
