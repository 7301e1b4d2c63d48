"""Progress into the job logs (issue 14, Build 4): sopcorr.progress writes count, rate and time
left into the logging system at intervals and at the end, the per-job log file receives them
through scriptutil's logging set-up, and the console keeps the tqdm bar instead of the lines."""
from __future__ import annotations

import logging
import types

import numpy as np
import pytest

from sopcorr import progress as progress_mod
from sopcorr.progress import ConsoleBarFilter, Progress, format_rate, format_seconds, progress
from sopcorr.scriptutil import run


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", c)
    return c


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_format_rate_and_seconds():
    assert format_rate(10, 4.0, "img") == "2.5 img/s"
    assert format_rate(2, 8.0, "pair") == "4 s/pair"
    assert format_rate(0, 8.0, "pair") == "? pair/s"
    assert format_rate(3_200_000, 1.0, "B", unit_scale=True) == "3.20MB/s"
    assert format_seconds(4.24) == "4.2 s"
    assert format_seconds(187) == "3 min 07 s"
    assert format_seconds(7500) == "2 h 05 min"


def test_lines_at_intervals_with_rate_and_time_left(clock, caplog):
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    bar = Progress(total=10, desc="features car", unit="img", interval=5.0, logger=log, disable=True)
    for _ in range(10):
        clock.t += 1.0
        bar.update(1)
    bar.close()
    bar.close()  # a second close writes nothing more
    lines = _lines(caplog)
    # one line every 5 s (after 5 and 10 images) plus the final one
    assert len(lines) == 3, lines
    assert lines[0] == "features car: 5/10 img (50%) in 5.0 s, 1 img/s, about 5.0 s left"
    assert lines[-1] == "features car: 10/10 img (100%) in 10.0 s, 1 img/s (done)"


def test_iterating_counts_each_item_and_resumed_bars_count_from_initial(clock, caplog):
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    seen = []
    for x in progress(range(4), desc="pairs", unit="pair", logger=log, interval=1e9, disable=True):
        clock.t += 2.0
        seen.append(x)
    assert seen == [0, 1, 2, 3]
    assert _lines(caplog)[-1] == "pairs: 4/4 pair (100%) in 8.0 s, 2 s/pair (done)"
    caplog.clear()
    bar = Progress(total=100, initial=60, desc="siamese", unit="step", logger=log, interval=1e9,
                   disable=True)
    clock.t += 4.0
    bar.update(20)
    bar.set_postfix(loss="0.125")
    bar.close()
    # the rate counts the steps of this call only (20 in 4 s), not the resumed ones
    assert _lines(caplog) == ["siamese: 80/100 step (80%) in 4.0 s, 5 step/s, loss=0.125 (done)"]


def test_a_failed_loop_says_where_it_stopped(clock, caplog):
    log = logging.getLogger("test.progress")
    caplog.set_level(logging.INFO, logger="test.progress")
    with pytest.raises(RuntimeError):
        with Progress(total=5, desc="x", logger=log, disable=True) as bar:
            bar.update(2)
            raise RuntimeError("boom")
    assert _lines(caplog)[-1].endswith("2/5 it (40%) in 0.0 s, ? it/s (stopped)")


def test_console_filter_drops_only_records_of_a_shown_bar():
    f = ConsoleBarFilter()
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    assert f.filter(rec)
    rec.progress_on_console = False
    assert f.filter(rec)
    rec.progress_on_console = True
    assert not f.filter(rec)


def test_progress_reaches_the_job_log_file_and_the_console_keeps_the_bar(tmp_path, capfd):
    """Through scriptutil.run (what every workflow script calls): the lines land in the rule's
    log file; the console shows the tqdm bar, and the log lines only when there is no bar."""
    logfile = tmp_path / "logs" / "job.log"
    logfile.parent.mkdir()

    def main(smk):
        log = logging.getLogger("sopcorr.test_job")
        for _ in progress(range(3), desc="with bar", unit="img", logger=log, interval=0.0):
            pass
        for _ in progress(range(2), desc="no bar", unit="img", logger=log, interval=0.0, disable=True):
            pass

    run(main, types.SimpleNamespace(log=[str(logfile)]))
    logging.getLogger().handlers.clear()
    text = logfile.read_text()
    assert "with bar: 3/3 img (100%)" in text and "(done)" in text
    assert "with bar: 1/3 img (33%)" in text  # interval 0: a line per update
    assert "no bar: 2/2 img (100%)" in text
    assert "img/s" in text or "s/img" in text
    err = capfd.readouterr().err
    assert "with bar: 100%" in err  # tqdm's bar
    assert "with bar: 3/3 img" not in err  # its log lines stay out of the console
    assert "no bar: 2/2 img (100%)" in err


