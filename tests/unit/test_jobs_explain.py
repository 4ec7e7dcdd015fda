"""jobs.explain: the explanation jobs run from their requests alone, and reuse per-process state."""

import pickle

import keras
import numpy as np
import pytest

import jobs.explain as ex
from engine.nets import describe_sequential
from engine.saving import model_weights
from tests.unit.job_helpers import RecordingProgress as Progress


def _network() -> ex.Network:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    # class 1 once the first feature passes 1
    model.set_weights([np.array([[0.0, 3.0], [0.0, 0.0]], np.float32), np.array([0.0, -3.0], np.float32)])
    return ex.Network(describe_sequential(model), model_weights("net", model))


def test_explain_cem_from_a_request_of_plain_values_and_reuse_of_the_compiled_search():
    ex._CEMS.clear()
    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(50, 2)).astype(np.float32)
    request = ex.CEMRequest(ex.CEMClassifier(network=_network()), X_train, np.array([[0.5, 0.2]], np.float32),
                            (X_train.min(axis=0) - 2, X_train.max(axis=0) + 2), ["PN"],
                            ex.CEMSettings(kappa=0.0, c_init=10.0, c_steps=2, max_iterations=200,
                                           learning_rate_init=0.1))
    request = pickle.loads(pickle.dumps(request))  # it can travel to another process as it is
    progress = Progress()
    answer = ex.explain_cem(request, progress)
    pn = answer.explanations["PN"]
    assert bool(pn.found[0]) and int(pn.PN_pred) != int(pn.X_pred)
    assert progress.events and progress.stages[-1] == "PN found"
    key = ex._cem_key(request, "PN", use_ae=False)
    assert key in ex._CEMS.keys()
    cem = ex._CEMS.get_or_make(key, lambda: None)[0].value
    # The same model and settings: the cached CEM explains again; another model gets its own.
    ex.warm_up_cem(request, Progress())
    ex.explain_cem(request, Progress())
    assert ex._CEMS.get_or_make(key, lambda: None)[0].value is cem
    other = _network()
    other.weights["net/0"] = other.weights["net/0"] * 2
    other_request = ex.CEMRequest(ex.CEMClassifier(network=other), X_train, request.x, request.feature_range, ["PN"],
                                  request.settings)
    ex.explain_cem(other_request, Progress())
    other_key = ex._cem_key(other_request, "PN", use_ae=False)
    assert other_key != key and ex._CEMS.get_or_make(other_key, lambda: None)[0].value is not cem


def test_the_cache_is_bounded():
    cache = ex._Cache(2)
    for key in "abc":
        cache.get_or_make(key, lambda: key)
    assert cache.keys() == ["b", "c"]
    assert cache.get_or_make("b", lambda: "new") == ("b", False)


def test_the_forest_is_rebuilt_from_its_request_when_another_process_explains():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.2 * X[:, 1] > 0).astype(int)
    forest = ex.ForestRequest(X[:200], y[:200], X[200:], n_trees=10, max_depth=4, seed=0)
    answer = ex.train_forest(forest, Progress())
    assert answer.n_built == 10 and answer.test_proba.shape == (100, 2) and list(answer.classes) == [0, 1]
    request = ex.AnchorRequest(ex.AnchorModel(forest=forest), ["a", "b", "c"], {}, X[:200], X[200:],
                               answer.test_proba, position=3, search=ex.AnchorSearch(coverage_samples=500), seed=0)
    first = ex.explain_anchor(request, Progress())
    ex._FORESTS.clear()  # as in a fresh worker: nothing cached, the forest is grown again from its recipe
    ex._EXPLAINERS.clear()
    again = ex.explain_anchor(request, Progress())
    assert again.explanation.anchor == first.explanation.anchor
    assert again.held_out == pytest.approx(first.held_out, nan_ok=True)
    assert len(again.different_columns) == len(again.explanation.raw["examples"])
