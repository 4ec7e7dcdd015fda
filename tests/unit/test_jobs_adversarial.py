"""jobs.models and jobs.adversarial: typed requests in, typed answers out, run as a runner would run them."""

import pickle

import numpy as np
import pytest

from engine.classifiers import predict_proba
from engine.errors import TrainingCancelled
from engine.saving import load_detector
from engine.training import CancelToken
from jobs.adversarial import AttackRequest, DistilRequest, UploadedTeacher, attack, distil
from jobs.models import (AutoencoderRequest, ClassifierRequest, FitSettings, ModelFile, UploadedAccuracyRequest,
                         train_autoencoder_job, train_classifier_job, uploaded_accuracy)


class Recorder:
    """The :class:`jobs.Progress` a runner gives a job: events, stages, a cancel token, a time budget."""

    def __init__(self, time_budget=None):
        self.cancel, self.time_budget, self.events, self.stages = CancelToken(), time_budget, [], []

    def report(self, event):
        self.events.append(event)

    def set_stage(self, message, fraction=None):
        self.stages.append(message)


def _shipped(value):
    """The value as it arrives where the job runs (another process or a Ray worker serialises it)."""
    return pickle.loads(pickle.dumps(value))


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.2, 0.2, 0.8, 0.5], [0.8, 0.3, 0.2, 0.5], [0.5, 0.8, 0.5, 0.2]])
    y = np.repeat(np.arange(3), 80)
    X = np.clip(centres[y] + rng.normal(0, 0.08, size=(240, 4)), 0, 1).astype(np.float32)
    order = rng.permutation(240)
    return X[order], y[order]


@pytest.fixture(scope="module")
def classifier(blobs):
    X, y = blobs
    request = ClassifierRequest(X[:160], y[:160], X[160:], y[160:], n_classes=3,
                                network={"kind": "mlp", "hidden": (16,)},
                                fit=FitSettings(epochs=8, batch_size=32, learning_rate=1e-2, seed=0),
                                return_val_proba=True)
    progress = Recorder()
    return train_classifier_job(_shipped(request), progress), progress


def test_the_classifier_comes_back_as_a_network_that_rebuilds_with_its_weights(classifier, blobs):
    answer, progress = classifier
    X, y = blobs
    answer = _shipped(answer)
    proba = predict_proba(answer.network.build(), X[160:])
    assert np.allclose(proba, answer.val_proba, atol=1e-5)
    assert answer.val_accuracy == pytest.approx(np.mean(proba.argmax(axis=1) == y[160:]))
    assert answer.history.epochs_run == 8 and len(answer.history.loss) == 8
    assert sum(e.kind == "epoch" for e in progress.events) == 8
    assert any("training accuracy" in s for s in progress.stages)


def test_the_autoencoder_comes_back_with_its_reconstruction_error(blobs):
    X, _ = blobs
    answer = train_autoencoder_job(AutoencoderRequest(X[:160], X[160:], fit=FitSettings(epochs=1, batch_size=64)),
                                   Recorder())
    reconstruction = answer.network.build().predict(X[160:], verbose=0)
    assert answer.val_mse == pytest.approx(float(np.mean((reconstruction - X[160:]) ** 2)), rel=1e-3)


def test_distil_then_attack_with_the_archive(classifier, blobs):
    X, y = blobs
    answer, _ = classifier
    distilled = distil(_shipped(DistilRequest(answer.network, X[:120], X[120:160], temperature=2.0,
                                              fit=FitSettings(epochs=2, batch_size=32))), Recorder())
    detector = load_detector(distilled.archive)
    assert distilled.student is None and distilled.history.epochs_run == 2
    assert detector.threshold == pytest.approx(np.percentile(distilled.calibration_scores, 95.0))
    assert np.allclose(detector.score(X[120:160]), distilled.calibration_scores, rtol=1e-4, atol=1e-7)
    assert 0.0 <= distilled.agreement <= 1.0

    request = AttackRequest(X[160:], y[160:], method="pgd", epsilon_relative=0.2, steps=3, chunk_rows=30,
                            archive=distilled.archive)
    out = attack(_shipped(request), Recorder())
    assert len(out.result.harmful) == 80 and not out.transfer and not out.notes
    assert float(out.result.linf.max()) <= 0.2 + 1e-5
    assert np.allclose(detector.score(out.result.X_adv), out.scores_adv, rtol=1e-4, atol=1e-7)
    assert out.student_adv.shape == (80, 3)

    # At the time budget the attack keeps the chunks it finished, and says so.
    short = attack(request, Recorder(time_budget=0.0))
    assert len(short.result.harmful) == 30 and "time budget" in short.notes[0]
    # Cancel stops it.
    cancelled = Recorder()
    cancelled.cancel.cancel()
    with pytest.raises(TrainingCancelled):
        attack(request, cancelled)


def test_an_uploaded_black_box_model_is_distilled_and_attacked_through_its_student():
    from tests.app import own_models

    data = own_models._data("iris")
    model = ModelFile(own_models.iris_logistic_onnx(), "onnx", trusted=False, max_mb=10)
    low, span = data.X_train.min(axis=0), data.X_train.max(axis=0) - data.X_train.min(axis=0)
    X_train = ((data.X_train - low) / span).astype(np.float32)
    X_test = ((data.X_test - low) / span).astype(np.float32)
    y_test = data.y_test  # the model's classes are the species in sorted order, as the label's

    accuracy = uploaded_accuracy(_shipped(UploadedAccuracyRequest(model, data.X_train, data.y_train, data.X_test,
                                                                  data.y_test)), Recorder())
    assert accuracy.test_accuracy > 0.8

    teacher = UploadedTeacher(model, low, span, white_box=False)
    request = DistilRequest(teacher, X_train, X_train[:20], fit=FitSettings(epochs=2, batch_size=16))
    distilled = distil(_shipped(request), Recorder())
    assert distilled.archive is None and distilled.student is not None  # an uploaded teacher is not archived
    out = attack(_shipped(AttackRequest(X_test, y_test, method="fgsm", epsilon_relative=0.3, teacher=teacher,
                                        student=distilled.student)), Recorder())
    assert out.transfer and len(out.scores_adv) == len(X_test)
    assert out.result.accuracy_clean == pytest.approx(accuracy.test_accuracy, abs=1e-6)
