"""Training: the Trainer loss hook, the paper's recipes, and the Accelerate loop."""

from .trainer_hook import SelfFeedbackLoss

__all__ = ["SelfFeedbackLoss"]
