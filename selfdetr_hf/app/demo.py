"""The Gradio page: inputs and detection settings on the left; the detections (timeline,
table, JSON download) and the attention maps with their diversity on the right.

Every handler turns an error a user can fix (a bad file, a wrong setting) into one line
in the page's status, as the ``selfdetr`` commands print it; nothing is ever shown as a
traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import APP_EXTRA_HINT

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read by gradio at import
try:
    import gradio as gr
except ImportError as error:
    raise ImportError(f"the web demo needs Gradio: {APP_EXTRA_HINT}") from error
import pandas as pd
from huggingface_hub.errors import StrictDataclassError

from ..data.dataset import open_features
from ..evaluation.diagnostics import DEFAULT_WINDOW_SIZE, feedback_description
from ..feature_files import EXTENSIONS
from ..inference import check_video_features
from ..model_loading import load_model, load_processor
from ..processing_self_detr import NMS_METHODS, SelfDetrProcessor
from .attention import attention_figures, diversity_rows, video_attention
from .detection import DemoDetections, detection_processor, run_detection
from .inputs import (
    DEFAULT_MAX_UPLOAD_MB,
    METADATA_EXTENSION,
    DemoVideos,
    synthetic_videos,
    uploaded_features,
    uploaded_videos,
    with_annotations,
)
from .views import TABLE_HEADERS, detection_rows, timeline_svg

USER_ERRORS = (ValueError, OSError, ImportError, StrictDataclassError)
PROGRESS = gr.Progress()
"""The default that makes Gradio pass a handler its request's progress tracker."""
DEFAULT_TOP_K = 20


def _one_line(error: BaseException | str, folder: Path | None = None) -> str:
    """The error as one line of the status; the request's folder is left out of the file
    names in it, so that a visitor reads the names of the files uploaded."""
    text = " ".join(str(error).split()) or type(error).__name__
    for where in (folder / "features", folder / "videos", folder) if folder is not None else ():
        text = text.replace(f"{where}{os.sep}", "")
    return f"**error:** {text}"


def _feedback_name(name: str, model: torch.nn.Module) -> str:
    return f"{name} ({feedback_description(model.config)})"


def _loaded(model: str | Path | torch.nn.Module, device: str) -> tuple[torch.nn.Module, str]:
    """The model in eval mode and where it came from (``""`` for a model made in memory)."""
    if isinstance(model, torch.nn.Module):
        return model.eval(), model.config.name_or_path
    return load_model(model, device=device), str(model)


