# sopcorr: dense semantic object correspondence from a classification CNN
# (Gaur & Manjunath, ICCV 2017). `snakemake --cores all` runs the embedded default.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/manifold.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/siamese.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/viewer.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/generalisation.smk"


# the HTML report opens on the run's results: a page rule report_description writes from the
# run's own tables (workflow/rules/report.smk)
report: REPORT_PAGE


rule all:
    default_target: True
    input:
        ALL_TARGETS,


onstart:
    # local runs: the heavy jobs fork from one process that has imported torch & co. once
    # (sopcorr.jobserver; --config job_server=False turns it off). Not for cluster jobs.
    if config["job_server"] and workflow.local_exec and workflow.is_main_process:
        from sopcorr.jobserver import start

        start(
            ".snakemake",
            log_path=Path(".snakemake", "log", "sopcorr-job-server.log"),
        )
