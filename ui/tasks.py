"""The heavy part of each workflow's job, as a task a worker process can run (see :mod:`ui.workers`).

A task is ``fn(job, params, arrays) -> (values, arrays)``: ``params`` and ``values`` are JSON,
``arrays`` are numeric numpy arrays; a trained detector travels as its archive bytes (the same
JSON config + weights format as a download, see :mod:`engine.saving`), and a model a visitor uploaded
travels as its file's bytes and is loaded again by the task (:func:`load_own_model`). ``job`` offers ``report``
(the engine's progress callback), ``set_stage`` and ``cancel``, in a worker as in a thread, so a task
runs the same either way. This module does not import streamlit.

Which jobs are tasks: every Keras training (the classifiers, CEM's autoencoder,
the distilled detector), the adversarial attack, and scoring with a saved detector (trusted mode).
Tabular outliers moved to :mod:`jobs.tabular` (the new job boundary).
The other jobs run in the server's job threads: the CEM and anchor *explanations* reuse what earlier
explanations of the same model compiled or indexed (CEM's optimisation loop, the anchor sampler),
which lives in the session, and the anchors page's random forest (scikit-learn) has no archive
format that is not pickle.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from engine.ad import ModelDistillation, fgsm, harmfulness, pgd
from engine.autoencoders import build_autoencoder, train_autoencoder
from engine.classifiers import build_classifier, predict_proba, train_classifier
from engine.metrics import score_curves
from engine.nets import build_sequential, describe_sequential
from engine.saving import detector_to_bytes, load_detector, model_weights, set_model_weights

Task = Callable[[Any, dict, dict], tuple[dict, dict]]
TASKS: dict[str, Task] = {}


def task(name: str) -> Callable[[Task], Task]:
    """Register a task under ``name``."""

    def register(fn: Task) -> Task:
        TASKS[name] = fn
        return fn

    return register


def archive_array(detector: Any) -> np.ndarray:
    """A detector's archive as a uint8 array (how a trained model leaves a worker)."""
    return np.frombuffer(detector_to_bytes(detector), dtype=np.uint8)


class ArchivedDetector:
    """A trained detector that came back from a worker as its archive; the model is built here only when used.

    A page's charts and threshold controls need only the scores, so most sessions never build the
    networks in the server process (no interpreter time, no memory for them). The archive is the one
    the worker made with :func:`engine.saving.detector_to_bytes`, read back with the same checks as any
    archive.

    Examples
    --------
    >>> held = ArchivedDetector(archive_array(detector).tobytes())   # doctest: +SKIP
    >>> held.load().score(X)                                         # doctest: +SKIP
    """

    def __init__(self, archive: bytes) -> None:
        self.archive = archive
        self._detector = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The detector, built from the archive on first use."""
        with self._lock:
            if self._detector is None:
                self._detector = load_detector(self.archive)
            return self._detector

    def to_bytes(self, **attributes: Any) -> bytes:
        """The archive, with ``attributes`` (e.g. a chosen ``threshold``) set on the detector first; as is without."""
        if not attributes:
            return self.archive
        detector = self.load()
        with self._lock:
            for name, value in attributes.items():
                setattr(detector, name, value)
            return detector_to_bytes(detector)


@dataclass
class TrainedNetwork:
    """A Keras network that came back from a worker: its :mod:`engine.nets` spec and weights; built on demand.

    Sent on to a later task with :meth:`arrays` (the next worker rebuilds it), or built in this
    process with :meth:`build` where the server itself needs the model.
    """

    spec: dict
    weights: dict[str, np.ndarray]
    _model: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, model: keras.Model, prefix: str = "net") -> TrainedNetwork:
        return cls(describe_sequential(model), model_weights(prefix, model))

    @classmethod
    def from_answer(cls, spec: dict, arrays: dict, prefix: str = "net") -> TrainedNetwork:
        return cls(spec, {k: v for k, v in arrays.items() if k.startswith(prefix + "/")})

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.weights)

    def build(self) -> keras.Model:
        """The network with its trained weights (built once)."""
        if self._model is None:
            self._model = network_from(self.spec, self.weights)
        return self._model


def network_from(spec: dict, arrays: dict, prefix: str = "net") -> keras.Model:
    """Rebuild a network sent as a spec and ``prefix/i`` weight arrays."""
    model = build_sequential(spec)
    set_model_weights(prefix, model, arrays)
    return model


class _BlackBoxProbabilities(keras.layers.Layer):
    """A black-box predictor (a function of numpy rows) as a Keras layer: forward passes only, no gradients."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], n_classes: int, **kwargs) -> None:
        super().__init__(trainable=False, **kwargs)
        self._predict = predict
        self.n_classes = int(n_classes)

    def call(self, x):
        def run(rows):
            return np.asarray(self._predict(rows), dtype=np.float32)

        out = tf.numpy_function(run, [x], tf.float32, stateful=False)
        out.set_shape((None, self.n_classes))
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_classes)


