"""An output folder belongs to one training run.

What a run writes in its ``output_dir``:

- ``run.json``: the run's identity: a run id, the library version, the command line, every
  argument, and the settings that fix its trajectory (recipe, batch split, precision,
  model config, training windows), plus one entry per resume;
- ``train_log.jsonl``: one record per optimiser step (``train_log.before_resume_N.jsonl``:
  the full log as it was before a resume dropped the steps it redoes);
- ``checkpoints/step_N/``: the whole training state after optimiser step N, with
  ``checkpoint.json`` naming the run and the step;
- ``logs/``: TensorBoard events;
- the final model: ``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
  their code (`SAVED_CODE_FILES`), ``README.md`` (the model card) and ``metrics.json``.

A new run refuses a folder that holds any of these unless it is asked to overwrite it; then
exactly these are deleted (other files in the folder are left alone). A resumed run loads
only its own checkpoints, and refuses settings that would change its trajectory.
Checkpoints and the final model are written to a temporary folder first, so a crash
mid-save leaves nothing that a resume or ``from_pretrained`` would load.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from ..hub import SAVED_CODE_FILES

RUN_FILE = "run.json"
LOG_FILE = "train_log.jsonl"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_FILE = "checkpoint.json"
_FINAL_STAGING = ".final_model.partial"
RUN_ARTEFACTS = (
    RUN_FILE, LOG_FILE, "train_log.before_resume_*.jsonl", CHECKPOINTS_DIR, "logs", "config.json",
    "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
    "README.md", "metrics.json", _FINAL_STAGING, *SAVED_CODE_FILES,
)  # fmt: skip


class RunFolderError(ValueError):
    """An output folder that cannot be used as asked (in use, another run, other settings)."""


def run_artefacts(output_dir: Path, artefacts: tuple[str, ...] = RUN_ARTEFACTS) -> list[Path]:
    """The files and folders of a training run found in ``output_dir`` (glob patterns
    ``artefacts``, by default those of this library's runs), sorted."""
    if not output_dir.is_dir():
        return []
    return sorted({path for pattern in artefacts for path in output_dir.glob(pattern)})


def check_output_dir(
    output_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    artefacts: tuple[str, ...] = RUN_ARTEFACTS,
    resume_from: str = RUN_FILE,
) -> None:
    """Refuse, before anything is written, a folder that a run may not use as asked.

    ``artefacts`` are the run's files (glob patterns); ``resume_from`` is the pattern a run
    to resume must have (``run.json`` of this library's runs; ``checkpoint-*`` of Trainer's).

    Raises:
        RunFolderError: ``resume`` and ``overwrite`` together; ``output_dir`` is a file;
            ``resume`` without a run in the folder; a new run into a folder holding a run
            (without ``overwrite``), naming what is there and the two ways on.
    """
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in the output folder, --overwrite deletes it: give one")
    if output_dir.exists() and not output_dir.is_dir():
        raise RunFolderError(f"output folder {output_dir} is a file")
    if resume:
        if not any(output_dir.glob(resume_from)):
            raise RunFolderError(f"--resume: {output_dir} holds no run to continue (no {resume_from})")
        return
    found = run_artefacts(output_dir, artefacts)
    if found and not overwrite:
        names = ", ".join(path.name + "/" * path.is_dir() for path in found)
        raise RunFolderError(
            f"{output_dir} already holds a training run ({names}): continue it with --resume, "
            "or delete it and start afresh with --overwrite"
        )


def clear_run(output_dir: Path, artefacts: tuple[str, ...] = RUN_ARTEFACTS) -> None:
    """Delete every run artefact of ``output_dir`` (checkpoints included), nothing else."""
    for path in run_artefacts(output_dir, artefacts):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@dataclass
class RunIdentity:
    """What ``run.json`` records about a run.

    Args:
        run_id: random hex id; checkpoints carry it.
        library_version: ``selfdetr_hf.__version__`` at the start.
        command: ``sys.argv`` of the process that started the run.
        arguments: every training argument.
        trajectory: the settings a resume must not change (JSON values).
        started: UTC time of the start (ISO 8601).
        resumed: one ``{"step", "command", "library_version", "time"}`` per resume.
    """

    run_id: str
    library_version: str
    command: list[str]
    arguments: dict[str, Any]
    trajectory: dict[str, Any]
    started: str
    resumed: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def new(cls, arguments: Mapping[str, Any], trajectory: Mapping[str, Any]) -> RunIdentity:
        from .. import __version__

        return cls(uuid.uuid4().hex, __version__, list(sys.argv), _as_json(arguments), _as_json(trajectory), _now())

    @classmethod
    def read(cls, output_dir: Path) -> RunIdentity:
        path = output_dir / RUN_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise RunFolderError(f"{path} is not a run record of this library: {error}") from None

    def record_resume(self, step: int) -> None:
        from .. import __version__

        self.resumed.append({"step": step, "command": list(sys.argv), "library_version": __version__, "time": _now()})

    def write(self, output_dir: Path) -> None:
        write_atomically(output_dir / RUN_FILE, json.dumps(asdict(self), indent=2))


def trajectory_changes(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ, as ``name (recorded -> current)`` with dotted names."""
    current = _as_json(current)
    changes = []
    for name in sorted(set(recorded) | set(current)):
        old, new = recorded.get(name), current.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += trajectory_changes(old, new, f"{prefix}{name}.")
        elif old != new:
            changes.append(f"{prefix}{name} ({old!r} -> {new!r})")
    return changes


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint of a run: its folder and the optimiser step it was saved after."""

    path: Path
    step: int


def run_checkpoints(output_dir: Path, run_id: str) -> list[Checkpoint]:
    """The complete checkpoints of run ``run_id`` in ``output_dir/checkpoints``, by step."""
    found = []
    for marker in (output_dir / CHECKPOINTS_DIR).glob(f"*/{CHECKPOINT_FILE}"):
        if marker.parent.name.startswith("."):
            continue
        try:
            content = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and content.get("run_id") == run_id and isinstance(content.get("step"), int):
            found.append(Checkpoint(marker.parent, content["step"]))
    return sorted(found, key=lambda checkpoint: checkpoint.step)


def resume_point(output_dir: Path, trajectory: Mapping[str, Any]) -> tuple[RunIdentity, Checkpoint]:
    """The run recorded in ``output_dir`` and its newest checkpoint (by step).

    Raises:
        RunFolderError: the trajectory settings differ from the recorded ones (each change
            named), or the run has no complete checkpoint.
    """
    identity = RunIdentity.read(output_dir)
    changes = trajectory_changes(identity.trajectory, trajectory)
    if changes:
        raise RunFolderError(
            f"--resume: the run in {output_dir} was started with other settings: {'; '.join(changes)} "
            "(resume with the run's settings, or start a new run in another folder)"
        )
    checkpoints = run_checkpoints(output_dir, identity.run_id)
    if not checkpoints:
        raise RunFolderError(
            f"--resume: no checkpoint of the run in {output_dir} (nothing in {output_dir / CHECKPOINTS_DIR}); "
            "start afresh with --overwrite"
        )
    return identity, checkpoints[-1]


def save_checkpoint(accelerator: Accelerator, output_dir: Path, run_id: str, step: int, keep: int) -> Path:
    """Save the training state after ``step`` as ``checkpoints/step_<step>``, then delete
    the run's oldest checkpoints beyond ``keep``. Every process calls it.

    The state is written to a temporary folder, marked with ``checkpoint.json`` once
    complete, and renamed: an interrupted save leaves no checkpoint a resume would load.
    """
    folder = output_dir / CHECKPOINTS_DIR
    staging, final = folder / f".step_{step}.partial", folder / f"step_{step}"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_atomically(staging / CHECKPOINT_FILE, json.dumps({"run_id": run_id, "step": step}))
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        for old in run_checkpoints(output_dir, run_id)[:-keep]:
            shutil.rmtree(old.path)
    accelerator.wait_for_everyone()
    return final


def how_to_continue(output_dir: Path) -> str:
    """What a user does next with a run stopped in ``output_dir``: resume it when it has a
    checkpoint, otherwise start it again (with ``--overwrite`` once the folder holds a run)."""
    try:
        resumable = bool(run_checkpoints(output_dir, RunIdentity.read(output_dir).run_id))
    except (OSError, RunFolderError):
        resumable = False
    if resumable:
        return "continue with the same command and --resume"
    if run_artefacts(output_dir):
        return "no checkpoint to resume from: start again with --overwrite"
    return "start again with the same command"


def truncate_log(output_dir: Path, step: int) -> Path | None:
    """Drop the records of ``train_log.jsonl`` after ``step`` (a resumed run redoes those
    steps), keeping the full log as ``train_log.before_resume_<n>.jsonl``.

    Returns:
        The copy, or None when nothing was dropped (no copy is made then).
    """
    log = output_dir / LOG_FILE
    if not log.is_file():
        return None
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) == len(lines):
        return None
    number = 1
    while (copy := output_dir / f"train_log.before_resume_{number}.jsonl").exists():
        number += 1
    shutil.copy2(log, copy)
    write_atomically(log, "".join(kept))
    return copy


@contextmanager
def final_model_folder(output_dir: Path) -> Iterator[Path]:
    """A temporary folder for the final model's files, moved into ``output_dir`` when the
    block ends without error (deleted otherwise).

    ``config.json`` is removed first and moved in last, so ``from_pretrained`` never loads
    a mix of an earlier save and this one, nor a half-written model.
    """
    staging = output_dir / _FINAL_STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (output_dir / "config.json").unlink(missing_ok=True)
    for path in sorted(staging.iterdir(), key=lambda path: path.name == "config.json"):
        os.replace(path, output_dir / path.name)
    staging.rmdir()


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _logged_step(line: str) -> float:
    """The step of a log record; infinity for a line that is not one (a record cut short)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, TypeError, KeyError):
        return float("inf")


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
