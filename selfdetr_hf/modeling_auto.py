"""`AutoModelForTemporalActionDetection`: the task's Auto class, built as transformers builds its
own (`_BaseAutoModelClass` over a `_LazyAutoMapping`). No transformers model does the task, so
its mapping starts empty; importing `selfdetr_hf` registers the Self-DETR detector in it."""

from collections import OrderedDict

from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping, auto_class_update
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

MODEL_FOR_TEMPORAL_ACTION_DETECTION_MAPPING = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForTemporalActionDetection(_BaseAutoModelClass):
    _model_mapping = MODEL_FOR_TEMPORAL_ACTION_DETECTION_MAPPING


AutoModelForTemporalActionDetection = auto_class_update(
    AutoModelForTemporalActionDetection,
    checkpoint_for_example="org/self-detr-thumos14",
    head_doc="temporal action detection",
)

__all__ = ["MODEL_FOR_TEMPORAL_ACTION_DETECTION_MAPPING", "AutoModelForTemporalActionDetection"]
