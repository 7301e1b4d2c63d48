"""Checks of tests/slurm/run.sh after the SLURM run (exit status 1 and a line per failure).

    python tests/slurm/check.py LOCAL_WORKDIR SLURM_WORKDIR SNAKEMAKE_LOG JOBCOMP_LOG

1. every job of the SLURM run except local rules went through sbatch (the Snakemake log names
   a SLURM job id per job; the per-rule counts equal the run's job stats);
2. SLURM itself recorded each of those jobs as COMPLETED (jobcomp/filetxt);
3. the GPU rules asked SLURM for a GPU (`scontrol show job` lists gres/gpu);
4. the tables (or, before the evaluate stage exists, every CSV/JSON artifact) equal those of
   the local run byte for byte.
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from integration.helpers import comparable_files, records_mismatches  # noqa: E402

GPU_RULES = {"train_siamese", "finetune_siamese"}
LOCAL_RULES = {"all"}


def job_stats(log: str) -> Counter:
    """Rule counts of the first 'Job stats' table in a Snakemake log."""
    counts: Counter = Counter()
    lines = log.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == "Job stats:")
    except StopIteration:
        return counts
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def main(local_wd: str, slurm_wd: str, smk_log: str, jobcomp: str) -> int:
    failures: list[str] = []
    log = Path(smk_log).read_text()
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", log)
    by_rule: Counter = Counter()
    ids_by_rule: dict[str, list[str]] = {}
    for jobid, path in submitted:
        m = re.search(r"/rule_(\w+)/", path)
        rule = m.group(1) if m else "?"
        by_rule[rule] += 1
        ids_by_rule.setdefault(rule, []).append(jobid)
    expected = Counter({r: n for r, n in job_stats(log).items() if r not in LOCAL_RULES})
    if not expected:
        failures.append("no 'Job stats' table in the Snakemake log")
    if by_rule != expected:
        failures.append(f"jobs through sbatch per rule {dict(by_rule)} != jobs of the run {dict(expected)}")

    comp = Path(jobcomp).read_text() if Path(jobcomp).exists() else ""
    states = dict(re.findall(r"JobId=(\d+) .*?JobState=(\w+)", comp))
    for jobid, _ in submitted:
        if states.get(jobid) != "COMPLETED":
            failures.append(f"SLURM job {jobid}: state {states.get(jobid)} in {jobcomp}")

    for rule in sorted(GPU_RULES & set(ids_by_rule)):
        for jobid in ids_by_rule[rule]:
            show = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
            if "gpu" not in show:
                failures.append(f"{rule} (SLURM job {jobid}) did not ask for a GPU: {show.strip()[:300]}")

    a, b = comparable_files(Path(local_wd)), comparable_files(Path(slurm_wd))
    if not a:
        failures.append("the local run produced nothing to compare")
    elif sorted(a) != sorted(b):
        failures.append(f"different artifacts: local {sorted(a)} vs slurm {sorted(b)}")
    else:
        diff = [n for n in a if a[n] != b[n]]
        if diff:
            failures.append(f"differ between the local and the SLURM run: {diff}")

    if a:
        failures += [f"evaluation record differs: {m}" for m in records_mismatches(Path(local_wd), Path(slurm_wd))]

    print(f"tests/slurm: {len(submitted)} jobs through sbatch ({dict(by_rule)}); "
          f"{len(a)} files compared")
    for f in failures:
        print(f"tests/slurm: FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
