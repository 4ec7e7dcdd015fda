"""Contrastive explanations (CEM) without the page: data preparation, the runs a page shows, sentences and figures.

Every row is named by its table row number (see :mod:`workflows.explain_data`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.errors import DataError
from engine.explanation import Explanation
from engine.preprocessing import Standardizer
from engine.tabular import classification_data
from jobs.explain import CEMClassifier, CEMRequest, CEMSettings
from jobs.models import (AutoencoderAnswer, AutoencoderRequest, ClassifierAnswer, ClassifierRequest, FitSettings,
                         ModelFile, Network)
from workflows.explain_data import Prepared, check_feature_count, row_label

MAX_FEATURES = 1_000
MAX_C_STEPS = 10
MIN_TRAIN_ROWS = 10
MODES = {"PN": "Pertinent negative (PN)", "PP": "Pertinent positive (PP)"}
TABULAR_NETWORKS = {
    "softmax": ("softmax regression (one dense layer, as in the CEM paper's iris example)", dict(hidden=())),
    "mlp": ("neural network, one hidden layer of 32", dict(hidden=(32,))),
}
IMAGE_NETWORK = ("small CNN (conv 8 → pool → conv 16 → pool → softmax)",
                 dict(kind="cnn", filters=(8, 16), hidden=()))
NO_INFO = {"median": "training median", "mean": "training mean", "background": "0 (blank background)"}
COLOURS = {"original": "#4C78A8", "PN": "#E45756", "PP": "#54A24B"}
CHANGE_TOLERANCE = 1e-5  # changes smaller than this (in model units) are float noise of the search, shown as 0
SHOWN_CHANGES = 5

HELP = {
    "modes": "PN: the smallest change that would make the model predict another class (what must stay absent). "
             "PP: the smallest part of the row that still gets this prediction (what must be present).",
    "kappa": "How sure the model must be of the explanation's class: 0 accepts a bare win over the next class, "
             "0.2 asks for a 0.2 lead in probability (harder to find, more convincing).",
    "beta": "How strongly the search prefers changing few features: raise it for shorter explanations, lower "
            "it when nothing is found.",
    "gamma": "How strongly the explanation must look like real data (measured by the autoencoder): 0 ignores "
             "it; larger values give more realistic but harder-to-find explanations. Needs the autoencoder.",
    "c_init": "How much the search cares about reaching the wanted class at first, compared with staying close "
              "to the row; it is raised tenfold when nothing is found and then fine-tuned.",
    "c_steps": f"How many times the search retries with a different weight c (at most {MAX_C_STEPS}); more tries "
               "find more explanations but take longer.",
    "max_iterations": "Optimisation steps in each try; more steps refine the explanation and take longer.",
    "no_info": "The value that counts as 'nothing there' for a feature: a PN moves features away from it, a PP "
               "keeps only what differs from it.",
    "learning_rate": "Size of the first optimisation steps (they shrink to 0 over the iterations); lower it when "
                     "explanations jump around.",
}


# ------------------------------------------------------------------------------------------------ data


def prepare(table, features, label, image_shape, split_column, test_share, max_train, seed) -> Prepared:
    """Encode, split and scale the table; raises DataError with what to change."""
    check_feature_count(features, MAX_FEATURES)
    data = classification_data(table.frame, features, label, split_column=split_column, test_size=test_share,
                               seed=seed, max_train_rows=max_train)
    if data.categorical_names:
        names = ", ".join(data.feature_names[i] for i in data.categorical_names)
        raise DataError(f"text or boolean feature columns ({names}) cannot be moved continuously by CEM; "
                        "leave them out of the features.")
    notes = list(data.notes)
    complete_train = ~np.isnan(data.X_train).any(axis=1)
    complete_test = ~np.isnan(data.X_test).any(axis=1)
    dropped = int((~complete_train).sum() + (~complete_test).sum())
    if dropped:
        notes.append(f"{dropped:,} row(s) with missing feature values were left out.")
    X_train, y_train = data.X_train[complete_train], data.y_train[complete_train]
    X_test, y_test = data.X_test[complete_test], data.y_test[complete_test]
    if len(X_train) < MIN_TRAIN_ROWS or len(X_test) < 1:
        raise DataError(f"{len(X_train)} training and {len(X_test)} test row(s) have all feature values; at least "
                        f"{MIN_TRAIN_ROWS} training rows and one test row are needed. Choose other columns or fill "
                        "the missing values on the Data page.")
    if len(np.unique(y_train)) < 2:
        raise DataError("the complete training rows hold a single class; use more rows or other columns.")
    n = X_train.shape[1]
    if image_shape is not None:  # one intensity scale for all pixels: 0 stays the blank background
        offset, scale = np.zeros(n), np.full(n, max(float(X_train.max()), 1e-12))
    else:
        scaler = Standardizer().fit(X_train)
        offset, scale = np.asarray(scaler.mean_, dtype=np.float64), np.asarray(scaler.scale_, dtype=np.float64)

    def to_model(X):
        return ((X - offset) / scale).astype(np.float32)

    return Prepared(table.name, list(data.feature_names), list(data.class_names), image_shape, to_model(X_train),
                    y_train, to_model(X_test), y_test, data.test_rows[complete_test], offset, scale, data.split, notes)


def for_own_model(data: Prepared, class_map) -> Prepared:
    """The prepared data with the model's classes: ``class_names`` are its outputs, labels its columns (-1: none)."""
    data.class_names = class_map.shown_names
    data.y_train = class_map.labels_for_model(data.y_train)
    data.y_test = class_map.labels_for_model(data.y_test)
    return data


