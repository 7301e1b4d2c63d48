# report stage: `snakemake --report results/<run>/report.html` (run after the workflow; `make demo`
# does) builds one self-contained HTML report from every output registered with report():
#   Tables  / <table>                   tables/*.csv                    (evaluate.smk, caption report/table.rst)
#   Figures / Dense correspondence      figures/correspondence_<cat>.png (report/correspondence.rst)
#   Figures / Keypoint predictions      figures/keypoints_<cat>.png      (report/keypoints.rst)
#   Figures / Per-category bars         figures/*_bars_*.png             (report/bars.rst)
#   manifold                            manifold/<cat>/convergence.png   (manifold.smk, report/convergence.rst)
#   Siamese network                     siamese/*loss.png                (siamese.smk)
# Snakemake 9's built-in HTML reporter needs no plugin (jinja2 and pygments come with snakemake).
# Captions live in workflow/report/. No rule of its own: the report reads the registered outputs.
