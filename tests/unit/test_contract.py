"""The engine contract: abstract bases, get_params/set_params, save/load once, thresholds, training config,
seeded layers and zip checks in one place each."""

from __future__ import annotations

import dataclasses
import inspect
import io
import zipfile

import keras
import numpy as np
import pytest

from engine.ad import ModelDistillation
from engine.archive_checks import MAX_COMPRESSION_RATIO, zip_problem
from engine.autoencoders import build_autoencoder, train_autoencoder
from engine.base import BaseDetector, Explainer, ThresholdMixin, percentile_threshold
from engine.classifiers import build_classifier, train_classifier
from engine.errors import ArchiveError, NotFittedError
from engine.explainers import CEM, AnchorTabular
from engine.nets import mlp, seeded, seeded_initializers
from engine.od import OutlierAEGMM, OutlierSeq2Seq
from engine.training import TrainingConfig, train


def mse(target, outputs):
    return keras.ops.mean((target - outputs) ** 2)


# ------------------------------------------------------------------------------------------------ abstract bases
CONTRACT = {
    "fit": lambda self, X: self,
    "score": lambda self, X: np.zeros(len(X)),
    "predict": lambda self, X: {},
    "infer_threshold": lambda self, X, threshold_perc=95.0: None,
}


@pytest.mark.parametrize("missing", sorted(CONTRACT))
def test_a_detector_missing_a_contract_method_cannot_be_built(missing):
    partial = {name: method for name, method in CONTRACT.items() if name != missing}
    with pytest.raises(TypeError, match=missing):
        type("Partial", (BaseDetector, ThresholdMixin), partial)()
    complete = type("Complete", (BaseDetector, ThresholdMixin), dict(CONTRACT))()
    assert complete.get_params() == {} and complete.meta["name"] == "Complete"


def test_an_explainer_without_explain_cannot_be_built():
    class NoExplain(Explainer):
        @property
        def meta(self):
            return {}

    with pytest.raises(TypeError, match="explain"):
        NoExplain()


def test_every_detector_and_explainer_derives_from_its_base():
    for cls in (OutlierAEGMM, OutlierSeq2Seq, ModelDistillation):
        assert issubclass(cls, BaseDetector) and issubclass(cls, ThresholdMixin)
        assert "save" not in vars(cls) and "load" not in vars(cls)  # written once, in the base
    for cls in (CEM, AnchorTabular):
        assert issubclass(cls, Explainer)


# ------------------------------------------------------------------------------------------------ params
def test_get_params_lists_the_constructor_arguments_with_their_values():
    detector = OutlierAEGMM(threshold=1.5, n_gmm=3)
    params = detector.get_params()
    assert list(params) == [name for name in inspect.signature(OutlierAEGMM).parameters]
    assert params["threshold"] == 1.5 and params["n_gmm"] == 3 and params["aegmm"] is None
    assert set(ModelDistillation(temperature=2.0).get_params()) == {
        "threshold", "distilled_model", "model", "loss_type", "temperature", "data_type"}
    seq = OutlierSeq2Seq(2, 10, threshold=0.5, latent_dim=8)
    assert seq.get_params()["seq_len"] == 10 and seq.get_params()["latent_dim"] == 8


def test_set_params_sets_known_names_returns_self_and_refuses_unknown_ones():
    detector = OutlierAEGMM()
    assert detector.set_params(threshold=2.0, n_gmm=4) is detector
    assert detector.threshold == 2.0 and detector.n_gmm == 4
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['n_components'\]"):
        detector.set_params(threshold=3.0, n_components=2)
    assert detector.threshold == 2.0  # nothing changed


def test_learned_state_is_created_by_fit_not_by_the_constructor():
    X = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    detector = OutlierAEGMM()
    assert not {"aegmm_", "gmm_params_", "scaler_", "history_", "n_features_in_"} & set(vars(detector))
    assert detector.aegmm_ is None  # "not fitted" still reads as None
    with pytest.raises(NotFittedError):
        detector.score(X)
    detector.fit(X, epochs=1, batch_size=64, verbose=False, seed=0)
    assert {"aegmm_", "gmm_params_", "scaler_", "history_", "n_features_in_"} <= set(vars(detector))
    assert not {"seq2seq_", "scaler_", "history_"} & set(vars(OutlierSeq2Seq(1, 5)))
    assert not {"distilled_model_", "history_", "n_classes_"} & set(vars(ModelDistillation()))