def teacher_network(predictor: Any, offset: np.ndarray, scale: np.ndarray) -> keras.Model:
    """An uploaded model as a Keras classifier of the page's units: ``x * scale + offset`` are the table's values.

    A white-box (Keras) model is wrapped as is, so gradients flow through it; any other model is called
    as a black box inside the graph (forward passes only: distillation, scoring, predictions).
    """
    n_features = int(predictor.n_features)
    to_table = keras.layers.Rescaling(np.asarray(scale, dtype=np.float32), np.asarray(offset, dtype=np.float32),
                                      name="to_table_units")
    inner = predictor.keras_model if predictor.white_box else _BlackBoxProbabilities(predictor, predictor.n_classes)
    return keras.Sequential([keras.Input((n_features,)), to_table, inner], name="own_model")


def load_own_model(params: dict, arrays: dict) -> Any:
    """The uploaded model sent to a task as its file bytes (``arrays['model']``) and ``params['own']``, reloaded."""
    from engine.predictors import load_predictor

    own = params["own"]
    return load_predictor(arrays["model"].tobytes(), kind=own["kind"], max_mb=own.get("max_mb"),
                          trusted=bool(own.get("trusted")))


def _fit_options(job, params: dict) -> dict:
    """The training arguments every detector task shares (from ``ui.training.TrainingControls.params``)."""
    return dict(epochs=int(params["epochs"]), batch_size=int(params["batch_size"]),
                optimizer=keras.optimizers.Adam(learning_rate=float(params["learning_rate"])),
                seed=int(params["seed"]), verbose=False, progress=job.report, cancel=job.cancel,
                time_budget=params.get("time_budget"))


def _stage_after_training(job, history, outcome: str | None = None) -> dict:
    """Say how training ended (epochs, ``outcome`` or the final loss, the time budget) and return the history as JSON."""
    job.set_stage(f"{history.epochs_run} epoch(s), {outcome or f'final loss {history.loss[-1]:.4g}'}"
                  + (" (stopped at the time budget)" if history.stopped == "time_budget" else ""), 1.0)
    return asdict(history)




@task("classifier.train")
def classifier_train(job, params: dict, arrays: dict) -> tuple[dict, dict]:
    """Build a classifier (:func:`engine.classifiers.build_classifier` arguments in ``params['network']``) and train it.

    ``X_val`` / ``y_val`` are the held-out (test) rows: their accuracy is reported, and with
    ``return_val_proba`` their class probabilities are returned. The trained network comes back as its spec
    and weights.
    """
    network = dict(params["network"])
    image_shape = params.get("image_shape")
    model = build_classifier(int(params["n_features"]), int(params["n_classes"]), network.pop("kind", "mlp"),
                             image_shape=None if image_shape is None else tuple(image_shape),
                             seed=int(params["seed"]), **network)

    def report(event) -> None:
        job.report(event)
        if params.get("show_accuracy") and "accuracy" in event.metrics:
            job.set_stage(f"epoch {event.epoch}/{event.epochs} · loss {event.loss:.4g} · training accuracy "
                          f"{event.metrics['accuracy']:.3f}")

    options = {**_fit_options(job, params), "progress": report}
    history, metrics = train_classifier(model, arrays["X"], arrays["y"], validation=(arrays["X_val"], arrays["y_val"]),
                                        **options)
    out = model_weights("net", model)
    if params.get("return_val_proba"):
        job.set_stage("predicting the held-out rows", 1.0)
        out["val_proba"] = predict_proba(model, arrays["X_val"])
    return {"spec": describe_sequential(model),
            "history": _stage_after_training(job, history, f"test accuracy {metrics['val_accuracy']:.3f}"),
            "metrics": {k: float(v) for k, v in metrics.items()}}, out


