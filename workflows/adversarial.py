"""Adversarial detection, the plain logic: prepare the table, make the jobs' requests, view their answers,
threshold, choose the example to show, describe it, and export one row per table row.

The page (``pages/adversarial.py``) only lays these out. One numbering is used everywhere: a row is named by
its position in the chosen table (``row``), as in the scores CSV and the Data page. No streamlit here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.ad import ModelDistillation
from engine.ad.attacks import AttackResult
from engine.errors import DataError, ModelError
from engine.export import join_results
from engine.metrics import ScoreCurves, score_curves
from engine.saving import detector_to_bytes, load_detector
from engine.tabular import classification_data
from engine.training import TrainingHistory
from jobs.adversarial import AttackAnswer, AttackRequest, DistilAnswer, DistilRequest, Student, UploadedTeacher
from jobs.models import (ClassifierAnswer, ClassifierRequest, FitSettings, ModelFile, Network,
                         UploadedAccuracyAnswer, UploadedAccuracyRequest)
from ui import charts
from ui.own_model import ClassMap, OwnModel, describe

CALIBRATION_SHARE = 0.2  # of the training rows, held out from both models to set the threshold
MAX_FEATURES = 1_000
MAX_ATTACK_ROWS = 10_000
ATTACK_CHUNK_ROWS = 1_000  # rows per attack call: progress and cancellation between chunks
NETWORKS = {
    "mlp-small": ("MLP 128-64", dict(kind="mlp", hidden=(128, 64))),
    "mlp-large": ("MLP 256-128", dict(kind="mlp", hidden=(256, 128))),
    "cnn": ("small CNN (images only)", dict(kind="cnn", hidden=(64,))),
}
LOSSES = {"kld": "KL divergence (kld)", "xent": "cross-entropy (xent)"}
NORMS = {"inf": "L∞ (every feature moves at most ε)", "2": "L2 (total change at most ε·√d)"}
METHODS = {"pgd": "PGD", "fgsm": "FGSM"}

# What a new analyst reads next to each setting of the method (the page's ``help=`` texts).
HELP = {
    "network": "The classifier to attack and protect. MLP 128-64 suits small tables; a CNN suits images.",
    "temperature": "How much the classifier's probabilities are softened before the distilled model learns them. "
                   "At 1 it copies them as they are; higher values spread them over more classes, so the small "
                   "model also learns which classes the classifier finds similar. 2 has the best mean ROC-AUC "
                   "over MLP and CNN classifiers and weak to strong attacks on digits; 5-10 catch strong attacks "
                   "on an MLP better but weak ones worse.",
    "loss": "How the disagreement between the two models is measured, in training and as the score. kld (KL "
            "divergence) compares their probabilities and is the better detector; xent (cross-entropy) also adds "
            "the classifier's own uncertainty, which attacks lower.",
    "method": "How the adversarial inputs are made. FGSM takes one step in the direction that raises the "
              "classifier's error most; PGD takes several smaller steps, each kept within ε of the original: "
              "slower and stronger.",
    "norm": "How the size of a change is measured. L∞: every feature may move by at most ε (small changes "
            "everywhere). L2: the changes' total length is at most ε·√(number of features), so a few features may "
            "move a lot.",
    "epsilon": "The largest change the attack may make, as a share of each feature's range (features are scaled "
               "to [0, 1]): at 0.15 (L∞) each feature moves by at most 15 % of its range. Larger ε fools the "
               "classifier more often and is easier to detect.",
    "steps": "How many small steps PGD takes (FGSM ignores this). More steps find inputs that fool the classifier "
             "more surely, and take proportionally longer.",
    "rows": "How many test rows are attacked: a random sample of the test split when fewer than all.",
    "attack_seed": "Draws the row sample and PGD's random start: the same seed gives the same attack.",
    "percentile": "The threshold is this percentile of the scores of clean training rows that neither model saw: "
                  "at 95, about 5 % of clean inputs are flagged (false alarms). Lower it to catch more attacks "
                  "at the cost of more false alarms.",
    "distil_epochs": "Passes over the training rows while the distilled model learns the classifier's "
                     "probabilities. 50 gives the best detection in the benchmarks; 25 is a quick start.",
}


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Prepared:
    """The chosen table as the models see it: features mapped to [0, 1], split three ways.

    ``fit_rows``, ``calibration_rows`` and ``test_rows`` are positions in the table (the page's row numbers).
    """

    table_name: str
    feature_names: list[str]
    class_names: list[str]
    image_shape: tuple[int, ...] | None
    X_fit: np.ndarray  # the classifier and the detector train on these
    y_fit: np.ndarray
    X_calibration: np.ndarray  # clean rows neither model saw: the threshold percentile refers to them
    X_test: np.ndarray  # attacked and scored
    y_test: np.ndarray
    fit_rows: np.ndarray
    calibration_rows: np.ndarray
    test_rows: np.ndarray
    low: np.ndarray  # scaled = (raw - low) / span
    span: np.ndarray
    split: str
    frame: pd.DataFrame | None = field(default=None, repr=False)  # the table itself (the export joins back to it)
    label: str = ""
    notes: list[str] = field(default_factory=list)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Scaled rows back in the table's units."""
        return X * self.span + self.low


def unit_range(X_train: np.ndarray, image: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(low, span)`` that map the training rows onto [0, 1]: one range for all pixels, else one per feature.

    Examples
    --------
    >>> unit_range(np.array([[0.0, 5.0], [2.0, 5.0]]), image=False)
    (array([0., 5.]), array([2., 1.]))
    """
    if image:
        low, high = np.full(X_train.shape[1], X_train.min()), np.full(X_train.shape[1], X_train.max())
    else:
        low, high = X_train.min(axis=0), X_train.max(axis=0)
    return low.astype(np.float64), np.where(high > low, high - low, 1.0).astype(np.float64)


def prepare(frame: pd.DataFrame, features, label: str, image_shape, test_share: float, max_train: int, seed: int,
            table_name: str = "the table") -> Prepared:
    """Split the table into fit / calibration / test rows and scale the features to [0, 1]."""
    features = [c for c in features if c != label]
    if not features:
        raise DataError("no feature columns are selected; pick at least one numeric column.")
    if len(features) > MAX_FEATURES:
        raise DataError(f"{len(features):,} feature columns are selected; at most {MAX_FEATURES:,} are allowed.")
    data = classification_data(frame, features, label, test_size=test_share, seed=seed, max_train_rows=max_train)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.X_train))
    n_calibration = max(1, int(round(CALIBRATION_SHARE * len(order))))
    if len(order) - n_calibration < 10:
        raise DataError(f"only {len(order)} training rows: at least 13 are needed (a fifth is held out to set the "
                        "threshold). Use more rows or a smaller test share.")
    fit, calibration = np.sort(order[n_calibration:]), np.sort(order[:n_calibration])
    low, span = unit_range(data.X_train[fit], image_shape is not None)

    def scale(X):
        return ((X - low) / span).astype(np.float32)

    return Prepared(
        table_name=table_name, feature_names=list(data.feature_names), class_names=list(data.class_names),
        image_shape=image_shape, X_fit=scale(data.X_train[fit]), y_fit=data.y_train[fit],
        X_calibration=scale(data.X_train[calibration]), X_test=scale(data.X_test), y_test=data.y_test,
        fit_rows=data.train_rows[fit], calibration_rows=data.train_rows[calibration], test_rows=data.test_rows,
        low=low, span=span, split=data.split, frame=frame, label=label, notes=list(data.notes),
    )


def for_own_model(data: Prepared, model: OwnModel) -> tuple[Prepared, ClassMap]:
    """The prepared data with the model's classes (``class_names`` its outputs, labels its columns).

    Accuracies and harmfulness need every label value to be a class of the model: a clear error otherwise.
    """
    model.predictor.check(data.raw(data.X_fit))
    class_map = ClassMap.between(model.class_names, data.class_names)
    if class_map.unmatched:
        raise ModelError(f"{class_map.message()} Adversarial detection measures the model against the label: "
                         "choose the label column the model was trained to predict.")
    data.class_names = class_map.shown_names
    data.y_fit = class_map.labels_for_model(data.y_fit)
    data.y_test = class_map.labels_for_model(data.y_test)
    return data, class_map


# ------------------------------------------------------------------------------------------------ step 1


@dataclass
class ClassifierRun:
    """Step 1's view: the classifier (trained here, or uploaded) and its accuracies."""

    data: Prepared
    network: str  # what the page says the classifier is
    train_accuracy: float | None
    test_accuracy: float | None
    classifier: Network | None = None  # trained here: its spec and weights
    history: TrainingHistory | None = None
    own: OwnModel | None = None  # an uploaded model, used instead of one trained here
    class_map: ClassMap | None = None

    @property
    def transfer_attack(self) -> bool:
        """An uploaded black-box model has no gradients: the attack is made against the distilled model."""
        return self.own is not None and not self.own.white_box


def classifier_request(data: Prepared, network: str, fit: FitSettings) -> ClassifierRequest:
    """Step 1 with a classifier trained here (``network`` a key of :data:`NETWORKS`)."""
    return ClassifierRequest(data.X_fit, data.y_fit, data.X_test, data.y_test, n_classes=len(data.class_names),
                             network=dict(NETWORKS[network][1]), image_shape=data.image_shape, fit=fit)


def classifier_view(answer: ClassifierAnswer, context: tuple[Prepared, str]) -> ClassifierRun:
    data, network = context
    return ClassifierRun(data, NETWORKS[network][0], answer.train_accuracy, answer.val_accuracy,
                         classifier=answer.network, history=answer.history)


def view_classifier(answer: ClassifierAnswer | UploadedAccuracyAnswer, context: tuple) -> ClassifierRun:
    """Step 1's view of either job's answer (``training.outcome``'s ``build``)."""
    if isinstance(answer, UploadedAccuracyAnswer):
        return uploaded_view(answer, context)
    return classifier_view(answer, context)


def model_file(model: OwnModel, *, trusted: bool, max_mb: int | None) -> ModelFile:
    """How an uploaded model travels to a job: its file's bytes, reloaded there."""
    return ModelFile(model.data, model.kind, trusted=trusted, max_mb=max_mb)


def uploaded_request(data: Prepared, model: OwnModel, *, trusted: bool, max_mb: int | None) -> UploadedAccuracyRequest:
    """Step 1 with an uploaded model: its accuracy on the training and test rows (in the table's units)."""
    return UploadedAccuracyRequest(model_file(model, trusted=trusted, max_mb=max_mb), data.raw(data.X_fit),
                                   data.y_fit, data.raw(data.X_test), data.y_test)


def uploaded_view(answer: UploadedAccuracyAnswer, context: tuple[Prepared, OwnModel, ClassMap]) -> ClassifierRun:
    data, model, class_map = context
    return ClassifierRun(data, describe(model), answer.train_accuracy, answer.test_accuracy, own=model,
                         class_map=class_map)


# ------------------------------------------------------------------------------------------------ step 2


@dataclass
class DetectorRun:
    """Step 2's view: the distilled detector and its scores on the held-out clean rows."""

    classifier_run: ClassifierRun
    temperature: float
    loss_type: str
    history: TrainingHistory
    calibration_scores: np.ndarray
    agreement: float
    archive: bytes | None = None  # the ModelDistillation archive (None: distilled from an uploaded model)
    student: Student | None = None  # distilled from an uploaded model: the student alone

    @property
    def epochs_run(self) -> int:
        return int(self.history.epochs_run)

    def archive_with_threshold(self, threshold: float) -> bytes:
        """The detector's archive carrying ``threshold`` (the page's slider)."""
        if self.archive is None:
            raise ModelError("a detector distilled from an uploaded model has no archive.")
        detector = load_detector(self.archive)
        detector.threshold = float(threshold)
        return detector_to_bytes(detector)


def teacher_of(run: ClassifierRun, *, trusted: bool, max_mb: int | None) -> Network | UploadedTeacher:
    """The classifier as a job gets it: the network trained here, or the uploaded file with the unit change."""
    if run.own is None:
        return run.classifier
    return UploadedTeacher(model_file(run.own, trusted=trusted, max_mb=max_mb), run.data.low, run.data.span,
                           white_box=run.own.white_box)


def distil_request(run: ClassifierRun, temperature: float, loss_type: str, fit: FitSettings, *, trusted: bool,
                   max_mb: int | None) -> DistilRequest:
    data = run.data
    return DistilRequest(teacher_of(run, trusted=trusted, max_mb=max_mb), data.X_fit, data.X_calibration,
                         temperature=float(temperature), loss_type=loss_type,
                         data_type="image" if data.image_shape else "tabular", fit=fit)


def detector_view(answer: DistilAnswer, context: tuple[ClassifierRun, float, str]) -> DetectorRun:
    run, temperature, loss_type = context
    return DetectorRun(run, temperature, loss_type, answer.history, answer.calibration_scores, answer.agreement,
                       archive=answer.archive, student=answer.student)


def threshold(calibration_scores: np.ndarray, percentile: float) -> float:
    """The detector's threshold: ``percentile`` of the held-out clean scores (the engine's threshold rule).

    Examples
    --------
    >>> threshold(np.arange(101.0), 95.0)
    95.0
    """
    return ModelDistillation.percentile_threshold(calibration_scores, percentile)


# ------------------------------------------------------------------------------------------------ step 3


@dataclass
class AttackRun:
    """Step 3's view: the attacked test rows, both models' predictions, both scores."""

    detector_run: DetectorRun
    positions: np.ndarray  # in the test split
    result: AttackResult
    scores_clean: np.ndarray
    scores_adv: np.ndarray
    student_clean: np.ndarray  # the distilled model's class probabilities
    student_adv: np.ndarray
    curves: ScoreCurves | None
    harmful_auc: float | None
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def data(self) -> Prepared:
        return self.detector_run.classifier_run.data

    @property
    def rows(self) -> np.ndarray:
        """The attacked rows' positions in the table (the page's row numbers)."""
        return self.data.test_rows[self.positions]

    def __len__(self) -> int:
        return len(self.positions)


def attack_positions(n_test: int, n_rows: int, seed: int) -> np.ndarray:
    """The test rows to attack: all of them, or a sorted random sample of ``n_rows``.

    Examples
    --------
    >>> attack_positions(5, 10, 0).tolist()
    [0, 1, 2, 3, 4]
    >>> len(attack_positions(100, 10, 0))
    10
    """
    if n_rows >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(seed).choice(n_test, n_rows, replace=False))


def attack_request(run: DetectorRun, positions: np.ndarray, method: str, norm: str, epsilon_relative: float,
                   steps: int, seed: int, *, trusted: bool, max_mb: int | None) -> AttackRequest:
    data = run.classifier_run.data
    request = AttackRequest(data.X_test[positions], data.y_test[positions], method=method, norm=norm,
                            epsilon_relative=float(epsilon_relative), steps=int(steps), seed=int(seed),
                            chunk_rows=ATTACK_CHUNK_ROWS, temperature=run.temperature, loss_type=run.loss_type)
    if run.archive is not None:
        request.archive = run.archive
    else:
        request.teacher = teacher_of(run.classifier_run, trusted=trusted, max_mb=max_mb)
        request.student = run.student
    return request


def describe_attack(method: str, norm: str, epsilon_relative: float, steps: int, transfer: bool) -> str:
    """One line naming the attack, e.g. ``PGD (20 steps), L∞ ε = 0.15 of the data range``."""
    name = {"fgsm": "FGSM", "pgd": f"PGD ({steps} steps)"}[method]
    text = f"{name}, {'L∞' if norm == 'inf' else 'L2'} ε = {epsilon_relative:g} of the data range"
    return text + (", made against the distilled model (transfer attack)" if transfer else "")


def attack_view(answer: AttackAnswer, context: tuple[DetectorRun, np.ndarray, str]) -> AttackRun:
    run, positions, description = context
    result = answer.result
    n = len(result.harmful)
    curves = score_curves(np.r_[np.zeros(n), np.ones(n)], np.r_[answer.scores_clean, answer.scores_adv])
    harmful = result.harmful
    harmful_curves = score_curves(np.r_[np.zeros(n), np.ones(int(harmful.sum()))],
                                  np.r_[answer.scores_clean, answer.scores_adv[harmful]]) if harmful.any() else None
    return AttackRun(run, np.asarray(positions)[:n], result, answer.scores_clean, answer.scores_adv,
                     answer.student_clean, answer.student_adv, curves,
                     None if harmful_curves is None else harmful_curves.roc_auc, description, list(answer.notes))


# ------------------------------------------------------------------------------------------------ at a threshold


@dataclass
class Detection:
    """Flags and rates of an attack run at one threshold."""

    threshold: float
    flag_clean: np.ndarray
    flag_adv: np.ndarray
    detection_rate: float  # attacked rows flagged
    harmful_detection_rate: float | None  # attacked rows whose prediction changed, flagged
    false_alarm_rate: float  # clean rows flagged


def detection(run: AttackRun, threshold: float) -> Detection:
    flag_clean, flag_adv = run.scores_clean > threshold, run.scores_adv > threshold
    harmful = run.result.harmful
    return Detection(float(threshold), flag_clean, flag_adv, float(np.mean(flag_adv)),
                     float(np.mean(flag_adv[harmful])) if harmful.any() else None, float(np.mean(flag_clean)))


EXAMPLE = "example"  # the group shown first: rows that illustrate the method


def example_groups(run: AttackRun, det: Detection) -> dict[str, tuple[str, np.ndarray]]:
    """The groups of attacked rows the page offers, as ``key: (label, indices in the run)``.

    The first, :data:`EXAMPLE`, illustrates the method: rows the classifier gets right before the attack,
    whose prediction the attack changes, and which the detector flags. Rows where the distilled model
    visibly disagrees with the classifier on the attacked input (another class) and whose clean input is
    not flagged come first. The other groups list rows in the table's order.
    """
    result = run.result
    harmful = result.harmful
    correct = result.pred_clean == result.y
    illustrates = correct & harmful & det.flag_adv
    visible = run.student_adv.argmax(axis=1) != result.pred_adv
    example = np.flatnonzero(illustrates)
    example = example[np.lexsort((example, det.flag_clean[example], ~visible[example]))]
    return {
        EXAMPLE: ("right before the attack, fooled by it, flagged", example),
        "harmful": ("prediction changed", np.flatnonzero(harmful)),
        "missed": ("prediction changed, not flagged", np.flatnonzero(harmful & ~det.flag_adv)),
        "caught": ("flagged", np.flatnonzero(det.flag_adv)),
        "all": ("all attacked rows", np.arange(len(run))),
    }


def default_group(groups: dict[str, tuple[str, np.ndarray]]) -> str:
    """The group shown first: the illustrating rows, else the rows the attack changed, else all."""
    for key in (EXAMPLE, "harmful", "all"):
        if len(groups[key][1]):
            return key
    return "all"


def no_example_note(run: AttackRun, det: Detection) -> str | None:
    """Why no row illustrates the method (None when one does): an honest sentence with what to change."""
    result = run.result
    correct = result.pred_clean == result.y
    if (correct & result.harmful & det.flag_adv).any():
        return None
    if not correct.any():
        return ("The classifier gets none of the attacked rows right, so no row shows an attack that fools it: "
                "train it longer.")
    if not (correct & result.harmful).any():
        return ("The attack changed no prediction the classifier got right, so no row shows an attack being "
                "caught: raise ε or the PGD steps.")
    return ("The detector flags none of the rows the attack fooled at this threshold, so no row shows an attack "
            "being caught: lower the threshold percentile, or distil the detector for more epochs.")


def row_label(run: AttackRun, det: Detection, i: int) -> str:
    """How the row picker names attacked row ``i``: its table row, true class, the change, score and flag."""
    result, names = run.result, run.data.class_names
    return (f"row {int(run.rows[i])} · true {names[result.y[i]]} · classifier {names[result.pred_clean[i]]} → "
            f"{names[result.pred_adv[i]]} · score {run.scores_adv[i]:.3g}{' · flagged' if det.flag_adv[i] else ''}")


def _cls(names, proba) -> str:
    return f"{names[int(np.argmax(proba))]} ({float(np.max(proba)):.2f})"


def predictions_table(run: AttackRun, det: Detection, i: int) -> pd.DataFrame:
    """Both models' predictions, the score and the flag, on the original and the attacked input of row ``i``."""
    names, result = run.data.class_names, run.result
    return pd.DataFrame({
        "input": ["original", "adversarial"],
        "classifier predicts (probability)": [_cls(names, result.proba_clean[i]), _cls(names, result.proba_adv[i])],
        f"distilled model predicts (probability at T={run.detector_run.temperature:g})": [
            _cls(names, run.student_clean[i]), _cls(names, run.student_adv[i])],
        "adversarial score": [f"{run.scores_clean[i]:.4g}", f"{run.scores_adv[i]:.4g}"],
        "flagged": ["yes" if det.flag_clean[i] else "no", "yes" if det.flag_adv[i] else "no"],
    })


def example_sentence(run: AttackRun, det: Detection, i: int) -> str:
    """What happened to attacked row ``i``, in words that are true for that row (and match its table)."""
    result, names = run.result, run.data.class_names
    row, true = int(run.rows[i]), names[result.y[i]]
    clean, adv = int(result.pred_clean[i]), int(result.pred_adv[i])
    student = int(np.argmax(run.student_adv[i]))
    parts = [f"Row {row}, true class {true}. The classifier reads the original as {names[clean]}"
             + (" (right)" if clean == result.y[i] else " (wrong)")
             + (f" and the attacked input as {names[adv]}: the attack changed its prediction."
                if adv != clean else f" and the attacked input as {names[adv]} too: the attack did not change it.")]
    if student != adv:
        parts.append(f"On the attacked input the distilled model predicts {names[student]}, not {names[adv]}: the two "
                     "models disagree,")
    else:
        parts.append(f"On the attacked input the distilled model also predicts {names[adv]}, with probability "
                     f"{float(np.max(run.student_adv[i])):.2f} against the classifier's "
                     f"{float(np.max(result.proba_adv[i])):.2f}: the score measures how far apart their "
                     "probabilities are,")
    above = det.flag_adv[i]
    parts.append(f"and its score {run.scores_adv[i]:.3g} is {'above' if above else 'not above'} the threshold "
                 f"{det.threshold:.3g}, so the attacked input is {'flagged' if above else 'not flagged (a miss)'}.")
    parts.append(f"The original scores {run.scores_clean[i]:.3g}: "
                 + ("flagged too (a false alarm)." if det.flag_clean[i] else "not flagged."))
    return " ".join(parts)


def made_against(run: AttackRun) -> str:
    """Which model the attack was computed on (for the page's caption)."""
    if run.detector_run.classifier_run.transfer_attack:
        return ("The attack was made against the distilled model (your model gives no gradients), then given to your "
                "model: a transfer attack.")
    return "The attack was made against the classifier only; the distilled model never saw it."


# ------------------------------------------------------------------------------------------------ export


def export_frame(run: AttackRun, det: Detection, source: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per row of the table, in its order: ``row``, the table's columns, ``status``/``reason``, then for
    the attacked test rows both predictions, both scores and flags (see :func:`engine.export.join_results`).

    Examples
    --------
    >>> frame = export_frame(run, detection(run, 0.5))   # doctest: +SKIP
    >>> frame.loc[frame.status == 'scored', 'adversarial_flagged'].mean()   # doctest: +SKIP
    """
    data, result = run.data, run.result
    source = data.frame if source is None else source
    names = np.asarray(data.class_names, dtype=object)
    results = pd.DataFrame({
        "clean_prediction": names[result.pred_clean],
        "clean_probability": result.proba_clean.max(axis=1),
        "adversarial_prediction": names[result.pred_adv],
        "adversarial_probability": result.proba_adv.max(axis=1),
        "prediction_changed": result.harmful.astype(bool),
        "distilled_clean_prediction": names[run.student_clean.argmax(axis=1)],
        "distilled_adversarial_prediction": names[run.student_adv.argmax(axis=1)],
        "clean_score": run.scores_clean,
        "clean_flagged": det.flag_clean.astype(bool),
        "adversarial_score": run.scores_adv,
        "adversarial_flagged": det.flag_adv.astype(bool),
        "threshold": np.full(len(run), det.threshold),
        "perturbation_linf": result.linf,
        "perturbation_l2": result.l2,
    })
    reasons = {}
    for rows, why in ((data.fit_rows, "training row: both models learned from it"),
                      (data.calibration_rows, "held-out clean row: sets the threshold"),
                      (data.test_rows, "test row not in the attacked sample")):
        reasons.update(dict.fromkeys(np.asarray(rows).tolist(), why))
    if data.label in source.columns:
        reasons.update(dict.fromkeys(np.flatnonzero(source[data.label].isna().to_numpy()).tolist(), "no label"))
    return join_results(source, run.rows, results, reasons=reasons,
                        default_reason="training row left out of the training sample")


# ------------------------------------------------------------------------------------------------ figures


def score_histograms(clean: np.ndarray, adversarial: np.ndarray, threshold: float, log_scale: bool) -> go.Figure:
    """Overlaid histograms of clean and adversarial scores with the threshold line."""
    both_raw = np.r_[clean, adversarial]
    positive = both_raw[both_raw > 0]
    floor = float(positive.min()) if len(positive) else 1e-12

    def axis(values):
        values = np.asarray(values, dtype=float)
        return np.log10(np.maximum(values, floor)) if log_scale else values

    both = axis(both_raw)
    edges = np.histogram_bin_edges(both, bins=60)
    fig = go.Figure()
    for name, values, color in (("clean", clean, charts.INLIER), ("adversarial", adversarial, charts.OUTLIER)):
        counts, _ = np.histogram(axis(values), bins=edges)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=f"{name} inputs",
                             marker_color=color, opacity=0.6))
    charts.threshold_line(fig, float(axis([threshold])[0]), axis="x")
    title = "adversarial score"
    if log_scale:
        low, high = math.floor(both.min()), math.ceil(both.max())
        ticks = list(range(low, high + 1))
        fig.update_xaxes(tickvals=ticks, ticktext=[f"1e{t}" for t in ticks])
        title += " (log scale)"
    fig.update_layout(title="Scores of clean and attacked test rows", barmode="overlay", xaxis_title=title,
                      yaxis_title="rows", margin=dict(l=10, r=10, t=40, b=10), height=340,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def roc_with_point(curves: ScoreCurves, fpr: float, tpr: float) -> go.Figure:
    """The clean-vs-adversarial ROC curve with the threshold's operating point marked."""
    fig = charts.roc_figure(curves.fpr, curves.tpr, curves.roc_auc, title="ROC: clean vs adversarial")
    fig.add_trace(go.Scatter(x=[fpr], y=[tpr], mode="markers", name="at the threshold",
                             marker=dict(size=11, color=charts.OUTLIER, symbol="x")))
    return fig
