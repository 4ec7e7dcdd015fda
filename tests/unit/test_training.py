"""The one training loop (engine.training.train): progress, cancel, budget, callbacks, seeds, divergence."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest

from engine.errors import TrainingCancelled, TrainingDivergedError
from engine.nets import mlp
from engine.training import CancelToken, TrainingEvent, TrainingHistory, resolve_optimizer, train
from tests.unit.helpers import interrupting, mse, toy_regression


def frozen_linear(n_in=4, n_out=1, value=1.0, **kwargs):
    """A bias-free linear model with constant weights (train it with lr=0 to read exact losses)."""
    return keras.Sequential([
        keras.Input((n_in,)),
        keras.layers.Dense(n_out, use_bias=False, kernel_initializer=keras.initializers.Constant(value), **kwargs),
    ])


def test_loss_decreases_on_a_toy_regression():
    x, y = toy_regression()
    model = mlp(4, [16], 1, seed=0)
    history = train(model, mse, x, y, optimizer=keras.optimizers.Adam(0.02), epochs=25, batch_size=16, seed=0)
    assert isinstance(history, TrainingHistory)
    assert history.stopped == "completed" and history.epochs_run == 25 and len(history.loss) == 25
    assert history.loss[-1] < 0.2 * history.loss[0]
    assert history.seconds > 0


def test_progress_gets_every_batch_and_epoch_with_sensible_fields():
    x, y = toy_regression(n=50)
    events: list[TrainingEvent] = []
    history = train(mlp(4, [8], 1, seed=1), mse, x, y, epochs=3, batch_size=16, seed=0, progress=events.append)
    batches = [e for e in events if e.kind == "batch"]
    epochs = [e for e in events if e.kind == "epoch"]
    assert len(batches) == 3 * 4 and len(epochs) == 3  # ceil(50 / 16) = 4 steps per epoch
    assert [(e.epoch, e.step) for e in batches[:5]] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)]
    assert all(e.epochs == 3 and e.steps_per_epoch == 4 for e in events)
    assert all(np.isfinite(e.loss) and e.loss >= 0 for e in events)
    assert [e.loss for e in epochs] == pytest.approx(history.loss)
    # The epoch event comes right after that epoch's last batch and repeats its running mean loss.
    assert events.index(epochs[0]) == 4 and epochs[0].loss == pytest.approx(batches[3].loss)
    elapsed = [e.elapsed for e in events]
    assert elapsed == sorted(elapsed)
    fractions = [e.fraction_done for e in batches]
    assert fractions == sorted(fractions) and fractions[0] == pytest.approx(1 / 12) and fractions[-1] == 1.0
    assert epochs[-1].step == 4 and epochs[-1].fraction_done == 1.0


def test_cancel_from_a_callback_raises_at_the_next_batch():
    x, y = toy_regression()
    token = CancelToken()
    progress, seen = interrupting(token.cancel, lambda event: event.kind == "batch" and event.step == 2)
    with pytest.raises(TrainingCancelled, match="cancelled"):
        train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=50, batch_size=8, progress=progress, cancel=token)
    assert [e.step for e in seen] == [1, 2]  # no third batch ran


def test_cancel_from_another_thread_stops_a_running_job():
    x, y = toy_regression()
    token = CancelToken()
    first_batch_done, cancelled = threading.Event(), threading.Event()
    outcome = {}

    def progress(event):
        first_batch_done.set()
        cancelled.wait(timeout=10)  # hold the loop until the other thread has cancelled

    def job():
        try:
            train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=1000, batch_size=8, progress=progress, cancel=token)
        except TrainingCancelled as exc:
            outcome["error"] = exc
        else:
            outcome["finished"] = True

    worker = threading.Thread(target=job)
    worker.start()
    assert first_batch_done.wait(timeout=60)
    token.cancel()
    cancelled.set()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), TrainingCancelled) and "finished" not in outcome


def test_cancel_token_flag():
    token = CancelToken()
    assert not token.cancelled
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(TrainingCancelled):
        token.raise_if_cancelled()


def test_time_budget_stops_at_a_batch_boundary():
    x, y = toy_regression()
    events = []
    history = train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=100, batch_size=8, time_budget=1e-9,
                    progress=events.append)
    assert history.stopped == "time_budget"
    assert history.epochs_run == 1 and len(history.loss) == 1
    assert [e.kind for e in events] == ["batch", "epoch"]
    assert events[-1].step == 1  # the epoch event says how far the cut-short epoch got


def test_early_stopping_callback_is_honoured():
    x, y = toy_regression()
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    history = train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=30, batch_size=16, callbacks=[stopper])
    assert history.stopped == "callback"
    assert history.epochs_run == 2  # the first epoch sets the best loss, the second cannot beat it by 1e9
    assert stopper.stopped_epoch == 1


class Recorder(keras.callbacks.Callback):
    """Records hook calls; stops training after ``stop_after_batches`` batches when given."""

    def __init__(self, stop_after_batches=None):
        super().__init__()
        self.calls: list[tuple] = []
        self.stop_after_batches = stop_after_batches

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", self.params.get("epochs"), self.params.get("steps")))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))
        n_batches = sum(1 for c in self.calls if c[0] == "batch_end")
        if self.stop_after_batches is not None and n_batches >= self.stop_after_batches:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_custom_callback_sees_the_model_params_and_epoch_logs():
    x, y = toy_regression()
    recorder = Recorder()
    model = mlp(4, [8], 1, seed=0)
    history = train(model, mse, x, y, epochs=2, batch_size=32, callbacks=recorder,
                    log_metric=("mae", keras.metrics.MeanAbsoluteError()))
    assert recorder.model is model
    assert recorder.calls[0] == ("train_begin", 2, 2)
    assert recorder.calls[-1] == ("train_end",)
    epoch_ends = [c for c in recorder.calls if c[0] == "epoch_end"]
    assert [c[1] for c in epoch_ends] == [0, 1]
    assert [c[2]["loss"] for c in epoch_ends] == pytest.approx(history.loss)
    assert [c[2]["mae"] for c in epoch_ends] == pytest.approx(history.metrics["mae"])
    assert [c[1] for c in recorder.calls if c[0] == "batch_end"] == [0, 1, 0, 1]


def test_callback_setting_stop_training_mid_epoch_stops_the_run():
    x, y = toy_regression()
    recorder = Recorder(stop_after_batches=3)
    history = train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=10, batch_size=8, callbacks=[recorder])
    assert history.stopped == "callback"
    assert history.epochs_run == 1
    assert sum(1 for c in recorder.calls if c[0] == "batch_end") == 3
    assert [c[0] for c in recorder.calls][-2:] == ["epoch_end", "train_end"]


def test_log_metric_is_reported_per_batch_and_per_epoch():
    x, y = toy_regression()
    events = []
    history = train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=3, batch_size=32,
                    log_metric=("mae", keras.metrics.MeanAbsoluteError()), progress=events.append)
    assert list(history.metrics) == ["mae"] and len(history.metrics["mae"]) == 3
    assert all(set(e.metrics) == {"mae"} and e.metrics["mae"] > 0 for e in events)
    epoch_maes = [e.metrics["mae"] for e in events if e.kind == "epoch"]
    assert epoch_maes == pytest.approx(history.metrics["mae"])


def test_log_metric_is_the_metric_of_the_epoch_not_of_the_whole_run():
    x = np.zeros((16, 4), "float32")
    y = np.ones((16, 1), "float32")
    model = frozen_linear(value=0.0)
    history = train(model, mse, x, y, optimizer=keras.optimizers.SGD(0.0), epochs=2, batch_size=8,
                    log_metric=("mae", keras.metrics.MeanAbsoluteError()))
    assert history.metrics["mae"] == pytest.approx([1.0, 1.0])  # the output is 0, the target 1


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_same_seed_gives_identical_losses_and_weights():
    x, y = toy_regression()
    runs = []
    for _ in range(2):
        model = mlp(4, [8], 1, seed=11)
        history = train(model, mse, x, y, optimizer="adam", epochs=3, batch_size=8, seed=5)
        runs.append((history.loss, _weights(model)))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_another_shuffle_seed_changes_the_run():
    x, y = toy_regression()
    losses = []
    for seed in (1, 2):
        model = mlp(4, [8], 1, seed=11)
        losses.append(train(model, mse, x, y, epochs=2, batch_size=8, seed=seed).loss)
    assert losses[0] != losses[1]


def test_nan_loss_raises_training_diverged():
    x, y = toy_regression()
    y[5] = np.nan
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan in epoch 1, batch 1: lower the learning"):
        train(mlp(4, [8], 1, seed=0), mse, x, y, epochs=2, batch_size=64, shuffle=False)


def test_exploding_loss_raises_training_diverged():
    x, y = toy_regression()
    x = x * 1e30
    with pytest.raises(TrainingDivergedError, match="standardise the features"):
        train(frozen_linear(value=1e10), mse, x, y, epochs=1, batch_size=64)


@pytest.mark.parametrize(
    "optimizer, expected",
    [
        (None, keras.optimizers.Adam),
        ("sgd", keras.optimizers.SGD),
        ("rmsprop", keras.optimizers.RMSprop),
        (keras.optimizers.Adam, keras.optimizers.Adam),
        ({"class_name": "SGD", "config": {"learning_rate": 0.5}}, keras.optimizers.SGD),
    ],
)
def test_optimizer_is_resolved_from_name_class_or_config(optimizer, expected):
    assert isinstance(resolve_optimizer(optimizer), expected)


def test_optimizer_instance_is_used_as_given():
    optimizer = keras.optimizers.SGD(learning_rate=0.05)
    assert resolve_optimizer(optimizer) is optimizer
    x, y = toy_regression()
    model = mlp(4, [8], 1, seed=0)
    train(model, mse, x, y, optimizer=optimizer, epochs=1, batch_size=32)
    assert int(optimizer.iterations.numpy()) == 2


def test_unknown_optimizer_kind_is_a_type_error():
    with pytest.raises(TypeError, match="optimizer must be a name such as 'adam'"):
        resolve_optimizer(42)


@pytest.mark.parametrize("optimizer", ["sgd", keras.optimizers.SGD])
def test_training_runs_with_an_optimizer_name_or_class(optimizer):
    x, y = toy_regression()
    history = train(mlp(4, [8], 1, seed=0), mse, x, y, optimizer=optimizer, epochs=2, batch_size=32)
    assert history.epochs_run == 2 and np.isfinite(history.loss).all()


def test_bad_epochs_or_batch_size_are_refused():
    x, y = toy_regression()
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        train(mlp(4, [8], 1), mse, x, y, epochs=0)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        train(mlp(4, [8], 1), mse, x, y, batch_size=0)


def test_without_y_the_target_is_the_input_autoencoder_style():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    history = train(frozen_linear(4, 4, value=0.0), mse, x, optimizer=keras.optimizers.SGD(0.0), epochs=1,
                    batch_size=32)
    assert history.loss[0] == pytest.approx(float(np.mean(x**2)), rel=1e-5)


def test_preprocess_fn_applies_to_inputs_and_to_the_autoencoder_target():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, kernel_initializer="identity", use_bias=False)])
    doubled = train(model, mse, x, optimizer=keras.optimizers.SGD(0.0), epochs=1, batch_size=32,
                    preprocess_fn=lambda batch: batch * 2.0)
    # identity(2x) against the target 2x: zero loss (against the raw x it would be mean(x**2)).
    assert doubled.loss[0] == pytest.approx(0.0, abs=1e-10)


def test_loss_kwargs_reach_the_loss_function():
    x, y = toy_regression()

    def scaled_mse(target, outputs, scale=1.0):
        return scale * mse(target, outputs)

    losses = [
        train(frozen_linear(), scaled_mse, x, y, optimizer=keras.optimizers.SGD(0.0), epochs=1, batch_size=64,
              loss_kwargs={"scale": scale}).loss[0]
        for scale in (1.0, 3.0)
    ]
    assert losses[1] == pytest.approx(3 * losses[0], rel=1e-5)


def test_losses_the_model_adds_itself_are_included():
    x, y = np.zeros((16, 4), "float32"), np.zeros((16, 1), "float32")
    model = frozen_linear(kernel_regularizer=keras.regularizers.L2(10.0))
    history = train(model, mse, x, y, optimizer=keras.optimizers.SGD(0.0), epochs=1, batch_size=16)
    assert history.loss[0] == pytest.approx(10.0 * 4)  # 10 * sum(w**2) with four weights of 1


def test_only_the_given_trainable_variables_change():
    x, y = toy_regression()
    model = mlp(4, [8], 1, seed=0)
    before = _weights(model)
    train(model, mse, x, y, epochs=2, batch_size=16, trainable_variables=model.layers[-1].trainable_variables)
    after = _weights(model)
    np.testing.assert_array_equal(before[0], after[0])  # first layer kernel untouched
    np.testing.assert_array_equal(before[1], after[1])
    assert not np.array_equal(before[2], after[2])  # output layer trained


def test_an_unbuilt_model_is_built_on_the_data():
    x, y = toy_regression()
    model = keras.Sequential([keras.layers.Dense(1)])
    history = train(model, mse, x, y, epochs=1, batch_size=32)
    assert model.built and history.epochs_run == 1


def test_no_training_rows_is_a_data_error():
    import keras
    import numpy as np

    from engine.errors import DataError
    from engine.nets import mlp
    from engine.training import train

    with pytest.raises(DataError, match="no training rows"):
        train(mlp(2, [], 1), lambda t, o: keras.ops.mean((t - o) ** 2), np.zeros((0, 2), "float32"))


def _func_graphs_alive() -> int:
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, FuncGraph))


def test_a_finished_training_leaves_no_traced_graph_behind():
    # Keras' tf.distribute update path kept every training step's graph (~10 MB each) alive forever
    x, y = toy_regression()

    def one_training():
        train(mlp(4, [8], 1, seed=0), mse, x, y, optimizer="adam", epochs=1, batch_size=32, seed=0)

    one_training()
    before = _func_graphs_alive()
    for _ in range(3):
        one_training()
    assert _func_graphs_alive() <= before


@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.Adam(learning_rate=0.01),
    lambda: keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.1, clipnorm=0.5),
    lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, use_ema=True),
], ids=["adam", "adamw-clipnorm", "sgd-momentum-ema"])
def test_direct_updates_give_the_same_weights_as_keras_own_update_path(make_optimizer, monkeypatch):
    import contextlib

    import engine.training as training

    x, y = toy_regression()
    direct_optimizer = make_optimizer()
    direct = mlp(4, [8], 1, seed=0)
    train(direct, mse, x, y, optimizer=direct_optimizer, epochs=3, batch_size=16, seed=0)
    assert "_backend_update_step" not in vars(direct_optimizer)  # the optimizer is given back as it was

    monkeypatch.setattr(training, "_direct_updates", lambda optimizer: contextlib.nullcontext())
    routed = mlp(4, [8], 1, seed=0)
    train(routed, mse, x, y, optimizer=make_optimizer(), epochs=3, batch_size=16, seed=0)
    for a, b in zip(direct.get_weights(), routed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(direct.get_weights()[0], mlp(4, [8], 1, seed=0).get_weights()[0])  # it did train