@task("autoencoder.train")
def autoencoder_train(job, params: dict, arrays: dict) -> tuple[dict, dict]:
    """Build and train a dense autoencoder on ``X`` (reporting the reconstruction MSE on ``X_val``)."""
    model = build_autoencoder(int(params["n_features"]), output_activation=params["output_activation"],
                              seed=int(params["seed"]))
    history, metrics = train_autoencoder(model, arrays["X"], validation=arrays["X_val"], **_fit_options(job, params))
    outcome = f"test reconstruction MSE {metrics['val_mse']:.4g}"
    return ({"spec": describe_sequential(model), "history": _stage_after_training(job, history, outcome),
             "metrics": {k: float(v) for k, v in metrics.items()}}, model_weights("net", model))


@task("adversarial.distil")
def adversarial_distil(job, params: dict, arrays: dict) -> tuple[dict, dict]:
    """Distil a ModelDistillation detector from the classifier sent as ``params['teacher']`` + its weights.

    With ``params['own']`` the teacher is an uploaded model instead (its file in ``arrays['model']``, reading
    ``X * span + low``): the student learns the teacher's probabilities on ``X_fit``, whatever the model's kind.
    Such a detector cannot be archived (the teacher is not a Lantern network), so the student comes back as
    its spec and weights. Scores the held-out clean rows ``X_calibration`` (threshold: their 95th percentile)
    and measures how often the student agrees with the classifier there.
    """
    own = "own" in params
    if own:
        job.set_stage("loading your model", 0.0)
        teacher = teacher_network(load_own_model(params, arrays), arrays["low"], arrays["span"])
    else:
        teacher = network_from(params["teacher"], arrays)
    detector = ModelDistillation(model=teacher, temperature=float(params["temperature"]),
                                 loss_type=params["loss_type"], data_type=params["data_type"])
    detector.fit(arrays["X_fit"], **_fit_options(job, params))
    job.set_stage("scoring the held-out clean rows", 1.0)
    scores, teacher_proba, student_proba = detector.score(arrays["X_calibration"], return_predictions=True)
    detector.threshold = float(np.percentile(scores, 95.0))
    agreement = float(np.mean(teacher_proba.argmax(axis=1) == student_proba.argmax(axis=1)))
    history = detector.history_
    job.set_stage(f"{history.epochs_run} epoch(s), final loss {history.loss[-1]:.4g}, student agrees with the "
                  f"classifier on {agreement:.1%} of held-out clean rows"
                  + (" (stopped at the time budget)" if history.stopped == "time_budget" else ""), 1.0)
    values = {"history": asdict(history), "agreement": agreement}
    if own:
        values["student"] = {"spec": describe_sequential(detector.distilled_model_), "n_classes": detector.n_classes_,
                             "loss_type": detector.loss_type,
                             "teacher_output": detector.teacher_output_, "student_output": detector.student_output_}
        return values, {"scores": scores, **model_weights("student", detector.distilled_model_)}
    return values, {"scores": scores, "archive": archive_array(detector)}


def _own_detector(params: dict, arrays: dict) -> ModelDistillation:
    """The detector distilled from an uploaded model, rebuilt from the model file and the student's weights."""
    teacher = teacher_network(load_own_model(params, arrays), arrays["low"], arrays["span"])
    student_info = params["student"]
    student = build_sequential(student_info["spec"], name="distilled_model")
    set_model_weights("student", student, arrays)
    detector = ModelDistillation(model=teacher, temperature=float(params["temperature"]),
                                 loss_type=params["loss_type"], data_type=params.get("data_type"))
    # The state fit() learned, as engine.saving restores it from an archive.
    detector.distilled_model_ = student
    detector.n_classes_ = int(student_info["n_classes"])
    detector.teacher_output_ = student_info["teacher_output"]
    detector.student_output_ = student_info["student_output"]
    return detector


