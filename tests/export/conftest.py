"""Fixtures of the export tests: small random models saved as model directories (see models.py)."""

from __future__ import annotations

import warnings

import pytest
import torch

from bertforge.model import BertModel
from bertforge.model.task_model import BertFeatures, TaskModel
from bertforge.tasks import get_task
from tests.export.models import BertConfig, save


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``make(name, cls, config) -> Path``: a random model saved once per name with the tiny tokenizer."""
    root = tmp_path_factory.mktemp("tiny-models")
    made = {}

    def make(name: str, cls, config: BertConfig, settings: dict | None = None):
        if name not in made:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if cls is TaskModel:  # settings: its task.json
                    encoder = BertFeatures(BertModel(config), settings.get("features", "last"),
                                           settings.get("frozen", False))
                    model = TaskModel(encoder, dict(settings), get_task(settings["bertforge_task"]).head_kind)
                else:
                    model = cls(config)
                with torch.no_grad():  # outputs of order 1, not 0.02: differences from the graph show
                    for p in (model.classifier if hasattr(model, "classifier") else model.qa_outputs
                              if hasattr(model, "qa_outputs") else torch.nn.Module()).parameters():
                        p.normal_(0.0, 1.0)
                made[name] = save(model, root / name)
        return made[name]

    return make
