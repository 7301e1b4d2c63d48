"""The generalisation targets (issue 20) end to end on tests/integration/tiny.yaml, from a finished
default run: ``tables/inductive.csv`` (no fitted job reads a held-out image: checked on the
inputs Snakemake recorded for each job, opened), ``tables/transfer.csv`` (each leave-one-out
network's recorded training inputs hold no file of its category), ``tables/transfer_from_<source>.csv``
(the run's own network through the cross-run target equals its pair_pck rows), the one-line
refusals (another backbone, one category, an unset source), and the report page showing them."""
from __future__ import annotations

import base64
import json
import math

import pandas as pd
import pytest
import yaml

from integration.helpers import TINY, clone, copy_workflow, results, run_snakemake

pytestmark = pytest.mark.slow

CATS = ["bird", "car"]
#: the rules whose jobs fit something in the inductive protocol
FITTED = ("manifold_inductive", "pseudo_flow_inductive", "train_siamese_inductive")


def job_records(wd) -> dict[str, dict]:
    """Snakemake's record of every output it wrote: output path -> {'rule', 'input', ...}."""
    out = {}
    for f in (wd / ".snakemake" / "metadata").iterdir():
        try:
            name = base64.urlsafe_b64decode(f.name + "=" * (-len(f.name) % 4)).decode()
        except ValueError:
            continue
        out[name] = json.loads(f.read_text())
    return out


def image_ids(path) -> set[str]:
    """Every image id a job input names: instances.json instances and pairs, a feature/embedded
    store's image ids, a flow store's image and pair ids."""
    from sopcorr.data.generic import load_dataset

    if path.suffix == ".json":
        ds = load_dataset(path, check_images=False)
        return {i.id for i in ds.instances} | {x for p in ds.pairs for x in p}
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    return set(attrs["image_ids"]) | {x for p in attrs.get("pair_ids", []) for x in p}


@pytest.fixture(scope="module")
def built(reference_a, tmp_path_factory):
    wd = clone(reference_a, tmp_path_factory.mktemp("generalisation") / "run")
    run_snakemake(wd, targets=[f"results/{results(wd).name}/tables/{t}.csv" for t in ("inductive", "transfer")],
                  cores=2)
    return wd


def test_no_fitted_job_of_the_inductive_protocol_reads_a_held_out_image(built):
    res = results(built)
    run = f"results/{res.name}"
    split = {}
    for c in CATS:
        fit = {i for i in image_ids(res / "inductive" / "data" / c / "instances.json")}
        every = image_ids(res / "data" / c / "instances.json")
        split[c] = (fit, every - fit)
        assert len(fit) == 3 and len(every - fit) == 3
    records = job_records(built)
    seen = set()
    for out, rec in records.items():
        if rec["rule"] not in FITTED:
            continue
        seen.add(rec["rule"])
        for p in rec["input"]:
            assert p.startswith(f"{run}/inductive/"), (rec["rule"], p)   # only the fit half's files
            ids = image_ids(built / p)
            held = set().union(*(h for _, h in split.values()))
            assert ids and not ids & held, (rec["rule"], p, sorted(ids & held))
    assert seen == set(FITTED)
    # the held-out half is embedded with the fit half's manifold, and only evaluated
    for c in CATS:
        emb = records[f"{run}/inductive/manifold/improved/{c}/embedded_all.zarr"]
        assert emb["rule"] == "embed_inductive"
        assert f"{run}/inductive/manifold/improved/{c}/embedding.npz" in emb["input"]
        assert image_ids(res / "inductive" / "manifold" / "improved" / f"{c}" / "embedded_all.zarr") \
            == set().union(*split[c])
        ev = records[f"{run}/eval/{c}/inductive.json"]
        assert f"{run}/inductive/siamese/improved/model.pt" in ev["input"]
        from sopcorr.data.generic import load_dataset

        pairs = load_dataset(res / "inductive" / "data" / c / "evaluation.json", check_images=False).pairs
        assert all(a in split[c][1] and b in split[c][1] for a, b in pairs)