@task("adversarial.attack")
def adversarial_attack(job, params: dict, arrays: dict) -> tuple[dict, dict]:
    """Attack the rows ``X`` (labels ``y``) of the detector's classifier with FGSM or PGD, in chunks, and score both.

    ``epsilon_relative`` is a share of the [0, 1] data range (for L2: the root-mean-square change per
    feature). Stops between chunks at the time budget, keeping the rows attacked so far.

    With ``params['own']`` the classifier is an uploaded model (see :func:`adversarial_distil`). A white-box
    (Keras) model is attacked directly; a black-box one (ONNX, scikit-learn) has no gradients, so the
    adversarial rows are made against the distilled student and then given to the model and the detector
    (a transfer attack). ``y`` are the labels as the model's output columns.
    """
    if "own" in params:
        job.set_stage("loading your model", 0.0)
        detector = _own_detector(params, arrays)
        model = detector.model
        target = model if params["own"].get("white_box") else detector.distilled_model_
    else:
        detector = load_detector(arrays["archive"].tobytes())
        model = target = detector.model
    X, y = arrays["X"], arrays["y"]
    method, norm, steps, seed = params["method"], params["norm"], int(params["steps"]), int(params["seed"])
    epsilon = float(params["epsilon_relative"]) * (1.0 if norm == "inf" else math.sqrt(X.shape[1]))
    settings = dict(epsilon=epsilon, norm=norm, clip_min=0.0, clip_max=1.0)
    if method == "pgd":
        settings.update(steps=steps, seed=seed)
    chunk_rows, budget = int(params["chunk_rows"]), params.get("time_budget")
    started, parts, notes = time.monotonic(), [], []
    for start in range(0, len(X), chunk_rows):
        job.cancel.raise_if_cancelled()
        if budget is not None and time.monotonic() - started > budget:
            notes.append(f"stopped at the {budget} s time budget: {start:,} of {len(X):,} rows were attacked; lower "
                         "the rows or the steps.")
            break
        job.set_stage(f"attacking rows {start + 1:,}-{min(start + chunk_rows, len(X)):,} of {len(X):,}"
                      + (" through the distilled model (transfer attack)" if target is not model else ""),
                      0.9 * start / len(X))
        chunk = X[start:start + chunk_rows]
        parts.append(fgsm(target, chunk, **settings) if method == "fgsm" else pgd(target, chunk, **settings))
    X_adv = np.concatenate(parts)
    X, y = X[:len(X_adv)], y[:len(X_adv)]
    job.set_stage("measuring what the attack changed and scoring", 0.9)
    result = harmfulness(model, X, X_adv, y, params={"method": method, **settings})
    scores_clean, _, student_clean = detector.score(X, return_predictions=True)
    scores_adv, _, student_adv = detector.score(X_adv, return_predictions=True)
    curves = score_curves(np.r_[np.zeros(len(X)), np.ones(len(X))], np.r_[scores_clean, scores_adv])
    auc = "n/a" if curves is None else f"{curves.roc_auc:.3f}"
    job.set_stage(f"{len(X):,} rows; accuracy {result.accuracy_clean:.3f} → {result.accuracy_adv:.3f}; "
                  f"detection ROC-AUC {auc}", 1.0)
    fields = {name: getattr(result, name) for name in ("X_clean", "X_adv", "proba_clean", "proba_adv", "pred_clean",
                                                       "pred_adv", "harmful", "linf", "l2", "y")}
    return {"params": result.params, "notes": notes}, {
        **{f"result/{name}": value for name, value in fields.items()}, "scores_clean": scores_clean,
        "scores_adv": scores_adv, "student_clean": student_clean, "student_adv": student_adv}
