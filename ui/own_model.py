""""Use my own model": one widget for the explanation pages and Adversarial detection, and the plain logic behind it.

A visitor uploads a classifier file; :func:`engine.predictors.load_predictor` turns it into a probability
function. The shared demo accepts ONNX only (a model is then data: a graph of standard operators that
onnxruntime evaluates, no code of the uploader runs); Keras ``.keras`` and scikit-learn ``.skops`` files load only
in trusted mode (``LANTERN_TRUSTED=1``), on your own machine.

The logic (which file kinds are accepted, which table columns feed the model's inputs, how its classes map
to the label's values, its accuracy) is in plain functions that tests call without Streamlit; the widgets
(:func:`choose_model`, :func:`show_fit`) only lay them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence

import numpy as np

from engine.errors import ModelError

SOURCES = {"train": "Train a model here", "own": "Use my own model"}
KINDS = {".onnx": "onnx", ".keras": "keras", ".skops": "sklearn"}
TRUSTED_KINDS = ("keras", "sklearn")
KIND_NAMES = {"onnx": "ONNX", "keras": "Keras", "sklearn": "scikit-learn (skops)"}


# ------------------------------------------------------------------------------------------------ plain logic


def accepted_extensions(trusted: bool) -> list[str]:
    """File extensions (without the dot) the uploader offers: ONNX always, Keras and skops in trusted mode."""
    return [ext[1:] for ext, kind in KINDS.items() if trusted or kind not in TRUSTED_KINDS]


def kind_of(file_name: str, trusted: bool) -> str:
    """The loader's ``kind`` for an uploaded file name; a :class:`ModelError` when this server does not accept it."""
    suffix = PurePath(file_name).suffix.lower()
    kind = KINDS.get(suffix)
    if kind is None:
        raise ModelError(f"{suffix or 'a file without an extension'} is not a model format Lantern reads; upload "
                         f"{', '.join('.' + e for e in accepted_extensions(trusted))}.")
    if kind in TRUSTED_KINDS and not trusted:
        raise ModelError(f"{KIND_NAMES[kind]} files can run code when they are loaded, so this shared server accepts "
                         "ONNX models only. Export your model to ONNX (see the README), or run Lantern on your own "
                         "machine with LANTERN_TRUSTED=1.")
    return kind


@dataclass
class OwnModel:
    """An uploaded model that loaded: its file name and bytes (a job in a worker reloads it) and the predictor."""

    file_name: str
    data: bytes
    kind: str
    predictor: object  # engine.predictors.Predictor

    @property
    def white_box(self) -> bool:
        return bool(getattr(self.predictor, "white_box", False))

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.predictor.class_names]

    def as_array(self) -> np.ndarray:
        """The file's bytes as a uint8 array: how the model travels to a job (see :mod:`jobs`)."""
        return np.frombuffer(self.data, dtype=np.uint8)


def load(data: bytes, file_name: str, *, trusted: bool, max_mb: int) -> OwnModel:
    """Load an uploaded model file; raises :class:`ModelError` naming what is wrong and how to fix it."""
    from engine.predictors import load_predictor  # loads onnxruntime and friends on first use only

    kind = kind_of(file_name, trusted)
    if len(data) > max_mb * 2**20:
        raise ModelError(f"the file is {len(data) / 2**20:.1f} MB; models of up to {max_mb} MB are accepted on this "
                         "server (LANTERN_MAX_MODEL_MB).")
    predictor = load_predictor(bytes(data), kind=kind, max_mb=max_mb, trusted=trusted)
    return OwnModel(file_name, bytes(data), kind, predictor)


def input_columns(model_features: Sequence[str] | None, n_inputs: int, chosen: Sequence[str],
                  table_columns: Sequence[str], label: str) -> list[str]:
    """The table columns that feed the model's inputs, in the model's order.

    A model that knows its feature names reads the columns of those names (all must be in the table, and
    none may be the label); any other model reads the chosen feature columns in the order chosen, and their
    number must be its input width.
    """
    if model_features:
        names = [str(n) for n in model_features]
        missing = [n for n in names if n not in table_columns]
        if missing:
            raise ModelError(f"the model reads columns named {quoted(missing)}, which this table does not have; "
                             "choose the table it was trained on (or one with those columns).")
        if label in names:
            raise ModelError(f"the model reads the label column `{label}` as a feature; choose another label "
                             "column or another model.")
        if len(names) != n_inputs:
            raise ModelError(f"the model names {len(names)} features but reads {n_inputs} inputs.")
        return names
    chosen = [c for c in chosen if c != label]
    if len(chosen) != n_inputs:
        raise ModelError(f"the model reads {n_inputs} input(s) and {len(chosen)} feature column(s) are chosen; "
                         f"choose the {n_inputs} columns it was trained on, in the same order.")
    return list(chosen)


