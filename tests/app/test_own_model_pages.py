"""Anchors, Contrastive explanations and Adversarial detection with an uploaded model instead of one trained here."""

import pytest

from tests.app import own_models
from tests.app.helpers import click_and_finish, metric_value, no_exceptions, page

pytestmark = pytest.mark.app


def _use_own(at, prefix: str, name: str, data: bytes, mime: str = "application/octet-stream"):
    at.radio(key=f"{prefix}:source").set_value("own").run()
    no_exceptions(at)
    at.file_uploader(key=f"{prefix}:own_model").upload(name, data, mime).run()
    no_exceptions(at)
    return at


def test_anchors_explains_an_uploaded_onnx_forest_and_shows_its_accuracy():
    at = page("anchors")
    at.run()
    _use_own(at, "anchors", "adult_forest.onnx", own_models.adult_forest_onnx())
    assert any("adult_forest.onnx: ONNX classifier" in s.value and "14 inputs" in s.value for s in at.success)
    assert "anchors:trees" not in [w.key for w in at.number_input]  # no forest settings for an uploaded model
    at.number_input(key="anchors:max_train").set_value(3000)
    click_and_finish(at, "anchors:train", "anchors-model")
    assert 0.75 < float(metric_value(at, "Test accuracy")) <= 1.0  # the forest's accuracy on Adult's test split
    assert any(c.value.startswith("adult_forest.onnx: ONNX classifier") for c in at.caption)
    assert metric_value(at, "Model predicts") in ("<=50K", ">50K")

    at.number_input(key="anchors:coverage_samples").set_value(1000)
    exp = click_and_finish(at, "anchors:explain", "anchors-explain").result.explanation
    assert any(m.value.startswith("**IF**") for m in at.markdown) or any("No condition is needed" in i.value
                                                                         for i in at.info)
    assert float(metric_value(at, "Precision")) == pytest.approx(exp.precision, abs=1e-3)


def _cem_explain(at, max_iterations: int = 300):
    click_and_finish(at, "cem:train", "cem-model")
    at.multiselect(key="cem:modes").set_value(["PN"])
    at.number_input(key="cem:max_iterations").set_value(max_iterations)
    at.number_input(key="cem:c_steps").set_value(3)
    return click_and_finish(at, "cem:explain", "cem-explain").view


def test_cem_with_an_uploaded_onnx_model_runs_black_box_and_finds_a_pertinent_negative():
    at = page("cem")
    at.run()
    _use_own(at, "cem", "iris_logistic.onnx", own_models.iris_logistic_onnx())
    assert any("iris_logistic.onnx: ONNX classifier" in s.value for s in at.success)
    run = _cem_explain(at)
    assert float(metric_value(at, "Test accuracy")) > 0.8  # the species names match the label's values
    assert any("Black-box mode" in i.value for i in at.info)
    assert not any("White-box mode" in i.value for i in at.info)
    exp = run.explanations["PN"]
    assert exp.meta["params"]["gradients"] == "numerical"
    assert bool(exp.found[0]), "a PN exists for iris within the features' ranges"
    assert metric_value(at, "PN predicted as") in ("setosa", "versicolor", "virginica")
    assert metric_value(at, "PN predicted as") != metric_value(at, "Original predicted as")


def test_cem_with_a_keras_model_in_trusted_mode_runs_white_box(trusted):
    at = page("cem")
    at.run()
    _use_own(at, "cem", "iris.keras", own_models.iris_keras())
    assert any("iris.keras: Keras classifier, white-box" in s.value for s in at.success)
    run = _cem_explain(at)
    assert any("White-box mode" in i.value for i in at.info)
    assert not any("Black-box mode" in i.value for i in at.info)
    # A Keras model stores no class names: its outputs 0, 1, 2 are read as the species in sorted order, with a note.
    assert any("stores no class names" in w.value and "`setosa`, `versicolor`, `virginica`" in w.value
               for w in at.warning)
    assert float(metric_value(at, "Test accuracy")) > 0.8
    assert metric_value(at, "Original predicted as") in ("setosa", "versicolor", "virginica")
    assert run.explanations["PN"].meta["params"]["gradients"] == "autodiff"
    assert bool(run.explanations["PN"].found[0])


def test_a_keras_file_is_refused_on_the_shared_demo():
    at = page("cem")
    at.run()
    _use_own(at, "cem", "iris.keras", own_models.iris_keras())
    assert any("iris.keras** was not loaded" in e.value and "ONNX models only" in e.value for e in at.error)
    assert not at.success
    assert at.button(key="cem:train").disabled


def _adversarial_with(at, name: str, data: bytes):
    _use_own(at, "adv", name, data)
    click_and_finish(at, "adv:train", "adv-classifier")
    at.number_input(key="adv:distil:epochs").set_value(3)
    return click_and_finish(at, "adv:distil", "adv-distil").view


