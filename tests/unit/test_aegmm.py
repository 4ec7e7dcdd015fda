"""Specification of OutlierAEGMM (engine.od.aegmm) and its Gaussian mixture maths (engine.od.gmm).

Data: normal rows lie near a line through two clusters in 6 raw-unit columns (very different
offsets and scales, so the stored standardiser matters); outliers are scattered off the line.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal
from sklearn.metrics import roc_auc_score

from engine.errors import DataError, NotFittedError, TrainingCancelled, TrainingDivergedError
from engine.od import OutlierAEGMM
from engine.od import gmm
from engine.od.aegmm import AEGMM, MAX_ROWS_PER_STEP, default_networks, eucl_cosim_features, loss_aegmm
from engine.saving import detector_to_bytes, load_detector
from engine.training import CancelToken

DIRECTION = np.array([[1.0, -2.0, 0.5, 3.0, -1.0, 2.0]])
OFFSET = np.array([100.0, 0.0, -3.0, 7.0, 0.0, 1e3])
N_FEATURES = DIRECTION.shape[1]


def normal_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    t = rng.choice([-1.0, 1.0], size=(n, 1)) * (1.5 + 0.3 * rng.normal(size=(n, 1)))
    return (t @ DIRECTION + 0.05 * rng.normal(size=(n, N_FEATURES)) + OFFSET).astype(np.float32)


def outlier_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    return (3.0 * rng.normal(size=(n, N_FEATURES)) * np.abs(DIRECTION) + OFFSET).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {"train": normal_rows(1024, rng), "test": normal_rows(500, rng), "outliers": outlier_rows(50, rng)}


@pytest.fixture(scope="module")
def fitted(data):
    return OutlierAEGMM().fit(data["train"], epochs=5, batch_size=64, verbose=False, seed=0)


@pytest.fixture
def detector(fitted, data):
    """The shared fitted detector with a fresh 95th-percentile threshold."""
    fitted.infer_threshold(data["train"], threshold_perc=95)
    return fitted


# --------------------------------------------------------------------------- payload and threshold
def test_predict_payload_has_the_reference_keys_shapes_and_types(detector, data):
    X = np.r_[data["test"][:20], data["outliers"][:5]]
    out = detector.predict(X)
    assert set(out) == {"meta", "data"}
    assert set(out["data"]) == {"instance_score", "feature_score", "is_outlier"}
    assert out["meta"]["name"] == "OutlierAEGMM" and out["meta"]["detector_type"] == "outlier"
    assert out["data"]["feature_score"] is None
    scores, flags = out["data"]["instance_score"], out["data"]["is_outlier"]
    assert isinstance(scores, np.ndarray) and scores.shape == (25,) and scores.dtype.kind == "f"
    assert isinstance(flags, np.ndarray) and flags.shape == (25,) and flags.dtype.kind == "i"
    assert set(np.unique(flags)) <= {0, 1}


@pytest.mark.parametrize("threshold_perc", [50.0, 90.0, 95.0])
def test_share_of_training_scores_below_the_threshold_matches_threshold_perc(fitted, data, threshold_perc):
    fitted.infer_threshold(data["train"], threshold_perc=threshold_perc)
    share_below = 100.0 * np.mean(fitted.score(data["train"]) <= fitted.threshold)
    assert abs(share_below - threshold_perc) <= 5.0


def test_is_outlier_is_score_above_threshold(detector, data):
    out = detector.predict(np.r_[data["test"], data["outliers"]])
    np.testing.assert_array_equal(out["data"]["is_outlier"], (out["data"]["instance_score"] > detector.threshold))
    assert 0 < out["data"]["is_outlier"].sum() < len(out["data"]["is_outlier"])


def test_return_instance_score_false_gives_none(detector, data):
    out = detector.predict(data["test"][:10], return_instance_score=False)
    assert out["data"]["instance_score"] is None
    assert out["data"]["is_outlier"].shape == (10,)


def test_outliers_score_higher_than_inliers(detector, data):
    scores = detector.score(np.r_[data["test"], data["outliers"]])
    labels = np.r_[np.zeros(len(data["test"])), np.ones(len(data["outliers"]))]
    assert roc_auc_score(labels, scores) >= 0.9


def test_score_is_independent_of_batch_size(detector, data):
    X = np.r_[data["test"], data["outliers"]]
    # Scores are float32: the CPU kernels block a batch of 7 rows differently from a whole chunk, and the
    # mixture's log-sum-exp turns last-bit differences into relative differences up to ~2e-4 on some CPUs.
    np.testing.assert_allclose(detector.score(X, batch_size=7), detector.score(X), rtol=1e-3, atol=1e-5)


def test_default_batch_size_is_capped_so_memory_stays_bounded(detector, data, monkeypatch):
    monkeypatch.setattr("engine.od.aegmm.MAX_ROWS_PER_STEP", 64)
    seen = []
    energy = detector._compiled["energy"]
    monkeypatch.setitem(detector._compiled, "energy", lambda x, *p: seen.append(len(x)) or energy(x, *p))
    detector.score(data["test"])  # default batch_size=1e10
    assert max(seen) == 64 and sum(seen) == len(data["test"])
    assert MAX_ROWS_PER_STEP == 65_536


# --------------------------------------------------------------------------- fitted state
def test_fitted_state_is_explicit(fitted, data):
    assert isinstance(fitted.aegmm_, AEGMM)
    assert fitted.n_features_in_ == N_FEATURES
    assert set(fitted.gmm_params_) == {"phi", "mu", "cov", "cholesky"}
    phi, mu, cov, chol = (fitted.gmm_params_[k] for k in ("phi", "mu", "cov", "cholesky"))
    assert phi.shape == (2,) and mu.shape == (2, 3) and cov.shape == (2, 3, 3)  # code 1 + 2 recon features
    assert all(v.dtype == np.float64 for v in fitted.gmm_params_.values())
    assert np.isclose(phi.sum(), 1.0)
    np.testing.assert_allclose(chol @ np.swapaxes(chol, 1, 2), cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fitted.scaler_.mean_, data["train"].astype(np.float64).mean(0), rtol=1e-6)
    assert fitted.history_.epochs_run == 5 and len(fitted.history_.loss) == 5


def test_mixture_is_estimated_over_the_whole_training_set(fitted, data):
    x = fitted.scaler_.transform(data["train"])
    _, z, gamma = fitted.aegmm_(x)
    phi, mu, cov = gmm.gmm_params(z, gamma)
    np.testing.assert_allclose(fitted.gmm_params_["phi"], phi.numpy(), rtol=1e-5)
    np.testing.assert_allclose(fitted.gmm_params_["mu"], mu.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fitted.gmm_params_["cov"], cov.numpy(), rtol=1e-4, atol=1e-5)


def test_feature_reconstruction_error_points_at_the_corrupted_feature(detector, data):
    rows = data["test"][:20].copy()
    rows[:, 3] += 10 * data["train"][:, 3].std()
    error = detector.feature_reconstruction_error(rows)
    assert error.shape == (20, N_FEATURES) and (error >= 0).all()
    assert (error.argmax(axis=1) == 3).mean() >= 0.9
    assert detector.reconstruct(rows).shape == (20, N_FEATURES)


def test_reconstruct_is_in_the_units_of_x(detector, data):
    recon = detector.reconstruct(data["test"])
    assert np.abs(recon.mean(0) - data["test"].mean(0)).max() < 0.5 * data["train"].std(0).max()
    assert abs(recon[:, 5].mean() - 1e3) < 5


def test_without_standardisation_no_scaler_is_stored(data):
    od = OutlierAEGMM().fit(data["train"] - OFFSET.astype(np.float32), epochs=1, batch_size=256, verbose=False,
                            seed=0, standardize=False)
    assert od.scaler_ is None
    assert np.isfinite(od.score(data["test"] - OFFSET.astype(np.float32))).all()


# --------------------------------------------------------------------------- errors
def test_predict_before_a_threshold_is_set_says_how_to_set_one(data):
    od = OutlierAEGMM()
    with pytest.raises(NotFittedError, match="fit"):
        od.score(data["test"])
    od = OutlierAEGMM().fit(data["train"][:256], epochs=1, batch_size=64, verbose=False, seed=0)
    with pytest.raises(NotFittedError, match="infer_threshold"):
        od.predict(data["test"])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((5, N_FEATURES + 1), np.float32), "features"),
        (np.full((5, N_FEATURES), np.nan, np.float32), "NaN"),
        (np.array([["a"] * N_FEATURES] * 3), "non-numeric"),
        (np.zeros((0, N_FEATURES), np.float32), "rows"),
        (np.zeros(N_FEATURES, np.float32), "2-D"),
    ],
    ids=["wrong-width", "nan", "strings", "empty", "1-D"],
)
def test_bad_x_gives_a_data_error(detector, bad, message):
    with pytest.raises(DataError, match=message):
        detector.score(bad)
    with pytest.raises(DataError, match=message):
        detector.predict(bad)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.array([[1.0, np.inf]] * 4), [["x", "y"]] * 4])
def test_fit_rejects_bad_x(bad):
    with pytest.raises(DataError):
        OutlierAEGMM().fit(bad, epochs=1, verbose=False)


def test_an_encoder_built_for_another_width_is_reported(data):
    encoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(DataError, match="encoder_net"):
        OutlierAEGMM(encoder_net=encoder).fit(data["train"][:100], epochs=1, verbose=False)


def test_bad_batch_size_is_rejected(detector, data):
    with pytest.raises(ValueError, match="batch_size"):
        detector.score(data["test"], batch_size=0)


def test_a_mixture_that_cannot_be_estimated_raises_instead_of_giving_nan_scores(data):
    def exploding_features(x, y):  # infinite features never reach the (reconstruction-only) loss
        return tf.fill((tf.shape(x)[0], 2), np.float32(np.inf))

    def reconstruction_only(x_true, x_pred, z, gamma):
        return tf.reduce_mean(tf.square(x_true - x_pred))

    od = OutlierAEGMM(recon_features=exploding_features)
    with pytest.raises(TrainingDivergedError, match="not finite"):
        od.fit(data["train"][:256], loss_fn=reconstruction_only, epochs=1, batch_size=64, verbose=False, seed=0)
    assert od.gmm_params_ is None


def test_a_nan_loss_stops_training_with_a_clear_error(data):
    def nan_loss(x_true, x_pred, z, gamma):
        return tf.reduce_mean(x_pred) * np.float32(np.nan)

    with pytest.raises(TrainingDivergedError, match="learning rate"):
        OutlierAEGMM().fit(data["train"][:256], loss_fn=nan_loss, epochs=1, batch_size=64, verbose=False)


# --------------------------------------------------------------------------- training loop integration
def test_keras_callbacks_are_honoured(data):
    class StopAfterThreeBatches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if self.batches == 3:
                self.model.stop_training = True

    callback = StopAfterThreeBatches()
    events = []
    od = OutlierAEGMM(n_gmm=3).fit(
        data["train"][:512], epochs=4, batch_size=64, verbose=False, seed=0, callbacks=[callback],
        progress=events.append, log_metric=("mse", keras.metrics.MeanSquaredError()),
    )
    assert callback.batches == 3
    assert od.history_.stopped == "callback" and od.history_.epochs_run == 1
    assert [e.step for e in events if e.kind == "batch"] == [1, 2, 3]
    assert od.history_.metrics["mse"][0] > 0
    assert od.gmm_params_["phi"].shape == (3,)  # the mixture is still estimated after an early stop


def test_cancel_token_raises_and_leaves_the_detector_unfitted(data):
    token = CancelToken()
    token.cancel()
    od = OutlierAEGMM()
    with pytest.raises(TrainingCancelled):
        od.fit(data["train"][:200], epochs=2, verbose=False, cancel=token)
    assert od.aegmm_ is None and od.gmm_params_ is None


def test_user_networks_are_used(data):
    encoder = keras.Sequential([keras.Input((N_FEATURES,)), keras.layers.Dense(8, activation="tanh"),
                                keras.layers.Dense(2)])
    decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, activation="tanh"),
                                keras.layers.Dense(N_FEATURES)])
    od = OutlierAEGMM(encoder_net=encoder, decoder_net=decoder).fit(
        data["train"][:256], epochs=1, batch_size=64, verbose=False, seed=0)
    assert od.aegmm_.encoder is encoder and od.aegmm_.decoder is decoder
    assert od.gmm_params_["mu"].shape == (2, 4)  # code 2 + 2 recon features


# --------------------------------------------------------------------------- reference bugs fixed
def test_distance_is_relative_to_the_smaller_norm():
    x = tf.constant([[300.0, 400.0], [3.0, 4.0]])
    y = tf.constant([[3.0, 4.0], [6.0, 8.0]])
    features = eucl_cosim_features(x, y).numpy()
    # a far-away row with a bounded reconstruction gets a large distance (495 / 5), not about 1
    np.testing.assert_allclose(features[:, 0], [99.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(features[:, 1], [1.0, 1.0], rtol=1e-5)
    assert eucl_cosim_features(x * 10, y).numpy()[0, 0] == pytest.approx(100.0)  # clipped at max_eucl


def test_distance_features_are_finite_for_zero_rows_and_perfect_reconstructions():
    x = tf.constant([[0.0, 0.0], [3.0, 4.0], [1e-8, 0.0]])
    y = tf.Variable([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    with tf.GradientTape() as tape:
        features = eucl_cosim_features(x, y)
    grads = tape.gradient(features, y)
    assert np.isfinite(features.numpy()).all() and np.isfinite(grads.numpy()).all()
    np.testing.assert_allclose(features.numpy()[1], [0.0, 1.0], atol=1e-6)
    assert (features.numpy()[:, 0] >= 0).all() and (features.numpy()[:, 0] <= 100).all()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_no_seed_gives_nan_scores(data, seed):
    od = OutlierAEGMM().fit(data["train"][:320], epochs=2, batch_size=32, verbose=False, seed=seed)
    assert np.isfinite(od.score(np.r_[data["test"], data["outliers"], 1e4 * data["outliers"]])).all()


# --------------------------------------------------------------------------- archives
def test_save_load_round_trip_gives_identical_scores(detector, data, tmp_path):
    path = detector.save(tmp_path / "aegmm.lantern")
    loaded = OutlierAEGMM.load(path)
    X = np.r_[data["test"], data["outliers"]]
    np.testing.assert_array_equal(loaded.score(X), detector.score(X))
    assert loaded.threshold == detector.threshold
    assert loaded.predict(X)["data"]["is_outlier"].tolist() == detector.predict(X)["data"]["is_outlier"].tolist()
    np.testing.assert_array_equal(loaded.feature_reconstruction_error(X), detector.feature_reconstruction_error(X))
    assert loaded.history_.loss == detector.history_.loss
    for key, value in detector.gmm_params_.items():
        np.testing.assert_array_equal(loaded.gmm_params_[key], value)
    # a detector with default networks still rebuilds them when refitted
    assert loaded.encoder_net is None and loaded.aegmm is None


def test_archive_bytes_load_through_the_generic_loader(detector, data):
    loaded = load_detector(io.BytesIO(detector_to_bytes(detector)))
    assert isinstance(loaded, OutlierAEGMM)
    np.testing.assert_array_equal(loaded.score(data["test"][:10]), detector.score(data["test"][:10]))


def test_saving_an_unfitted_detector_is_refused(tmp_path):
    with pytest.raises(NotFittedError):
        OutlierAEGMM().save(tmp_path / "x.lantern")


# --------------------------------------------------------------------------- defaults and GMM maths
def test_default_networks_follow_the_documented_shapes():
    encoder, decoder, density = default_networks(18, n_gmm=2, seed=0)
    assert [layer.units for layer in encoder.layers] == [54, 27, 9, 1]
    assert [layer.units for layer in decoder.layers] == [9, 27, 54, 18]
    assert [layer.units for layer in density.layers] == [10, 2]
    assert density.layers[-1].get_config()["activation"] == "softmax"
    again = default_networks(18, n_gmm=2, seed=0)[0]
    np.testing.assert_array_equal(encoder.get_weights()[0], again.get_weights()[0])


def test_gmm_params_with_hard_memberships_are_per_cluster_moments():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 3))
    labels = rng.integers(0, 2, 200)
    gamma = np.eye(2)[labels]
    phi, mu, cov = (t.numpy() for t in gmm.gmm_params(z, gamma))
    for k in range(2):
        members = z[labels == k]
        assert np.isclose(phi[k], len(members) / 200)
        np.testing.assert_allclose(mu[k], members.mean(0))
        np.testing.assert_allclose(cov[k], np.cov(members.T, bias=True))


def test_batched_sufficient_statistics_equal_one_pass_estimate():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1000, 3)) + 1e4  # a large offset would break a naive one-pass formula in float32
    logits = rng.normal(size=(1000, 2))
    gamma = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    shift = z[:10].mean(0)
    totals = [sum(parts) for parts in zip(*(
        [s.numpy() for s in gmm.sufficient_statistics(z[i:i + 128], gamma[i:i + 128], shift)]
        for i in range(0, 1000, 128)))]
    params = gmm.params_from_statistics(*totals, n_samples=1000, shift=shift)
    phi, mu, cov = (t.numpy() for t in gmm.gmm_params(z, gamma))
    np.testing.assert_allclose(params["phi"], phi)
    np.testing.assert_allclose(params["mu"], mu)
    np.testing.assert_allclose(params["cov"], cov, rtol=1e-5, atol=1e-5)


def test_sample_energy_is_the_mixture_negative_log_likelihood():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(50, 2))
    phi = np.array([0.3, 0.7])
    mu = np.array([[0.0, 1.0], [-1.0, 0.5]])
    cov = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.2, 0.0], [0.0, 2.0]]])
    chol = np.linalg.cholesky(cov)
    expected = -np.log(sum(phi[k] * multivariate_normal(mu[k], cov[k]).pdf(z) for k in range(2)))
    np.testing.assert_allclose(gmm.sample_energy(z, phi, mu, chol).numpy(), expected, rtol=1e-10)


def test_cholesky_jitter_grows_until_the_factorisation_succeeds():
    good = np.eye(2)
    singular = np.ones((2, 2))  # PSD, rank 1
    indefinite = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalue −1
    chol, jitter = gmm.cholesky_with_jitter(np.stack([good, singular, indefinite]))
    chol, jitter = chol.numpy(), jitter.numpy()
    assert np.isfinite(chol).all()
    assert jitter[0] == pytest.approx(gmm.BASE_JITTER) and jitter[1] == pytest.approx(gmm.BASE_JITTER)
    assert jitter[2] > 1.0  # had to grow past the negative eigenvalue
    np.testing.assert_allclose(chol[2] @ chol[2].T, indefinite + jitter[2] * np.eye(2), rtol=1e-12)


def test_loss_stays_finite_when_a_feature_is_constant_in_a_batch():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    z = np.c_[rng.normal(size=(16, 1)), np.full((16, 1), 100.0), rng.normal(size=(16, 1))].astype(np.float32)
    gamma = np.full((16, 2), 0.5, np.float32)
    assert np.isfinite(loss_aegmm(x, x, z, gamma).numpy())


def test_loss_is_finite_and_differentiable():
    rng = np.random.default_rng(4)
    encoder, decoder, density = default_networks(4, n_gmm=2, seed=0)
    net = AEGMM(encoder, decoder, density, n_gmm=2)
    x = tf.constant(rng.normal(size=(32, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        x_recon, z, gamma = net(x, training=True)
        loss = loss_aegmm(x, x_recon, z, gamma)
    grads = tape.gradient(loss, net.trainable_variables)
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


# --------------------------------------------------------------------------- the fast (XLA, float32) scoring path
def test_large_calls_score_like_small_ones_through_the_compiled_float32_path(fitted):
    from engine.od import aegmm

    rows = normal_rows(aegmm.FAST_ROWS + 1000, np.random.default_rng(5))
    rows[::7] = outlier_rows(len(rows[::7]), np.random.default_rng(6))
    large = fitted.score(rows)  # one whole FAST_ROWS chunk through XLA, the rest through the float64 graph
    small = fitted.score(rows, batch_size=4096)  # the float64 graph only
    np.testing.assert_allclose(large, small, rtol=1e-5, atol=1e-4)
    assert large.dtype == np.float64 and np.isfinite(large).all()


def test_whitened_energy_equals_the_mixture_energy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(200, 3))
    a = rng.normal(size=(2, 3, 3))
    cov = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(3)
    chol = np.linalg.cholesky(cov)
    phi, mu = np.array([0.3, 0.7]), rng.normal(size=(2, 3))
    expected = gmm.sample_energy(tf.constant(z), tf.constant(phi), tf.constant(mu), tf.constant(chol)).numpy()
    whiten, mu32, offset = gmm.whitened_params(phi, mu, chol)
    got = gmm.sample_energy_whitened(tf.constant(z, tf.float32), whiten, mu32, offset).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_scoring_falls_back_to_the_graph_where_xla_is_missing(fitted, monkeypatch):
    from engine.od import aegmm

    rows = normal_rows(aegmm.FAST_ROWS, np.random.default_rng(7))
    expected = fitted.score(rows, batch_size=4096)
    compiled = dict(fitted._compiled)

    def no_xla(*args):
        raise tf.errors.UnimplementedError(None, None, "no XLA here")

    monkeypatch.setattr(fitted, "_compiled", {**compiled, "fast_energy": no_xla})
    np.testing.assert_allclose(fitted.score(rows), expected, rtol=1e-3)  # float32 kernels, see above
    assert "fast_energy" not in fitted._compiled  # not tried again
