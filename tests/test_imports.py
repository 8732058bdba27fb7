"""The package's import surface: the lazy top-level names, a command line that starts without torch, and
imports that run one way (models <- tasks <- inference <- train), checked on every import statement of
the source, module-level or inside a function."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import bertforge

PACKAGE = Path(bertforge.__file__).parent


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("name", [n for n in bertforge.__all__ if n != "__version__"])
def test_lazy_top_level_exports(name):
    value = getattr(bertforge, name)
    module = bertforge._EXPORTS[name]
    assert value is getattr(importlib.import_module(module), name)
    assert name in dir(bertforge)


def test_top_level_basics():
    assert bertforge.__version__ == "0.2.0"
    assert bertforge.BertModel.__name__ == "BertModel" and callable(bertforge.encode)
    assert bertforge.BertConfig.preset("tiny").num_hidden_layers == 2
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        bertforge.NoSuchThing  # noqa: B018


def test_import_bertforge_and_the_command_line_do_not_import_torch():
    code = ("import sys, bertforge, bertforge.cli; parser = bertforge.cli.build_parser(); "
            "parser.parse_args(['finetune', '--task', 'tag', '--model', 'm', '--train', 't', '--dev', 'd', "
            "'--out', 'o']); print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    assert run_python(code) == "[]"
    # and the lazy names do import it, on first use
    assert run_python("import sys, bertforge; bertforge.BertModel; print('torch' in sys.modules)") == "True"


# --------------------------------------------------------------------------------------------
# Import direction


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a source file, at any depth: ``import a.b``,
    ``from a import b`` (both ``a`` and ``a.b``, which may be a submodule), relative imports resolved,
    and ``importlib.import_module("...")`` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(under: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((PACKAGE / under.replace(".", "/")).rglob("*.py"))
    assert files, under
    bad = []
    for path in files:
        for line, module in imported_modules(path):
            if any(module == f"bertforge.{f}" or module.startswith(f"bertforge.{f}.") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return bad


def test_the_checker_sees_every_kind_of_import(tmp_path):
    sample = tmp_path / "bertforge" / "model" / "probe.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("import os\nfrom bertforge.data import readers\nfrom ..train.optim import Lamb\n"
                      "from .. import tasks\ndef f():\n    import bertforge.inference.encode\n"
                      "    return importlib.import_module('bertforge.train')\n")
    found = [m for _, m in imported_modules(sample, root=tmp_path)]
    assert {"bertforge.data.readers", "bertforge.train.optim", "bertforge.tasks", "bertforge.inference.encode",
            "bertforge.train"} <= set(found)


def test_models_import_no_data_training_tasks_or_inference():
    assert violations("model", ("data", "train", "tasks", "inference")) == []


def test_inference_never_imports_training():
    assert violations("inference", ("train",)) == []


def test_tasks_never_import_training():
    assert violations("tasks", ("train",)) == []
