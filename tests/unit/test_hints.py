"""ui.hints: the convergence hint names the model it speaks of and says what an unfinished one means for it."""

from engine.convergence import check_convergence
from ui.hints import epoch_losses, history_loss, sentence


def test_each_model_gets_its_own_consequence_and_a_flat_loss_gets_none():
    falling = check_convergence([10.0, 6.0, 4.0], epochs_planned=3)
    assert sentence(falling, "distilled").startswith(
        "Distilled model: the loss was still falling fast when training stopped at epoch 3 of 3 (down 30 % per epoch")
    assert "false alarms" in sentence(falling, "distilled")
    assert sentence(falling, "classifier").startswith("Classifier: the loss was still falling fast")
    assert sentence(falling) == falling.sentence()  # an outlier detector: the engine's own sentence
    assert sentence(check_convergence([10.0, 2.0, 1.0, 0.99, 0.985, 0.984]), "classifier") == ""


def test_losses_come_from_epoch_events_or_a_history_and_nothing_trained_gives_none():
    events = [{"kind": "batch", "loss": 9.0}, {"kind": "epoch", "loss": 3.0}, {"kind": "epoch", "loss": 2.0}]
    assert epoch_losses(events) == [3.0, 2.0]
    assert history_loss(None) == []

    class History:
        loss = [1.0, 0.5]

    assert history_loss(History()) == [1.0, 0.5]
