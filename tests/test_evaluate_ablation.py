"""The ablation table: one row per (variant, stage, metric), means over categories."""
import numpy as np

from sopcorr.evaluate.ablation import ablation_table


def test_ablation_table_rows_and_means():
    recs = []
    for v, st, vals in [("improved", "geo_concat", (60.0, 40.0)), ("raw", "nn_raw[a]", (50.0, 30.0)),
                        ("paper", "nn_embed", (20.0, 10.0))]:
        for cat, x in zip(("car", "bike"), vals):
            recs.append(dict(variant=v, stage=st, metric="pck@0.1", category=cat, value=x))
    t = ablation_table(recs, ["car", "bike"])
    assert list(t["variant"]) == ["raw", "paper", "improved"]
    assert np.allclose(t["mean"], [40.0, 15.0, 50.0])
    # a category missing for a stage gives no mean rather than a mean over fewer categories
    recs.append(dict(variant="paper", stage="pseudo_gt", metric="pck@0.1", category="car", value=5.0))
    t = ablation_table(recs, ["car", "bike"])
    row = t[t["stage"] == "pseudo_gt"].iloc[0]
    assert np.isnan(row["bike"]) and np.isnan(row["mean"])