def quoted(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _same_class(a: str, b: str) -> bool:
    """Class names match as text, or as numbers (a label column of 1.0 / 2.0 and a model of classes 1 / 2)."""
    if a.strip() == b.strip():
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


@dataclass
class ClassMap:
    """How the model's output columns relate to the values of the label column."""

    model_names: list[str]
    label_names: list[str]
    to_model: np.ndarray  # per label class code: the model's output column of that class, or -1
    by_position: bool = False  # the model stores no class names: its columns are the label's values in sorted order

    @classmethod
    def between(cls, model_names: Sequence[str], label_names: Sequence[str]) -> ClassMap:
        """Match by name (as text or as numbers); a model without class names (outputs ``0 … k-1``, as a Keras
        model saves) and a label of ``k`` values are matched by position, the label's values sorted."""
        model_names, label_names = [str(n) for n in model_names], [str(n) for n in label_names]
        to_model = np.array([next((j for j, m in enumerate(model_names) if _same_class(m, name)), -1)
                             for name in label_names], dtype=np.int64)
        unnamed = model_names == [str(i) for i in range(len(model_names))]
        if (to_model < 0).all() and unnamed and len(label_names) == len(model_names):
            return cls(model_names, label_names, np.arange(len(label_names), dtype=np.int64), by_position=True)
        return cls(model_names, label_names, to_model)

    @property
    def shown_names(self) -> list[str]:
        """A name for each output column of the model: the label's value where matched by position."""
        return list(self.label_names) if self.by_position else list(self.model_names)

    @property
    def matched(self) -> list[str]:
        return [name for name, j in zip(self.label_names, self.to_model) if j >= 0]

    @property
    def unmatched(self) -> list[str]:
        return [name for name, j in zip(self.label_names, self.to_model) if j < 0]

    def labels_for_model(self, y: np.ndarray) -> np.ndarray:
        """Label codes as the model's output columns (-1 where the model has no such class)."""
        return self.to_model[np.asarray(y, dtype=np.int64)]

    def message(self) -> str | None:
        """What the page says when the classes do not all match by name; None when they do."""
        if self.by_position:
            return (f"The model stores no class names, so its outputs 0 … {len(self.model_names) - 1} are read as the "
                    f"label's values in sorted order: {quoted(self.label_names)}. If it was trained with another "
                    "order, its accuracy here is wrong.")
        if not self.matched:
            return (f"The model's classes ({quoted(self.model_names)}) are not values of the label column "
                    f"({quoted(self.label_names)}), so its accuracy cannot be measured; explanations name the "
                    "model's classes.")
        if self.unmatched:
            return (f"The label values {quoted(self.unmatched)} are not classes of the model (its classes: "
                    f"{quoted(self.model_names)}); accuracy counts only the rows of the other values.")
        return None


def describe(model: OwnModel) -> str:
    """The loader's description of the model, with the file it came from."""
    try:
        text = str(model.predictor.describe())
    except Exception:  # a description is a courtesy; the model itself loaded
        text = f"{KIND_NAMES[model.kind]} model"
    return f"{model.file_name}: {text}"


# ------------------------------------------------------------------------------------------------ widgets


def source_picker(key: str, *, help: str | None = None) -> str:
    """"Train a model here" or "Use my own model" (the keys of :data:`SOURCES`)."""
    import streamlit as st

    return st.radio("Classifier", list(SOURCES), format_func=SOURCES.get, horizontal=True, key=key,
                    help=help or "Train one on the chosen table, or upload a classifier you trained elsewhere.")


def model_uploader(key: str) -> OwnModel | None:
    """The uploader for a model file; returns the model once one loads, else None (a bad file gets an error).

    A loaded model is kept in the session under ``key`` while the same file stays in the uploader; another
    file replaces it, and a file that does not load leaves no model at all (never the previous one).
    """
    import streamlit as st

    from ui.settings import SETTINGS

    trusted, max_mb = SETTINGS.trusted_mode, SETTINGS.max_model_mb
    kinds = "ONNX (.onnx), Keras (.keras) or scikit-learn (.skops)" if trusted else "ONNX (.onnx)"
    # Any file name is taken, so that a Keras or skops file on the demo gets the reason it is refused (a browser
    # filter would only say the type is not allowed); the extension is checked in :func:`kind_of`.
    upload = st.file_uploader(f"Model file: {kinds}, at most {max_mb} MB", key=key,
                              help="It must take the feature columns as numbers and return class probabilities; "
                                   "see the README for one-line exports.")
    if not trusted:
        st.caption("This shared server loads ONNX models only: an ONNX file is a graph of standard operators, so no "
                   "code from the file runs. Keras and scikit-learn files can run code when loaded; they are "
                   "accepted when you run Lantern on your own machine with `LANTERN_TRUSTED=1`.")
    state_key = f"{key}::loaded"
    if upload is None:
        st.session_state.pop(state_key, None)
        return None
    loaded = st.session_state.get(state_key)
    if loaded is not None and loaded[0] == upload.file_id:
        return loaded[1]
    st.session_state.pop(state_key, None)  # whatever happens next, the previous file is no longer in use
    try:
        model = load(upload.getvalue(), upload.name, trusted=trusted, max_mb=max_mb)
    except ModelError as exc:
        st.error(f"**{upload.name}** was not loaded: {exc} No model is in use; upload another file.",
                 icon=":material/error:")
        return None
    st.session_state[state_key] = (upload.file_id, model)
    return model


def choose_model(prefix: str, *, help: str | None = None) -> tuple[str, OwnModel | None]:
    """The classifier source picker and, for "Use my own model", the uploader and the model's description.

    Returns the source (a key of :data:`SOURCES`) and the loaded model (None when training here or while no
    file has loaded); widget keys are ``<prefix>:source`` and ``<prefix>:own_model``.
    """
    source = source_picker(f"{prefix}:source", help=help)
    own = model_uploader(f"{prefix}:own_model") if source == "own" else None
    if own is not None:
        show_model(own)
    return source, own


def show_model(model: OwnModel) -> None:
    """What the loaded model is (the loader's description) and how the page will use it."""
    import streamlit as st

    st.success(describe(model), icon=":material/check_circle:")


def show_fit(class_map: ClassMap, acc: float | None, n_rows: int, columns: Sequence[str], where: str) -> None:
    """The model's accuracy on the label column (or why there is none) and the columns its inputs read."""
    import streamlit as st

    note = class_map.message()
    if note:
        st.warning(note, icon=":material/warning:")
    st.caption(f"Its inputs read {quoted(list(columns), limit=12)}"
               + ("" if acc is None else f"; it classifies {acc:.1%} of the {n_rows:,} {where} correctly") + ".")