def test_adversarial_detection_distils_from_an_onnx_teacher_and_runs_a_transfer_attack():
    at = page("adversarial")
    at.run()
    det_run = _adversarial_with(at, "digits_logistic.onnx", own_models.digits_logistic_onnx())
    assert float(metric_value(at, "Test accuracy")) > 0.9  # the model's, on digits' label column
    assert det_run.archive is None and det_run.student is not None  # no archive: the teacher is not Lantern's
    assert float(metric_value(at, "Agreement on held-out clean rows").rstrip("%")) > 50
    assert any("Transfer attack" in i.value for i in at.info)

    at.radio(key="adv:method").set_value("pgd")
    at.slider(key="adv:epsilon").set_value(0.3)
    at.number_input(key="adv:steps").set_value(10)
    at.number_input(key="adv:rows").set_value(200)
    run = click_and_finish(at, "adv:attack", "adv-attack").view
    assert "transfer attack" in run.description
    assert any("made against the distilled model (transfer attack)" in c.value for c in at.caption)
    # The attacked rows were scored by the uploaded model: its accuracy on the clean rows is the one step 1 showed.
    assert float(metric_value(at, "Classifier accuracy, clean")) > 0.9
    assert 0 <= run.result.harmful_rate <= 1 and len(run.scores_adv) == 200
    assert not [b for b in at.get("download_button") if b.proto.label == "Detector archive"]
    assert any("No detector archive for an uploaded model" in c.value for c in at.caption)


def test_a_garbage_model_file_gets_a_clear_error_and_the_page_keeps_working():
    at = page("anchors")
    at.run()
    _use_own(at, "anchors", "model.onnx", b"this is not an onnx graph")
    assert any("model.onnx** was not loaded" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.success and at.button(key="anchors:train").disabled
    # A good file then loads, and the bad one's name is gone.
    at.file_uploader(key="anchors:own_model").upload("forest.onnx", own_models.adult_forest_onnx(),
                                                     "application/octet-stream").run()
    no_exceptions(at)
    assert not at.error
    assert any(s.value.startswith("forest.onnx: ONNX classifier") for s in at.success)
    assert not at.button(key="anchors:train").disabled
    # Back to training here: the page works as before.
    at.radio(key="anchors:source").set_value("train").run()
    no_exceptions(at)
    assert at.button(key="anchors:train").label == "Train classifier"


def test_adversarial_detection_attacks_a_keras_teacher_directly_in_trusted_mode(trusted):
    at = page("adversarial")
    at.run()
    _adversarial_with(at, "digits.keras", own_models.digits_keras())
    assert float(metric_value(at, "Test accuracy")) > 0.9  # outputs 0-9 are digits' label values
    assert any("White box" in i.value for i in at.info) and not any("Transfer attack" in i.value for i in at.info)
    at.slider(key="adv:epsilon").set_value(0.3)
    at.number_input(key="adv:steps").set_value(10)
    at.number_input(key="adv:rows").set_value(200)
    run = click_and_finish(at, "adv:attack", "adv-attack").view
    assert "transfer" not in run.description
    # Made against the model itself, a strong PGD changes most of its predictions.
    assert run.result.harmful_rate > 0.5
    assert float(metric_value(at, "Classifier accuracy, attacked")) < float(
        metric_value(at, "Classifier accuracy, clean"))


def test_a_skops_model_that_names_its_features_reads_them_by_name_in_trusted_mode(trusted):
    at = page("anchors")
    at.run()
    at.selectbox(key="anchors:dataset").set_value("bundled:iris").run()
    _use_own(at, "anchors", "iris.skops", own_models.iris_named_skops())
    assert any("iris.skops: scikit-learn classifier" in s.value for s in at.success)
    assert any("read from the table by name" in c.value for c in at.caption)
    run = click_and_finish(at, "anchors:train", "anchors-model").view
    assert run.data.feature_names == ["petal_width", "petal_length", "sepal_width", "sepal_length"]  # the model's order
    assert float(metric_value(at, "Test accuracy")) > 0.85


def test_a_model_of_another_width_is_refused_with_what_to_change():
    at = page("anchors")
    at.run()
    _use_own(at, "anchors", "iris.onnx", own_models.iris_logistic_onnx())  # 4 inputs; Adult offers 14 features
    at.button(key="anchors:train").click().run()
    no_exceptions(at)
    assert any("iris.onnx** does not fit these columns: the model reads 4 input(s) and 14 feature column(s) are "
               "chosen" in e.value for e in at.error), [e.value for e in at.error]
    assert "job::anchors-model" not in at.session_state
    # Choosing four numeric columns makes it fit (in the table's units it is a poor model, but it runs).
    at.multiselect(key="anchors:features").set_value(["age", "fnlwgt", "education_num", "hours_per_week"])
    click_and_finish(at, "anchors:train", "anchors-model")
    assert metric_value(at, "Test accuracy") == "—"  # species are not Adult's income classes
    assert any("are not values of the label column" in w.value for w in at.warning)
