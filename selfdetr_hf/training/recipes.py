"""The paper's training recipes (spec section 5): optimiser, schedule, clipping, EMA."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class TrainingRecipe:
    """Optimisation settings of one benchmark.

    Args:
        learning_rate, weight_decay: AdamW settings.
        batch_size: global batch (windows per optimiser step, all processes together).
        epochs: passes over the training windows.
        schedule: ``step`` (multiply by ``lr_drop_factor`` at each of ``lr_drop_epochs``)
            or ``cosine`` (linear warm-up over ``warmup_epochs`` then cosine to 0).
        grad_clip: max global gradient norm (None = no clipping).
        ema_decay: exponential moving average of the weights used for evaluation (None = off).
        seed: random seed of the run.
    """

    learning_rate: float
    weight_decay: float = 1e-4
    batch_size: int = 16
    epochs: int = 120
    schedule: str = "step"
    lr_drop_epochs: tuple[int, ...] = field(default_factory=tuple)
    lr_drop_factor: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: float | None = 0.1
    ema_decay: float | None = None
    seed: int = 42

    def __post_init__(self):
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"TrainingRecipe.schedule must be one of step, cosine; got {self.schedule!r}")
        for name in ("batch_size", "epochs"):
            _require(name, getattr(self, name), isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                     "an integer >= 1")  # fmt: skip
        _require("seed", self.seed, isinstance(self.seed, int) and 0 <= self.seed < 2**32, "an integer in [0, 2**32)")
        _require("learning_rate", self.learning_rate, 0 < self.learning_rate < math.inf, "> 0 and finite")
        _require("weight_decay", self.weight_decay, 0 <= self.weight_decay < math.inf, ">= 0 and finite")
        _require("lr_drop_factor", self.lr_drop_factor, 0 < self.lr_drop_factor < math.inf, "> 0 and finite")
        _require("lr_drop_epochs", self.lr_drop_epochs, all(epoch >= 0 for epoch in self.lr_drop_epochs), ">= 0")
        _require("warmup_epochs", self.warmup_epochs, 0 <= self.warmup_epochs < math.inf, ">= 0 and finite")
        _require("grad_clip", self.grad_clip, self.grad_clip is None or 0 < self.grad_clip < math.inf,
                 "> 0 and finite (or None)")  # fmt: skip
        _require("ema_decay", self.ema_decay, self.ema_decay is None or 0 < self.ema_decay < 1, "in (0, 1) (or None)")

    def with_overrides(self, **overrides) -> TrainingRecipe:
        """A copy with the non-None ``overrides`` applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _require(name: str, value, valid: bool, what: str) -> None:
    if isinstance(value, bool) or not valid:
        raise ValueError(f"{name} must be {what}; got {value!r}")


RECIPES = {
    # AdamW 2e-4, batch 16, 120 epochs, x0.1 at 80 and 100, clip 0.1, seed 42
    "thumos14": TrainingRecipe(learning_rate=2e-4, epochs=120, schedule="step", lr_drop_epochs=(80, 100)),
    # AdamW 1e-4, batch 16, 20 epochs with 5 of warm-up then cosine, clip 0.1, EMA 0.999
    "activitynet": TrainingRecipe(learning_rate=1e-4, epochs=20, schedule="cosine", warmup_epochs=5, ema_decay=0.999),
}


def build_optimizer(model: torch.nn.Module, recipe: TrainingRecipe) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (fused kernel where PyTorch offers it)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        parameters, lr=recipe.learning_rate, weight_decay=recipe.weight_decay, fused=_fused_available(parameters)
    )


def _fused_available(parameters: list[torch.Tensor]) -> bool:
    devices = {p.device.type for p in parameters}
    return len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in parameters)


def learning_rate_factor(step: int, recipe: TrainingRecipe, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    epoch = step / max(steps_per_epoch, 1)
    if recipe.schedule == "step":
        return recipe.lr_drop_factor ** sum(epoch >= drop for drop in recipe.lr_drop_epochs)
    if epoch < recipe.warmup_epochs:
        return (step + 1) / (recipe.warmup_epochs * steps_per_epoch)
    progress = (epoch - recipe.warmup_epochs) / max(recipe.epochs - recipe.warmup_epochs, 1e-8)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: TrainingRecipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule of the recipe (step drops or warm-up + cosine)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, recipe, steps_per_epoch)
    )


class ExponentialMovingAverage:
    """Shadow copy of a model whose weights follow ``decay * shadow + (1 - decay) * weights``.

    Checkpointable (``state_dict``/``load_state_dict``), so Accelerate's ``save_state``
    keeps it when registered with ``register_for_checkpointing``.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for shadow, current in zip(self.model.state_dict().values(), model.state_dict().values()):
            if shadow.is_floating_point():
                shadow.lerp_(current.to(shadow.dtype), 1 - self.decay)
            else:
                shadow.copy_(current)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
