# viewer stage: the run's interactive correspondence viewer (sopcorr.viewer, docs/VIEWER.md).
# results/<run>/viewer/index.html opens from disk with no server; beside it, per category, the
# page's images with their part labels and keypoints and one data file per method holding the
# dense correspondences of every ordered pair of up to viewer.max_images images. One job for all
# categories (the matchers and the network load once). VIEWER and viewer_inputs() live in
# common.smk; the methods are built as the evaluate rule builds them (matcher_params).
import sys

from sopcorr.workflow_support import report_is_zip, stable

#: the viewer is registered in the report (a directory with an HTML index) only for a .zip
#: report: Snakemake's single-file report.html refuses such a directory (docs/VIEWER.md). The
#: report's front page links it either way (rule report_description).
VIEWER_OUTPUT = directory(results("viewer"))
if report_is_zip(sys.argv):
    VIEWER_OUTPUT = report(
        VIEWER_OUTPUT,
        htmlindex="index.html",
        caption="../report/viewer.rst",
        category="Viewer",
        subcategory="Correspondence viewer",
        labels={"viewer": "every category"},
    )


rule viewer:
    """The interactive correspondence viewer of the run: hover a point of one image, see where
    it lands in every other image of the category, for each of viewer.methods."""
    input:
        **viewer_inputs(VIEWER["methods"]),
    output:
        VIEWER_OUTPUT,
    log:
        results("logs", "viewer.log"),
    benchmark:
        results("benchmarks", "viewer.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        run=RUN,
        categories=CATEGORIES,
        viewer=stable(VIEWER),
        matchers=matcher_params(VIEWER["methods"]),
        devices=execution_devices,
    script:
        "../scripts/viewer.py"


ALL_TARGETS.append(results("viewer"))
