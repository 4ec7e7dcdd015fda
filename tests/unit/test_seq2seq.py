"""OutlierSeq2Seq: the specification of the time-series outlier detector (tiny networks, seconds each)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.errors import ArchiveError, DataError, NotFittedError, TrainingCancelled
from engine.od import OutlierSeq2Seq
from engine.od.seq2seq import Seq2Seq, seq2seq_loss
from engine.saving import detector_to_bytes, load_detector
from engine.training import CancelToken

SEQ_LEN = 10
N_STEPS = 603  # not a multiple of SEQ_LEN: the last window is ragged


def make_series(n_steps=N_STEPS, seed=0, offset=(0.0, 0.0), scale=(1.0, 1.0)):
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps) * 0.3
    X = np.stack([np.sin(t), np.cos(0.5 * t)], axis=1) + rng.normal(0, 0.1, (n_steps, 2))
    return (X * np.asarray(scale) + np.asarray(offset)).astype("float32")


def fit_detector(X, seed=0, **fit_kwargs):
    detector = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=8)
    fit_kwargs.setdefault("epochs", 2)
    return detector.fit(X, verbose=False, seed=seed, **fit_kwargs)


@pytest.fixture(scope="module")
def series():
    return make_series()


@pytest.fixture(scope="module")
def fitted(series):
    return fit_detector(series)


@pytest.fixture()
def detector(fitted):
    """The fitted detector with a fresh per-feature threshold (tests may change it)."""
    fitted.threshold = np.array([0.5, 0.7], dtype=np.float32)
    return fitted


# ---------------------------------------------------------------- shapes and windows

def test_2d_series_scores_map_back_to_every_time_step(detector, series):
    fscore, iscore = detector.score(series)
    assert fscore.shape == (N_STEPS, 2)
    assert iscore.shape == (N_STEPS,)
    assert np.isfinite(fscore).all()


def test_3d_windows_give_scores_per_window(detector, series):
    windows = series[:600].reshape(60, SEQ_LEN, 2)
    fscore, iscore = detector.score(windows)
    assert fscore.shape == (60, SEQ_LEN, 2)
    assert iscore.shape == (60,)


def test_ragged_end_is_scored_by_a_window_aligned_to_the_end(detector, series):
    fscore_2d, _ = detector.score(series)
    full_windows = series[:600].reshape(60, SEQ_LEN, 2)
    fscore_windows, _ = detector.score(full_windows)
    np.testing.assert_allclose(fscore_2d[:600], fscore_windows.reshape(600, 2), rtol=1e-5, atol=1e-5)
    tail_window, _ = detector.score(series[None, -SEQ_LEN:])
    np.testing.assert_allclose(fscore_2d[600:], tail_window[0, -3:], rtol=1e-5, atol=1e-5)


def test_series_of_exactly_one_window_is_scored(detector, series):
    fscore, iscore = detector.score(series[:SEQ_LEN])
    assert fscore.shape == (SEQ_LEN, 2) and iscore.shape == (SEQ_LEN,)


def test_score_details_gives_everything_a_chart_needs(detector, series):
    details = detector.score_details(series, outlier_perc=50)
    for key in ("reconstruction", "squared_error", "threshold_estimate", "raw_feature_score", "feature_score"):
        assert details[key].shape == series.shape, key
    np.testing.assert_allclose(details["raw_feature_score"], details["squared_error"] - details["threshold_estimate"],
                               rtol=1e-5, atol=1e-5)
    fscore, iscore = detector.score(series, outlier_perc=50)
    np.testing.assert_allclose(details["feature_score"], fscore, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(details["instance_score"], iscore, rtol=1e-5, atol=1e-5)
    assert details["window_start"].tolist() == list(range(0, 600, SEQ_LEN)) + [N_STEPS - SEQ_LEN]
    assert details["window_score"].shape == (61,)


def test_score_details_without_threshold_still_gives_raw_scores(fitted, series):
    saved, fitted.threshold = fitted.threshold, None
    try:
        details = fitted.score_details(series)
    finally:
        fitted.threshold = saved
    assert details["feature_score"] is None and details["window_score"] is None
    assert details["raw_feature_score"].shape == series.shape


def test_raw_series_go_in_and_reconstructions_come_out_in_original_units(fitted, series):
    """The stored standardiser: scores do not depend on the units, reconstructions are in the data's units."""
    rescaled = series * np.array([50.0, 0.01], dtype="float32") + np.array([1000.0, -3.0], dtype="float32")
    other = fit_detector(rescaled)
    np.testing.assert_allclose(other.scaler_.mean_, rescaled.mean(axis=0), rtol=1e-4)
    raw_a = fitted.score_details(series)["raw_feature_score"]
    raw_b = other.score_details(rescaled)["raw_feature_score"]
    np.testing.assert_allclose(raw_a, raw_b, rtol=1e-3, atol=1e-3)
    recon = other.reconstruct(rescaled)
    assert recon.shape == rescaled.shape
    back_in_series_units = (recon - np.array([1000.0, -3.0])) / np.array([50.0, 0.01])
    np.testing.assert_allclose(back_in_series_units, fitted.reconstruct(series), atol=1e-2)


