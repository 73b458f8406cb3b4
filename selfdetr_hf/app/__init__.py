"""A web demo of a Self-DETR model (the ``app`` extra, Gradio): detections on a timeline,
in a table and as an ActivityNet JSON download, and the attention maps with their
diversity (Eq. 10), side by side with a second model.

``selfdetr_hf.app.build_demo(model, ...)`` returns the `gradio.Blocks` (a Space's
``app.py``); ``selfdetr app --model NAME_OR_DIR`` serves it. Gradio is imported only when
the demo is built, so the rest of the package works without the extra.
"""

from __future__ import annotations

from typing import Any

APP_EXTRA_HINT = 'pip install "selfdetr-hf[app]"'


def __getattr__(name: str) -> Any:
    if name == "build_demo":
        from .demo import build_demo

        return build_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["APP_EXTRA_HINT", "build_demo"]
