"""scikit-learn models in skops' ``.skops`` format, with skops' default trusted types only (never pickle/joblib)."""

from __future__ import annotations

import warnings

import numpy as np

from engine.errors import ModelError
from engine.predictors.base import Predictor, check_zip

# Fitted on a DataFrame, scikit-learn warns on every call with a bare array; Lantern passes the chosen columns as
# an array by design (``Predictor.check`` compares the width), so that one warning is silenced process-wide.
warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)


def load_sklearn(data: bytes, *, max_bytes: int, reload=None) -> Predictor:
    """A ``Predictor`` from the bytes of a ``.skops`` file (see ``engine.predictors.load_predictor``)."""
    with check_zip(data, max_bytes=max_bytes, what=".skops") as zf:
        if "schema.json" not in zf.namelist():
            raise ModelError("the file is a zip but not a skops model (no schema.json); save the model with "
                             "skops.io.dump(model, 'model.skops').")
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ModelError(f"skops cannot read this file ({type(exc).__name__}: {exc}); save it again with "
                         "skops.io.dump.") from exc
    if untrusted:
        raise ModelError(f"the scikit-learn model uses types that are not trusted by default: {', '.join(untrusted)}. "
                         "Lantern loads only scikit-learn's and numpy's own types; replace custom functions and "
                         "classes (e.g. a FunctionTransformer with your own function) or export the model to ONNX.")
    try:
        model = sio.loads(data, trusted=[])
    except Exception as exc:
        raise ModelError(f"skops cannot load this model ({type(exc).__name__}: {exc}).") from exc
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelError(f"the scikit-learn model ({type(model).__name__}) has no predict_proba, so it gives no class "
                         "probabilities; use a classifier (for SVC, fit it with probability=True).")
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, (int, np.integer)):
        raise ModelError(f"the scikit-learn model ({type(model).__name__}) does not record its number of inputs "
                         "(n_features_in_); fit it before saving.")
    classes = getattr(model, "classes_", None)
    feature_names = getattr(model, "feature_names_in_", None)
    predict_proba = model.predict_proba
    predict_proba = model.predict_proba

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(predict_proba(x), dtype=np.float64)

    if classes is not None and len(classes) >= 2:
        names = [str(c) for c in classes]
    else:  # no classes_ to read: ask the model once (check() on the user's rows verifies the rest)
        try:
            names = [str(i) for i in range(run(np.zeros((1, int(n_features)), dtype=np.float32)).shape[1])]
        except Exception as exc:
            raise ModelError(f"the scikit-learn model has no classes_ and fails on a row of {n_features} numbers "
                             f"({type(exc).__name__}: {exc}); Lantern passes numeric float32 rows.") from exc
    return Predictor("sklearn", run, n_features=int(n_features), class_names=names, size_bytes=len(data),
                     feature_names=None if feature_names is None else list(feature_names), reload=reload)
