"""Feature-based use of BERT (as ELMo): a frozen encoder whose layer outputs feed a small task layer.

``features``: ``last`` (the final layer), ``concat-last-4`` (the last four layers side by side, the
BERT paper's best feature-based NER), or ``scalar-mix`` (ELMo's learned softmax-weighted sum of all
layers, embeddings included, times a scale gamma). The encoder runs without gradients and without
dropout; only the mix and the classifier learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.bert import BertModel
from bertforge.model.heads import (IGNORE_INDEX, LabelledModel, check_class_ids, classifier_dropout,
                                   resolve_labels)
from bertforge.model.outputs import SequenceClassifierOutput, TokenClassifierOutput

FEATURES = ("last", "concat-last-4", "scalar-mix")


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j * h_j over the encoder's L + 1 hidden states."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
        w = self.weights.softmax(0)
        return self.gamma * sum(w[j] * h for j, h in enumerate(layers))


class _FeatureBased(LabelledModel):
    """Shared body: frozen BertModel -> combined layer features -> dropout -> linear classifier."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.features = config.extra.setdefault("bertforge_features", "concat-last-4")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.features == "concat-last-4" and config.num_hidden_layers < 4:
            raise ValueError(f"concat-last-4 needs 4 layers, the model has {config.num_hidden_layers}")
        self.bert = BertModel(config, add_pooling_layer=False)
        self.mix = ScalarMix(config.num_hidden_layers + 1) if self.features == "scalar-mix" else None
        width = config.hidden_size * (4 if self.features == "concat-last-4" else 1)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(width, self.num_labels)
        self.init_weights()
        self.bert.requires_grad_(False)

    def train(self, mode: bool = True) -> "_FeatureBased":
        super().train(mode)
        self.bert.eval()  # features are computed without dropout, as ELMo's are
        return self

    def layer_features(self, input_ids, token_type_ids, attention_mask) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states=True).hidden_states
        if self.features == "last":
            return hidden[-1]
        if self.features == "concat-last-4":
            return torch.cat(hidden[-4:], dim=-1)  # (B, T, 4H)
        return self.mix(hidden)


class BertFeatureBasedTokenClassification(_FeatureBased):
    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **_) -> TokenClassifierOutput:
        logits = self.classifier(self.dropout(self.layer_features(input_ids, token_type_ids, attention_mask)))
        loss = None
        if labels is not None:
            check_class_ids("labels", labels, self.num_labels)
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=IGNORE_INDEX)
        return TokenClassifierOutput(loss, logits)


class BertFeatureBasedSequenceClassification(_FeatureBased):
    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **_
                ) -> SequenceClassifierOutput:
        cls = self.layer_features(input_ids, token_type_ids, attention_mask)[:, 0]  # the [CLS] features
        logits = self.classifier(self.dropout(cls))
        loss = None
        if labels is not None:
            check_class_ids("labels", labels, self.num_labels)
            loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss, logits)
