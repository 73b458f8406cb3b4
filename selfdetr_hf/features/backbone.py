"""A transformers video model used as a feature extractor: clips in, one vector per clip out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

DEFAULT_BACKBONE = "MCG-NJU/videomae-base-finetuned-kinetics"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class VideoBackbone:
    """A video model (VideoMAE, TimeSformer, ViViT, X-CLIP, ...) with its image or video processor.

    Each clip becomes one vector:

    * X-CLIP: its video embedding (``get_video_features``: per-frame class tokens projected
      and fused by the multi-frame integration transformer), ``(projection_dim,)``;
    * every other model: the mean of the last hidden state over all tokens, ``(hidden_size,)``.
      Pooler layers are not used: classification checkpoints (e.g. ViViT's) do not hold
      trained pooler weights, and `AutoModel` would add random ones.

    Frames are preprocessed one by one by the checkpoint's processor (resize, crop,
    normalise), so a frame shared by overlapping clips is processed once.

    Args:
        model: the bare model, as `AutoModel` loads it.
        processor: its image processor (or video processor).
        name: the checkpoint's name or path, recorded with the features.
        device: where the model runs.
        dtype: ``float32``, or ``float16`` / ``bfloat16`` run under autocast (for GPUs).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        *,
        name: str,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        config = model.config
        self.name = name
        self.dtype = dtype
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        if config.model_type == "xclip":
            self.pooling = "video_embedding"
            self.num_frames = config.vision_config.num_frames
            self.feature_dim = config.projection_dim
        else:
            if not hasattr(config, "num_frames"):
                raise ValueError(
                    f"{name}: a {config.model_type} model takes no clip of frames; use a video model "
                    "(VideoMAE, TimeSformer, ViViT, X-CLIP)"
                )
            self.pooling = "mean_tokens"
            self.num_frames = config.num_frames
            self.feature_dim = config.hidden_size

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, device: str | torch.device = "cpu", dtype: str = "float32"
    ) -> VideoBackbone:
        """Load a checkpoint (Hub name or local folder) with `AutoModel` and its processor:
        `AutoImageProcessor`, else `AutoVideoProcessor` (which needs torchvision).

        Raises:
            OSError: the checkpoint, or a processor for it, cannot be found.
        """
        from transformers import AutoImageProcessor, AutoModel, AutoVideoProcessor

        name = str(name_or_path)
        model = AutoModel.from_pretrained(name)
        try:
            processor = AutoImageProcessor.from_pretrained(name)
        except OSError as image_error:
            try:
                processor = AutoVideoProcessor.from_pretrained(name)
            except (OSError, ValueError) as video_error:
                raise OSError(f"{name}: no image or video processor found with the model ({video_error})") from (
                    image_error
                )
        return cls(model, processor, name=name, device=device, dtype=dtype)

    def pixel_values(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """``n`` RGB frames ``(H, W, 3)`` uint8 -> model-ready ``(n, 3, h, w)`` float32 (on CPU)."""
        from transformers.video_processing_utils import BaseVideoProcessor

        options = {"do_sample_frames": False} if isinstance(self.processor, BaseVideoProcessor) else {}
        outputs = self.processor([np.stack(frames)], return_tensors="pt", **options)
        pixels = outputs["pixel_values"] if "pixel_values" in outputs else outputs["pixel_values_videos"]
        return pixels.reshape(-1, *pixels.shape[-3:])

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, num_frames, 3, h, w)`` -> features ``(B, feature_dim)`` float32 (on CPU)."""
        pixel_values = pixel_values.to(self.device)
        with torch.autocast(self.device.type, dtype=DTYPES[self.dtype], enabled=self.dtype != "float32"):
            if self.pooling == "video_embedding":
                pooled = self.model.get_video_features(pixel_values=pixel_values).pooler_output
            else:
                pooled = self.model(pixel_values=pixel_values).last_hidden_state.mean(dim=1)
        return pooled.float().cpu()


__all__ = ["DEFAULT_BACKBONE", "DTYPES", "VideoBackbone"]