# ---------------------------------------------------------------- scores

@pytest.mark.parametrize("outlier_perc", [100, 50, 30, 10, 1, 0])
def test_instance_score_is_mean_of_top_k_feature_scores(outlier_perc):
    rng = np.random.default_rng(1)
    fscore = rng.normal(size=(7, 4, 5)).astype("float32")
    detector = OutlierSeq2Seq(n_features=5, seq_len=4)
    k = max(1, math.ceil(outlier_perc / 100 * 20))
    expected = np.sort(fscore.reshape(7, -1), axis=1)[:, -k:].mean(axis=1)
    np.testing.assert_allclose(detector.instance_score(fscore, outlier_perc), expected, rtol=1e-6)


def test_feature_score_subtracts_estimate_and_per_feature_threshold():
    detector = OutlierSeq2Seq(n_features=2, seq_len=3, threshold=np.array([0.5, 2.0]))
    X = np.array([[[1.0, 3.0]]])
    recon = np.zeros_like(X)
    estimate = np.full_like(X, 0.25)
    np.testing.assert_allclose(detector.feature_score(X, recon, estimate), [[[0.25, 6.75]]])


def test_a_large_spike_is_flagged_at_its_step_and_feature(detector, series):
    spiked = series.copy()
    spiked[333, 1] += 20.0 * series[:, 1].std()
    detector.infer_threshold(series, threshold_perc=[99, 99])
    preds = detector.predict(spiked, outlier_type="feature")
    flags = preds["data"]["is_outlier"]
    assert flags[333, 1] == 1
    assert flags.sum() < 0.05 * flags.size


# ---------------------------------------------------------------- thresholds

@pytest.mark.parametrize("outlier_perc", [100, 40])
@pytest.mark.parametrize("ndim", [2, 3])
def test_per_feature_percentiles_give_per_feature_exceedance(detector, series, outlier_perc, ndim):
    X = series if ndim == 2 else series[:600].reshape(60, SEQ_LEN, 2)
    detector.infer_threshold(X, outlier_perc=outlier_perc, threshold_perc=[90, 70])
    assert detector.threshold.shape == (2,)
    assert detector.threshold[0] != detector.threshold[1]
    fscore, _ = detector.score(X, outlier_perc=outlier_perc)
    rates = (fscore.reshape(-1, 2) > 0).mean(axis=0)
    np.testing.assert_allclose(rates, [0.10, 0.30], atol=0.01)


def test_per_feature_thresholds_hold_on_new_data(detector):
    detector.infer_threshold(make_series(3000, seed=1), threshold_perc=[95, 80])
    fscore, _ = detector.score(make_series(3000, seed=2))
    rates = (fscore > 0).mean(axis=0)
    np.testing.assert_allclose(rates, [0.05, 0.20], atol=0.04)


