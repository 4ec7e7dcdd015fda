"""Tabular outliers without Streamlit: the one-hot encoder, archives carrying the threshold reference and the
preprocessing, the joinable export, threshold maths, and the jobs (jobs/tabular.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.errors import ArchiveError, DataError
from engine.preprocessing import OneHotEncoder
from jobs import tabular as jobs_tabular
from tests.crafted_files import with_manifest
from tests.own_csv import MISSING_ROWS, NUMERIC, own_frame
from workflows import tabular as wf

# -- the encoder ---------------------------------------------------------------------------------------------------


def test_one_hot_keeps_the_most_frequent_categories_and_sends_the_rest_to_other():
    frame = pd.DataFrame({"city": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"], "kind": ["x", "y"] * 5 + [None]})
    enc = OneHotEncoder(max_categories=2).fit(frame)
    assert enc.categories_ == {"city": ["a", "b"], "kind": ["x", "y"]}
    assert enc.feature_names_out() == ["city=a", "city=b", "city=(other)", "kind=x", "kind=y", "kind=(other)"]
    X, unseen = enc.transform(pd.DataFrame({"city": ["b", "c", "zzz"], "kind": ["y", "x", None]}))
    assert X.dtype == np.float32 and X.shape == (3, 6)
    assert X.tolist() == [[0, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 1]]
    assert unseen.tolist() == [False, True, True]  # rare 'c' and new 'zzz' go to other; None was not kept either


def test_one_hot_counts_a_missing_value_as_its_own_category():
    enc = OneHotEncoder().fit(pd.DataFrame({"c": ["a", None, None, "a", np.nan]}))
    assert enc.categories_["c"] == ["(missing)", "a"]
    X, unseen = enc.transform(pd.DataFrame({"c": [np.nan]}))
    assert X.tolist() == [[1, 0, 0]] and not unseen.any()


def test_one_hot_state_is_plain_json_and_round_trips():
    enc = OneHotEncoder(max_categories=3).fit(pd.DataFrame({"c": list("aabbcd"), "n": [1, 2, 1, 2, 1, 2]}))
    config = json.loads(json.dumps(enc.get_config()))
    back = OneHotEncoder.from_config(config)
    probe = pd.DataFrame({"c": ["a", "d", "q"], "n": [2, 1, 7]})
    for got, want in zip(back.transform(probe), enc.transform(probe)):
        np.testing.assert_array_equal(got, want)
    assert back.feature_names_out() == enc.feature_names_out()


@pytest.mark.parametrize("config", [{}, {"max_categories": 2, "categories": [["c", ["a", "b", "c"]]]},
                                    {"max_categories": 2, "categories": [["c", ["a", "a"]]]}, {"categories": 3}])
def test_a_malformed_encoder_config_is_refused(config):
    with pytest.raises(ValueError, match="one-hot encoder"):
        OneHotEncoder.from_config(config)


# -- preparation and the export -------------------------------------------------------------------------------------


def test_preparation_drops_rows_with_missing_numbers_and_says_why():
    frame = own_frame()
    prepared, mask, n = wf.prepare_training(frame, NUMERIC + ["city"], "label", "drop", normal_only=False,
                                            max_rows=1000, seed=0)
    assert sorted(prepared.reasons) == list(MISSING_ROWS) and n == 296 and mask.all()
    assert all("x2" in why for why in prepared.reasons.values())
    assert prepared.X.shape == (296, 5 + 5) and prepared.feature_names[:5] == NUMERIC
    assert prepared.frame.index.tolist() == prepared.rows.tolist()  # the table's row numbers
    assert prepared.preprocessing["numeric"] == NUMERIC and prepared.preprocessing["one_hot"]["categories"][0][0] == "city"


def test_the_encoder_is_fitted_on_the_training_rows_only():
    frame = pd.DataFrame({"x": np.arange(40.0), "c": ["a"] * 20 + ["b"] * 20, "label": [0] * 20 + [1] * 20})
    prepared, mask, _ = wf.prepare_training(frame, ["x", "c"], "label", "drop", normal_only=True, max_rows=100,
                                            seed=0)
    assert mask.sum() == 20 and prepared.encoder.categories_ == {"c": ["a"]}
    assert prepared.n_unseen == 20  # the 'b' rows were never seen in training


def _run_for(prepared, scores, train_mask=None, **answer):
    fields = dict(scores=scores, top=np.argsort(-scores)[:3], top_errors=np.zeros((3, prepared.X.shape[1])),
                  archive=b"", threshold=None, threshold_perc=None, reference=None)
    fields.update(answer)
    return wf.build_run(jobs_tabular.ScoredAnswer(**fields), wf.RunContext(prepared, "own.csv", train_mask))


def test_the_export_has_one_row_per_input_row_with_row_numbers_text_columns_and_status():
    frame = own_frame()
    prepared, mask, _ = wf.prepare_training(frame, NUMERIC + ["city"], "label", "drop", normal_only=False,
                                            max_rows=1000, seed=0)
    scores = np.linspace(0.0, 1.0, len(prepared.rows))
    run = _run_for(prepared, scores, mask)
    out = wf.scores_export(run, threshold=0.9)
    assert len(out) == 300 and out["row"].tolist() == list(range(300))
    assert out["city"].tolist() == frame["city"].tolist() and out["label"].tolist() == frame["label"].tolist()
    assert out.loc[list(MISSING_ROWS), "status"].eq("skipped").all()
    assert out.loc[list(MISSING_ROWS), "reason"].str.startswith("missing or infinite value in x2").all()
    assert out.loc[list(MISSING_ROWS), "is_outlier"].isna().all()
    scored = out[out["status"] == "scored"]
    np.testing.assert_allclose(scored["instance_score"], scores)
    assert scored["is_outlier"].tolist() == (scores > 0.9).astype(int).tolist()
    assert scored["unseen_category"].eq(0).all()
    # Joins back to the source on `row`.
    joined = frame.reset_index(names="row").merge(out[["row", "instance_score", "status"]], on="row",
                                                  how="left", validate="one_to_one")
    assert len(joined) == 300 and joined["status"].notna().all()


def test_under_the_median_policy_every_row_is_scored_and_the_export_says_what_was_filled():
    frame = own_frame()
    prepared, mask, _ = wf.prepare_training(frame, NUMERIC, None, "median", normal_only=False, max_rows=1000,
                                            seed=0)
    out = wf.scores_export(_run_for(prepared, np.zeros(300), mask), threshold=1.0)
    assert out["status"].eq("scored").all()
    assert out.loc[list(MISSING_ROWS), "filled"].eq("x2 filled with the column median").all()
    assert out["filled"].fillna("").eq("").sum() == 296


# -- threshold maths -------------------------------------------------------------------------------------------------


def test_reference_quantiles_give_the_same_percentiles_as_the_scores_at_their_levels():
    scores = np.random.default_rng(0).gamma(2.0, size=5000)
    q = wf.reference_quantiles(scores)
    assert len(q) == 101
    for p in (0.0, 50.0, 95.0, 99.0, 100.0):
        assert wf.threshold_at(q, p) == pytest.approx(np.percentile(scores, p))
    assert wf.reference_quantiles(scores[:7]).tolist() == sorted(scores[:7].tolist())  # few: kept as they are


@pytest.mark.parametrize("p", [50.0, 80.5, 95.0, 99.9])
def test_percentile_of_inverts_threshold_at(p):
    reference = np.sort(np.random.default_rng(1).normal(size=101))
    assert wf.percentile_of(reference, wf.threshold_at(reference, p)) == pytest.approx(p)


def test_a_saved_run_starts_at_its_saved_percentile_and_threshold():
    frame = own_frame()
    prepared = wf.prepare_scoring(frame, NUMERIC, None, "drop", _FakeDetector(5))
    reference = np.linspace(0.0, 10.0, 101)
    run = _run_for(prepared, np.full(296, 1.0), threshold=9.731, threshold_perc=97.3, reference=reference)
    assert run.from_archive and run.reference_is_training
    assert run.start_percentile() == 97.3 and run.threshold_for(97.3) == 9.731
    assert run.threshold_for(90.0) == pytest.approx(9.0)
    old = _run_for(prepared, np.linspace(0, 1, 296), threshold=0.5)  # an old archive: no reference
    assert not old.reference_is_training and old.threshold_for(old.start_percentile()) == 0.5


class _FakeDetector:
    def __init__(self, n, preprocessing=None):
        self.n_features_in_ = n
        self.preprocessing_ = preprocessing


def test_scoring_with_a_saved_detector_checks_the_columns_and_reapplies_its_encoding():
    frame = own_frame()
    prepared, _, _ = wf.prepare_training(frame, NUMERIC + ["city"], None, "drop", normal_only=False,
                                         max_rows=1000, seed=0)
    detector = _FakeDetector(prepared.X.shape[1], json.loads(json.dumps(prepared.preprocessing)))
    new = frame.copy()
    new.loc[0, "city"] = "Berlin"
    again = wf.prepare_scoring(new, ["city"] + NUMERIC, None, "drop", detector)
    assert again.feature_names == prepared.feature_names and again.n_unseen == 1
    with pytest.raises(DataError, match="trained on 6 feature"):
        wf.prepare_scoring(new, NUMERIC, None, "drop", detector)
    with pytest.raises(DataError, match="trained on 5 feature"):
        wf.prepare_scoring(new, NUMERIC[:4], None, "drop", _FakeDetector(5))


# -- archives: threshold reference and preprocessing -----------------------------------------------------------------


@pytest.fixture(scope="module")
def answer():
    frame = own_frame()
    prepared, mask, _ = wf.prepare_training(frame, NUMERIC + ["city"], "label", "drop", normal_only=False,
                                            max_rows=1000, seed=0)

    class Progress:
        cancel = None
        time_budget = None
        stages: list = []

        def report(self, event):
            pass

        def set_stage(self, message, fraction=None):
            self.stages.append(message)

    request = jobs_tabular.FitRequest(X=prepared.X, train_mask=mask, epochs=1, batch_size=128, seed=0,
                                      feature_names=prepared.feature_names, preprocessing=prepared.preprocessing,
                                      explained_rows=10)
    return prepared, mask, jobs_tabular.fit_and_score(request, Progress())


def test_the_training_job_answers_scores_and_an_archive_carrying_threshold_reference_and_preprocessing(answer):
    from engine.saving import load_detector

    prepared, mask, out = answer
    assert out.scores.shape == (296,) and len(out.top) == 10 and out.top_errors.shape == (10, 10)
    assert out.threshold == pytest.approx(np.percentile(out.scores[mask], 95.0))
    detector = load_detector(out.archive)
    assert detector.threshold == pytest.approx(out.threshold) and detector.threshold_perc_ == 95.0
    np.testing.assert_allclose(detector.reference_scores_, wf.reference_quantiles(out.scores[mask]))
    assert detector.preprocessing_ == prepared.preprocessing
    assert detector.feature_names_ == prepared.feature_names
    np.testing.assert_allclose(detector.score(prepared.X), out.scores, rtol=1e-5, atol=1e-6)


def test_the_scoring_job_passes_on_what_the_archive_carries(answer):
    prepared, mask, out = answer
    again = jobs_tabular.score(jobs_tabular.ScoreRequest(X=prepared.X[:50], archive=out.archive, explained_rows=5),
                               type("P", (), {"set_stage": lambda *a, **k: None})())
    assert again.threshold == pytest.approx(out.threshold) and again.threshold_perc == 95.0
    np.testing.assert_allclose(again.reference, wf.reference_quantiles(out.scores[mask]))
    np.testing.assert_allclose(again.scores, out.scores[:50], rtol=1e-5, atol=1e-6)


def test_an_archive_without_the_new_entries_still_loads_with_none(answer):
    from engine.saving import load_detector

    def drop(manifest):
        manifest.pop("threshold_reference")
        manifest.pop("preprocessing")

    detector = load_detector(with_manifest(answer[2].archive, drop))
    assert detector.threshold_perc_ is None and detector.reference_scores_ is None and detector.preprocessing_ is None
    assert detector.threshold == pytest.approx(answer[2].threshold)


@pytest.mark.parametrize("reference", [{"percentile": 140.0, "scores": [1.0]}, {"percentile": 95.0, "scores": "x"},
                                       {"percentile": 95.0, "scores": []}, ["not", "an", "object"]])
def test_a_tampered_threshold_reference_is_refused(answer, reference):
    from engine.saving import load_detector

    with pytest.raises(ArchiveError, match="threshold reference"):
        load_detector(with_manifest(answer[2].archive, lambda m: m.update(threshold_reference=reference)))


def test_the_download_carries_the_threshold_and_percentile_chosen_on_the_slider(answer):
    from engine.saving import load_detector

    held = wf.DetectorArchive(answer[2].archive)
    detector = load_detector(held.to_bytes(threshold=1.25, threshold_perc_=97.5))
    assert detector.threshold == 1.25 and detector.threshold_perc_ == 97.5
    assert detector.reference_scores_ is not None and detector.preprocessing_ is not None
    assert held.to_bytes() == answer[2].archive
