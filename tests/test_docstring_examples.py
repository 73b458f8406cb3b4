"""The examples in the package's docstrings run as doctests, read by transformers' doctest
parser (```python fences closed right after the last output line), and every module imports
whichever optional extras are installed."""

import ast
import doctest
import importlib
import importlib.util
from pathlib import Path

import pytest
from transformers.testing_utils import HfDocTestParser

import selfdetr_hf

PACKAGE_DIR = Path(selfdetr_hf.__file__).parent
OPTIONAL_MODULES = {  # module: (what it imports, extra)
    "selfdetr_hf.evaluation.plots": ("matplotlib", "plot"),
    "selfdetr_hf.app.attention": ("matplotlib", "app"),
    "selfdetr_hf.app.views": ("matplotlib", "app"),
    "selfdetr_hf.app.demo": ("gradio", "app"),
}
OPTIONAL_PACKAGES = ("matplotlib", "av", "tensorboard", "gradio")  # the plot, video, tensorboard and app extras


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
        "selfdetr_hf.modeling_self_detr.SelfDetrModel.forward",
        "selfdetr_hf.modeling_self_detr.SelfDetrForActionDetection.forward",
    } <= names


@pytest.mark.parametrize("module", package_modules())
def test_module_imports(module):
    if reason := missing_extra(module):
        pytest.skip(reason)
    importlib.import_module(module)


def imports_at_load(module: str) -> set[str]:
    """Absolute names of what ``module`` imports when it is loaded (not in functions or `if TYPE_CHECKING:`)."""
    path = PACKAGE_DIR.parent.joinpath(*module.split("."))
    is_package = path.is_dir()
    tree = ast.parse((path / "__init__.py" if is_package else path.with_suffix(".py")).read_text())
    package = module if is_package else module.rpartition(".")[0]
    names, pending = set(), list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return names


def test_modules_outside_the_extras_do_not_need_them_to_load():
    needing = {
        module: sorted(name for name in imports_at_load(module)
                       if name.split(".")[0] in OPTIONAL_PACKAGES or name in OPTIONAL_MODULES)
        for module in package_modules()
        if module not in OPTIONAL_MODULES
    }  # fmt: skip
    assert {module: names for module, names in needing.items() if names} == {}
    assert imports_at_load("selfdetr_hf.evaluation.plots") >= {"matplotlib.colors"}  # the check sees imports
