"""What a test does when something it needs from outside is missing (real data, a reference library, an
optional package): under CI=true it fails, so a suite cannot shrink silently there; elsewhere it skips.

Imported as ``unavailable`` (pytest puts ``tests/`` on ``sys.path`` for its root conftest), so conftests
and test modules at any depth share the one rule.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def unavailable(what: str, error: BaseException) -> None:
    """Real data or a reference library is missing: a failure in CI (CI=true), a skip elsewhere."""
    message = f"{what}: {type(error).__name__}: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(name: str) -> ModuleType:
    """``pytest.importorskip(name)``, except that under CI=true a missing package fails the module."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        unavailable(f"{name} is not installed (an optional dependency these tests need)", e)
