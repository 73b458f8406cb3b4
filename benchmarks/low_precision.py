"""Predictions in bfloat16 / float16 against float32 at the THUMOS14 shape.

One float32 model (default config, eval mode; its initial weights plus N(0, 0.02) noise,
so that the segment head refines anchors as a trained one does) and its copies in
bfloat16 and float16,
plus the float32 model under CPU bfloat16 autocast, all on the same batch of 16 x 128
steps x 2048 channels. Prints, for each, the largest absolute difference to float32 of
the logits, of the class probabilities and of the segments (center, width), for the final
output and for the first decoder layer's. Target: bfloat16 logits within 0.1.

    OMP_NUM_THREADS=1 python benchmarks/low_precision.py [--seed 0] [--noise 0.02]
"""

from __future__ import annotations

import argparse
import copy

import torch

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection

BATCH, STEPS = 16, 128


def predictions(model: SelfDetrForActionDetection, features: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        outputs = model(input_features=features)
    first = outputs.auxiliary_outputs[0]
    return {
        "logits": outputs.logits.float(),
        "probabilities": outputs.logits.float().sigmoid(),
        "segments": outputs.pred_segments.float(),
        "layer-1 logits": first["logits"].float(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.02, help="std of the noise added to every weight")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = SelfDetrForActionDetection(SelfDetrConfig()).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * args.noise)
    features = torch.randn(BATCH, STEPS, model.config.feature_dim)
    reference = predictions(model, features)
    runs = {}
    for dtype in (torch.bfloat16, torch.float16):
        runs[f"{dtype} weights"] = predictions(copy.deepcopy(model).to(dtype), features.to(dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        runs["bfloat16 autocast"] = predictions(model, features)
    print(f"default config, eval mode, batch {BATCH} x {STEPS} x 2048: max |difference| to float32")
    print(f"{'':24}" + "".join(f"{name:>16}" for name in reference))
    for name, outputs in runs.items():
        cells = "".join(f"{(outputs[key] - reference[key]).abs().max().item():>16.4f}" for key in reference)
        print(f"{name:<24}{cells}")


if __name__ == "__main__":
    main()
