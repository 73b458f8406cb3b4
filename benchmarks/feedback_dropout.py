"""Self-feedback terms on the attention maps after or before attention dropout.

The authors' code computes the feedback losses from the head-averaged attention maps
after attention dropout; ``SelfDetrConfig.feedback_maps`` chooses between those
(``after_dropout``, the default) and the probabilities before dropout
(``before_dropout``). This script measures both on the THUMOS14 configuration (default
config, dropout 0.1, batch 16 x 128 steps x 2048 channels, synthetic targets), with the
same model and the same dropout draws for both, over several seeds: the encoder and
decoder feedback terms (mean +- standard deviation over draws) and the gradient norm of
their weighted sum ``5 L_enc + 5 L_dec`` over all parameters.

    OMP_NUM_THREADS=1 python benchmarks/feedback_dropout.py [--draws 10] [--dropout 0.1]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from train_step import BATCH, STEPS, make_batch  # benchmarks/ is the script's folder

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection

CHOICES = ("after_dropout", "before_dropout")


def feedback_terms(model: SelfDetrForActionDetection, features, labels, seed: int) -> tuple[float, float, float]:
    """Encoder term, decoder term and the gradient norm of their weighted sum for one draw."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss_dict = model(input_features=features, labels=labels).loss_dict
    encoder, decoder = loss_dict["loss_encoder_feedback"], loss_dict["loss_decoder_feedback"]
    (model.config.encoder_feedback_weight * encoder + model.config.decoder_feedback_weight * decoder).backward()
    gradients = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    return encoder.item(), decoder.item(), torch.cat(gradients).norm().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=10, help="dropout draws (seeds) per choice")
    parser.add_argument("--dropout", type=float, default=0.1)
    args = parser.parse_args()

    results = {}
    for choice in CHOICES:
        torch.manual_seed(0)  # the same weights for both choices
        model = SelfDetrForActionDetection(SelfDetrConfig(dropout=args.dropout, feedback_maps=choice)).train()
        features, labels = make_batch(model.config, torch.Generator().manual_seed(0))
        results[choice] = [feedback_terms(model, features, labels, seed) for seed in range(args.draws)]

    print(f"THUMOS14 config, dropout {args.dropout}, batch {BATCH} x {STEPS}, {args.draws} draws (same seeds)")
    print(f"{'feedback_maps':<16}{'L_enc':>22}{'L_dec':>22}{'|grad| of 5 L_enc + 5 L_dec':>30}")
    for choice, rows in results.items():
        cells = []
        for column in zip(*rows):
            cells.append(f"{statistics.mean(column):.4f} +- {statistics.stdev(column):.4f}")
        print(f"{choice:<16}{cells[0]:>22}{cells[1]:>22}{cells[2]:>30}")
    after, before = ([statistics.mean(column) for column in zip(*results[c])] for c in CHOICES)
    ratios = "  ".join(f"{name} {b / a:.3f}" for name, a, b in zip(("L_enc", "L_dec", "|grad|"), after, before))
    print(f"before_dropout / after_dropout: {ratios}")


if __name__ == "__main__":
    main()
