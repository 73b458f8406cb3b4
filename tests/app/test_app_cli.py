"""``selfdetr app`` as a user meets it before any page is served: the missing extra and a
bad model are one line each, exit status 2; the package works without Gradio."""

import os
import subprocess
import sys

import pytest

# Runs the command with Gradio made unimportable, as on a machine without the app extra.
WITHOUT_GRADIO = "import sys; sys.modules['gradio'] = None; from selfdetr_hf.cli import main; sys.exit(main())"


def _run(code: str, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *arguments], check=False, capture_output=True, text=True, env=environment
    )


def test_without_the_app_extra_the_command_names_the_install(tmp_path):
    finished = _run(WITHOUT_GRADIO, "app", "--model", str(tmp_path))
    assert finished.returncode == 2
    assert finished.stderr == 'selfdetr app: error: selfdetr app needs the app extra: pip install "selfdetr-hf[app]"\n'


def test_without_the_app_extra_the_demo_says_what_to_install():
    code = "import sys; sys.modules['gradio'] = None; import selfdetr_hf.app; selfdetr_hf.app.build_demo"
    finished = _run(code)
    assert finished.returncode == 1 and finished.stderr.strip().endswith(
        'ImportError: the web demo needs Gradio: pip install "selfdetr-hf[app]"'
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("missing-folder/", "missing-folder/: no such model folder"),
        ("{tmp}", "{tmp}: no config.json; not a model folder written by save_pretrained"),
    ],
)
def test_a_bad_model_is_one_line_before_anything_is_served(model, message, run_selfdetr, tmp_path):
    finished = run_selfdetr("app", "--model", model.format(tmp=tmp_path), "--port", "1")
    assert finished.returncode == 2
    assert finished.stderr == f"selfdetr app: error: {message.format(tmp=tmp_path)}\n"
    assert finished.stdout == ""