def test_each_leave_one_out_network_never_reads_its_category(built):
    run = f"results/{results(built).name}"
    records = job_records(built)
    for c in CATS:
        rec = records[f"{run}/siamese/improved/without_{c}/model.pt"]
        assert rec["rule"] == "train_siamese_transfer"
        others = [o for o in CATS if o != c]
        assert not [p for p in rec["input"] if f"/{c}/" in p or p.endswith(f"/{c}.zarr")], rec["input"]
        for o in others:
            assert {f"{run}/features/{o}.zarr", f"{run}/flow/improved/{o}.zarr",
                    f"{run}/data/{o}/instances.json"} <= set(rec["input"])
        assert f"{run}/siamese/improved/without_{c}/model.pt" in records[f"{run}/eval/{c}/transfer.json"]["input"]


def test_the_tables_have_the_pair_pck_layout(built):
    res = results(built)
    for t in ("inductive", "transfer"):
        df = pd.read_csv(res / "tables" / f"{t}.csv")
        assert list(df.columns) == ["method", "alpha", *CATS, "mean", "per_pair"], t
        assert (res / "tables" / f"{t}.html").is_file() and (res / "tables" / f"{t}.md").is_file()
    # tiny.yaml's pairs join its two test images, never both in the held-out half: no pairs
    # to evaluate, an empty table rather than a failure
    transfer = pd.read_csv(res / "tables" / "transfer.csv")
    assert set(transfer["method"]) == {"nn_raw", "ours_geometric", "ours_network", "ours_network_geometric"}
    for c in CATS + ["mean", "per_pair"]:
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in transfer[c]), c


def test_the_report_page_shows_them_once_built(built):
    res = results(built)
    run_snakemake(built, targets=[f"results/{res.name}/report/description.rst"], cores=1)
    page = (res / "report" / "description.rst").read_text()
    assert "Generalisation" in page and "`inductive.html`_" in page and "`transfer.html`_" in page


def _overlay(tmp_path, name, data):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_another_runs_network_on_this_runs_pairs(built, tmp_path):
    res = results(built)
    # the run's own network through the cross-run target: the rows pair_pck has on the same pairs
    over = _overlay(tmp_path, "from_self", {"evaluate": {"transfer_from": res.name}})
    run_snakemake(built, targets=[f"results/{res.name}/tables/transfer_from_{res.name}.csv"],
                  configfiles=[TINY, over], cores=2)
    got = pd.read_csv(res / "tables" / f"transfer_from_{res.name}.csv")
    ref = pd.read_csv(res / "tables" / "pair_pck.csv")
    cols = ["method", "alpha", *CATS, "mean", "per_pair"]
    want = ref[ref["method"].isin(got["method"])][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[cols].sort_values(["method", "alpha"]).reset_index(drop=True),
                                  want.sort_values(["method", "alpha"]).reset_index(drop=True))


def test_a_source_of_another_backbone_is_refused_before_any_job(built, tmp_path):
    res = results(built)
    meta = res.parent / "vggrun" / "features" / "bird.zarr" / "zarr.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"attributes": {"backbone": "vgg16"}, "zarr_format": 3, "node_type": "group"}))
    over = _overlay(tmp_path, "from_vgg", {"evaluate": {"transfer_from": "vggrun"}})
    proc = run_snakemake(built, targets=[f"results/{res.name}/tables/transfer_from_vggrun.csv"],
                         configfiles=[TINY, over], extra=["-n"], check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stdout.splitlines() if "evaluate.transfer_from" in line]
    assert len(lines) == 1 and "backbone 'vgg16'" in lines[0] and "Traceback" not in proc.stdout


@pytest.mark.parametrize("case", ["one_category", "unset_source"])
def test_a_table_the_run_cannot_build_says_so_in_one_line(tmp_path, case):
    wd = copy_workflow(tmp_path / "wf")                   # nothing to build first: the refusal runs alone
    if case == "one_category":
        over, table, words = {"categories": ["bird"]}, "transfer", "needs at least 2 categories"
    else:
        over, table, words = {}, "transfer_from_elsewhere", "set evaluate.transfer_from: elsewhere"
    configs = [TINY, _overlay(tmp_path, case, over)] if over else [TINY]
    proc = run_snakemake(wd, targets=[f"results/tiny/tables/{table}.csv"], configfiles=configs, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("sopcorr error:")]
    assert len(lines) == 1 and words in lines[0], proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout
    assert not (results(wd) / "tables" / f"{table}.csv").exists()
    assert not (results(wd) / "data").exists()             # no job but the refusal ran
