"""Adversarial detection: ``ModelDistillation`` and the attacks used to test it."""

from engine.ad.attacks import AttackResult, attack, fgsm, harmfulness, perturbation_norms, pgd
from engine.ad.model_distillation import ModelDistillation, loss_distillation

__all__ = [
    "AttackResult",
    "ModelDistillation",
    "attack",
    "fgsm",
    "harmfulness",
    "loss_distillation",
    "perturbation_norms",
    "pgd",
]
