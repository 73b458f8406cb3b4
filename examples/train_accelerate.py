"""Train Self-DETR with Accelerate: the paper's recipes, mixed precision, gradient
accumulation, checkpoints with exact resume, DDP, mAP evaluation, final save and push.

This is `selfdetr train`; every option is listed by `--help`. Examples:

    # the paper's THUMOS14 recipe on I3D features (train on Validation, test on Test)
    python examples/train_accelerate.py --preset thumos14 \\
        --annotations thumos14.json --features i3d_features/ --feature-stride 4 --clip-frames 16 \\
        --output-dir runs/thumos14 --checkpoint-every 500

    # two CPU processes (gloo) or several GPUs
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \\
        examples/train_accelerate.py --synthetic --output-dir runs/ddp
    accelerate launch --multi_gpu --num_processes 4 examples/train_accelerate.py ... --mixed-precision bf16

    # continue an interrupted run (Ctrl-C saves a checkpoint) from its newest checkpoint, mid-epoch
    python examples/train_accelerate.py ... --output-dir runs/thumos14 --resume

    # an output folder belongs to one run: start afresh there only by asking
    python examples/train_accelerate.py ... --output-dir runs/thumos14 --overwrite

The loop itself is `selfdetr_hf.training.accelerate_loop.train`; copy it from there to
change what a step does.
"""

import argparse
import sys

from selfdetr_hf.cli import run_command
from selfdetr_hf.command_options import add_threads_argument
from selfdetr_hf.training.commands import add_train_arguments

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    add_threads_argument(parser)
    sys.exit(run_command("train", parser.parse_args()))
