"""SelfDetrProcessor: saving, presets, windows in, detections in seconds out."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, Trainer, TrainingArguments

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection, SelfDetrProcessor
from selfdetr_hf.data import WINDOW_METADATA_KEYS, SelfDetrDataCollator, window_metadata
from selfdetr_hf.data.synthetic import make_synthetic_videos
from selfdetr_hf.segment_ops import segment_se_to_cw

NUM_QUERIES, NUM_CLASSES = 4, 3


def metadata(video_id, offset, length=128, fps=2.0, time_offset=0.0, duration=1000.0):
    return dict(zip(WINDOW_METADATA_KEYS, (video_id, offset, length, fps, time_offset, duration)))


def window_outputs(detections):
    """Outputs of one window whose query i predicts ``(start, end, class, probability)`` i;
    every other (query, class) pair has probability 0."""
    logits = torch.full((1, NUM_QUERIES, NUM_CLASSES), -math.inf)
    segments = torch.full((1, NUM_QUERIES, 2), 0.5)
    for query, (start, end, label, probability) in enumerate(detections):
        logits[0, query, label] = math.log(probability / (1 - probability))
        segments[0, query] = segment_se_to_cw(torch.tensor([start, end]))
    return {"logits": logits, "pred_segments": segments}


def concat(*outputs):
    return {key: torch.cat([output[key] for output in outputs]) for key in ("logits", "pred_segments")}


def test_save_and_from_pretrained_round_trip(tmp_path):
    processor = SelfDetrProcessor.activitynet(top_k_per_video=50)
    processor.save_pretrained(tmp_path)
    loaded = SelfDetrProcessor.from_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    assert loaded.to_dict() == processor.to_dict()


def test_auto_feature_extractor_loads_the_processor_next_to_a_model(tmp_path, tiny_config):
    tiny_config.save_pretrained(tmp_path)
    SelfDetrProcessor.thumos14().save_pretrained(tmp_path)
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), SelfDetrProcessor)


def test_presets_hold_the_paper_settings():
    thumos, anet = SelfDetrProcessor.thumos14(), SelfDetrProcessor.activitynet()
    assert (thumos.window_size, thumos.train_window_stride, thumos.test_window_stride) == (128, 32, 96)
    assert (thumos.nms_method, thumos.nms_iou_threshold, thumos.top_k_per_window, thumos.top_k_per_video) == (
        "nms",
        0.4,
        200,
        200,
    )
    assert (anet.resize_length, anet.window_size, anet.nms_method, anet.soft_nms_sigma) == (192, None, "soft_nms", 0.75)
    assert (anet.nms_iou_threshold, anet.min_score, anet.top_k_per_video, anet.fusion_top_k) == (0.1, 0.001, 100, 2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"resize_length": 192}, "exactly one of window_size"),
        ({"window_size": None}, "exactly one of window_size"),
        ({"nms_method": "fast"}, "nms_method"),
        ({"test_window_stride": 0}, "test_window_stride"),
        ({"min_segment_coverage": 0.0}, "min_segment_coverage"),
    ],
)
def test_invalid_settings_name_the_field(settings, message):
    with pytest.raises(ValueError, match=message):
        SelfDetrProcessor(**settings)


def test_from_pretrained_overrides_are_validated(tmp_path):
    SelfDetrProcessor.thumos14().save_pretrained(tmp_path)
    assert SelfDetrProcessor.from_pretrained(tmp_path, top_k_per_video=50).top_k_per_video == 50
    with pytest.raises(ValueError, match="nms_method must be one of nms, soft_nms, none; got 'fast'"):
        SelfDetrProcessor.from_pretrained(tmp_path, nms_method="fast")


def test_call_cuts_test_windows_and_returns_their_metadata():
    inputs = SelfDetrProcessor()([np.zeros((300, 8)), np.zeros((50, 8))], feature_fps=7.5, video_ids=["a", "b"])
    assert inputs["input_features"].shape == (4, 128, 8) and inputs["attention_mask"].shape == (4, 128)
    assert [(m["video_id"], m["window_offset"], m["window_length"]) for m in inputs["window_metadata"]] == [
        ("a", 0, 128),
        ("a", 96, 128),
        ("a", 192, 108),
        ("b", 0, 50),
    ]
    assert inputs["attention_mask"][3].sum() == 50


def test_call_rejects_nan_features_naming_the_video():
    features = np.zeros((10, 4))
    features[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"video 'clip'.*NaN"):
        SelfDetrProcessor()(features, feature_fps=1.0, video_ids=["clip"])


def test_detection_is_mapped_from_window_to_seconds():
    outputs = window_outputs([(0.25, 0.5, 2, 0.9)])
    result = SelfDetrProcessor().post_process_action_detection(
        outputs, [metadata("v", offset=64, length=128, fps=2.0, time_offset=0.5)], id2label={2: "jump"}
    )[0]
    # positions 64 + [32, 64] steps at 2 steps/s, plus 0.5 s
    torch.testing.assert_close(result["segments"][0], torch.tensor([48.5, 64.5]))
    assert result["scores"][0].item() == pytest.approx(0.9)
    assert result["labels"][0].item() == 2 and result["label_names"][0] == "jump"


def test_detections_are_clipped_to_the_video():
    outputs = window_outputs([(0.5, 1.0, 0, 0.9)])
    result = SelfDetrProcessor().post_process_action_detection(outputs, [metadata("v", 0, duration=50.0)])[0]
    torch.testing.assert_close(result["segments"][0], torch.tensor([32.0, 50.0]))


def test_the_same_action_seen_by_two_overlapping_windows_is_merged_by_nms():
    first = window_outputs([(0.75, 1.0, 1, 0.8)])  # positions 96-128 of window 0
    second = window_outputs([(0.0, 0.25, 1, 0.7)])  # positions 96-128 of window 96
    result = SelfDetrProcessor().post_process_action_detection(
        concat(first, second), [metadata("v", 0), metadata("v", 96)]
    )[0]
    assert result["scores"].tolist() == pytest.approx([0.8])


def test_soft_nms_keeps_the_second_view_with_a_decayed_score():
    first, second = window_outputs([(0.75, 1.0, 1, 0.8)]), window_outputs([(0.0, 0.25, 1, 0.7)])
    processor = SelfDetrProcessor(nms_method="soft_nms", soft_nms_sigma=0.5)
    result = processor.post_process_action_detection(concat(first, second), [metadata("v", 0), metadata("v", 96)])[0]
    assert result["scores"].tolist() == pytest.approx([0.8, 0.7 * math.exp(-1 / 0.5)], rel=1e-5)


def test_windows_of_several_videos_are_grouped_by_video_in_any_order():
    views = [
        window_outputs([(0.1, 0.2, 0, 0.9)]),
        window_outputs([(0.3, 0.4, 1, 0.8)]),
        window_outputs([(0.5, 0.6, 2, 0.7)]),
    ]
    entries = [metadata("a", 0), metadata("b", 0), metadata("a", 96)]
    processor = SelfDetrProcessor()
    results = processor.post_process_action_detection(concat(*views), entries)
    assert [result["video_id"] for result in results] == ["a", "b"]
    assert results[0]["labels"].tolist() == [0, 2] and results[1]["labels"].tolist() == [1]
    by_video = processor.post_process_action_detection(concat(*views), entries, by_video=True)
    assert list(by_video) == ["a", "b"] and "video_id" not in by_video["a"]
    for result in results:
        for key in ("segments", "scores", "labels"):
            torch.testing.assert_close(by_video[result["video_id"]][key], result[key])


def test_top_k_per_video_limits_the_detections():
    outputs = window_outputs([(0.1 * q, 0.1 * q + 0.05, 0, 0.9 - 0.1 * q) for q in range(NUM_QUERIES)])
    result = SelfDetrProcessor(top_k_per_video=2).post_process_action_detection(outputs, [metadata("v", 0)])[0]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.8])


def test_min_score_drops_weak_detections():
    outputs = window_outputs([(0.1, 0.2, 0, 0.9), (0.5, 0.6, 0, 0.0005)])
    result = SelfDetrProcessor(min_score=0.001).post_process_action_detection(outputs, [metadata("v", 0)])[0]
    assert result["scores"].tolist() == pytest.approx([0.9])


def test_classifier_fusion_pairs_each_detection_with_the_top_classes():
    outputs = window_outputs([(0.1, 0.2, 0, 0.64)])
    processor = SelfDetrProcessor.activitynet()
    result = processor.post_process_action_detection(
        outputs,
        [metadata("v", 0)],
        classifier_scores={"v": [0.1, 0.81, 0.25]},
        classifier_id2label=["bake", "climb", "dance"],
    )[0]
    assert result["label_names"] == ["climb", "dance"]
    assert result["scores"].tolist() == pytest.approx([math.sqrt(0.81 * 0.64), math.sqrt(0.25 * 0.64)])
    torch.testing.assert_close(result["segments"][0], result["segments"][1])


def test_classifier_fusion_names_a_video_without_scores():
    with pytest.raises(ValueError, match=r"video 'v'.*classifier_scores"):
        SelfDetrProcessor().post_process_action_detection(
            window_outputs([(0.1, 0.2, 0, 0.5)]), [metadata("v", 0)], classifier_scores={}
        )


def test_trainer_prediction_batches_give_the_same_result_as_one_output():
    generator = torch.Generator().manual_seed(0)
    logits, segments = torch.randn(4, NUM_QUERIES, NUM_CLASSES, generator=generator), torch.rand(4, NUM_QUERIES, 2)
    entries = [metadata("a", 0), metadata("a", 96), metadata("b", 0), metadata("b", 96)]
    processor = SelfDetrProcessor()
    whole = processor.post_process_action_detection(
        {"logits": logits, "pred_segments": segments}, entries, by_video=True
    )
    batches = [(logits[:3].numpy(), segments[:3].numpy()), (logits[3:].numpy(), segments[3:].numpy())]
    split = processor.post_process_action_detection(batches, entries, by_video=True)
    for video_id in whole:
        torch.testing.assert_close(whole[video_id]["segments"], split[video_id]["segments"])


def test_metadata_count_must_match_the_windows():
    with pytest.raises(ValueError, match="2 windows of outputs but 1"):
        SelfDetrProcessor().post_process_action_detection(
            concat(window_outputs([]), window_outputs([])), [metadata("v", 0)]
        )


def test_processor_and_model_run_end_to_end():
    config = SelfDetrConfig(
        feature_dim=16,
        d_model=32,
        num_attention_heads=4,
        ffn_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=6,
        input_norm_groups=8,
    )
    model = SelfDetrForActionDetection(config).eval()
    processor = SelfDetrProcessor()
    features = np.random.default_rng(0).standard_normal((400, 16))
    inputs = processor(features, feature_fps=7.5, video_ids=["v"], return_tensors="pt")
    window_metadata = inputs.pop("window_metadata")
    with torch.no_grad():
        result = processor.post_process_action_detection(model(**inputs), window_metadata)[0]
    assert 0 < len(result["scores"]) <= 200 and (result["scores"][:-1] >= result["scores"][1:]).all()
    assert (result["segments"] >= 0).all() and (result["segments"] <= 400 / 7.5).all()


def trainer_predictions(tmp_path, config, dataset, *, concatenated):
    arguments = TrainingArguments(
        output_dir=str(tmp_path), remove_unused_columns=False, eval_do_concat_batches=concatenated,
        per_device_eval_batch_size=3, report_to=[], use_cpu=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(config)
    return Trainer(model=model, args=arguments, data_collator=SelfDetrDataCollator()).predict(dataset).predictions


def test_trainer_predictions_concatenated_or_per_batch_give_the_same_detections(tmp_path, tiny_config):
    videos = make_synthetic_videos(num_videos=4, num_classes=3, feature_dim=tiny_config.feature_dim)
    processor = SelfDetrProcessor.thumos14()
    test = videos.dataset(processor, training=False)
    assert len(test) % 3  # the last batch is smaller than the others
    per_batch = trainer_predictions(tmp_path, tiny_config, test, concatenated=False)
    concatenated = trainer_predictions(tmp_path, tiny_config, test, concatenated=True)
    assert isinstance(per_batch, list) and concatenated[0].shape == (len(test), tiny_config.num_queries, 3)
    results = [
        processor.post_process_action_detection(predictions, window_metadata(test), id2label=tiny_config.id2label)
        for predictions in (per_batch, concatenated)
    ]
    assert [result["video_id"] for result in results[0]] == list(videos.annotations)
    assert all(len(result["scores"]) > 0 for result in results[0])
    for split, whole in zip(*results):
        torch.testing.assert_close(split["segments"], whole["segments"])
        torch.testing.assert_close(split["scores"], whole["scores"])
        assert split["label_names"] == whole["label_names"]


def test_threshold_and_top_k_per_call_override_the_settings():
    outputs = window_outputs([(0.1 * q, 0.1 * q + 0.05, 0, 0.9 - 0.1 * q) for q in range(NUM_QUERIES)])
    processor = SelfDetrProcessor(min_score=0.0, top_k_per_video=200)
    assert processor.post_process_action_detection(outputs, [metadata("v", 0)])[0]["scores"].tolist() == (
        pytest.approx([0.9, 0.8, 0.7, 0.6])
    )
    result = processor.post_process_action_detection(outputs, [metadata("v", 0)], threshold=0.65)[0]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    result = processor.post_process_action_detection(outputs, [metadata("v", 0)], top_k=2)[0]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert (processor.min_score, processor.top_k_per_video) == (0.0, 200)


def test_threshold_applies_after_soft_nms_decay():
    first, second = window_outputs([(0.75, 1.0, 1, 0.8)]), window_outputs([(0.0, 0.25, 1, 0.7)])
    processor = SelfDetrProcessor(nms_method="soft_nms", soft_nms_sigma=0.5)
    entries = [metadata("v", 0), metadata("v", 96)]
    result = processor.post_process_action_detection(concat(first, second), entries, threshold=0.2)[0]
    assert result["scores"].tolist() == pytest.approx([0.8])  # the second view decays to 0.095


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"threshold": 1.5}, r"threshold must be a score in \[0, 1\]; got 1.5"),
        ({"threshold": "high"}, "threshold must be a score"),
        ({"top_k": 0}, "top_k must be a positive integer; got 0"),
        ({"top_k": 2.5}, "top_k must be a positive integer"),
    ],
)
def test_invalid_threshold_or_top_k_is_refused(option, message):
    with pytest.raises(ValueError, match=message):
        SelfDetrProcessor().post_process_action_detection(window_outputs([]), [metadata("v", 0)], **option)


def test_results_follow_the_order_of_the_input_videos():
    processor = SelfDetrProcessor()
    features = [np.zeros((200, 4)), np.zeros((100, 4)), np.zeros((300, 4))]
    inputs = processor(features, feature_fps=2.0, video_ids=["zeta", "alpha", "mid"])
    num_windows = len(inputs["window_metadata"])
    outputs = {
        "logits": torch.zeros(num_windows, NUM_QUERIES, NUM_CLASSES),
        "pred_segments": torch.full((num_windows, NUM_QUERIES, 2), 0.5),
    }
    results = processor.post_process_action_detection(outputs, inputs["window_metadata"])
    assert [result["video_id"] for result in results] == ["zeta", "alpha", "mid"]


def test_call_without_feature_fps_returns_only_the_model_inputs(tiny_config):
    features = np.random.default_rng(0).standard_normal((200, tiny_config.feature_dim))
    inputs = SelfDetrProcessor()(features, return_tensors="pt")
    assert set(inputs) == {"input_features", "attention_mask"}
    with torch.no_grad():
        outputs = SelfDetrForActionDetection(tiny_config).eval()(**inputs)
    assert outputs.logits.shape == (2, tiny_config.num_queries, 3)


@pytest.mark.parametrize(("return_tensors", "kind"), [(None, np.ndarray), ("np", np.ndarray), ("pt", torch.Tensor)])
def test_return_tensors_defaults_to_numpy_as_feature_extractors_do(return_tensors, kind):
    options = {} if return_tensors is None else {"return_tensors": return_tensors}
    inputs = SelfDetrProcessor()(np.zeros((50, 4)), feature_fps=1.0, **options)
    assert isinstance(inputs["input_features"], kind) and isinstance(inputs["attention_mask"], kind)
    assert inputs["input_features"].dtype in (np.float32, torch.float32)
    assert isinstance(inputs["window_metadata"], list)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time_offset": 0.5}, "time_offset and durations place windows in seconds and need feature_fps"),
        ({"durations": [10.0, 10.0]}, "need feature_fps"),
        ({"video_ids": ["a", "a"], "feature_fps": 1.0}, "video_ids must be distinct; repeated: a"),
        ({"video_ids": ["a"], "feature_fps": 1.0}, "2 videos but 1 video_ids"),
        ({"durations": [10.0], "feature_fps": 1.0}, "durations: 1 values for 2 videos"),
    ],
)
def test_ambiguous_call_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        SelfDetrProcessor()([np.zeros((20, 4)), np.zeros((30, 4))], **options)


def test_pre_nms_top_k_limits_the_candidates_of_a_video():
    outputs = window_outputs([(0.1 * q, 0.1 * q + 0.05, 0, 0.9 - 0.1 * q) for q in range(NUM_QUERIES)])
    result = SelfDetrProcessor(pre_nms_top_k=3).post_process_action_detection(outputs, [metadata("v", 0)])[0]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7])