def build_demo(
    model: str | Path | torch.nn.Module,
    processor: SelfDetrProcessor | None = None,
    *,
    compare_model: str | Path | torch.nn.Module | None = None,
    backbone: str | Path | None = None,
    clip_len: int = 16,
    stride: int = 4,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    batch_size: int = 16,
    device: str = "cpu",
) -> gr.Blocks:
    """The web demo of a Self-DETR model, as a `gradio.Blocks` (``.launch()`` serves it).

    Args:
        model: a `SelfDetrForActionDetection`, or a model folder or Hub name to load.
        processor: its processor (default: the one saved with ``model``, else THUMOS14's).
        compare_model: a second model (e.g. trained without self-feedback) whose attention
            maps and diversity are shown beside the first's; same feature size.
        backbone: a transformers video model (name or folder) whose features ``model``
            takes: enables video uploads (needs the ``video`` extra).
        clip_len / stride: the backbone's clip sampling, as the model was trained with.
        max_upload_mb: the largest file read, in MiB (pass it to ``launch(max_file_size=...)``
            too, so that larger uploads are refused before they are stored).
        batch_size: windows per forward pass.
        device: where models given by name run.

    Raises:
        ValueError: a model folder that is not a Self-DETR model, models of different
            feature sizes, a backbone whose features are not the model's size.
    """
    model, source = _loaded(model, device)
    model_name = source or "model"
    if processor is None:
        processor = load_processor(source) if source else SelfDetrProcessor.thumos14()
    models = {_feedback_name(model_name, model): model}
    if compare_model is not None:
        compare_model, compare_source = _loaded(compare_model, device)
        compare_name = compare_source or "compared model"
        if compare_model.config.feature_dim != model.config.feature_dim:
            raise ValueError(
                f"{compare_name} takes {compare_model.config.feature_dim}-d features, {model_name} "
                f"{model.config.feature_dim}-d: compare models of one feature size"
            )
        name = _feedback_name(compare_name, compare_model)
        models[name if name not in models else f"{name} [2]"] = compare_model
    video_backbone = None
    if backbone is not None:
        from ..features.backbone import VideoBackbone

        video_backbone = VideoBackbone.from_pretrained(backbone, device=next(model.parameters()).device)
        if video_backbone.feature_dim != model.config.feature_dim:
            raise ValueError(
                f"the backbone {backbone} gives {video_backbone.feature_dim}-d features; "
                f"{model_name} takes {model.config.feature_dim}-d"
            )
    synthetic = synthetic_videos(model.config.feature_dim)
    workspace = tempfile.TemporaryDirectory(prefix="selfdetr-app-")  # removed with the demo's handlers

    def request_folder() -> Path:
        return Path(tempfile.mkdtemp(dir=workspace.name))

    def detect(
        videos: Callable[[Path], DemoVideos], threshold: float, top_k: float, nms_method: str, progress: gr.Progress
    ) -> tuple[Any, ...]:
        folder = request_folder()
        try:
            settings = detection_processor(processor, threshold=threshold, top_k=top_k, nms_method=nms_method)
            result = run_detection(
                model, settings, videos(folder), folder / "detections.json", batch_size=batch_size,
                progress=lambda fraction, text: progress(fraction, desc=text),
            )  # fmt: skip
        except USER_ERRORS as error:
            return None, _one_line(error, folder), gr.update(choices=[], value=None), "", _table([]), None
        first = next(iter(result.detections))
        timeline, table = _video_view(result, first)
        choices = gr.update(choices=list(result.detections), value=first)
        return result, _summary(result, folder), choices, timeline, table, str(result.submission)

    def from_files(files, feature_fps, annotations, threshold, top_k, nms_method, progress=PROGRESS):
        def videos(folder: Path) -> DemoVideos:
            if not files:
                raise ValueError(f"upload feature files ({', '.join(EXTENSIONS)}) first")
            found = uploaded_features(files, folder / "features", feature_fps=feature_fps, max_mb=max_upload_mb)
            return with_annotations(found, annotations) if annotations else found

        return detect(videos, threshold, top_k, nms_method, progress)

    def from_videos(files, threshold, top_k, nms_method, progress=PROGRESS):
        def videos(folder: Path) -> DemoVideos:
            if not files:
                raise ValueError("upload video files first")
            progress(0.0, desc="extracting features")
            return uploaded_videos(
                files, folder, video_backbone, clip_len=clip_len, stride=stride, max_mb=max_upload_mb
            )

        return detect(videos, threshold, top_k, nms_method, progress)

    def from_synthetic(video_id, threshold, top_k, nms_method, progress=PROGRESS):
        def videos(folder: Path) -> DemoVideos:
            if video_id not in synthetic:
                raise ValueError(f"choose a video of the synthetic dataset, not {video_id!r}")
            return synthetic[video_id]

        return detect(videos, threshold, top_k, nms_method, progress)

    def show_video(result: DemoDetections | None, video_id: str | None) -> tuple[Any, ...]:
        if result is None or video_id not in result.detections:
            return gr.skip(), gr.skip()
        return _video_view(result, video_id)

    def show_attention(result: DemoDetections | None, video_id: str | None, window: float, progress=PROGRESS):
        images = [None] * len(models)
        try:
            if result is None or video_id not in result.detections:
                raise ValueError("detect first, then choose a video")
            if window is None or window != int(window) or window < 1:
                raise ValueError(f"the window is a number from 1, got {window}")
            array, source = open_features(result.videos.features, video_id)
            features = check_video_features(array, video_id, source, model.config.feature_dim)
            attention = {}
            for index, (name, found_model) in enumerate(models.items()):

                def update(done: int, total: int, index: int = index, name: str = name) -> None:
                    progress((index + done / total) / len(models), desc=f"{name}: window {done} of {total}")

                attention[name] = video_attention(found_model, features, window=int(window) - 1, progress=update)
            folder = request_folder()
            maps, diversity = attention_figures(attention, folder, video_id=video_id, window=int(window) - 1)
        except USER_ERRORS as error:
            return _one_line(error), *images, None, _table([])
        headers, rows = diversity_rows(attention)
        windows = next(iter(attention.values())).num_windows
        text = (
            f"video **{video_id}**, window {int(window)} of {windows} ({DEFAULT_WINDOW_SIZE} steps each): the maps of "
            "every layer; diversity (Eq. 10, near 0: collapsed to rank 1) over the video's windows"
        )
        return text, *(str(path) for path in maps), str(diversity), pd.DataFrame(rows, columns=headers)

    with gr.Blocks(title="Self-DETR temporal action detection", analytics_enabled=False) as demo:
        gr.Markdown(
            f"## Self-DETR temporal action detection\nModel: **{next(iter(models))}**"
            + (f"; compared with **{list(models)[1]}**" if len(models) > 1 else "")
        )
        result = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                with gr.Tab("Feature files"):
                    feature_files = gr.File(
                        label=f"feature files ({', '.join(EXTENSIONS)}) and their extraction JSON",
                        file_count="multiple", file_types=[*EXTENSIONS, METADATA_EXTENSION], elem_id="feature-files",
                    )  # fmt: skip
                    feature_fps = gr.Number(
                        label="feature fps (empty: from each file's extraction JSON)", elem_id="feature-fps"
                    )
                    annotation_file = gr.File(
                        label="annotation file (optional: shows the ground truth)", file_types=[".json", ".csv"],
                        type="filepath", elem_id="annotation-file",
                    )  # fmt: skip
                    files_button = gr.Button("Detect", variant="primary", elem_id="detect-files")
                with gr.Tab("Video", visible=video_backbone is not None):
                    video_files = gr.File(label="video files", file_count="multiple", elem_id="video-files")
                    videos_button = gr.Button("Extract features and detect", variant="primary")
                with gr.Tab("Synthetic dataset"):
                    synthetic_choice = gr.Dropdown(
                        list(synthetic), value=next(iter(synthetic)), label="video (test videos first)",
                        elem_id="synthetic-video",
                    )  # fmt: skip
                    synthetic_button = gr.Button("Detect", variant="primary", elem_id="detect-synthetic")
                threshold = gr.Slider(0.0, 1.0, value=processor.min_score, step=0.01, label="score threshold")
                top_k = gr.Slider(
                    1, max(processor.top_k_per_video, DEFAULT_TOP_K), step=1,
                    value=min(DEFAULT_TOP_K, processor.top_k_per_video), label="detections per video (top-k)",
                    elem_id="top-k",
                )  # fmt: skip
                nms_method = gr.Radio(list(NMS_METHODS), value=processor.nms_method, label="merging of overlaps")
            with gr.Column(scale=3):
                status = gr.Markdown(
                    "Upload feature files, or pick a synthetic video, and press Detect.", elem_id="status"
                )
                video_choice = gr.Dropdown([], label="video", elem_id="video-choice")
                with gr.Tab("Detections"):
                    timeline = gr.HTML(elem_id="timeline")
                    table = gr.Dataframe(_table([]), interactive=False, label="detections", elem_id="detections-table")
                    download = gr.File(label="ActivityNet JSON of every video", elem_id="download")
                with gr.Tab("Attention maps", elem_id="attention-tab"):
                    with gr.Row():
                        window = gr.Number(1, precision=0, label=f"window ({DEFAULT_WINDOW_SIZE} steps each)")
                        attention_button = gr.Button("Show attention maps", elem_id="show-attention")
                    attention_status = gr.Markdown(elem_id="attention-status")
                    with gr.Row():
                        map_images = [gr.Image(type="filepath", label=name, show_label=True) for name in models]
                    diversity_image = gr.Image(type="filepath", label="diversity per layer (Eq. 10)")
                    diversity_table = gr.Dataframe(interactive=False, label="diversity per layer")

        controls = [threshold, top_k, nms_method]
        outputs = [result, status, video_choice, timeline, table, download]
        files_button.click(from_files, [feature_files, feature_fps, annotation_file, *controls], outputs)
        videos_button.click(from_videos, [video_files, *controls], outputs)
        synthetic_button.click(from_synthetic, [synthetic_choice, *controls], outputs)
        video_choice.change(show_video, [result, video_choice], [timeline, table])
        attention_button.click(
            show_attention, [result, video_choice, window],
            [attention_status, *map_images, diversity_image, diversity_table],
        )  # fmt: skip
    return demo


def _table(rows: list[list[Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


def _video_view(result: DemoDetections, video_id: str) -> tuple[str, pd.DataFrame]:
    """The timeline and the detections table of one video."""
    detections = result.detections[video_id]
    truth = result.videos.ground_truth.get(video_id)
    timing = result.videos.timing
    duration = (timing(video_id) if callable(timing) else timing).duration
    return timeline_svg(detections, truth, duration), _table(detection_rows(detections))


def _summary(result: DemoDetections, folder: Path) -> str:
    counts = {video_id: len(found["scores"]) for video_id, found in result.detections.items()}
    lines = [
        f"**{sum(counts.values())} detections** in {len(counts)} video(s): "
        + ", ".join(f"{video_id} {count}" for video_id, count in counts.items())
    ]
    lines += [_one_line(message, folder) for message in result.failures.values()]
    if result.failures:
        lines.append(f"{len(result.failures)} video(s) could not be used (listed above); the others are shown")
    return "\n\n".join(lines)


__all__ = ["build_demo"]