def test_cem_set_params_replaces_settings_and_a_new_predictor_forgets_compiled_loops():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    cem = CEM(model, mode="PN", shape=(1, 2), max_iterations=10, c_steps=1)
    cem._compiled["marker"] = object()
    assert cem.set_params(kappa=0.3, beta=0.2) is cem
    assert (cem.kappa, cem.beta) == (0.3, 0.2) and "marker" in cem._compiled
    assert cem.meta["params"]["kappa"] == 0.3
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    cem.set_params(predict=other)
    assert cem.predict is other and cem._compiled == {}
    with pytest.raises(TypeError, match="predictor must be"):
        cem.set_params(predict=42)
    assert "no_info_val_" not in vars(cem)
    cem.fit(np.zeros((5, 2), "float32"))
    assert cem.get_params()["mode"] == "PN" and cem.no_info_val_.shape == (2,)


def test_anchor_set_params_keeps_the_fit_for_a_new_predictor_and_asks_for_a_new_fit_otherwise():
    X = np.random.default_rng(0).normal(size=(300, 2))
    explainer = AnchorTabular(lambda x: (x[:, 0] > 0).astype(int), ["a", "b"], seed=0).fit(X)
    assert explainer.get_params()["feature_names"] == ["a", "b"]
    explainer.set_params(predictor=lambda x: (x[:, 1] > 0).astype(int))
    assert explainer.explain(np.array([0.0, 1.5])).anchor[0].startswith("b")
    explainer.set_params(feature_names=["x", "y"], seed=1)
    assert explainer.seed == 1 and explainer.meta["params"]["feature_names"] == ["x", "y"]
    with pytest.raises(NotFittedError):
        explainer.explain(np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match="duplicates"):
        explainer.set_params(feature_names=["x", "x"])
    assert explainer.feature_names == ["x", "y"]
    with pytest.raises(ValueError, match="no parameter"):
        explainer.set_params(disc_perc=(50,))


# ------------------------------------------------------------------------------------------------ save / load
def test_load_through_the_base_refuses_an_archive_of_another_detector(tmp_path):
    X = np.random.default_rng(1).normal(size=(200, 3)).astype("float32")
    detector = OutlierAEGMM(threshold=1.0).fit(X, epochs=1, verbose=False, seed=0)
    path = detector.save(tmp_path / "aegmm.lantern")
    again = OutlierAEGMM.load(path)
    np.testing.assert_allclose(again.score(X[:5]), detector.score(X[:5]), rtol=1e-6)
    assert again.threshold == 1.0
    with pytest.raises(ArchiveError, match="holds a OutlierAEGMM, not a ModelDistillation"):
        ModelDistillation.load(path)
    with pytest.raises(ArchiveError, match="not an OutlierSeq2Seq"):
        OutlierSeq2Seq.load(path.read_bytes())


# ------------------------------------------------------------------------------------------------ thresholds
def test_percentile_threshold_is_the_one_rule_for_scalars_and_columns():
    scores = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]], dtype=np.float32)
    assert percentile_threshold(scores[:, 0], 50) == pytest.approx(1.5)
    assert isinstance(percentile_threshold(scores[:, 0], 50), float)
    per_column = ThresholdMixin.threshold_at(scores, 75, axis=0)
    np.testing.assert_allclose(per_column, np.percentile(scores.astype(np.float64), 75, axis=0))
    assert per_column.dtype == np.float64
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile_threshold(scores, 101)


