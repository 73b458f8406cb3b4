"""README.md's code runs as written: every Python and shell block says whether it runs here
(a ``<!-- runnable -->`` or ``<!-- not runnable...: reason -->`` line above it), and the
runnable ones run in order, in one empty folder, as a user would paste them: Python in this
process, shell commands in a shell. Only the custom-dataset model is made tiny (`TINY`),
so that its training takes seconds.
"""

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {
    "SelfDetrConfig(feature_dim=2048, ": "SelfDetrConfig(feature_dim=2048, d_model=32, num_attention_heads=4, ffn_dim=64, "
    "encoder_layers=1, decoder_layers=1, num_queries=8, input_norm_groups=8, ",
    'TrainingArguments("my-self-detr", ': 'TrainingArguments("my-self-detr", max_steps=2, ',
}
FENCE = re.compile(
    r"^(?:<!-- (?P<marker>.*?) -->\n)?```(?P<language>\w*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    marker: str | None
    code: str

    @property
    def runnable(self) -> bool:
        return self.marker is not None and self.marker.split(":")[0] == "runnable"

    @property
    def file_name(self) -> str | None:
        """For a runnable data block: the file it is saved as (``<!-- runnable: NAME -->``)."""
        return self.marker.split(":", 1)[1].strip() if self.runnable and ":" in self.marker else None


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [
        Block(text.count("\n", 0, match.start("code")) + 1, match["language"], match["marker"], match["code"])
        for match in FENCE.finditer(text)
    ]


def test_every_python_and_shell_block_says_whether_it_runs():
    for block in readme_blocks():
        if block.language in ("python", "bash"):
            reason = (block.marker or "").partition(": ")[2] if not block.runnable else "runs"
            assert reason, f"README.md line {block.line}: mark the block runnable or say why it is not"


def test_the_runnable_blocks_cover_the_model_and_the_custom_dataset_end_to_end():
    runnable = [block for block in readme_blocks() if block.runnable]
    assert [block.language for block in runnable] == ["python", "python", "json", "python", "bash"]
    assert 'pipeline("temporal-action-detection"' in runnable[1].code
    assert runnable[2].file_name == "my_annotations.json"
    assert "selfdetr detect --model my-self-detr" in runnable[4].code


def write_feature_files(annotations: dict, folder: Path) -> None:
    """One ``(T, 2048)`` file per annotated video, I3D timing: a step every 4 frames, 16-frame clips."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for video, record in annotations["database"].items():
        steps = int((record["duration"] * record["fps"] - 16) // 4 + 1)
        np.save(folder / f"{video}.npy", rng.normal(size=(steps, 2048)).astype(np.float32))


def printed_average_maps(output: str) -> list[str]:
    return [line.split()[-1] for line in output.splitlines() if line.startswith("mAP (%)")]


def tiny(code: str) -> str:
    for text, replacement in TINY.items():
        code = code.replace(text, replacement)
    return code


def test_the_runnable_blocks_run_in_order_in_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    outputs, runnable = [], [block for block in readme_blocks() if block.runnable]
    for text in TINY:
        assert sum(block.code.count(text) for block in runnable) == 1, f"README.md no longer holds {text!r}"
    for block in runnable:
        if block.file_name:
            (tmp_path / block.file_name).write_text(block.code, encoding="utf-8")
            if block.file_name == "my_annotations.json":
                write_feature_files(json.loads(block.code), tmp_path / "features")
        elif block.language == "python":
            exec(compile(tiny(block.code), f"README.md line {block.line}", "exec"), {})  # noqa: S102 (the README's own code)
            outputs.append(capsys.readouterr().out)
        else:
            result = subprocess.run(["bash", "-e", "-c", block.code], capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"README.md line {block.line} failed:\n{result.stderr[-3000:]}"
            assert "Traceback" not in result.stderr
            outputs.append(result.stdout)

    assert (tmp_path / "tiny-detector-pipeline" / "pipeline_temporal_action_detection.py").is_file()
    model = tmp_path / "my-self-detr"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (model / name).is_file(), name
    detections = json.loads((tmp_path / "detections.json").read_text())["results"]
    assert list(detections) == ["kitchen_0002"] and detections["kitchen_0002"]
    assert all(entry["segment"][1] <= 96.0 + 1e-6 for entry in detections["kitchen_0002"])
    # The Python block and evaluate each print an mAP table.
    assert len(printed_average_maps(outputs[-2])) == 1 and len(printed_average_maps(outputs[-1])) == 1
