"""Adversarial detection's jobs: distil a ModelDistillation detector from a classifier, attack and score test rows.

The classifier is either a network trained in Lantern (a :class:`jobs.models.Network`) or a model the
visitor uploaded (an :class:`UploadedTeacher`: the file's bytes and the unit change from the page's [0, 1]
scale back to the table's values). A detector distilled from a Lantern network travels as its archive
(:func:`engine.saving.detector_to_bytes`); one distilled from an uploaded model cannot be archived (the
teacher is not a Lantern network), so its student travels as a :class:`Student`. This module never imports
streamlit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from engine.ad import ModelDistillation, fgsm, harmfulness, pgd
from engine.ad.attacks import AttackResult
from engine.nets import build_sequential, describe_sequential
from engine.saving import detector_to_bytes, load_detector, model_weights, set_model_weights
from engine.training import TrainingHistory
from jobs.base import Progress
from jobs.models import FitSettings, ModelFile, Network, stage_after_training, teacher_network

CALIBRATION_PERCENTILE = 95.0  # the archive's threshold until the page's slider sets another


@dataclass
class UploadedTeacher:
    """An uploaded classifier that reads the table's units: ``x * span + low`` of the page's [0, 1] rows."""

    model: ModelFile
    low: np.ndarray
    span: np.ndarray
    white_box: bool = False  # a Keras model gives gradients: it is attacked directly

    def network(self):
        return teacher_network(self.model.load(), self.low, self.span)


@dataclass
class Student:
    """A distilled model without its archive (the teacher was uploaded): spec, weights and what fit() learned."""

    network: Network
    n_classes: int
    teacher_output: str
    student_output: str


@dataclass
class DistilRequest:
    """Distil a detector from ``teacher`` on ``X_fit``; score the held-out clean rows ``X_calibration``."""

    teacher: Network | UploadedTeacher
    X_fit: np.ndarray
    X_calibration: np.ndarray
    temperature: float = 2.0
    loss_type: str = "kld"
    data_type: str | None = "tabular"
    fit: FitSettings = field(default_factory=FitSettings)


@dataclass
class DistilAnswer:
    history: TrainingHistory
    calibration_scores: np.ndarray  # the held-out clean rows' scores: thresholds are percentiles of them
    agreement: float  # share of held-out clean rows where student and classifier predict the same class
    archive: bytes | None = None  # the detector (Lantern teacher), threshold at the 95th calibration percentile
    student: Student | None = None  # the student alone (uploaded teacher)


def distil(request: DistilRequest, progress: Progress) -> DistilAnswer:
    """Distil a ModelDistillation detector and measure it on the held-out clean rows.

    Examples
    --------
    >>> answer = distil(DistilRequest(Network.of(classifier), X_fit, X_cal), progress)  # doctest: +SKIP
    >>> load_detector(answer.archive).predict(X_test)['data']['is_adversarial']         # doctest: +SKIP
    """
    uploaded = isinstance(request.teacher, UploadedTeacher)
    if uploaded:
        progress.set_stage("loading your model", 0.0)
        teacher = request.teacher.network()
    else:
        teacher = request.teacher.build()
    detector = ModelDistillation(model=teacher, temperature=float(request.temperature), loss_type=request.loss_type,
                                 data_type=request.data_type)
    detector.fit(request.X_fit, **request.fit.options(progress))
    progress.set_stage("scoring the held-out clean rows", 1.0)
    scores, teacher_proba, student_proba = detector.score(request.X_calibration, return_predictions=True)
    detector.threshold = detector.percentile_threshold(scores, CALIBRATION_PERCENTILE)
    agreement = float(np.mean(teacher_proba.argmax(axis=1) == student_proba.argmax(axis=1)))
    history = detector.history_
    stage_after_training(progress, history, f"final loss {history.loss[-1]:.4g}, student agrees with the "
                                            f"classifier on {agreement:.1%} of held-out clean rows")
    if uploaded:
        student = Student(Network(describe_sequential(detector.distilled_model_),
                                  model_weights("student", detector.distilled_model_)),
                          int(detector.n_classes_), detector.teacher_output_, detector.student_output_)
        return DistilAnswer(history, scores, agreement, student=student)
    return DistilAnswer(history, scores, agreement, archive=detector_to_bytes(detector))


def detector_with_student(teacher: UploadedTeacher, student: Student, temperature: float, loss_type: str,
                          data_type: str | None = None) -> ModelDistillation:
    """The detector distilled from an uploaded model, rebuilt from the model file and the student's weights."""
    detector = ModelDistillation(model=teacher.network(), temperature=float(temperature), loss_type=loss_type,
                                 data_type=data_type)
    distilled = build_sequential(student.network.spec, name="distilled_model")
    set_model_weights("student", distilled, student.network.weights)
    # The state fit() learned, as engine.saving restores it from an archive.
    detector.distilled_model_ = distilled
    detector.n_classes_ = int(student.n_classes)
    detector.teacher_output_ = student.teacher_output
    detector.student_output_ = student.student_output
    return detector


