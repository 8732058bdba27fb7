"""The rule for a missing optional package (tests/unavailable.py): a skip on a developer's machine, a failure
under CI=true, so the serve and ONNX suites cannot vanish from CI unnoticed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = '''
from unavailable import require

require("{name}")


def test_something():
    pass
'''


@pytest.mark.parametrize("ci, name, outcome", [
    (None, "no_such_package_of_bertforge", "1 skipped"),
    ("true", "no_such_package_of_bertforge", "1 error"),
    ("true", "json", "1 passed"),
])
def test_require_skips_or_fails_the_module(tmp_path, ci, name, outcome):
    (tmp_path / "test_needs_it.py").write_text(MODULE.format(name=name))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = ci
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "test_needs_it.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert outcome in run.stdout.splitlines()[-1], run.stdout[-2000:]
    if outcome == "1 error":
        assert f"{name} is not installed" in run.stdout
