"""Anchors, Contrastive explanations and Adversarial detection with an uploaded model instead of one trained here."""

import pytest

from tests.app import own_models
from tests.app.helpers import metric_value, no_exceptions, page, run_until_job_done

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
    at.button(key="anchors:train").click().run()
    run_until_job_done(at, "anchors-model")
    no_exceptions(at)
    job = at.session_state["job::anchors-model"]
    assert job.state == "done", job.error
    assert 0.75 < float(metric_value(at, "Test accuracy")) <= 1.0  # the forest's accuracy on Adult's test split
    assert any(c.value.startswith("adult_forest.onnx: ONNX classifier") for c in at.caption)
    assert metric_value(at, "Model predicts") in ("<=50K", ">50K")

    at.number_input(key="anchors:coverage_samples").set_value(1000)
    at.button(key="anchors:explain").click().run()
    run_until_job_done(at, "anchors-explain")
    no_exceptions(at)
    exp = at.session_state["job::anchors-explain"].result.explanation
    assert any(m.value.startswith("**IF**") for m in at.markdown) or any("No condition is needed" in i.value
                                                                         for i in at.info)
    assert float(metric_value(at, "Precision")) == pytest.approx(exp.precision, abs=1e-3)
