"""Training under ``torch.compile``: the encoder-decoder runs as compiled graphs, the loss
(and its Hungarian matching, an assignment solved on the host by SciPy) stays eager.

Compiling changes the speed of a step, not the run: the compiled random draws of dropout
are PyTorch's own (inductor's ``fallback_random``), taken in the same order from the same
generator as in eager mode, so a compiled run follows the eager run's trajectory to float
rounding (kernels sum in another order) and may resume it, or be resumed eagerly.
"""

from __future__ import annotations

from ..modeling_self_detr import SelfDetrForActionDetection


def compile_for_training(model: SelfDetrForActionDetection) -> SelfDetrForActionDetection:
    """Compile ``model``'s encoder-decoder in place with ``torch.compile`` (inductor).

    The class and segment heads and the loss run eagerly on the compiled model's outputs:
    the matcher needs the predictions on the host. Parameter names, ``state_dict``,
    ``save_pretrained`` and checkpoints are those of the eager model. The first steps (and
    the first evaluation) are slow while graphs are compiled.

    Returns:
        ``model`` itself.

    Raises:
        TypeError: ``model`` is not a `SelfDetrForActionDetection`.
    """
    if not isinstance(model, SelfDetrForActionDetection):
        raise TypeError(f"compile_for_training takes a SelfDetrForActionDetection; got {type(model).__name__}")
    model.model.compile(backend="inductor", options={"fallback_random": True})
    return model