@dataclass
class AttackRequest:
    """Attack the rows ``X`` (labels ``y``, as the classifier's output columns) and score clean and attacked rows.

    The detector is ``archive`` (a Lantern classifier), or ``teacher`` + ``student`` (an uploaded one).
    ``epsilon_relative`` is a share of the [0, 1] data range (for L2: the root-mean-square change per feature).
    """

    X: np.ndarray
    y: np.ndarray
    method: str = "pgd"  # 'pgd' or 'fgsm'
    norm: str = "inf"  # 'inf' or '2'
    epsilon_relative: float = 0.15
    steps: int = 20
    seed: int = 0
    chunk_rows: int = 1_000  # rows per attack call: progress, cancellation and the time budget between chunks
    archive: bytes | None = None
    teacher: UploadedTeacher | None = None
    student: Student | None = None
    temperature: float = 2.0
    loss_type: str = "kld"


@dataclass
class AttackAnswer:
    """The attack's outcome on the first ``len(result.harmful)`` rows (fewer than asked at the time budget)."""

    result: AttackResult  # the classifier's predictions before and after, the perturbations
    scores_clean: np.ndarray
    scores_adv: np.ndarray
    student_clean: np.ndarray  # the distilled model's class probabilities
    student_adv: np.ndarray
    transfer: bool  # made against the distilled model (an uploaded black-box classifier has no gradients)
    notes: list[str] = field(default_factory=list)


def attack(request: AttackRequest, progress: Progress) -> AttackAnswer:
    """FGSM or PGD against the detector's classifier, in chunks; then the harm done and both scores.

    An uploaded white-box (Keras) classifier is attacked directly; a black-box one (ONNX, scikit-learn) has
    no gradients, so the adversarial rows are made against the distilled student and then given to the
    classifier and the detector (a transfer attack). Stops between chunks at the time budget, keeping the
    rows attacked so far.
    """
    if request.archive is not None:
        detector = load_detector(request.archive)
        model = target = detector.model
    else:
        progress.set_stage("loading your model", 0.0)
        detector = detector_with_student(request.teacher, request.student, request.temperature, request.loss_type)
        model = detector.model
        target = model if request.teacher.white_box else detector.distilled_model_
    X, y = request.X, request.y
    epsilon = float(request.epsilon_relative) * (1.0 if request.norm == "inf" else math.sqrt(X.shape[1]))
    settings = dict(epsilon=epsilon, norm=request.norm, clip_min=0.0, clip_max=1.0)
    if request.method == "pgd":
        settings.update(steps=int(request.steps), seed=int(request.seed))
    budget = getattr(progress, "time_budget", None)
    started, parts, notes = time.monotonic(), [], []
    chunk_rows = max(1, int(request.chunk_rows))
    for start in range(0, len(X), chunk_rows):
        progress.cancel.raise_if_cancelled()
        if budget is not None and parts and time.monotonic() - started > budget:
            notes.append(f"stopped at the {budget} s time budget: {start:,} of {len(X):,} rows were attacked; lower "
                         "the rows or the steps.")
            break
        progress.set_stage(f"attacking rows {start + 1:,}-{min(start + chunk_rows, len(X)):,} of {len(X):,}"
                           + (" through the distilled model (transfer attack)" if target is not model else ""),
                           0.9 * start / len(X))
        chunk = X[start:start + chunk_rows]
        parts.append(fgsm(target, chunk, **settings) if request.method == "fgsm" else pgd(target, chunk, **settings))
    X_adv = np.concatenate(parts)
    X, y = X[:len(X_adv)], y[:len(X_adv)]
    progress.set_stage("measuring what the attack changed and scoring", 0.9)
    result = harmfulness(model, X, X_adv, y, params={"method": request.method, **settings})
    scores_clean, _, student_clean = detector.score(X, return_predictions=True)
    scores_adv, _, student_adv = detector.score(X_adv, return_predictions=True)
    progress.set_stage(f"{len(X):,} rows; accuracy {result.accuracy_clean:.3f} → {result.accuracy_adv:.3f}", 1.0)
    return AttackAnswer(result, scores_clean, scores_adv, student_clean, student_adv, target is not model, notes)