def default_no_info(data: Prepared) -> str:
    """The no-information value the page offers first: the background for images, the median for tables."""
    return "background" if data.is_image else "median"


def true_class(data: Prepared, code: int) -> str:
    return data.class_names[int(code)] if code >= 0 else "— (not a class of the model)"


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class ModelView:
    """A classifier ready to explain: trained here or uploaded, with its test-split predictions."""

    data: Prepared
    classifier: CEMClassifier  # how it travels to an explanation job
    description: str
    test_proba: np.ndarray
    test_accuracy: float | None  # None: an uploaded model whose classes are not values of the label column
    own_kind: str | None = None  # the uploaded model's kind ('onnx', 'keras', 'sklearn'); None: trained here
    white_box: bool = True  # whether CEM gets exact gradients (a Keras model) rather than numerical ones
    class_map: object = None  # ui.own_model.ClassMap of an uploaded model
    history: object = None  # engine.training.TrainingHistory of a network trained here (None: uploaded)


@dataclass
class AutoencoderView:
    data: Prepared
    network: Network
    test_mse: float
    history: object = None  # engine.training.TrainingHistory (the page's convergence hint reads its loss)


@dataclass
class CEMView:
    """The PN and / or PP of one test row, with the settings they were searched with."""

    model: ModelView
    table_row: int
    explanations: dict[str, Explanation]
    settings: CEMSettings

    @property
    def position(self) -> int:
        return self.model.data.position(self.table_row)


def classifier_request(data: Prepared, network: str | None, fit: FitSettings) -> tuple[str, ClassifierRequest]:
    """The classifier's description and its training job's request (test rows as the held-out rows)."""
    name, spec = IMAGE_NETWORK if data.is_image else TABULAR_NETWORKS[network]
    return name, ClassifierRequest(data.X_train, data.y_train, data.X_test, data.y_test, len(data.class_names),
                                   {"kind": "mlp", **spec}, data.image_shape, fit, return_val_proba=True,
                                   show_accuracy=False)


def autoencoder_request(data: Prepared, fit: FitSettings) -> AutoencoderRequest:
    return AutoencoderRequest(data.X_train, data.X_test, "sigmoid" if data.is_image else "linear", fit)


def trained_view(answer: ClassifierAnswer, data: Prepared, name: str) -> ModelView:
    """The view of a classifier trained here."""
    return ModelView(data, CEMClassifier(network=answer.network), name, answer.val_proba, answer.val_accuracy,
                     history=answer.history)


def own_view(proba: np.ndarray, data: Prepared, model: ModelFile, description: str, white_box: bool, class_map,
             accuracy: float | None) -> ModelView:
    """The view of an uploaded model's test-split predictions; it reads the table's units."""
    classifier = CEMClassifier(own=model, offset=data.offset, scale=data.scale)
    return ModelView(data, classifier, description, proba, accuracy, model.kind, white_box, class_map)


def autoencoder_view(answer: AutoencoderAnswer, data: Prepared) -> AutoencoderView:
    return AutoencoderView(data, answer.network, answer.val_mse, answer.history)


def own_model_caption(feature_names, n_features: int) -> str:
    return ("CEM needs gradients of the model: a Keras model gives exact ones (white box); an ONNX or scikit-learn "
            "model is a black box, so CEM estimates them numerically (slower). "
            + ("The model names its inputs, so they are read from the table by name." if feature_names else
               f"Choose its {n_features} feature column(s) below, in the order it was trained on.")
            + " It gets them in the table's units.")


def warm_up_request(model: ModelView) -> CEMRequest:
    """What the first explanation with the page's defaults compiles: PN and PP, no autoencoder."""
    data = model.data
    return CEMRequest(model.classifier, data.X_train, data.X_test[:1], data.feature_range, list(MODES),
                      CEMSettings(no_info=default_no_info(data)))