def test_synthetic_generation_logs_progress(tmp_path, caplog):
    from sopcorr.data.synthetic import generate

    caplog.set_level(logging.INFO, logger="sopcorr")
    generate(tmp_path / "ds", categories=["car"], images_per_category=3, image_size=64,
             pairs_per_category=1, seed=0, occluders=0, image_format="png", progress=False)
    msgs = [r.getMessage() for r in caplog.records if r.name == "sopcorr.data.synthetic"]
    assert any(m.startswith("synthetic car: 3/3 img (100%)") and m.endswith("(done)") for m in msgs), msgs


def test_manifold_logs_iterations_with_their_rate(caplog):
    from sopcorr.manifold.refine import ManifoldParams, run_manifold

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4, 6, 6, 8)).astype(np.float32)
    valid = np.ones((4, 6, 6), bool)
    caplog.set_level(logging.INFO, logger="sopcorr")
    p = ManifoldParams(n_parts=3, n_components=3, subclasses=1, landmarks=40, exact_max_samples=200,
                       fit_samples=144, precluster=20, max_iter=2, init_dims=4)
    r = run_manifold(feats, valid, p, desc="manifold toy")
    msgs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("manifold toy: ")]
    n_done = len(r.rows)
    assert msgs and msgs[-1].startswith(f"manifold toy: {n_done}/3 iter (")
    assert "s/iter" in msgs[-1] or "iter/s" in msgs[-1]
    assert msgs[-1].endswith("(done)")


def test_download_copy_reports_bytes(caplog, tmp_path):
    import io

    from sopcorr.data.download import _copy_with_progress

    class Resp(io.BytesIO):
        headers = {"Content-Length": "3000"}

    caplog.set_level(logging.INFO, logger="sopcorr")
    out = tmp_path / "f.bin"
    with open(out, "wb") as fh:
        _copy_with_progress(Resp(b"x" * 3000), fh, "http://example.org/a/archive.tar", chunk=1000)
    assert out.read_bytes() == b"x" * 3000
    msgs = [r.getMessage() for r in caplog.records if r.name == "sopcorr.data.download"]
    assert msgs[-1].startswith("download archive.tar: 3.00kB/3.00kB (100%)"), msgs


def test_evaluation_jobs_write_progress_into_their_log(tmp_path, capfd):
    """Evaluation-style jobs (rule evaluate, ablation_category): the evaluation loop's count and rate
    land in the job's log file (the console keeps the bar)."""
    from evaluate_toys import exact_method, toy_context

    from sopcorr.evaluate.keypoints import run_keypoint_evaluation
    from sopcorr.evaluate.pairs import run_pair_evaluation

    logfile = tmp_path / "eval.log"
    cat = toy_context(8)

    def main(smk):
        run_pair_evaluation(cat, [exact_method("a"), exact_method("b", shift=(3, 0))], [0.1], progress=True)
        run_keypoint_evaluation(cat, [exact_method("a")], k=2, alpha=0.1, progress=True)

    run(main, types.SimpleNamespace(log=[str(logfile)]))
    logging.getLogger().handlers.clear()
    text = logfile.read_text()
    n_test = len(cat.split_indices("test"))
    n_train = len(cat.split_indices("train"))
    assert "pairs toy: 16/16 pair (100%) in " in text and "(done)" in text
    assert f"keypoints toy: {n_test + n_train}/{n_test + n_train} query (100%)" in text
    assert "pair/s" in text or "s/pair" in text
    err = capfd.readouterr().err
    assert "pairs toy: 16/16 pair" not in err  # the console shows the bar instead


def test_a_shared_reporter_counts_every_loop_once(caplog):
    """The ablation's stages count into one reporter: one final line over all of them."""
    from evaluate_toys import exact_method, toy_context

    from sopcorr.evaluate.pairs import run_pair_evaluation
    from sopcorr.progress import counting

    caplog.set_level(logging.INFO, logger="test.progress")
    log = logging.getLogger("test.progress")
    cat = toy_context(6)
    with counting(False, total=12, desc="ablation toy", unit="pair", logger=log) as bar:
        for name in ("a", "b"):
            run_pair_evaluation(cat, [exact_method(name)], [0.1], progress=bar)
    lines = _lines(caplog)
    assert lines and lines[-1].startswith("ablation toy: 12/12 pair (100%)") and lines[-1].endswith("(done)")
    assert not any(m.startswith("pairs toy") for m in lines)


def test_a_failed_job_prints_its_error_once_and_logs_it(tmp_path, capfd):
    from sopcorr.errors import DatasetError

    logfile = tmp_path / "job.log"

    def main(smk):
        raise DatasetError("data/x.json: instance 'a': field 'bbox': bad")

    with pytest.raises(SystemExit) as exc:
        run(main, types.SimpleNamespace(log=[str(logfile)]))
    logging.getLogger().handlers.clear()
    assert exc.value.code == 1
    err = capfd.readouterr().err
    assert err.count("field 'bbox': bad") == 1 and err.strip() == "sopcorr error: data/x.json: instance 'a': field 'bbox': bad"
    assert logfile.read_text().count("field 'bbox': bad") == 1
