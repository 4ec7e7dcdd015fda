"""engine.training.train with CancelToken.stop(): the run ends early and the model is kept (issue #20.5b)."""

from __future__ import annotations

import keras
import numpy as np

from engine.training import CancelToken, train
from tests.unit.helpers import interrupting, mse, toy_regression


def test_stop_ends_the_run_after_the_current_batch_and_keeps_the_model():
    x, y = toy_regression()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    token = CancelToken()
    progress, events = interrupting(token.stop, lambda event: event.kind == "epoch" and event.epoch == 3)
    before = [w.copy() for w in model.get_weights()]
    history = train(model, mse, x, y, optimizer=keras.optimizers.Adam(0.05), epochs=1000, batch_size=16, seed=0,
                    progress=progress, cancel=token)
    assert history.stopped == "stopped"
    assert history.epochs_run == 4 and len(history.loss) == 4  # epoch 4 ran one batch, then stopped
    assert [e.step for e in events if e.kind == "batch" and e.epoch == 4] == [1]
    assert not token.cancelled
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))  # it learned and kept it
    assert history.loss[2] < history.loss[0]


def test_cancel_after_stop_still_cancels():
    token = CancelToken()
    token.stop()
    token.cancel()
    assert token.stop_requested and token.cancelled
