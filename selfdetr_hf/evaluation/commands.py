"""The ``selfdetr score`` and ``selfdetr diagnose`` subcommands (arguments and runners)."""

from __future__ import annotations

import argparse
import json
import sys

from ..command_options import add_feature_arguments, add_overwrite_argument
from .detection_map import ACTIVITYNET_TIOU_THRESHOLDS, THUMOS14_TIOU_THRESHOLDS
from .submission import SubmissionScore

TIOU_PRESETS = {"thumos14": THUMOS14_TIOU_THRESHOLDS, "activitynet": ACTIVITYNET_TIOU_THRESHOLDS}


def parse_tiou_thresholds(text: str) -> tuple[float, ...]:
    """``"0.3,0.5"`` or a preset name (``thumos14``, ``activitynet``) -> thresholds."""
    if text.lower() in TIOU_PRESETS:
        return TIOU_PRESETS[text.lower()]
    try:
        return tuple(float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers or one of {', '.join(TIOU_PRESETS)}, got {text!r}"
        ) from None


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--annotations",
        required=True,
        metavar="GT.json",
        help="annotation file (ActionFormer, ActivityNet or BSN style)",
    )
    parser.add_argument("--predictions", required=True, metavar="SUBMISSION.json", help="ActivityNet submission file")
    parser.add_argument("--subset", metavar="NAME", help="score only the videos of this subset (e.g. Test, validation)")
    parser.add_argument("--video-info", metavar="CSV", help="video info CSV giving a BSN-style file its subsets")
    parser.add_argument(
        "--tiou",
        type=parse_tiou_thresholds,
        default=THUMOS14_TIOU_THRESHOLDS,
        metavar="T1,T2,...",
        help="tIoU thresholds, numbers or a preset: thumos14 (0.3:0.1:0.7, the default), activitynet (0.5:0.05:0.95)",
    )
    parser.add_argument("--json", metavar="OUT.json", help="also write tiou_thresholds, mAP, average_mAP, per_class_AP")
    add_overwrite_argument(parser, "an existing --json file")


def run_score(args: argparse.Namespace) -> int:
    """Score a submission by the ActivityNet protocol; print the mAP table, warnings on stderr."""
    from ..detection_files import check_writable
    from .submission import score_submission

    if args.json:
        check_writable(args.json, overwrite=args.overwrite)
    score = score_submission(
        args.annotations, args.predictions, subset=args.subset, video_info=args.video_info, tiou_thresholds=args.tiou
    )
    for line in score_warnings(score, args.predictions, args.subset):
        print(f"selfdetr score: warning: {line}", file=sys.stderr)
    print(score.result.table())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(score.result.to_dict(), handle, indent=2)
    return 0


def score_warnings(score: SubmissionScore, submission: str, subset: str | None) -> list[str]:
    """One line per way the submission and the annotations do not fit together."""
    where = f"subset {subset!r} of the annotations" if subset else "the annotations"
    official = "as the official ActivityNet evaluation does"
    result, lines = score.result, []
    if score.detections == 0:
        lines.append(f"{submission} holds no detection: every annotated segment is missed")
    if result.reversed_detections:
        lines.append(f"{result.reversed_detections} detection(s) end before they start: false positives, {official}")
    if result.unscored_detections:
        lines.append(f"{result.unscored_detections} detection(s) whose label is no class of {where} are not scored")
    if score.videos_not_annotated:
        lines.append(
            f"{score.videos_not_annotated} submission video(s) with {score.detections_not_annotated} detection(s) "
            f"are not in {where}: false positives, {official}"
        )
    missed = score.videos_without_detections
    if missed and score.detections:
        by_subset = ", ".join(f"{count} of subset {name}" for name, count in missed.items())
        hint = "" if subset else "; pass --subset to score one subset"
        lines.append(
            f"{sum(missed.values())} video(s) with ground truth in {where} have no detection ({by_subset}): "
            f"their segments count as missed{hint}"
        )
    return lines


def add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model saved with save_pretrained")
    add_feature_arguments(parser, required=True)
    parser.add_argument("--compare-model", metavar="DIR2", help="a second model, e.g. trained without self-feedback")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="where diversity.json and the PNGs go")
    parser.add_argument("--window-size", type=int, default=128, metavar="N", help="steps per window (default: 128)")
    parser.add_argument("--annotations", metavar="GT.json", help="with --predictions: plot a detection timeline")
    parser.add_argument("--predictions", metavar="SUBMISSION.json", help="ActivityNet submission for the timeline")
    parser.add_argument("--video", help="video of the timeline (default: the first feature file's)")
    add_overwrite_argument(parser, "the diagnostics of an earlier run in --output-dir")


def run_diagnose(args: argparse.Namespace) -> int:
    """Attention diversity per layer (JSON) and attention, diversity and timeline plots (PNG)."""
    from ..command_options import selected_features
    from ..detection_files import check_output_folder
    from .diagnostics import DIAGNOSE_FILES, diagnose

    check_output_folder(args.output_dir, DIAGNOSE_FILES, overwrite=args.overwrite)
    folder, video_ids = selected_features(args)
    report = diagnose(
        args.model,
        folder,
        args.output_dir,
        compare_model_dir=args.compare_model,
        window_size=args.window_size,
        annotations=args.annotations,
        predictions=args.predictions,
        video=args.video,
        video_ids=video_ids,
    )
    print(f"attention diversity (Eq. 10), mean over {len(report['videos'])} video(s), layer by layer")
    for key, model in report["models"].items():
        print(f"{key}: {model['path']} ({model['self_feedback']})")
        for kind, values in model["diversity"].items():
            print(f"  {kind:8s} " + "  ".join(f"{m:.4f}+-{s:.4f}" for m, s in zip(values["mean"], values["std"])))
    print(f"wrote {args.output_dir}/diversity.json and the plots")
    return 0