def explain_request(model: ModelView, autoencoder: AutoencoderView | None, table_row: int, modes: list[str],
                    settings: CEMSettings) -> CEMRequest:
    data = model.data
    position = data.position(table_row)
    return CEMRequest(model.classifier, data.X_train, data.X_test[position:position + 1], data.feature_range,
                      [m for m in MODES if m in modes], settings,
                      None if autoencoder is None else autoencoder.network)


def with_context(exp: Explanation, data: Prepared, table_row: int) -> Explanation:
    """The explanation with what a reader of its JSON needs to map it back to the table."""
    context = {
        "dataset": data.table_name, "row": int(table_row),
        "feature_names": data.feature_names, "class_names": data.class_names,
        "model_units": ("pixel value / scale" if data.is_image else "(value - offset) / scale, standardised "
                        "with the training rows"), "offset": data.offset, "scale": data.scale,
    }
    return Explanation(meta={**exp.meta, "lantern": context}, data=exp.data)


def cem_view(explanations: dict, model: ModelView, table_row: int, settings: CEMSettings) -> CEMView:
    return CEMView(model, int(table_row), {mode: with_context(exp, model.data, table_row)
                                           for mode, exp in explanations.items()}, settings)


# ------------------------------------------------------------------------------------------------ figures


def probability_figure(class_names: list[str], rows: dict[str, np.ndarray], title: str) -> go.Figure:
    """Class probabilities of the original and its explanations, grouped by class."""
    fig = go.Figure()
    for name, proba in rows.items():
        proba = np.asarray(proba, dtype=float).ravel()
        fig.add_trace(go.Bar(x=class_names, y=proba, name=name, marker_color=COLOURS.get(name.split()[0]),
                             text=[f"{p:.2f}" for p in proba] if len(class_names) <= 6 else None,
                             textposition="outside", hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, barmode="group", xaxis=dict(title="class", type="category"),
                      yaxis=dict(title="probability", range=[0, 1.12]), margin=dict(l=10, r=10, t=40, b=10),
                      height=320, legend=dict(orientation="h", y=-0.25))
    return fig


def clean_delta(exp: Explanation) -> np.ndarray:
    """The explanation's change of each feature (model units), float noise of the search set to 0."""
    return np.where(np.abs(exp.delta[0]) < CHANGE_TOLERANCE, 0.0, exp.delta[0])


def found(run: CEMView) -> dict[str, Explanation]:
    return {mode: exp for mode, exp in run.explanations.items() if bool(exp.found[0])}


def changes_table(run: CEMView) -> pd.DataFrame:
    """One row per feature, as text in table units: the original, each explanation, their changes and the
    no-information value."""
    data = run.model.data
    first = run.explanations[next(iter(run.explanations))]
    x = first.X[0]
    frame = pd.DataFrame({"feature": data.feature_names, "original": data.text(data.to_table_units(x))})
    for mode, exp in found(run).items():
        delta = clean_delta(exp)
        frame[mode] = data.text(data.to_table_units(x + delta))
        frame[f"{mode} − original"] = data.text(delta * data.scale, signed=True)
    frame["no-information value"] = data.text(data.to_table_units(first.no_info_val))
    return frame


def image_panels(run: CEMView) -> tuple[list, list[str], list[bool], list[str]]:
    """Images of the original and each explanation with its difference map: panels, titles, which are signed,
    and caption notes."""
    data, hits = run.model.data, found(run)
    first = run.explanations[next(iter(run.explanations))]
    original = data.class_names[int(first.X_pred)]
    panels, titles, signed = [first.X[0]], [f"original ({original})"], [False]
    notes = ["Dark = high intensity."]
    if "PN" in hits:
        pn = hits["PN"]
        panels += [pn.PN[0], pn.delta[0]]
        titles += [f"PN ({data.class_names[int(pn.PN_pred)]})", "PN − original"]
        signed += [False, True]
        notes.append("**PN − original**: the ink the pertinent negative adds (red) or removes (blue) to change "
                     "the class.")
    if "PP" in hits:
        pp = hits["PP"]
        panels += [pp.PP[0], -pp.delta[0]]
        titles += [f"PP ({data.class_names[int(pp.PP_pred)]})", "original − PP"]
        signed += [False, True]
        notes.append("**original − PP**: the part of the original the pertinent positive does without (red); "
                     "what is left in the PP is enough for the prediction.")
    return panels, titles, signed, notes


# ------------------------------------------------------------------------------------------------ sentences


def changed_features(exp: Explanation, limit: int = SHOWN_CHANGES) -> list[int]:
    """Features the explanation moved, largest change (in model units) first; all of them with ``limit=0``."""
    delta = np.abs(exp.delta[0])
    order = [int(j) for j in np.argsort(-delta, kind="stable") if delta[j] >= CHANGE_TOLERANCE]
    return order[:limit] if limit else order


def change_text(name: str, before: str, after: str, raised: bool, *, image: bool, before_empty: bool,
                after_empty: bool, verb: str = "") -> str:
    """One feature's change in words: raised / lowered for a table; for an image, added / removed ink.

    Examples
    --------
    >>> change_text("age", "39", "52", True, image=False, before_empty=False, after_empty=False, verb="were ")
    '**age** were raised from 39 to 52'
    """
    if image and before_empty and raised:
        return f"**{name}** {verb}added (0 → {after})"
    if image and after_empty and not raised:
        return f"**{name}** {verb}removed ({before} → 0)"
    return f"**{name}** {verb}{'raised' if raised else 'lowered'} from {before} to {after}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def pn_sentence(data: Prepared, exp: Explanation) -> str:
    """What the pertinent negative changed, feature by feature, and the class it leads to."""
    x_units, pn_units = data.to_table_units(exp.X[0]), data.to_table_units(exp.PN[0])
    x, pn = data.text(x_units), data.text(pn_units)
    moved = changed_features(exp)
    parts = [change_text(data.feature_names[j], x[j], pn[j], exp.PN[0][j] > exp.X[0][j], image=data.is_image,
                         before_empty=abs(x_units[j]) < 1e-12, after_empty=abs(pn_units[j]) < 1e-12,
                         verb="were ")
             for j in moved]
    extra = len(changed_features(exp, limit=0)) - len(moved)
    return (f"The model would predict **{data.class_names[int(exp.PN_pred)]}** instead of "
            f"**{data.class_names[int(exp.X_pred)]}** if " + _join(parts)
            + (f" (and {extra} smaller change(s))" if extra > 0 else "") + ".")


def pp_sentence(data: Prepared, exp: Explanation) -> str:
    """What the pertinent positive keeps of the row (as it is, or lowered / raised towards no information)."""
    pp_model, x_model, no_info_model = exp.PP[0], exp.X[0], np.asarray(exp.no_info_val, dtype=np.float64)
    x, pp, no_info = (data.text(data.to_table_units(v)) for v in (x_model, pp_model, no_info_model))
    kept = [int(j) for j in np.argsort(-np.abs(pp_model - no_info_model), kind="stable")
            if abs(pp_model[j] - no_info_model[j]) >= CHANGE_TOLERANCE]
    cls = data.class_names[int(exp.PP_pred)]
    if not kept:
        return (f"The model predicts **{cls}** even with every feature at its no-information value: nothing of "
                "this row is needed for that.")
    parts = []
    for j in kept[:SHOWN_CHANGES]:
        name = data.feature_names[j]
        if abs(pp_model[j] - x_model[j]) < CHANGE_TOLERANCE:
            parts.append(f"**{name}** kept at {x[j]}")
        else:
            word = "raised" if pp_model[j] > x_model[j] else "lowered"
            parts.append(f"**{name}** {word} from {x[j]} to {pp[j]} (no information: {no_info[j]})")
    more = f" and {len(kept) - SHOWN_CHANGES} more" if len(kept) > SHOWN_CHANGES else ""
    return (f"The model still predicts **{cls}** with only these features away from their no-information value, "
            "every other feature set to it: " + _join(parts) + more + ".")


def not_found_hint(mode: str, settings: CEMSettings) -> str:
    what = "change the class" if mode == "PN" else "keep the class with less of the row"
    hint = ("Try a larger **c_init** or more **c steps** (the attack weight grows tenfold per step while nothing is "
            "found), more **iterations**, or a smaller **kappa**")
    if settings.gamma > 0:
        hint += " or **gamma**"
    if mode == "PN":
        hint += (". No PN exists when no change within the allowed range (each feature's training range, or 0–1 "
                 "for pixels) reaches another class")
    else:
        hint += ". A PP exists only when the model predicts the original itself with margin kappa"
    name = MODES[mode][:1].lower() + MODES[mode][1:]
    return (f"No {name} found: in {settings.c_steps} c step(s) × {settings.max_iterations:,} iterations the "
            f"search found no point inside the allowed range that would {what} with margin kappa = "
            f"{settings.kappa:g}. {hint}.")


def explain_label(table_row: int) -> str:
    return f"Explain {row_label(table_row)}"


def json_name(mode: str, table_row: int) -> str:
    return f"cem_{mode.lower()}_row_{int(table_row)}.json"


def summary_caption(model: ModelView) -> str:
    data = model.data
    text = model.description if model.own_kind else model.description[:1].upper() + model.description[1:]
    return (f"{text} on {data.table_name}: {len(data.feature_names):,} features, split by {data.split}. "
            + ("Pixels are divided by the largest training value." if data.is_image else
               "Features are standardised with the training rows' mean and standard deviation.")
            + (" Your model gets them back in the table's units." if model.own_kind else "")
            + " " + " ".join(note[:1].upper() + note[1:] for note in data.notes))

