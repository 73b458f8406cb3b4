"""Training-step and inference speed at the THUMOS14 shape, against a matmul yardstick.

Measures in one run, on this machine, interleaving the variants so that load changes hit
all of them alike:
- a 2048x2048 float32 matrix product (the yardstick FLOP rate);
- a training step (forward, Hungarian matching, all losses, backward, AdamW) of the
  default config (THUMOS14, dropout 0.1) at batch 16 x 128 steps x 2048 channels, with and
  without self-feedback, and with self-feedback under `torch.compile`
  (`compile_for_training`, the way `selfdetr train --compile` runs it);
- inference with and without attention maps.

Prints each median time, the FLOPs of a step (torch.utils.flop_counter) and the achieved
FLOP rate as a fraction of the yardstick's. Targets: training step >= 60% of the
yardstick; self-feedback adds <= 10% to a step; inference without maps no slower than
with them; the compiled step <= 0.74 of the eager one (0.65 of the authors' step, which
took 1.14 times the eager step of this library).

`--profile` adds where the time of a step goes (torch.profiler, 3 steps): forward,
Hungarian matching, backward, clipping and optimiser, and by kind of operator (matrix
products, dropout's random draws, copies, the rest), eager and compiled side by side.

    python benchmarks/train_step.py [--repeats 7] [--threads N] [--no-compile] [--profile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from selfdetr_hf import SelfDetrConfig, SelfDetrForActionDetection
from selfdetr_hf.training.compilation import compile_for_training

BATCH, STEPS = 16, 128


def make_batch(config: SelfDetrConfig, generator: torch.Generator, batch: int = BATCH, steps: int = STEPS):
    """Random ``(batch, steps, feature_dim)`` features and 1-5 random segments per window."""
    features = torch.randn(batch, steps, config.feature_dim, generator=generator)
    labels = []
    for _ in range(batch):
        count = int(torch.randint(1, 6, (1,), generator=generator))
        centers = torch.rand(count, generator=generator) * 0.8 + 0.1
        widths = torch.rand(count, generator=generator) * 0.15 + 0.02
        classes = torch.randint(0, config.num_labels, (count,), generator=generator)
        labels.append({"class_labels": classes, "segments": torch.stack((centers, widths), -1)})
    return features, labels


def training_step(model, optimizer, features, labels):
    optimizer.zero_grad(set_to_none=True)
    loss = model(input_features=features, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    optimizer.step()


OPERATOR_KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation"),
    "random draws (dropout)": ("aten::uniform_", "aten::bernoulli_"),
    "copies": ("aten::copy_", "aten::clone", "aten::cat", "aten::stack"),
    "optimiser kernel": ("aten::_fused_adamw_",),
}


class TimedMatcher:
    """Wraps a loss's matcher so that the profile shows its calls as one region."""

    def __init__(self, matcher):
        self.matcher = matcher

    def __call__(self, *args, **kwargs):
        with torch.profiler.record_function("matching"):
            return self.matcher(*args, **kwargs)


