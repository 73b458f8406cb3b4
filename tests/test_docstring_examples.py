"""The examples in the package's docstrings run as doctests, read by transformers' doctest
parser (```python fences closed right after the last output line), and every module imports
whichever optional extras are installed."""

import doctest
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from transformers.testing_utils import HfDocTestParser

import selfdetr_hf

PACKAGE_DIR = Path(selfdetr_hf.__file__).parent
OPTIONAL_MODULES = {"selfdetr_hf.evaluation.plots": ("matplotlib", "plot")}  # module: (what it imports, extra)
OPTIONAL_PACKAGES = ("matplotlib", "av", "tensorboard")  # the plot, video and tensorboard extras


def package_modules() -> list[str]:
    """Dotted names of every module of the package (the `evaluate` metric script included)."""
    names = (".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts) for path in PACKAGE_DIR.rglob("*.py"))
    return sorted(name.removesuffix(".__init__") for name in names)


def missing_extra(module: str) -> str | None:
    """Why ``module`` cannot be imported here (its optional extra is not installed), else None."""
    if module in OPTIONAL_MODULES:
        package, extra = OPTIONAL_MODULES[module]
        if importlib.util.find_spec(package) is None:
            return f"{module} needs {package} (the {extra} extra), not installed"
    return None


def docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(parser=HfDocTestParser())
    examples = []
    for module in package_modules():
        if missing_extra(module) is None:
            examples.extend(test for test in finder.find(importlib.import_module(module)) if test.examples)
    return examples


EXAMPLES = docstring_examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_docstring_example_runs(example):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    result = runner.run(example, out=report.append)
    assert result.failed == 0, "".join(report)


def test_the_public_classes_have_examples():
    names = {example.name for example in EXAMPLES}
    assert {
        "selfdetr_hf.configuration_self_detr.SelfDetrConfig",
        "selfdetr_hf.processing_self_detr.SelfDetrProcessor",
        "selfdetr_hf.processing_self_detr.SelfDetrProcessor.post_process_action_detection",
        "selfdetr_hf.data.collator.SelfDetrDataCollator",
    } <= names


@pytest.mark.parametrize("module", package_modules())
def test_module_imports(module):
    if reason := missing_extra(module):
        pytest.skip(reason)
    importlib.import_module(module)


def test_modules_outside_the_extras_import_without_them():
    blocked = ", ".join(f"{package!r}: None" for package in OPTIONAL_PACKAGES)
    modules = [module for module in package_modules() if module not in OPTIONAL_MODULES]
    script = (
        f"import importlib, sys; sys.modules.update({{{blocked}}}); [importlib.import_module(m) for m in sys.argv[1:]]"
    )
    result = subprocess.run([sys.executable, "-c", script, *modules], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
