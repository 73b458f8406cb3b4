"""Activation memory of a training forward pass with and without gradient checkpointing.

Measures, side by side in one run, the bytes of every tensor autograd keeps for the
backward pass (counted once per storage, through ``saved_tensors_hooks``) after a
training forward pass with the loss (self-feedback on) of the default config at
batch 16 x 512 steps x 2048 channels, then the time of a full step (forward and
backward) in each mode. With ``gradient_checkpointing_enable()`` the encoder and decoder
layers keep only their inputs and recompute the rest during the backward pass.

    OMP_NUM_THREADS=1 python benchmarks/activation_memory.py [--batch 16] [--steps 512]
"""

from __future__ import annotations

import argparse
import time

import torch

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection


def make_batch(config: SelfDetrConfig, batch: int, steps: int):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch, steps, config.feature_dim, generator=generator)
    labels = [
        {"class_labels": torch.tensor([index % config.num_labels]), "segments": torch.tensor([[0.5, 0.1]])}
        for index in range(batch)
    ]
    return features, labels


def saved_bytes_and_step_time(checkpointing: bool, features, labels) -> tuple[int, float]:
    """Bytes autograd holds after the forward pass, and the seconds of forward + backward."""
    torch.manual_seed(0)
    model = SelfDetrForActionDetection(SelfDetrConfig()).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(input_features=features, labels=labels).loss
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held = sum(size for pointer, size in storages.items() if pointer not in parameters)
    loss.backward()
    return held, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=512)
    args = parser.parse_args()
    features, labels = make_batch(SelfDetrConfig(), args.batch, args.steps)
    plain_bytes, plain_time = saved_bytes_and_step_time(False, features, labels)
    checkpointed_bytes, checkpointed_time = saved_bytes_and_step_time(True, features, labels)
    mib = 2**20
    print(f"default config, batch {args.batch} x {args.steps} x 2048, training forward with the loss")
    print(f"{'':28}{'activations kept':>18}{'step time':>12}")
    print(f"{'without checkpointing':28}{plain_bytes / mib:>14.0f} MiB{plain_time:>10.1f} s")
    print(f"{'gradient checkpointing':28}{checkpointed_bytes / mib:>14.0f} MiB{checkpointed_time:>10.1f} s")
    print(
        f"checkpointed / plain: memory {checkpointed_bytes / plain_bytes:.2f}, time {checkpointed_time / plain_time:.2f}"
    )


if __name__ == "__main__":
    main()
