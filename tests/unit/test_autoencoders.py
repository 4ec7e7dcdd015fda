"""Specification of engine.autoencoders: default dense autoencoders, their training and reconstruction error."""

from __future__ import annotations

import numpy as np
import pytest

from engine.autoencoders import build_autoencoder, default_latent, reconstruction_mse, train_autoencoder
from engine.errors import DataError
from engine.nets import build_sequential, describe_sequential
from engine.training import TrainingEvent


def low_rank_rows(n=256, d=8, seed=0):
    """Rows in [0, 1] that lie near a 2-D subspace, so a 2-wide code can reproduce them."""
    rng = np.random.default_rng(seed)
    codes = rng.uniform(size=(n, 2))
    mixing = np.random.default_rng(100).uniform(size=(2, d)) / 2
    return np.clip(codes @ mixing + rng.normal(scale=0.01, size=(n, d)), 0, 1).astype("float32")


def test_shape_is_mirrored_around_the_code():
    ae = build_autoencoder(8, latent=3, hidden=(6,), seed=0)
    assert [layer.units for layer in ae.layers] == [6, 3, 6, 8]
    assert ae.output_shape == (None, 8)


def test_default_code_width_and_hidden_layer_follow_the_data_size():
    assert [layer.units for layer in build_autoencoder(4).layers] == [2, 4]
    assert [layer.units for layer in build_autoencoder(64).layers] == [32, 64]
    assert [layer.units for layer in build_autoencoder(784).layers] == [128, 32, 128, 784]
    assert default_latent(1) == 2


def test_image_input_is_flattened_and_reshaped_back():
    ae = build_autoencoder(64, input_shape=(8, 8, 1), output_activation="sigmoid", seed=0)
    assert ae.output_shape == (None, 8, 8, 1)
    out = np.asarray(ae(np.zeros((2, 8, 8, 1), "float32")))
    assert out.shape == (2, 8, 8, 1) and np.all((out >= 0) & (out <= 1))


def test_seed_makes_the_weights_reproducible_and_the_net_archivable():
    a, b = build_autoencoder(6, seed=3), build_autoencoder(6, seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    rebuilt = build_sequential(describe_sequential(a))
    assert rebuilt.output_shape == a.output_shape


@pytest.mark.parametrize("kwargs, message", [
    ({"n_features": 0}, "n_features"),
    ({"n_features": 4, "latent": 0}, "latent"),
    ({"n_features": 4, "hidden": (0,)}, "hidden"),
    ({"n_features": 60, "input_shape": (8, 8)}, "64 values"),
])
def test_bad_builder_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_autoencoder(**kwargs)


def test_training_lowers_the_reconstruction_error_and_reports_progress():
    X = low_rank_rows()
    ae = build_autoencoder(8, latent=2, output_activation="sigmoid", seed=0)
    before = reconstruction_mse(ae, X)
    events = []
    history, metrics = train_autoencoder(ae, X, epochs=30, batch_size=32, optimizer="adam", seed=0,
                                         progress=events.append, validation=low_rank_rows(seed=1))
    assert history.epochs_run == 30
    assert metrics["train_mse"] < before / 2
    assert metrics["val_mse"] < reconstruction_mse(build_autoencoder(8, latent=2, output_activation="sigmoid", seed=0),
                                                   low_rank_rows(seed=1))
    assert any(isinstance(e, TrainingEvent) and e.kind == "epoch" for e in events)


def test_reconstruction_mse_is_the_mean_over_all_values():
    ae = build_autoencoder(4, seed=0)
    X = np.ones((3, 4), "float32")
    expected = float(np.mean((np.asarray(ae(X)) - X) ** 2))
    assert reconstruction_mse(ae, X, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_non_finite_rows_are_a_data_error():
    with pytest.raises(DataError):
        train_autoencoder(build_autoencoder(2, seed=0), np.array([[0.0, np.nan]]), epochs=1)
