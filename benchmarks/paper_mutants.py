"""The paper's equations broken one at a time: does the suite notice without the fixture?

Each entry is a one-line bug in an equation of the spec (a missing square root, a
different epsilon, the wrong sign of the tIoU cost, the width modulation dividing by the
centre, a reference that is not detached, ...). Each is applied to a temporary copy of the
package, the given tests run there with the reference fixture hidden
(``SELFDETR_SHARED_DATA`` pointing nowhere), and the copy is restored. These complement `make mutation`: mutmut does not mutate
module constants (``EPS``) nor decorated functions (the matcher's ``__call__``, the
models' ``forward``), and the entries here reach them.

    python benchmarks/paper_mutants.py [TEST_FILE ...]   # default: the paper tests
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TESTS = ["tests/test_paper_equations.py", "tests/test_paper_model.py"]

# (name, file, original line(s), mutated line(s))
MUTANTS = [
    (
        "eq2 no sqrt",
        "selfdetr_hf/self_feedback.py",
        "return _normalize_rows(torch.sqrt(cross_attention @ cross_attention.transpose(-1, -2) + eps))",
        "return _normalize_rows(cross_attention @ cross_attention.transpose(-1, -2) + eps)",
    ),
    ("eps 1e-6", "selfdetr_hf/self_feedback.py", "EPS = 1e-7", "EPS = 1e-6"),
    (
        "width mod / center",
        "selfdetr_hf/modeling_self_detr.py",
        "self.ref_anchor_head(hidden).sigmoid() / reference[..., 1:]",
        "self.ref_anchor_head(hidden).sigmoid() / reference[..., :1]",
    ),
    ("matcher tiou sign", "selfdetr_hf/matcher.py", "- self.tiou_cost * segment_iou", "+ self.tiou_cost * segment_iou"),
    (
        "focal gamma 1 (config)",
        "selfdetr_hf/configuration_self_detr.py",
        "focal_gamma: float = 2.0",
        "focal_gamma: float = 1.0",
    ),
    ("focal gamma 1 (loss)", "selfdetr_hf/losses.py", "(1 - p_t) ** gamma", "(1 - p_t) ** 1"),
    ("normaliser = samples", "selfdetr_hf/losses.py", 'sum(len(t["class_labels"]) for t in labels)', "len(labels)"),
    (
        "layers paired with last guidance",
        "selfdetr_hf/self_feedback.py",
        "return self_feedback_kl(decoder_guidance_map(cross_attentions), decoder_attentions)",
        "return self_feedback_kl(decoder_guidance_map(cross_attentions[-1]), decoder_attentions)",
    ),
    (
        "string segments truncated",
        "selfdetr_hf/data/annotations.py",
        "number = float(value)",
        "number = float(int(float(value)))",
    ),
    (
        "coverage 0.5",
        "selfdetr_hf/processing_self_detr.py",
        "min_segment_coverage: float = 0.75",
        "min_segment_coverage: float = 0.5",
    ),
    (
        "reference not detached",
        "selfdetr_hf/modeling_self_detr.py",
        "reference = refined.detach()",
        "reference = refined",
    ),
    ("nms strict at threshold", "selfdetr_hf/nms.py", "(iou <= iou_threshold)", "(iou < iou_threshold)"),
    (
        "coverage > instead of >=",
        "selfdetr_hf/windows.py",
        "(coverage >= min_coverage)",
        "(coverage > min_coverage)",
    ),
    (
        "eq3 second factor re-normalised",
        "selfdetr_hf/self_feedback.py",
        "torch.sqrt(mean_cross.transpose(-1, -2) @ mean_cross + eps)",
        "torch.sqrt(mean_cross.transpose(-1, -2) @ mean_cross.softmax(-1) + eps)",
    ),
    (
        "eq4 no transpose",
        "selfdetr_hf/self_feedback.py",
        "torch.sqrt(aggregated @ attention.transpose(-1, -2) + eps)",
        "torch.sqrt(aggregated @ attention + eps)",
    ),
    (
        "kl direction",
        "selfdetr_hf/self_feedback.py",
        "per_row = ((guidance + eps) * (log_guidance - log_attention)).sum(dim=-1)",
        "per_row = ((attention + eps) * (log_attention - log_guidance)).sum(dim=-1)",
    ),
    (
        "cross-attn first-layer key pos everywhere",
        "selfdetr_hf/modeling_self_detr.py",
        "            key_content = key_content + key_pos\n",
        "            pass\n        key_content = key_content + key_pos\n",
    ),
    (
        "query_scale on first layer",
        "selfdetr_hf/modeling_self_detr.py",
        "            if index > 0:\n                center_sine = center_sine * self.query_scale(hidden)",
        "            center_sine = center_sine * self.query_scale(hidden)",
    ),
    (
        "refine from normalised",
        "selfdetr_hf/modeling_self_detr.py",
        "refined = (self.segment_head(hidden) + inverse_sigmoid(reference)).sigmoid()",
        "refined = (self.segment_head(self.layernorm(hidden)) + inverse_sigmoid(reference)).sigmoid()",
    ),
    (
        "pos embedding no norm",
        "selfdetr_hf/modeling_self_detr.py",
        "positions = steps / (steps[:, -1:] + 1e-6) * (2 * math.pi)",
        "positions = steps * (2 * math.pi)",
    ),
    (
        "l1 on start/end",
        "selfdetr_hf/losses.py",
        'F.l1_loss(matched_predictions, matched_targets, reduction="sum")',
        'F.l1_loss(segment_cw_to_se(matched_predictions), segment_cw_to_se(matched_targets), reduction="sum")',
    ),
    (
        "focal alpha swapped",
        "selfdetr_hf/losses.py",
        "alpha_t = alpha * targets + (1 - alpha) * (1 - targets)",
        "alpha_t = (1 - alpha) * targets + alpha * (1 - targets)",
    ),
    ("matcher focal cost sign", "selfdetr_hf/matcher.py", "return positive - negative", "return positive + negative"),
    (
        "tiou union no minus",
        "selfdetr_hf/segment_ops.py",
        "union = segment_length(segments1) + segment_length(segments2) - inter",
        "union = segment_length(segments1) + segment_length(segments2)",
    ),
    (
        "encoder mask not applied",
        "selfdetr_hf/self_feedback.py",
        "    return self_feedback_kl(guidance, aggregated, key_mask, num_rows=num_rows)",
        "    return self_feedback_kl(guidance, aggregated, None, num_rows=num_rows)",
    ),
    (
        "cross scale",
        "selfdetr_hf/modeling_self_detr.py",
        "scores = (query * query.shape[-1] ** -0.5)",
        "scores = (query * value.shape[-1] ** -0.5)",
    ),
]


def run(tests: list[str]) -> int:
    """Apply every mutant in turn to a copy of the project, run ``tests`` there, restore;
    print CAUGHT/SURVIVED per mutant. The working tree is never modified."""
    caught = 0
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "project"
        for name in ("selfdetr_hf", "tests"):
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", copy)
        # the copy's package comes first on sys.path (pytest's rootdir), ahead of the install
        env = dict(os.environ, SELFDETR_SHARED_DATA=str(copy / "no-shared-data"), OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
        if subprocess.run(command, check=False, cwd=copy, env=env, capture_output=True).returncode != 0:
            raise SystemExit(f"the tests fail on the unmutated copy: {' '.join(command)}")
        for name, relative_path, original, mutated in MUTANTS:
            path = copy / relative_path
            source = path.read_text()
            if source.count(original) != 1:
                raise SystemExit(f"{relative_path}: the line of mutant {name!r} is not found once; update this list")
            path.write_text(source.replace(original, mutated))
            start = time.time()
            result = subprocess.run(command, check=False, cwd=copy, env=env, capture_output=True, text=True)
            path.write_text(source)
            failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")][:1]
            caught += result.returncode != 0
            status = "CAUGHT" if result.returncode != 0 else "SURVIVED"
            print(f"{status:8s} {name:42s} {time.time() - start:5.1f}s {' '.join(failed)}", flush=True)
    print(f"caught {caught}/{len(MUTANTS)}")
    return 0 if caught == len(MUTANTS) else 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:] or DEFAULT_TESTS))