def profile_step(model, optimizer, features, labels, steps: int = 3) -> dict[str, float]:
    """Milliseconds per step of each region and operator kind (self CPU time)."""
    model.criterion.matcher = TimedMatcher(model.criterion.matcher)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.profiler.record_function("forward"):
            loss = model(input_features=features, labels=labels).loss
        with torch.profiler.record_function("backward"):
            loss.backward()
        with torch.profiler.record_function("clipping and optimiser"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    model.criterion.matcher = model.criterion.matcher.matcher
    events = profiler.key_averages()
    regions = ("forward", "matching", "backward", "clipping and optimiser")
    result = {name: sum(e.cpu_time_total for e in events if e.key == name) / steps / 1000 for name in regions}
    total = sum(e.self_cpu_time_total for e in events) / steps / 1000
    kinds = {kind: sum(e.self_cpu_time_total for e in events if e.key in ops) / steps / 1000
             for kind, ops in OPERATOR_KINDS.items()}  # fmt: skip
    result.update({f"  {kind}": value for kind, value in kinds.items()})
    result["  the rest (other operators, Python)"] = total - sum(kinds.values())
    return result


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-compile", action="store_true", help="leave the compiled step out")
    parser.add_argument("--profile", action="store_true", help="print where the time of a step goes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    models = {}
    for name, feedback in (("with feedback", True), ("without feedback", False)):
        torch.manual_seed(0)
        config = SelfDetrConfig(encoder_feedback=feedback, decoder_feedback=feedback)
        model = SelfDetrForActionDetection(config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4, fused=True)
        models[name] = (model, optimizer)
    features, labels = make_batch(models["with feedback"][0].config, generator)
    if not args.no_compile:
        model = compile_for_training(copy.deepcopy(models["with feedback"][0]))
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4, fused=True)
        started = time.perf_counter()
        training_step(model, optimizer, features, labels)
        compile_seconds = time.perf_counter() - started
        models["compiled"] = (model, optimizer)
    inference_model = SelfDetrForActionDetection(SelfDetrConfig()).eval()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)

    with FlopCounterMode(display=False) as counter:
        training_step(*models["with feedback"], features, labels)
    step_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        training_step(*models["without feedback"], features, labels)
    step_flops_plain = counter.get_total_flops()

    def infer(maps: bool):
        with torch.no_grad():
            inference_model(input_features=features, output_attentions=maps)

    variants = {
        "matmul 2048^3 (yardstick)": lambda: a @ b,
        "train step, with feedback": lambda: training_step(*models["with feedback"], features, labels),
        "train step, without feedback": lambda: training_step(*models["without feedback"], features, labels),
        "train step, compiled": lambda: training_step(*models["compiled"], features, labels),
        "inference, with maps": lambda: infer(True),
        "inference, without maps": lambda: infer(False),
    }
    if args.no_compile:
        del variants["train step, compiled"]
    for function in variants.values():  # warm-up
        function()
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, function in variants.items():
            times[name].append(timed(function))
    median = {name: statistics.median(values) for name, values in times.items()}

    yardstick_rate = 2 * 2048**3 / median["matmul 2048^3 (yardstick)"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH} x {STEPS} x 2048, "
          f"median of {args.repeats}")  # fmt: skip
    for name, value in median.items():
        print(f"  {name:32s} {value * 1000:9.1f} ms")
    print(f"  yardstick rate                   {yardstick_rate / 1e9:9.1f} GFLOP/s")
    rate = step_flops / median["train step, with feedback"]
    rate_plain = step_flops_plain / median["train step, without feedback"]
    print(f"step FLOPs: {step_flops / 1e9:.2f} G with feedback, {step_flops_plain / 1e9:.2f} G without")
    print(f"train step rate / yardstick, with feedback:    {rate / yardstick_rate:.2f}  (target >= 0.60)")
    print(f"train step rate / yardstick, without feedback: {rate_plain / yardstick_rate:.2f}")
    overhead = median["train step, with feedback"] / median["train step, without feedback"] - 1
    print(f"self-feedback overhead on a step:              {overhead:+.1%}  (target <= +10%)")
    ratio = median["inference, without maps"] / median["inference, with maps"]
    print(f"inference time without maps / with maps:       {ratio:.2f}  (target <= 1.00)")
    if not args.no_compile:
        ratio = median["train step, compiled"] / median["train step, with feedback"]
        print(f"compiled step / eager step, with feedback:     {ratio:.2f}  (target <= 0.74; "
              f"first step {compile_seconds:.0f} s, compiling)")  # fmt: skip
    if args.profile:
        columns = {"eager": profile_step(*models["with feedback"], features, labels)}
        if not args.no_compile:
            columns["compiled"] = profile_step(*models["compiled"], features, labels)
        print(
            "where a step with feedback goes, ms per step (torch.profiler, 3 steps; regions include their operators):"
        )
        print(f"  {'':34s}" + "".join(f"{name:>10s}" for name in columns))
        for row in columns["eager"]:
            print(f"  {row:34s}" + "".join(f"{column[row]:10.1f}" for column in columns.values()))


if __name__ == "__main__":
    main()
