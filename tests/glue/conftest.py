"""Fixtures of the GLUE tests: a GLUE folder in the official layout (``files.build_glue``) and a tiny random BERT."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.glue.files import VOCAB, build_glue


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    return build_glue(tmp_path / "glue")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT (H=128) with masked-LM/NSP heads and a vocabulary of the GLUE rows' words."""
    import torch

    from bertforge.config import BertConfig
    from bertforge.model import BertForPreTraining
    from bertforge.tokenization import BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert") / "model"
    tokenizer = BertTokenizer({token: i for i, token in enumerate(VOCAB)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        BertForPreTraining(BertConfig.preset("tiny", vocab_size=len(VOCAB))).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