@pytest.mark.parametrize("outlier_perc", [100, 25])
@pytest.mark.parametrize("ndim", [2, 3])
def test_scalar_percentile_keeps_a_scalar_threshold(detector, series, outlier_perc, ndim):
    X = series if ndim == 2 else series[:600].reshape(60, SEQ_LEN, 2)
    detector.threshold = 0.0
    detector.infer_threshold(X, outlier_perc=outlier_perc, threshold_perc=80)
    assert np.ndim(detector.threshold) == 0 and isinstance(detector.threshold, float)
    fscore, iscore = detector.score(X, outlier_perc=outlier_perc)
    # With outlier_perc=100 the reference takes the percentile of all feature scores; otherwise of instance scores.
    flagged = (fscore > 0).mean() if outlier_perc == 100 else (iscore > 0).mean()
    assert abs(flagged - 0.20) <= 0.02


def test_infer_threshold_adds_to_the_current_threshold(detector, series):
    detector.threshold = 0.0
    detector.infer_threshold(series, threshold_perc=90)
    first = detector.threshold
    detector.infer_threshold(series, threshold_perc=90)  # the same data again: its 90th percentile is now 0
    assert detector.threshold == pytest.approx(first, abs=1e-5)
    detector.threshold = 1.5
    raw, _ = detector.score(series)
    raw = raw + 1.5
    detector.infer_threshold(series, threshold_perc=90)
    assert detector.threshold == pytest.approx(1.5 + float(np.percentile(raw - 1.5, 90)), abs=1e-4)


def test_scalar_percentile_on_a_per_feature_threshold_stays_per_feature(detector, series):
    detector.threshold = np.array([0.5, 0.7], dtype=np.float32)
    fscore, _ = detector.score(series)
    shift = np.percentile(fscore, 75)
    detector.infer_threshold(series, threshold_perc=75)
    np.testing.assert_allclose(detector.threshold, [0.5 + shift, 0.7 + shift], rtol=1e-5)


def test_per_feature_percentiles_from_a_scalar_threshold_become_per_feature(detector, series):
    detector.threshold = 0.25
    fscore, _ = detector.score(series)
    detector.infer_threshold(series, threshold_perc=[90, 70])
    expected = 0.25 + np.array([np.percentile(fscore[:, 0], 90), np.percentile(fscore[:, 1], 70)])
    np.testing.assert_allclose(detector.threshold, expected, rtol=1e-5)


def test_per_feature_percentiles_must_match_the_features(detector, series):
    with pytest.raises(ValueError, match="one per feature"):
        detector.infer_threshold(series, threshold_perc=[90, 90, 90])


def test_threshold_of_wrong_length_is_refused(detector, series):
    detector.threshold = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one per feature"):
        detector.score(series)


# ---------------------------------------------------------------- predict payload

@pytest.mark.parametrize("outlier_type", ["instance", "feature"])
def test_predict_returns_reference_payload(detector, series, outlier_type):
    preds = detector.predict(series, outlier_type=outlier_type, outlier_perc=50)
    assert set(preds) == {"meta", "data"}
    assert set(preds["data"]) == {"instance_score", "feature_score", "is_outlier"}
    assert preds["meta"]["name"] == "OutlierSeq2Seq" and preds["meta"]["data_type"] == "time-series"
    fscore, iscore = preds["data"]["feature_score"], preds["data"]["instance_score"]
    expected = fscore > 0 if outlier_type == "feature" else iscore > 0
    np.testing.assert_array_equal(preds["data"]["is_outlier"], expected.astype(int))
    assert preds["data"]["is_outlier"].shape == (series.shape if outlier_type == "feature" else (N_STEPS,))


def test_predict_can_leave_scores_out(detector, series):
    preds = detector.predict(series, return_feature_score=False, return_instance_score=False)
    assert preds["data"]["feature_score"] is None and preds["data"]["instance_score"] is None
    assert preds["data"]["is_outlier"].shape == (N_STEPS,)


