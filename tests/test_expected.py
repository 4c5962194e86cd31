"""Expected numbers with bands, and the full-mode check against them (m6rec_lib.expected)."""

from __future__ import annotations

import json

import pytest

from m6rec_lib import expected as ex


def _summary(ndcg=0.0617, verdict="a", seconds=12.0, status="ok", extra=None):
    c = {"key": "SASRec vs EASE | new | NDCG@10", "name_a": "SASRec", "name_b": "EASE", "metric": "NDCG@10",
         "view": "new", "a": ndcg, "b": 0.0655, "diff": ndcg - 0.0655, "low": -0.01, "high": 0.002,
         "n_users": 1500, "outcome": verdict, "verdict": "no measurable difference"}
    metrics = {"test_new_SASRec_NDCG@10": ndcg, "n_test_customers": 1685, "best_model": "EASE",
               "train_seconds": seconds, **(extra or {})}
    return {"mode": "full", "total_seconds": 900.0, "notebooks": [
        {"notebook": "05_next_item_generation", "status": status, "seconds": seconds, "metrics": metrics,
         "error": "" if status == "ok" else "AssertionError: x", "comparisons": [c]}]}


def test_bands_by_kind():
    assert ex.default_band("ndcg", 0.02) == [pytest.approx(0.017), pytest.approx(0.023)]   # 0.003 floor
    assert ex.default_band("ndcg", 0.5) == [pytest.approx(0.46), pytest.approx(0.54)]      # 8%
    assert ex.default_band("n_users", 1685) == [1668, 1702]
    assert ex.default_band("train_seconds", 10.0) is None and ex.default_band("p50_ms", 3.0) is None
    assert ex.default_band("best_model", "EASE") is None


def test_a_run_within_its_bands_passes_and_a_moved_one_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "EXPECTED_DIR", tmp_path)
    ex.save_expected(_summary())
    stored = ex.load_expected("full")
    assert stored["notebooks"]["05_next_item_generation"]["metrics"]["n_test_customers"]["band"] == [1668, 1702]
    same = ex.compare(_summary(ndcg=0.0620, seconds=99.0), stored)
    assert set(same["status"]) <= {"ok", "timing"}
    moved = ex.compare(_summary(ndcg=0.0500, verdict="b", extra={"surprise": 1.0}), stored)
    problems = moved.set_index("name")["status"]
    assert problems["test_new_SASRec_NDCG@10"] == "moved"
    assert problems["[SASRec vs EASE | new | NDCG@10]"] == "changed"
    assert problems["surprise"] == "new"
    failed = ex.compare(_summary(status="failed"), stored)
    assert list(failed["status"]) == ["failed"]


def test_the_command_reports_what_moved(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "EXPECTED_DIR", tmp_path)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_summary()))
    bad.write_text(json.dumps(_summary(ndcg=0.03)))
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        ex.main(["check", "--summary", str(good)])
    assert ex.main(["update", "--summary", str(good)]) == 0
    assert ex.main(["check", "--summary", str(good)]) == 0
    assert ex.main(["check", "--summary", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "moved" in out and "test_new_SASRec_NDCG@10" in out


def test_a_hand_widened_band_survives_an_update(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "EXPECTED_DIR", tmp_path)
    ex.save_expected(_summary())
    path = ex.expected_path("full")
    data = json.loads(path.read_text())
    data["notebooks"]["05_next_item_generation"]["metrics"]["test_new_SASRec_NDCG@10"]["band"] = [0.04, 0.08]
    path.write_text(json.dumps(data))
    ex.save_expected(_summary())
    again = ex.load_expected("full")["notebooks"]["05_next_item_generation"]["metrics"]
    assert again["test_new_SASRec_NDCG@10"]["band"] == [0.04, 0.08]


def test_only_a_complete_run_can_be_expected(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "EXPECTED_DIR", tmp_path)
    with pytest.raises(ValueError, match="failed notebooks"):
        ex.save_expected(_summary(status="failed"))


def test_times_are_reported_not_checked(tmp_path, monkeypatch):
    """A time (or a share of peak speed) and a comparison of times belong to the machine: never a problem."""
    monkeypatch.setattr(ex, "EXPECTED_DIR", tmp_path)
    timed = {"key": "int8 vs full | requests | ms saved per request", "name_a": "int8", "name_b": "full",
             "metric": "ms saved per request", "view": "requests", "a": 40.0, "b": 42.0, "diff": 2.0,
             "low": 1.0, "high": 3.0, "n_users": 34, "outcome": "a", "verdict": "int8 beats full"}
    run = _summary(extra={"perf_fraction_of_peak": 0.23})
    run["notebooks"][0]["comparisons"].append(timed)
    ex.save_expected(run)
    other = _summary(extra={"perf_fraction_of_peak": 0.17})
    other["notebooks"][0]["comparisons"].append({**timed, "diff": -3.0, "low": -4.0, "high": -2.0, "outcome": "b",
                                                 "verdict": "full beats int8"})
    status = ex.compare(other, ex.load_expected("full")).set_index("name")["status"]
    assert status["perf_fraction_of_peak"] == "timing"
    assert status["[int8 vs full | requests | ms saved per request]"] == "timing"
    assert set(status) <= {"ok", "timing"}
