"""``bertforge ARGS...`` run in the test's own process (imported as ``in_process``: pytest puts ``tests/`` on
``sys.path``), for tests that read what a command prints and its exit code."""

from __future__ import annotations

import pytest

from bertforge.cli import main


def cli(capsys: pytest.CaptureFixture, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the command ``argv``; what was printed before it is dropped."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
