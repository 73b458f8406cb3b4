"""A built-in synthetic dataset: feature sequences with action instances, no files needed.

Timelines come either from THUMOS14-like statistics embedded below (instances per video,
class-specific segment lengths, gaps including overlaps and back-to-back instances,
background before the first and after the last instance) or from any annotation file.

Features are generated from a low-dimensional latent signal, mapped to ``feature_dim``
channels by a fixed random matrix:

* background: a smooth drift (a few slow sinusoids per latent dimension) that also leaks
  weakly into the class dimensions, so that background sometimes resembles an action;
* each instance: its class's latent signature (classes come in confusable pairs) scaled by
  a random amplitude and by a soft envelope (sigmoid edges), plus a small per-instance
  perturbation; overlapping instances add up. With ``class_structure="phase_order"`` an
  instance is instead a sequence of equal sub-phases whose signatures every class shares,
  and the class is the order of the phases: no single step tells the class, only the
  steps around it do;
* boundary cues: short bumps at every start and end, shared by all classes;
* white latent noise.

Every value is a pure function of ``seed``, the video and the time step, so any window is
computed on its own (the features are never held for a whole dataset) and reproducibly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtr

from .annotations import VideoAnnotation, label_names, load_annotations

if TYPE_CHECKING:
    import datasets

    from ..processing_self_detr import SelfDetrProcessor

# Summary figures of ../shared/data/thumos14/thumos14.json (411 videos with valid
# segments, 6,328 instances; video_test_0000270, whose duration is wrong, left out):
# values at the 0, 5, ..., 100 % quantiles.
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 21)
THUMOS14_INSTANCES_PER_VIDEO = (
    1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8, 10, 11, 13.5, 16, 20, 23, 29, 36, 51.5, 218,
)  # fmt: skip
THUMOS14_GAPS = (  # seconds from the end of one instance to the start of the next (< 0: overlap)
    -19.5, -1.7, 0.0, 0.2, 0.4, 0.7, 0.9, 1.2, 1.6, 2.0, 2.5, 3.1, 3.96, 4.9, 6.0, 7.6, 10.0, 13.0,
    18.0, 29.42, 400.7
)  # fmt: skip
THUMOS14_LEAD_IN = (  # seconds before the first instance
    0.0, 0.0, 0.4, 1.2, 2.3, 3.5, 4.8, 5.85, 7.1, 8.25, 9.7, 10.9, 13.0, 16.7, 20.1, 25.0, 32.1,
    42.7, 57.1, 86.1, 350.6,
)  # fmt: skip
THUMOS14_TAIL = (  # seconds after the end of the last instance
    0.13, 0.75, 1.81, 3.035, 4.11, 5.56, 6.97, 8.195, 10.38, 11.795, 13.44, 15.37, 17.97, 19.57,
    23.1, 26.38, 31.99, 38.13, 47.39, 64.905, 758.73
)  # fmt: skip
THUMOS14_LENGTH_LOG_DEVIATION = (  # log(length / median length of the instance's class)
    -2.639, -0.916, -0.654, -0.511, -0.405, -0.318, -0.251, -0.182, -0.134, -0.069, 0.0, 0.065,
    0.119, 0.181, 0.244, 0.319, 0.413, 0.528, 0.693, 0.956, 3.152
)  # fmt: skip
THUMOS14_CLASS_MEDIAN_LENGTHS = (  # seconds, the 20 classes sorted
    1.2, 1.2, 1.5, 1.5, 1.7, 2.2, 2.3, 2.5, 2.7, 2.9, 3.0, 4.2, 4.2, 4.5, 4.6, 6.3, 6.4, 7.1, 7.1,
    9.2
)  # fmt: skip
THUMOS14_CLASSES_PER_VIDEO = {1: 350, 2: 60, 3: 1}  # videos with 1, 2, 3 distinct classes
THUMOS14_FRAME_RATES = {30.0: 380, 29.97: 18, 25.0: 11, 24.0: 2}  # videos per fps
THUMOS14_DURATIONS = (  # seconds
    8.93, 31.2, 42.53, 61.215, 71.7, 88.725, 102.97, 116.125, 128.44, 138.065, 154.04, 170.33,
    183.93, 197.04, 212.69, 228.79, 255.29, 308.765, 431.96, 704.625, 1673.43
)  # fmt: skip
THUMOS14_COUNT_DURATION_CORRELATION = 0.64  # of instances per video and duration, normal scores
MIN_SEGMENT_LENGTH = 0.2  # seconds, the shortest THUMOS14 instance

BACKGROUND_DIMS = 8
BOUNDARY_WIDTH = 0.3  # seconds, standard deviation of the start / end bumps
CLASS_STRUCTURES = ("signature", "phase_order")


@dataclass(frozen=True)
class SignalSettings:
    """How hard the synthetic task is (latent units; an instance's signature has norm ~1).

    Attributes:
        noise_std: white noise per latent dimension and step.
        background_std: standard deviation of the background drift per dimension.
        background_leak: fraction of the drift that reaches the class dimensions.
        class_similarity: weight of the shared component of the two classes of a pair.
        edge_softness: seconds of the sigmoid edges of an instance's envelope.
        boundary_strength: height of the start / end bumps.
        amplitude_range: range of an instance's random amplitude.
        instance_jitter: norm of the random per-instance change of the class signature.
    """

    noise_std: float = 0.45
    background_std: float = 0.5
    background_leak: float = 0.35
    class_similarity: float = 0.5
    edge_softness: float = 0.25
    boundary_strength: float = 0.6
    amplitude_range: tuple[float, float] = (0.5, 1.3)
    instance_jitter: float = 0.3


class SyntheticFeatures(Mapping):
    """``{video_id: SyntheticFeatureArray}``: features computed on access, window by window."""

    def __init__(
        self,
        annotations: Mapping[str, VideoAnnotation],
        label_names: list[str],
        feature_dim: int,
        feature_fps: float,
        seed: int,
        signal: SignalSettings,
        class_structure: str = "signature",
    ):
        if class_structure not in CLASS_STRUCTURES:
            raise ValueError(f"class_structure must be one of {', '.join(CLASS_STRUCTURES)}; got {class_structure!r}")
        self.annotations = annotations
        self.class_structure = class_structure
        self.label_ids = {name: index for index, name in enumerate(label_names)}
        self.feature_fps = feature_fps
        self.seed = seed
        self.signal = signal
        self.video_index = {video_id: index for index, video_id in enumerate(annotations)}
        rng = np.random.default_rng([seed, 0])
        num_classes = len(label_names)
        latent_dims = BACKGROUND_DIMS + num_classes + 2
        # class k's signature: its own axis plus a share of its pair's (classes 2i and 2i + 1)
        partner = np.minimum(np.arange(num_classes) ^ 1, num_classes - 1)
        signatures = np.eye(num_classes) + signal.class_similarity * np.eye(num_classes)[partner]
        self.class_signatures = signatures / np.linalg.norm(signatures, axis=1, keepdims=True)  # (K, K)
        # phase_order: class k is the k-th ordering of P shared phases (P the least with P! >= K),
        # phase j's signature the class axis j
        num_phases = next(p for p in itertools.count(1) if math.factorial(p) >= num_classes)
        self.phase_orders = np.array(list(itertools.permutations(range(num_phases)))[:num_classes])  # (K, P)
        self.projection = (rng.standard_normal((latent_dims, feature_dim)) / math.sqrt(latent_dims)).astype(
            np.float32
        )  # (M, C)

    def __getitem__(self, video_id: str) -> SyntheticFeatureArray:
        if video_id not in self.annotations:
            raise KeyError(video_id)
        return SyntheticFeatureArray(self, video_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self.annotations)

    def __len__(self) -> int:
        return len(self.annotations)

    def num_steps(self, video_id: str) -> int:
        """Feature steps of a video: its duration times `feature_fps`, at least 1."""
        return max(1, math.ceil(self.annotations[video_id].duration * self.feature_fps))

    def latent(self, video_id: str, start: int, stop: int) -> np.ndarray:
        """``(stop - start, M)`` latent signal of steps ``[start, stop)`` of a video.

        The M = B + K + 2 latent dimensions: background drift (B), classes (K, drift leaking
        in plus every active instance's signature), start and end bumps (2); all noisy.
        """
        video = self.annotations[video_id]
        index = self.video_index[video_id]
        signal = self.signal
        num_classes = len(self.label_ids)
        times = (np.arange(start, stop) + 0.5) / self.feature_fps  # (L,) step centres, seconds

        rng = np.random.default_rng([self.seed, 1, index])
        periods = rng.uniform(8.0, 120.0, size=(3, BACKGROUND_DIMS + num_classes))  # seconds
        phases = rng.uniform(0, 2 * np.pi, size=periods.shape)
        drift = np.sin(2 * np.pi * times[:, None, None] / periods + phases).sum(axis=1)  # (L, B + K)
        drift *= signal.background_std / math.sqrt(1.5)  # three sinusoids of variance 1/2 each
        drift[:, BACKGROUND_DIMS:] *= signal.background_leak

        starts, ends, classes, amplitudes, jitter = self._instances(video, index)
        if self.class_structure == "signature":
            edges = np.stack((starts, ends), axis=1)[:, None, :]  # (n, 1, 2): one part per instance
            signatures = self.class_signatures[classes][:, None, :]  # (n, 1, K)
        else:
            num_phases = self.phase_orders.shape[1]
            fractions = np.arange(num_phases + 1) / num_phases
            bounds = starts[:, None] + (ends - starts)[:, None] * fractions  # (n, P + 1)
            edges = np.stack((bounds[:, :-1], bounds[:, 1:]), axis=2)  # (n, P, 2)
            signatures = np.eye(num_classes)[self.phase_orders[classes]]  # (n, P, K)
        rising = _sigmoid((times[:, None, None] - edges[..., 0]) / signal.edge_softness)
        falling = _sigmoid((edges[..., 1] - times[:, None, None]) / signal.edge_softness)
        envelope = rising * falling * amplitudes[:, None]  # (L, n, parts)
        actions = np.einsum("lnp,npk->lk", envelope, signatures + jitter[:, None, :])  # (L, K)
        boundaries = signal.boundary_strength * np.stack(
            (_bumps(times, starts, amplitudes), _bumps(times, ends, amplitudes)), axis=1
        )  # (L, 2)

        latent = np.concatenate((drift[:, :BACKGROUND_DIMS], drift[:, BACKGROUND_DIMS:] + actions, boundaries), axis=1)
        return latent + signal.noise_std * _block_noise(self.seed, index, start, stop, latent.shape[1])

    def _instances(self, video: VideoAnnotation, index: int) -> tuple[np.ndarray, ...]:
        """Per-instance ``starts``, ``ends``, ``classes``, ``amplitudes`` ``(n,)`` and ``jitter`` ``(n, K)``."""
        rng = np.random.default_rng([self.seed, 2, index])
        count = len(video.labels)
        classes = np.array([self.label_ids[label] for label in video.labels], dtype=np.int64)
        amplitudes = rng.uniform(*self.signal.amplitude_range, size=count)
        jitter = rng.standard_normal((count, len(self.label_ids)))
        jitter *= self.signal.instance_jitter / math.sqrt(len(self.label_ids))
        return video.segments[:, 0], video.segments[:, 1], classes, amplitudes, jitter


class SyntheticFeatureArray:
    """The ``(T, C)`` float32 features of one synthetic video; slicing computes only those rows."""

    def __init__(self, source: SyntheticFeatures, video_id: str):
        self.source = source
        self.video_id = video_id
        self.shape = (source.num_steps(video_id), source.projection.shape[1])
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("synthetic features support contiguous slices of time steps only")
        start, stop, _ = key.indices(self.shape[0])
        stop = max(start, stop)
        return self.source.latent(self.video_id, start, stop).astype(np.float32) @ self.source.projection

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype)


@dataclass
class SyntheticVideos:
    """Synthetic videos: ground truth and lazily computed features.

    Attributes:
        annotations: ``{video_id: VideoAnnotation}`` (subsets ``train`` / ``test`` for the
            built-in timelines, those of the file otherwise).
        features: ``{video_id: (T, C) array-like}``.
        label_names: class names in id order.
        feature_fps: feature steps per second.
    """

    annotations: dict[str, VideoAnnotation]
    features: SyntheticFeatures
    label_names: list[str]
    feature_fps: float

    def dataset(
        self, processor: SelfDetrProcessor, *, subset: str | None = None, training: bool = True
    ) -> datasets.Dataset:
        """`build_dataset` over the videos of ``subset`` (all when None)."""
        from .dataset import build_dataset

        selected = {
            video_id: video
            for video_id, video in self.annotations.items()
            if subset is None or (video.subset or "").lower() == subset.lower()
        }
        return build_dataset(
            selected,
            self.features,
            processor,
            training=training,
            label_names=self.label_names,
            feature_fps=self.feature_fps,
        )


def make_synthetic_videos(
    num_videos: int | None = 96,
    *,
    num_classes: int | None = 5,
    feature_dim: int = 64,
    seed: int = 0,
    timelines: str | Path | Mapping[str, VideoAnnotation] = "thumos14",
    max_duration: float | None = 60.0,
    feature_fps: float = 7.5,
    test_fraction: float = 0.25,
    signal: SignalSettings | None = None,
    class_structure: str = "signature",
) -> SyntheticVideos:
    """Generate a synthetic detection dataset; deterministic for a given ``seed``.

    The defaults make a small, fast set (96 videos of at most a minute, 5 classes, 64
    channels; 72 for training, 24 for testing) on which a small Self-DETR learns in minutes
    on a CPU; ``max_duration=None``, ``feature_dim=2048`` and ``num_classes=20`` give
    THUMOS14-sized videos. ``SignalSettings(noise_std=0.35, edge_softness=0.2,
    boundary_strength=0.8)`` makes the task easier.

    Args:
        num_videos: videos to make (built-in timelines), or the first videos of a file to
            keep (None: all).
        num_classes: classes (built-in timelines); for a file, keep the instances of the
            first ``num_classes`` label names in sorted order (None: all).
        feature_dim: channels of the features.
        seed: seed of every random choice.
        timelines: ``"thumos14"`` (built-in THUMOS14-like statistics), the path of an
            annotation file, or ``{video_id: VideoAnnotation}``.
        max_duration: cut built-in timelines to at most this many seconds, from a lead-in
            before the first instance (instances past the cut dropped); None keeps full
            THUMOS14-like lengths.
        feature_fps: feature steps per second (THUMOS14 I3D: 30 fps / stride 4 = 7.5).
        test_fraction: share of built-in videos in subset ``test`` (the rest ``train``).
        signal: difficulty settings of the features.
        class_structure: ``"signature"`` (each class its own latent signature, confusable
            pairs) or ``"phase_order"`` (every instance made of the same sub-phases, the
            class given by their order: a task that needs temporal context).
    """
    signal = signal if signal is not None else SignalSettings()
    if isinstance(timelines, str) and timelines == "thumos14":
        if num_videos is None or num_classes is None:
            raise ValueError("built-in timelines need num_videos and num_classes")
        annotations = thumos14_like_timelines(
            num_videos, num_classes, seed=seed, max_duration=max_duration, test_fraction=test_fraction
        )
        names = [f"action_{index}" for index in range(num_classes)]
    else:
        source = timelines if isinstance(timelines, Mapping) else load_annotations(timelines)
        annotations, names = _file_timelines(source, num_videos, num_classes)
    features = SyntheticFeatures(annotations, names, feature_dim, feature_fps, seed, signal, class_structure)
    return SyntheticVideos(annotations=annotations, features=features, label_names=names, feature_fps=feature_fps)


def thumos14_like_timelines(
    num_videos: int,
    num_classes: int,
    *,
    seed: int = 0,
    max_duration: float | None = None,
    test_fraction: float = 0.25,
) -> dict[str, VideoAnnotation]:
    """Timelines drawn from the THUMOS14 statistics above.

    Each video: a number of instances, 1-3 classes (drawn among ``num_classes``), each
    class with its own typical length (spread over the THUMOS14 class medians), lengths
    varying around it, instances separated by THUMOS14-like gaps (some negative: overlap,
    some zero: back-to-back) after a lead-in and before a tail of background. Video ids are
    ``synthetic_00000``...; the last ``test_fraction`` of them form subset ``test``.
    """
    if num_videos < 1 or num_classes < 1:
        raise ValueError(f"num_videos and num_classes must be positive; got {num_videos}, {num_classes}")
    rng = np.random.default_rng([seed, 3])
    class_lengths = np.quantile(THUMOS14_CLASS_MEDIAN_LENGTHS, (np.arange(num_classes) + 0.5) / num_classes)
    class_lengths = rng.permutation(class_lengths)
    classes_per_video = np.array(list(THUMOS14_CLASSES_PER_VIDEO)), _probabilities(THUMOS14_CLASSES_PER_VIDEO)
    frame_rates = np.array(list(THUMOS14_FRAME_RATES)), _probabilities(THUMOS14_FRAME_RATES)
    num_test = round(num_videos * test_fraction)
    videos = {}
    correlation = THUMOS14_COUNT_DURATION_CORRELATION
    for index in range(num_videos):
        # instance count and duration drawn jointly (Gaussian copula)
        normal = rng.standard_normal(2)
        count_level, duration_level = ndtr(
            [normal[0], correlation * normal[0] + math.sqrt(1 - correlation**2) * normal[1]]
        )
        count = max(1, round(np.interp(count_level, QUANTILE_LEVELS, THUMOS14_INSTANCES_PER_VIDEO)))
        duration = float(np.interp(duration_level, QUANTILE_LEVELS, THUMOS14_DURATIONS))
        video_classes = rng.choice(
            num_classes, size=min(num_classes, rng.choice(classes_per_video[0], p=classes_per_video[1])), replace=False
        )
        labels = rng.choice(video_classes, size=count)
        lengths = np.maximum(
            class_lengths[labels] * np.exp(_draw(rng, THUMOS14_LENGTH_LOG_DEVIATION, count)), MIN_SEGMENT_LENGTH
        )
        gaps = np.maximum(_draw(rng, THUMOS14_GAPS, count - 1), -0.9 * lengths[:-1])
        # background (lead-in, positive gaps, tail) stretched or shrunk to fill the duration
        background = np.concatenate(([_draw(rng, THUMOS14_LEAD_IN)], gaps.clip(min=0), [_draw(rng, THUMOS14_TAIL)]))
        content = lengths.sum() + gaps.clip(max=0).sum()
        if content < duration and background.sum() > 0:
            background *= (duration - content) / background.sum()
        duration = max(duration, content + background.sum())
        gaps = np.where(gaps > 0, background[1:-1], gaps)
        starts = background[0] + np.concatenate(([0.0], np.cumsum(lengths[:-1] + gaps)))
        segments = np.stack((starts, starts + lengths), axis=1)
        if max_duration is not None and duration > max_duration:
            # keep max_duration seconds starting a lead-in before the first instance
            cut = min(max(0.0, segments[0, 0] - _draw(rng, THUMOS14_LEAD_IN)), duration - max_duration)
            segments, duration = segments - cut, max_duration
            inside = (segments[:, 0] >= 0) & (segments[:, 1] <= duration)
            segments, labels = segments[inside], labels[inside]
        videos[f"synthetic_{index:05d}"] = VideoAnnotation(
            subset="test" if index >= num_videos - num_test else "train",
            duration=round(duration, 2),
            fps=float(rng.choice(frame_rates[0], p=frame_rates[1])),
            segments=segments.round(2),
            labels=[f"action_{label}" for label in labels],
        )
    return videos


def _file_timelines(
    annotations: Mapping[str, VideoAnnotation], num_videos: int | None, num_classes: int | None
) -> tuple[dict[str, VideoAnnotation], list[str]]:
    names = label_names(annotations)[:num_classes]
    kept = set(names)
    videos = {}
    for video_id, video in list(annotations.items())[:num_videos]:
        if video.duration is None:
            raise ValueError(f"video {video_id!r}: field duration is missing; synthetic timelines need durations")
        keep = np.array([label in kept for label in video.labels], dtype=bool)
        videos[video_id] = VideoAnnotation(
            subset=video.subset,
            duration=video.duration,
            fps=video.fps,
            segments=video.segments[keep],
            labels=[label for label in video.labels if label in kept],
        )
    return videos, names


def _draw(rng: np.random.Generator, quantiles: tuple[float, ...], size: int | None = None) -> np.ndarray:
    """Samples from the distribution with these values at `QUANTILE_LEVELS` (inverse CDF)."""
    return np.interp(rng.uniform(size=size), QUANTILE_LEVELS, quantiles)


def _probabilities(counts: Mapping[Any, int]) -> np.ndarray:
    values = np.array(list(counts.values()), dtype=np.float64)
    return values / values.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bumps(times: np.ndarray, centres: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """``(L,)`` sum of Gaussian bumps of width `BOUNDARY_WIDTH` at ``centres`` ``(n,)``."""
    return (np.exp(-0.5 * ((times[:, None] - centres) / BOUNDARY_WIDTH) ** 2) * heights).sum(axis=1)


def _block_noise(seed: int, video_index: int, start: int, stop: int, dims: int, block: int = 64) -> np.ndarray:
    """``(stop - start, dims)`` standard normal noise, the same for a step whatever the window:
    drawn per block of ``block`` steps from a generator seeded by (seed, video, block)."""
    first, last = start // block, max(start, stop - 1) // block
    noise = np.concatenate(
        [
            np.random.default_rng([seed, 4, video_index, b]).standard_normal((block, dims))
            for b in range(first, last + 1)
        ]
    )
    return noise[start - first * block : stop - first * block]


__all__ = [
    "CLASS_STRUCTURES",
    "SignalSettings",
    "SyntheticFeatureArray",
    "SyntheticFeatures",
    "SyntheticVideos",
    "make_synthetic_videos",
    "thumos14_like_timelines",
]
