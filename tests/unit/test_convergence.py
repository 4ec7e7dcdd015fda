"""engine.convergence: training that stopped while the loss was still falling fast is called out; a flat loss is not."""

import pytest

from engine.convergence import check_convergence


def test_one_epoch_is_too_few_to_trust():
    check = check_convergence([3.2], epochs_planned=1)
    assert check.still_falling and check.drop_per_epoch is None
    assert "stopped after epoch 1 of 1" in check.sentence() and "more epochs" in check.sentence()


def test_a_loss_still_falling_fast_at_the_last_epochs_is_flagged():
    check = check_convergence([10.0, 6.0, 4.0], epochs_planned=3)
    assert check.still_falling and check.drop_per_epoch == pytest.approx(0.3)  # (10 - 4) / 10 over 2 epochs
    assert check.sentence().startswith("The loss was still falling fast when training stopped at epoch 3 of 3")


def test_a_flattened_loss_is_not_flagged_even_after_a_steep_start():
    check = check_convergence([10.0, 2.0, 1.0, 0.99, 0.985, 0.984], epochs_planned=6)
    assert not check.still_falling and check.drop_per_epoch < 0.01
    assert check.sentence() == ""


def test_a_tiny_loss_that_still_wobbles_after_falling_a_hundredfold_has_settled():
    loss = [0.5, 0.05, 0.01, 0.006, 0.005, 0.004, 0.003, 0.003]
    check = check_convergence(loss)
    assert check.drop_per_epoch > 0.05 and not check.still_falling  # a big relative step, a tiny share of the fall
    assert check_convergence([1.0, 0.8, 0.6, 0.45, 0.3]).still_falling  # falling steadily: a real share


def test_only_the_last_epochs_count_and_a_rising_or_negative_loss_is_handled():
    assert not check_convergence([5.0, 1.0, 1.01, 1.02, 1.03]).still_falling  # rising at the end: not "falling"
    assert check_convergence([-1.0, -2.0, -3.0]).still_falling  # energies may be negative
    assert not check_convergence([]).still_falling