def test_predict_rejects_unknown_outlier_type(detector, series):
    with pytest.raises(ValueError, match="'instance' or 'feature'"):
        detector.predict(series, outlier_type="window")


def test_small_batch_size_gives_same_scores(detector, series):
    a, _ = detector.score(series)
    b, _ = detector.score(series, batch_size=7)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- errors

def test_predict_before_fit_raises_not_fitted(series):
    detector = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN, threshold=1.0)
    with pytest.raises(NotFittedError, match="fit"):
        detector.predict(series)


def test_predict_with_threshold_set_to_none_raises_not_fitted(fitted, series):
    saved, fitted.threshold = fitted.threshold, None
    try:
        with pytest.raises(NotFittedError, match="infer_threshold"):
            fitted.predict(series)
    finally:
        fitted.threshold = saved


def test_no_threshold_means_zero_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="engine.od.seq2seq"):
        detector = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN)
    assert detector.threshold == 0.0
    assert "defaults to 0.0" in caplog.text


@pytest.mark.parametrize("outlier_type", ["instance", "feature"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_score_and_predict_work_right_after_fit(series, outlier_type, ndim):
    detector = fit_detector(series, epochs=1)
    X = series if ndim == 2 else series[:600].reshape(60, SEQ_LEN, 2)
    fscore, iscore = detector.score(X)
    assert fscore.shape == X.shape and iscore.shape == (len(X),)
    details = detector.score_details(X)
    # With the default threshold 0 the learned estimate is the threshold: score = (x - x_hat)^2 - estimate.
    np.testing.assert_allclose(fscore, details["squared_error"] - details["threshold_estimate"], rtol=1e-5, atol=1e-6)
    preds = detector.predict(X, outlier_type=outlier_type)
    expected_shape = X.shape if outlier_type == "feature" else (len(X),)
    assert preds["data"]["is_outlier"].shape == expected_shape
    score = fscore if outlier_type == "feature" else iscore
    np.testing.assert_array_equal(preds["data"]["is_outlier"], (score > 0).astype(int))


def test_wrong_feature_count_is_a_data_error(detector, series):
    with pytest.raises(DataError, match="3 features but the model was built for 2"):
        detector.score(np.zeros((50, 3)))


def test_series_shorter_than_one_window_is_a_data_error(detector, series):
    with pytest.raises(DataError, match="too short for one window"):
        detector.score(series[: SEQ_LEN - 1])
    with pytest.raises(DataError, match="too short for one window"):
        fit_detector(series[: SEQ_LEN - 1])


def test_windows_of_wrong_length_are_a_data_error(detector, series):
    with pytest.raises(DataError, match="seq_len=10"):
        detector.score(series[:600].reshape(50, 12, 2))


def test_nan_is_a_data_error(detector, series):
    bad = series.copy()
    bad[17, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        detector.score(bad)
    with pytest.raises(DataError, match="NaN"):
        fit_detector(bad)


# ---------------------------------------------------------------- training

def test_fit_is_reproducible_under_a_seed(fitted, series):
    again = fit_detector(series, seed=0)
    np.testing.assert_allclose(
        again.score_details(series)["raw_feature_score"], fitted.score_details(series)["raw_feature_score"],
        rtol=1e-5, atol=1e-6,
    )
    assert again.history_.loss == pytest.approx(fitted.history_.loss, rel=1e-5)


def test_default_network_weights_come_from_the_seed():
    def weights(seed):
        model = Seq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=8, seed=seed)
        model(np.zeros((1, SEQ_LEN, 2), "float32"))
        return model.get_weights()

    same, again, other = weights(3), weights(3), weights(4)
    for a, b in zip(same, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(same, other) if a.any())
    # the encoder's two directions start from different weights
    model = Seq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=8, seed=3)
    model(np.zeros((1, SEQ_LEN, 2), "float32"))
    forward, backward = model.encoder.forward_layer, model.encoder.backward_layer
    assert not np.array_equal(forward.get_weights()[0], backward.get_weights()[0])


def test_training_reports_progress_and_log_metric(series):
    events = []
    detector = fit_detector(series, epochs=2, log_metric=("mae", keras.metrics.MeanAbsoluteError()),
                            progress=events.append, window_stride=5, batch_size=60)
    assert detector.history_.epochs_run == 2
    assert len(detector.history_.metrics["mae"]) == 2 and detector.history_.metrics["mae"][-1] > 0
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert len(epoch_events) == 2
    # stride 5 over 603 steps: starts 0, 5, …, 590 and the end-aligned 593 = 120 windows, 2 batches of 60
    assert epoch_events[0].steps_per_epoch == 2


def test_cancelled_training_keeps_nothing(series):
    token = CancelToken()
    token.cancel()
    detector = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=8)
    with pytest.raises(TrainingCancelled):
        detector.fit(series, verbose=False, cancel=token)
    assert detector.seq2seq_ is None and detector.scaler_ is None


