"""jobs.timeseries: the typed Seq2Seq jobs train and score a series and answer with plain arrays and archive bytes."""

from __future__ import annotations

import numpy as np
import pytest

from engine.saving import load_detector
from jobs import timeseries as jobs_ts
from tests.unit.job_helpers import RecordingProgress as _Progress


@pytest.fixture(scope="module")
def series():
    t = np.arange(230)
    return np.stack([np.sin(t * 0.3), np.cos(t * 0.2)], axis=1).astype(np.float32)


def test_fit_and_score_answers_every_steps_and_windows_scores_and_the_loss_history(series):
    progress = _Progress()
    request = jobs_ts.FitRequest(series, n_train=200, seq_len=20, latent_dim=8, stride=10, epochs=2, batch_size=32,
                                 learning_rate=1e-3, seed=0, percentile=99.0)
    answer = jobs_ts.fit_and_score(request, progress)
    assert answer.raw.shape == answer.reconstruction.shape == (230, 2)
    assert answer.window_start.tolist() == list(range(0, 220, 20)) + [210]
    assert answer.window_raw.shape == (12, 20, 2) and answer.seq_len == 20
    assert len(answer.loss) == 2 and answer.epochs == 2 and answer.stopped
    assert any(getattr(e, "kind", None) == "epoch" for e in progress.events) and "final loss" in progress.stages[-1]
    detector = load_detector(answer.archive)
    np.testing.assert_allclose(detector.threshold, np.percentile(answer.raw[:200], 99.0, axis=0), rtol=1e-5)

    again = jobs_ts.score(jobs_ts.ScoreRequest(answer.archive, series, 100, 90.0), _Progress())
    np.testing.assert_allclose(again.raw, answer.raw, rtol=1e-4, atol=1e-5)
    assert again.loss == [] and again.epochs == 0
    np.testing.assert_allclose(load_detector(again.archive).threshold, np.percentile(answer.raw[:100], 90.0, axis=0),
                               rtol=1e-4, atol=1e-5)
