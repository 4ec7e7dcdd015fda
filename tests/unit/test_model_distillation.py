"""Specification of engine.ad.ModelDistillation: a student distilled from a frozen classifier flags attacks."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from engine.ad import ModelDistillation, loss_distillation, pgd
from engine.ad.model_distillation import default_distilled_model
from engine.classifiers import build_classifier, train_classifier
from engine.errors import ArchiveError, DataError, NotFittedError, TrainingCancelled
from engine.saving import detector_to_bytes, load_detector
from engine.training import CancelToken
from tests.unit.helpers import blobs

K = 3


@pytest.fixture(scope="module")
def data():
    return blobs(seed=0), blobs(n=120, seed=1)


@pytest.fixture(scope="module")
def teacher(data):
    (X, y), _ = data
    net = build_classifier(8, K, hidden=(32,), seed=0)
    _, metrics = train_classifier(net, X, y, epochs=30, batch_size=32, seed=0, optimizer=keras.optimizers.Adam(0.01))
    assert metrics["train_accuracy"] > 0.95
    return net


def small_student(seed=1):
    return build_classifier(8, K, hidden=(16,), seed=seed)


@pytest.fixture(scope="module")
def fitted(teacher, data):
    (X, _), _ = data
    ad = ModelDistillation(model=teacher, distilled_model=small_student())
    ad.fit(X, epochs=15, batch_size=32, verbose=False, seed=0, optimizer=keras.optimizers.Adam(0.01))
    return ad


def softmax_rows(log_p):
    e = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- fit


def test_fit_never_changes_the_teacher(teacher, data):
    (X, _), _ = data
    before = [w.copy() for w in teacher.get_weights()]
    trainable_flags = [teacher.trainable] + [layer.trainable for layer in teacher.layers]
    student = small_student()
    student_before = [w.copy() for w in student.get_weights()]
    ModelDistillation(model=teacher, distilled_model=student).fit(X, epochs=3, verbose=False, seed=0)
    for old, new in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert [teacher.trainable] + [layer.trainable for layer in teacher.layers] == trainable_flags
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))


def test_the_teacher_stays_frozen_with_a_custom_loss_and_preprocessing(teacher, data):
    (X, _), _ = data
    before = [w.copy() for w in teacher.get_weights()]
    ModelDistillation(model=teacher, distilled_model=small_student()).fit(
        X, loss_fn=loss_distillation, epochs=2, verbose=False, seed=0, preprocess_fn=lambda x: x * 1.0)
    for old, new in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_fit_distils_the_teacher_into_the_student(fitted, data):
    _, (X_test, _) = data
    _, p_teacher, p_student = fitted.score(X_test, return_predictions=True)
    assert np.mean(p_teacher.argmax(axis=1) == p_student.argmax(axis=1)) > 0.95
    assert fitted.history_.loss[-1] < fitted.history_.loss[0]
    assert fitted.history_.epochs_run == 15


def test_a_default_student_is_built_from_the_teachers_shapes(teacher, data):
    (X, _), _ = data
    ad = ModelDistillation(model=teacher)
    ad.fit(X, epochs=2, verbose=False, seed=0)
    assert ad.distilled_model is None
    assert ad.distilled_model_.input_shape == (None, 8) and ad.distilled_model_.output_shape == (None, K)
    assert ad.n_classes_ == K


def test_the_default_student_for_images_is_a_cnn():
    image_student = default_distilled_model((8, 8, 1), 10, seed=0)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in image_student.layers)
    flat_student = default_distilled_model((64,), 10, seed=0)
    assert not any(isinstance(layer, keras.layers.Conv2D) for layer in flat_student.layers)
    series_student = default_distilled_model((5, 3), 2, seed=0)
    assert isinstance(series_student.layers[0], keras.layers.Flatten)


def test_an_image_shaped_teacher_gets_an_image_shaped_student():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(64, 8, 8, 1)).astype("float32")
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(3, activation="softmax",
                                                   kernel_initializer=keras.initializers.GlorotUniform(0))])
    ad = ModelDistillation(model=teacher)
    ad.fit(X, epochs=1, verbose=False, seed=0)
    assert ad.score(X).shape == (64,)
    assert isinstance(ad.distilled_model_.layers[0], keras.layers.Conv2D)


def test_a_seeded_fit_is_reproducible(teacher, data):
    (X, _), (X_test, _) = data
    scores = []
    for _ in range(2):
        ad = ModelDistillation(model=teacher)
        ad.fit(X, epochs=1, verbose=False, seed=3)
        scores.append(ad.score(X_test))
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-7)


def test_refitting_with_the_default_student_starts_afresh(teacher, data):
    (X, _), _ = data
    ad = ModelDistillation(model=teacher)
    ad.fit(X, epochs=1, verbose=False, seed=0)
    first = ad.distilled_model_
    ad.fit(X, epochs=1, verbose=False, seed=0)
    assert ad.distilled_model_ is not first


def test_fit_forwards_progress_callbacks_cancel_and_budget(teacher, data):
    (X, _), _ = data
    events = []
    ad = ModelDistillation(model=teacher, distilled_model=small_student())
    ad.fit(X, epochs=2, batch_size=60, verbose=False, seed=0, progress=events.append)
    assert [e.kind for e in events].count("epoch") == 2 and any(e.kind == "batch" for e in events)

    class StopAfterOneEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    ad.fit(X, epochs=5, verbose=False, seed=0, callbacks=[StopAfterOneEpoch()])
    assert ad.history_.epochs_run == 1 and ad.history_.stopped == "callback"
    token = CancelToken()
    token.cancel()
    with pytest.raises(TrainingCancelled):
        ad.fit(X, epochs=2, verbose=False, cancel=token)
    ad.fit(X, epochs=50, verbose=False, seed=0, time_budget=0.0)
    assert ad.history_.stopped == "time_budget"


def test_log_metric_sees_the_teachers_targets_and_the_students_outputs(teacher, data):
    (X, _), _ = data
    ad = ModelDistillation(model=teacher, distilled_model=small_student())
    ad.fit(X, epochs=3, verbose=False, seed=0, log_metric=("kl", keras.metrics.KLDivergence()))
    assert len(ad.history_.metrics["kl"]) == 3
    # With the default kld loss the metric is the training loss itself.
    np.testing.assert_allclose(ad.history_.metrics["kl"][-1], ad.history_.loss[-1], rtol=0.2)


def test_a_custom_loss_fn_gets_the_reference_keyword_arguments(teacher, data):
    (X, _), _ = data
    seen = {}

    def my_loss(x_true, y_pred, model, loss_type, temperature):
        seen.update(model=model, loss_type=loss_type, temperature=temperature)
        p = model(x_true, training=False)
        return keras.ops.sum(p * (keras.ops.log(p + 1e-9) - keras.ops.log(y_pred + 1e-9)), axis=-1)

    ad = ModelDistillation(model=teacher, distilled_model=small_student(), loss_type="xent", temperature=2.0)
    ad.fit(X, loss_fn=my_loss, epochs=1, verbose=False, seed=0)
    assert seen["model"] is teacher and seen["loss_type"] == "xent" and seen["temperature"] == 2.0


def test_preprocess_fn_is_applied_to_every_training_batch(teacher, data):
    (X, _), _ = data
    calls = []

    def preprocess(x):
        calls.append(1)
        return x

    ModelDistillation(model=teacher, distilled_model=small_student()).fit(
        X, epochs=2, batch_size=60, verbose=False, seed=0, preprocess_fn=preprocess)
    assert len(calls) == 2 * 4


# ---------------------------------------------------------------- score


def test_score_has_one_value_per_instance(fitted, data):
    _, (X_test, _) = data
    scores = fitted.score(X_test)
    assert scores.shape == (len(X_test),) and np.all(np.isfinite(scores))
    assert scores.min() >= -1e-6  # a KL divergence


def test_return_predictions_gives_the_score_and_both_models_probabilities(fitted, teacher, data):
    _, (X_test, _) = data
    scores, p_teacher, p_student = fitted.score(X_test, return_predictions=True)
    assert p_teacher.shape == p_student.shape == (len(X_test), K)
    np.testing.assert_allclose(p_teacher, np.asarray(teacher(X_test)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p_student, np.asarray(fitted.distilled_model_(X_test)), rtol=1e-5, atol=1e-7)
    kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1)
    np.testing.assert_allclose(scores, kl, rtol=1e-3, atol=1e-6)


def test_return_predictions_gives_the_tempered_teacher(teacher, data):
    (X, _), (X_test, _) = data
    ad = ModelDistillation(model=teacher, distilled_model=small_student(), temperature=3.0)
    ad.fit(X, epochs=1, batch_size=60, verbose=False, seed=0)
    scores, p_teacher, p_student = ad.score(X_test, return_predictions=True)
    tempered = softmax_rows(np.log(np.asarray(teacher(X_test), dtype=np.float64)) / 3.0)
    np.testing.assert_allclose(p_teacher, tempered, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(p_teacher.sum(axis=1), 1.0, rtol=1e-5)
    kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1)
    np.testing.assert_allclose(scores, kl, rtol=1e-3, atol=1e-6)


def test_score_is_the_same_in_any_batch_size(fitted, data):
    _, (X_test, _) = data
    np.testing.assert_allclose(fitted.score(X_test, batch_size=7), fitted.score(X_test), rtol=1e-5, atol=1e-8)


def test_xent_score_is_the_kld_plus_the_teachers_entropy(fitted, data):
    _, (X_test, _) = data
    xent = ModelDistillation(model=fitted.model, distilled_model=fitted.distilled_model_, loss_type="xent")
    xent.distilled_model_, xent.n_classes_ = fitted.distilled_model_, fitted.n_classes_
    xent.teacher_output_, xent.student_output_ = fitted.teacher_output_, fitted.student_output_
    kld, p_teacher, _ = fitted.score(X_test, return_predictions=True)
    entropy = -np.sum(p_teacher * np.log(p_teacher), axis=1)
    np.testing.assert_allclose(xent.score(X_test), kld + entropy, rtol=1e-3, atol=1e-5)


def test_kld_and_xent_train_the_same_student_and_differ_only_in_the_score(teacher, data):
    # H(p, q) = KL(p || q) + H(p), and H(p) is a constant for the student: same gradients, same student.
    (X, _), (X_test, _) = data
    fitted = {}
    for loss_type in ("kld", "xent"):
        ad = ModelDistillation(model=teacher, distilled_model=small_student(), loss_type=loss_type, temperature=2.0)
        ad.fit(X, epochs=2, batch_size=60, verbose=False, seed=0)
        fitted[loss_type] = ad
    for a, b in zip(fitted["kld"].distilled_model_.get_weights(), fitted["xent"].distilled_model_.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    kld, target, _ = fitted["kld"].score(X_test, return_predictions=True)  # the tempered teacher
    np.testing.assert_allclose(fitted["xent"].score(X_test), kld - np.sum(target * np.log(target), axis=1),
                               rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("loss_type", ["kld", "xent"])
def test_both_loss_types_train_and_score(teacher, data, loss_type):
    (X, _), (X_test, _) = data
    ad = ModelDistillation(model=teacher, distilled_model=small_student(), loss_type=loss_type)
    ad.fit(X, epochs=5, verbose=False, seed=0)
    scores = ad.score(X_test)
    assert scores.shape == (len(X_test),) and np.all(np.isfinite(scores))
    assert ad.history_.loss[-1] < ad.history_.loss[0]


def _linear_teacher_and_tempered_twin(temperature):
    """A logits teacher and a softmax student whose output is exactly softmax(log p_teacher / T)."""
    init = keras.initializers.GlorotUniform(0)
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(K, kernel_initializer=init)])
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(K, activation="softmax")])
    student.set_weights([w / temperature for w in teacher.get_weights()])
    return teacher, student


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_temperature_scales_the_teacher_as_softmax_of_log_p_over_T(data, temperature):
    (X, _), (X_test, _) = data
    teacher, student = _linear_teacher_and_tempered_twin(temperature)
    ad = ModelDistillation(model=teacher, distilled_model=student, temperature=temperature)
    # With a zero learning rate the training loss measures how far the student is from its targets:
    # ~0 means the targets are exactly softmax(log p / T), with precomputed targets and per-batch ones alike.
    ad.fit(X, optimizer=keras.optimizers.SGD(learning_rate=0.0), epochs=1, verbose=False)
    assert ad.teacher_output_ == "logits" and ad.history_.loss[0] < 1e-5
    ad.fit(X, optimizer=keras.optimizers.SGD(learning_rate=0.0), epochs=1, verbose=False, preprocess_fn=lambda x: x)
    assert ad.history_.loss[0] < 1e-5
    scores, p_teacher, p_student = ad.score(X_test, return_predictions=True)
    np.testing.assert_allclose(p_student, p_teacher, rtol=1e-4, atol=1e-6)  # p_teacher is already tempered
    # The score compares the student with the same scaled teacher it was trained on, so a student that
    # matches its targets exactly scores ~0 at every temperature.
    assert np.abs(scores).max() < 1e-4


def test_the_score_uses_the_scaled_teacher_at_any_temperature(teacher, data):
    (X, _), (X_test, _) = data
    for temperature in (1.0, 3.0):
        ad = ModelDistillation(model=teacher, distilled_model=small_student(), temperature=temperature)
        ad.fit(X, epochs=2, batch_size=32, verbose=False, seed=0)
        scores, p_teacher, p_student = ad.score(X_test, return_predictions=True)
        target = softmax_rows(np.log(np.asarray(teacher(X_test), dtype=np.float64)) / temperature)
        np.testing.assert_allclose(p_teacher, target, rtol=1e-4, atol=1e-6)
        manual = np.sum(target * (np.log(target) - np.log(p_student)), axis=1)
        np.testing.assert_allclose(scores, manual, rtol=1e-3, atol=1e-6)


def test_a_single_sigmoid_teacher_is_treated_as_two_classes(data):
    (X, y), (X_test, _) = data
    y2 = (y == 0).astype("float32")
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer=keras.initializers.GlorotUniform(0))])
    from engine.training import train
    train(teacher, lambda t, o: keras.losses.binary_crossentropy(t, o), X, y2[:, None], epochs=5, seed=0)
    ad = ModelDistillation(model=teacher)
    ad.fit(X, epochs=3, verbose=False, seed=0)
    scores, p_teacher, p_student = ad.score(X_test, return_predictions=True)
    assert ad.n_classes_ == 2 and p_teacher.shape == p_student.shape == (len(X_test), 2)
    p1 = np.asarray(teacher(X_test))[:, 0]
    np.testing.assert_allclose(p_teacher, np.stack([1 - p1, p1], axis=1), rtol=1e-5, atol=1e-6)
    kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1)
    np.testing.assert_allclose(scores, kl, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_pgd_inputs_score_higher_than_clean_ones_on_held_out_digits():
    from engine.datasets import load_dataset

    frame = load_dataset("digits")
    y = frame.pop("label").to_numpy()
    X = (frame.to_numpy() / 16.0).astype("float32")
    order = np.random.default_rng(0).permutation(len(X))
    train_rows, test_rows = order[:1000], order[1000:1300]
    teacher = build_classifier(64, 10, hidden=(64,), seed=0)
    train_classifier(teacher, X[train_rows], y[train_rows], epochs=30, seed=0)
    ad = ModelDistillation(model=teacher, temperature=3.0)
    ad.fit(X[train_rows], epochs=20, verbose=False, seed=0)
    X_test = X[test_rows]
    X_adv = pgd(teacher, X_test, epsilon=0.2, steps=10, seed=0, clip_min=0, clip_max=1)
    clean, adv = ad.score(X_test), ad.score(X_adv)
    auc = roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(adv))], np.r_[clean, adv])
    assert auc > 0.85


# ---------------------------------------------------------------- threshold and payload


def test_infer_threshold_is_the_percentile_plus_margin(fitted, data):
    _, (X_test, _) = data
    scores = fitted.score(X_test)
    fitted.infer_threshold(X_test, threshold_perc=90)
    assert fitted.threshold == pytest.approx(np.percentile(scores, 90))
    fitted.infer_threshold(X_test, threshold_perc=90, margin=0.25)
    assert fitted.threshold == pytest.approx(np.percentile(scores, 90) + 0.25)
    with pytest.raises(ValueError, match="threshold_perc"):
        fitted.infer_threshold(X_test, threshold_perc=120)
    with pytest.raises(ValueError, match="margin"):
        fitted.infer_threshold(X_test, margin=float("inf"))


def test_predict_returns_the_adversarial_payload(fitted, data):
    _, (X_test, _) = data
    fitted.infer_threshold(X_test, threshold_perc=80)
    out = fitted.predict(X_test)
    assert set(out) == {"meta", "data"} and set(out["data"]) == {"instance_score", "is_adversarial"}
    assert out["meta"]["name"] == "ModelDistillation" and out["meta"]["detector_type"] == "adversarial"
    scores = fitted.score(X_test)
    np.testing.assert_allclose(out["data"]["instance_score"], scores, rtol=1e-6)
    np.testing.assert_array_equal(out["data"]["is_adversarial"], (scores > fitted.threshold).astype(int))
    assert 0.15 <= out["data"]["is_adversarial"].mean() <= 0.25
    assert fitted.predict(X_test, return_instance_score=False)["data"]["instance_score"] is None


def test_data_type_goes_into_the_metadata(teacher):
    assert ModelDistillation(model=teacher, data_type="image").meta["data_type"] == "image"


def test_unfitted_or_unthresholded_detectors_say_what_to_do(teacher, data):
    (X, _), _ = data
    ad = ModelDistillation(model=teacher)
    with pytest.raises(NotFittedError, match="fit"):
        ad.score(X)
    ad.fit(X, epochs=1, verbose=False, seed=0)
    with pytest.raises(NotFittedError, match="infer_threshold"):
        ad.predict(X)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, message", [
    ({"model": None}, TypeError, "pass model="),
    ({"loss_type": "mse"}, ValueError, "loss_type"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"temperature": "hot"}, ValueError, "temperature"),
    ({"distilled_model": "net"}, TypeError, "distilled_model"),
])
def test_bad_settings_get_clear_errors(teacher, data, kwargs, error, message):
    (X, _), _ = data
    settings = {"model": teacher, **kwargs}
    with pytest.raises(error, match=message):
        ModelDistillation(**settings).fit(X, epochs=1, verbose=False)


def test_the_student_must_be_a_separate_network_with_one_output_per_class(teacher, data):
    (X, _), _ = data
    with pytest.raises(ValueError, match="separate network"):
        ModelDistillation(model=teacher, distilled_model=teacher).fit(X, epochs=1, verbose=False)
    with pytest.raises(DataError, match="one output per class"):
        ModelDistillation(model=teacher, distilled_model=build_classifier(8, 5, seed=0)).fit(X, epochs=1, verbose=False)


def test_bad_data_gets_a_data_error(fitted, data):
    _, (X_test, _) = data
    with pytest.raises(DataError, match="shape"):
        fitted.score(X_test[:, :5])
    with pytest.raises(DataError, match="shape"):
        fitted.score(X_test[:, :, None])
    bad = X_test.copy()
    bad[3, 2] = np.inf
    with pytest.raises(DataError, match="NaN or inf"):
        fitted.score(bad)
    with pytest.raises(DataError, match="non-numeric"):
        fitted.score(np.array([["a"] * 8]))
    with pytest.raises(ValueError, match="batch_size"):
        fitted.score(X_test, batch_size=0)


# ---------------------------------------------------------------- save / load


def test_save_and_load_round_trip(fitted, data, tmp_path):
    _, (X_test, _) = data
    fitted.infer_threshold(X_test, threshold_perc=95)
    path = fitted.save(tmp_path / "md.lantern")
    loaded = ModelDistillation.load(path)
    assert loaded.threshold == pytest.approx(fitted.threshold)
    assert (loaded.loss_type, loaded.temperature, loaded.n_classes_) == (fitted.loss_type, fitted.temperature, K)
    assert loaded.meta == fitted.meta
    for a, b in zip(fitted.score(X_test, return_predictions=True), loaded.score(X_test, return_predictions=True)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(loaded.predict(X_test)["data"]["is_adversarial"],
                                  fitted.predict(X_test)["data"]["is_adversarial"])
    assert loaded.history_.loss == pytest.approx(fitted.history_.loss)
    from_bytes = load_detector(io.BytesIO(detector_to_bytes(fitted)))
    np.testing.assert_allclose(from_bytes.score(X_test), fitted.score(X_test), rtol=1e-5, atol=1e-7)


def test_a_loaded_default_student_detector_keeps_working(teacher, data):
    (X, _), (X_test, _) = data
    ad = ModelDistillation(model=teacher, loss_type="xent", temperature=2.0, data_type="tabular")
    ad.fit(X, epochs=1, verbose=False, seed=0)
    loaded = load_detector(detector_to_bytes(ad))
    assert loaded.distilled_model is None and loaded.threshold is None
    np.testing.assert_allclose(loaded.score(X_test), ad.score(X_test), rtol=1e-5, atol=1e-7)


def test_an_image_detector_with_cnn_classifier_and_cnn_student_round_trips():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(48, 64)).astype("float32")
    teacher = build_classifier(64, 3, "cnn", image_shape=(8, 8), filters=(4,), hidden=(8,), seed=0)
    image_teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                      keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    for net, data_in in ((teacher, X), (image_teacher, X.reshape(-1, 8, 8, 1))):
        ad = ModelDistillation(model=net, data_type="image")
        ad.fit(data_in, epochs=1, verbose=False, seed=0)
        loaded = load_detector(detector_to_bytes(ad))
        np.testing.assert_allclose(loaded.score(data_in), ad.score(data_in), rtol=1e-5, atol=1e-7)


def test_a_classifier_that_cannot_be_rebuilt_is_refused_with_a_clear_error(data):
    (X, _), _ = data
    inputs = keras.Input((8,))
    functional = keras.Model(inputs, keras.layers.Dense(K, activation="softmax")(inputs))
    ad = ModelDistillation(model=functional, distilled_model=small_student())
    ad.fit(X, epochs=1, verbose=False, seed=0)
    with pytest.raises(ArchiveError, match="classifier"):
        detector_to_bytes(ad)


def test_saving_needs_a_fitted_detector(teacher):
    with pytest.raises(NotFittedError, match="fit"):
        detector_to_bytes(ModelDistillation(model=teacher))
