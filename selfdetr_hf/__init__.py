"""Self-DETR temporal action detection for the Hugging Face stack."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .configuration_self_detr import SelfDetrConfig
from .modeling_self_detr import (
    SelfDetrActionDetectionOutput,
    SelfDetrForActionDetection,
    SelfDetrModel,
    SelfDetrModelOutput,
    SelfDetrPreTrainedModel,
)
from .processing_self_detr import SelfDetrProcessor

AutoConfig.register(SelfDetrConfig.model_type, SelfDetrConfig, exist_ok=True)
AutoModel.register(SelfDetrConfig, SelfDetrModel, exist_ok=True)
AutoFeatureExtractor.register(SelfDetrConfig, SelfDetrProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "SelfDetrActionDetectionOutput",
    "SelfDetrConfig",
    "SelfDetrForActionDetection",
    "SelfDetrModel",
    "SelfDetrModelOutput",
    "SelfDetrPreTrainedModel",
    "SelfDetrProcessor",
]