def test_threshold_term_trains_only_the_threshold_network(series):
    """Its target (the squared error) and its input (the decoder states) are cut from the gradient."""
    model = Seq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=8, seed=0)
    x = tf.constant(series[:200].reshape(20, SEQ_LEN, 2))
    model(x)
    with tf.GradientTape(persistent=True) as tape:
        outputs = model(x)
        threshold_only = seq2seq_loss(x, outputs, loss_fn=lambda a, b: tf.zeros(()), beta=1.0)
        full = seq2seq_loss(x, outputs, beta=1.0)

    def grad(loss, layer):
        variables = [w.value for w in layer.trainable_weights]
        grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return max(float(np.abs(g).max()) for g in grads)

    assert grad(threshold_only, model.threshold_head) > 0.0
    assert grad(threshold_only, model.threshold_net) > 0.0
    for layer in (model.output_layer, model.decoder, model.encoder):
        assert grad(threshold_only, layer) == 0.0, layer.name
        assert grad(full, layer) > 0.0, layer.name


def test_custom_threshold_net_is_used_and_left_untouched(series):
    net = keras.Sequential([keras.Input((SEQ_LEN, 8)), keras.layers.Dense(5, activation="tanh")])
    before = [w.copy() for w in net.get_weights()]
    detector = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN, latent_dim=8, threshold_net=net)
    detector.fit(series, epochs=1, verbose=False, seed=0)
    assert detector.seq2seq_.threshold_net.layers[0].units == 5
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- saving

def test_save_load_round_trip_gives_identical_scores(detector, series, tmp_path):
    detector.infer_threshold(series, outlier_perc=50, threshold_perc=[90, 80])
    path = tmp_path / "seq2seq.lantern"
    detector.save(path)
    loaded = OutlierSeq2Seq.load(path)
    assert isinstance(loaded, OutlierSeq2Seq)
    np.testing.assert_array_equal(loaded.threshold, detector.threshold)
    assert loaded.history_.loss == detector.history_.loss
    for a, b in zip(detector.score(series, outlier_perc=50), loaded.score(series, outlier_perc=50)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(detector.reconstruct(series), loaded.reconstruct(series))


def test_archive_bytes_load_through_engine_saving(detector, series):
    loaded = load_detector(detector_to_bytes(detector))
    np.testing.assert_array_equal(loaded.score(series)[0], detector.score(series)[0])


def test_foreign_model_cannot_be_saved(series):
    class Echo(keras.Model):
        def call(self, x):
            return x, tf.zeros_like(x)

    detector = OutlierSeq2Seq(n_features=2, seq_len=SEQ_LEN, threshold=1.0, seq2seq=Echo())
    fscore, _ = detector.score(series)  # usable in memory, on unscaled data
    np.testing.assert_allclose(fscore, -1.0)
    with pytest.raises(ArchiveError, match="engine Seq2Seq"):
        detector_to_bytes(detector)