# ------------------------------------------------------------------------------------------------ training config
def test_training_config_is_frozen_validated_and_names_its_settings():
    config = TrainingConfig(epochs=3, seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4
    assert config.replace(epochs=4).epochs == 4 and config.epochs == 3
    with pytest.raises(TypeError, match=r"unknown training setting\(s\) \['epoch'\]"):
        config.replace(epoch=4)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        TrainingConfig(epochs=0)
    with pytest.raises(TypeError, match="config must be a TrainingConfig"):
        TrainingConfig.of({"epochs": 3})


def test_train_with_a_config_equals_train_with_keywords():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x @ rng.normal(size=(4, 1)).astype("float32")
    by_keywords = train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=3, batch_size=16, seed=0)
    config = TrainingConfig(epochs=3, batch_size=16, seed=0)
    by_config = train(mlp(4, [8], 1, seed=0), mse, x, y, config=config)
    np.testing.assert_allclose(by_config.loss, by_keywords.loss, rtol=1e-6)
    # A keyword replaces the config's value.
    assert train(mlp(4, [8], 1, seed=0), mse, x, y, config=config, epochs=1).epochs_run == 1
    with pytest.raises(TypeError, match="unknown training setting"):
        train(mlp(4, [8], 1, seed=0), mse, x, y, config=config, epoch=1)


def test_trainers_take_a_config_or_the_old_keywords_alike():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(64, 6)).astype("float32")
    y = (X[:, 0] > 0.5).astype(int)
    config = TrainingConfig(epochs=2, batch_size=16, seed=0)
    h1, m1 = train_autoencoder(build_autoencoder(6, seed=0), X, config)
    h2, m2 = train_autoencoder(build_autoencoder(6, seed=0), X, epochs=2, batch_size=16, seed=0)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-6)
    assert m1["train_mse"] == pytest.approx(m2["train_mse"], rel=1e-6)
    events = []
    h3, m3 = train_classifier(build_classifier(6, 2, seed=0), X, y, config, progress=events.append)
    h4, _ = train_classifier(build_classifier(6, 2, seed=0), X, y, epochs=2, batch_size=16, seed=0)
    np.testing.assert_allclose(h3.loss, h4.loss, rtol=1e-6)
    assert "accuracy" in h3.metrics and events and "accuracy" in events[-1].metrics


# ------------------------------------------------------------------------------------------------ seeded layers
def test_seeded_initialisers_count_up_from_the_seed_in_build_order():
    init = seeded_initializers(7)
    assert [init().seed for _ in range(3)] == [7, 8, 9]
    assert isinstance(seeded(keras.initializers.Orthogonal, 2, 3), keras.initializers.Orthogonal)
    # The builders draw their layers' seeds from it: seed, seed + 1, ... in layer order.
    kernels = [layer.kernel_initializer.seed for layer in build_classifier(4, 3, hidden=(8, 8), seed=5).layers
               if isinstance(layer, keras.layers.Dense)]
    assert kernels == [5, 6, 7]
    ae = [layer.kernel_initializer.seed for layer in build_autoencoder(300, seed=0).layers]
    assert ae == [0, 1, 2, 3]
    assert [layer.kernel_initializer.seed for layer in mlp(3, [4, 4], 2, seed=10).layers] == [10, 11, 12]


# ------------------------------------------------------------------------------------------------ zip checks
def _infos(**members: bytes) -> list[zipfile.ZipInfo]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return zipfile.ZipFile(buffer).infolist()


def test_zip_problem_names_the_first_figure_over_its_limits():
    bomb = _infos(small=bytes(1000), big=bytes(4 * 2**20))
    problem = zip_problem(bomb, max_total_bytes=2**30)
    assert problem.kind == "ratio" and problem.member == "big" and problem.value > MAX_COMPRESSION_RATIO
    # Small members may compress well, unless the caller checks every member.
    assert zip_problem(_infos(a=bytes(1000)), max_total_bytes=2**30) is None
    assert zip_problem(_infos(a=bytes(100_000)), max_total_bytes=2**30, ratio_above_bytes=0).kind == "ratio"
    random = np.random.default_rng(0).bytes(5000)
    assert zip_problem(_infos(a=random, b=random), max_total_bytes=8000).kind == "total"
    assert zip_problem(_infos(a=random), max_total_bytes=10**6, member_limit=100).kind == "member_size"
    too_many = zip_problem(_infos(a=b"1", b=b"2", c=b"3"), max_total_bytes=10**6, max_members=2)
    assert (too_many.kind, too_many.value) == ("members", 3)
