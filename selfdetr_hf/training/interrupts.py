"""Stopping a training run cleanly: the first SIGINT (Ctrl-C) or SIGTERM asks the loop to
stop after the current optimiser step with a checkpoint; a second one stops at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after saving its training state in ``checkpoint``."""

    def __init__(self, signal_number: int, step: int, total_steps: int, checkpoint: Path):
        self.signal_number = signal_number
        self.step = step
        self.checkpoint = checkpoint
        name = signal.Signals(signal_number).name
        super().__init__(f"{name}: stopped after step {step} of {total_steps}, training state saved in {checkpoint}")


class StoppedAtOnce(KeyboardInterrupt):
    """A run stopped by a second signal, without saving anything."""

    def __init__(self, signal_number: int):
        self.signal_number = signal_number
        super().__init__(f"{signal.Signals(signal_number).name} again: stopped at once")


class StopRequest:
    """Records the first stop signal (``signal_number``), announcing it on stderr when
    ``announce``; the second raises `StoppedAtOnce` wherever the program is."""

    def __init__(self, announce: bool = True):
        self.announce = announce
        self.signal_number: int | None = None

    def handle(self, signal_number: int, frame) -> None:
        if self.signal_number is not None:
            raise StoppedAtOnce(signal_number)
        self.signal_number = signal_number
        if self.announce:
            print(
                f"{signal.Signals(signal_number).name}: stopping after this step with a checkpoint "
                "(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def requested(self, accelerator: Accelerator) -> int | None:
        """The signal that asked to stop, agreed by every process (all processes call this
        at the same points); None when none did."""
        number = self.signal_number
        if accelerator.num_processes > 1:
            asked = torch.tensor(int(number is not None), device=accelerator.device)
            if accelerator.reduce(asked, reduction="sum").item() and number is None:
                number = int(signal.SIGINT)  # another process was signalled
        return number


@contextmanager
def stop_requests(announce: bool = True) -> Iterator[StopRequest]:
    """A `StopRequest` handling SIGINT and SIGTERM for the duration of the block (in the
    main thread; elsewhere signals keep their handlers), the previous handlers restored after."""
    request = StopRequest(announce)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {number: signal.signal(number, request.handle) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
