"""Data: annotation files, feature files, windows, datasets, collation, synthetic videos."""

from ..feature_files import FeatureError, FeatureFolder, check_finite, load_feature_file
from ..windows import (
    WINDOW_METADATA_KEYS,
    pad_window,
    position_to_seconds,
    resize_features,
    seconds_to_position,
    sliding_windows,
    window_targets,
)
from .annotations import VideoAnnotation, detect_format, label_names, load_annotations
from .collator import SelfDetrDataCollator
from .dataset import FeatureSource, WindowFeatureLoader, build_dataset, open_features, window_metadata
from .synthetic import SignalSettings, SyntheticVideos, make_synthetic_videos, thumos14_like_timelines

__all__ = [
    "WINDOW_METADATA_KEYS",
    "FeatureError",
    "FeatureFolder",
    "FeatureSource",
    "SelfDetrDataCollator",
    "SignalSettings",
    "SyntheticVideos",
    "VideoAnnotation",
    "WindowFeatureLoader",
    "build_dataset",
    "check_finite",
    "detect_format",
    "label_names",
    "load_annotations",
    "load_feature_file",
    "make_synthetic_videos",
    "open_features",
    "pad_window",
    "position_to_seconds",
    "resize_features",
    "seconds_to_position",
    "sliding_windows",
    "thumos14_like_timelines",
    "window_metadata",
    "window_targets",
]
