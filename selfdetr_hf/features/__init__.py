"""Features from raw videos: PyAV decoding, clip sampling, a transformers video backbone,
and per-video ``.npy`` + JSON outputs that the data loaders and ``selfdetr detect`` read."""

from .backbone import DEFAULT_BACKBONE, VideoBackbone
from .clips import Clip, iter_clips, num_clips, sampled_offsets
from .extract import ExtractionSummary, extract_features, extract_video, write_features
from .metadata import FeatureMetadata, complete_metadata, load_feature_metadata, read_metadata
from .pipeline import detect_extracted, detect_videos
from .video import VIDEO_EXTENSIONS, VideoError, VideoReader, find_videos, to_rgb

__all__ = [
    "DEFAULT_BACKBONE",
    "VIDEO_EXTENSIONS",
    "Clip",
    "ExtractionSummary",
    "FeatureMetadata",
    "VideoBackbone",
    "VideoError",
    "VideoReader",
    "complete_metadata",
    "detect_extracted",
    "detect_videos",
    "extract_features",
    "extract_video",
    "find_videos",
    "iter_clips",
    "load_feature_metadata",
    "num_clips",
    "read_metadata",
    "sampled_offsets",
    "to_rgb",
    "write_features",
]
