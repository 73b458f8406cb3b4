"""Self-DETR temporal action detection for the Hugging Face stack."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_self_detr import SelfDetrConfig
from .modeling_auto import AutoModelForTemporalActionDetection
from .modeling_self_detr import (
    SelfDetrActionDetectionOutput,
    SelfDetrForActionDetection,
    SelfDetrModel,
    SelfDetrModelOutput,
    SelfDetrPreTrainedModel,
)
from .pipeline_temporal_action_detection import TASK, TemporalActionDetectionPipeline
from .processing_self_detr import SelfDetrProcessor

AutoConfig.register(SelfDetrConfig.model_type, SelfDetrConfig, exist_ok=True)
AutoModel.register(SelfDetrConfig, SelfDetrModel, exist_ok=True)
AutoFeatureExtractor.register(SelfDetrConfig, SelfDetrProcessor, exist_ok=True)
AutoModelForTemporalActionDetection.register(SelfDetrConfig, SelfDetrForActionDetection, exist_ok=True)
if TASK not in PIPELINE_REGISTRY.supported_tasks:
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=TemporalActionDetectionPipeline, pt_model=AutoModelForTemporalActionDetection
    )

__version__ = "0.1.0"

__all__ = [
    "AutoModelForTemporalActionDetection",
    "SelfDetrActionDetectionOutput",
    "SelfDetrConfig",
    "SelfDetrForActionDetection",
    "SelfDetrModel",
    "SelfDetrModelOutput",
    "SelfDetrPreTrainedModel",
    "SelfDetrProcessor",
    "TemporalActionDetectionPipeline",
]
