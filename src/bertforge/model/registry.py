"""The model families bertforge reads and trains, one record each (``ModelFamily``): the config class, how a preset
becomes a config, the model class of each head kind, the encoder a ``TaskModel`` reads features from, and what the
family can do. Callers look a family up by config.json's ``model_type`` (``get_family``) or by a config
(``family_of``) and ask it for parts by kind (``family.heads[task.head_kind]``) instead of comparing names, as
`transformers`' Auto tables map ``model_type`` to classes. A new family is one ``register`` call."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.config import PRESETS, BertConfig
from bertforge.errors import ConfigError
from bertforge.io.jsonl import read_json_object
from bertforge.model.task_model import (CHOICE, SEQUENCE, SPAN, TOKEN, bert_features, elmo_features,
                                        static_features)

# Head kinds: the model a task or an objective needs. The fine-tuning heads are SEQUENCE, TOKEN, CHOICE and SPAN
# (TaskModel implements each on any family's features); the bare encoder, and the pre-training models:
ENCODER = "encoder"
PRETRAINING = "pretraining"  # a masked LM with a sentence-pair head on the pooled first token (NSP, SOP)
MASKED_LM, CAUSAL_LM = "masked-lm", "causal-lm"
PERMUTATION_LM, BILM, REPLACED_TOKEN = "permutation-lm", "bilm", "replaced-token"

# Capabilities: what the commands that read a family's model directories need.
ENCODE, FILL_MASK, GENERATE = "encode", "fill-mask", "generate"
EXPORT, SERVE, ATTENTION = "export", "serve", "attention"


@dataclass(frozen=True)
class ModelFamily:
    """Everything the rest of bertforge needs to know about one family of models."""

    name: str  # config.json's model_type
    config_class: type  # ``from_dict(data, source)`` reads config.json's keys; ``validate()`` checks them
    preset: Callable[..., Any] | None = None  # (preset name, **overrides) -> a config; None: no presets
    heads: Mapping[str, type] = field(default_factory=dict)  # head kind -> model class (from_pretrained, ...)
    # (model directory, task settings, pretrained) -> the encoder a TaskModel reads per-token features from
    # (frozen, or under a BiLSTM); None: the family is fine-tuned through its heads only.
    features: Callable[..., Any] | None = None
    frozen: bool = False  # only ever used as frozen features under a BiLSTM task model (ELMo, static vectors)
    dropout_fields: tuple[str, ...] = ()  # the config fields a dropout override sets
    can: frozenset[str] = frozenset()  # capabilities (ENCODE, FILL_MASK, ...)
    positions: str | None = None  # the config field that bounds an input's length; None: no bound
    default_objective: str | None = None  # what `pretrain --arch NAME` trains; None: not pre-trained by bertforge
    pretrain_config: Mapping[str, Any] = field(default_factory=dict)  # config fields a pre-training run sets
    # Weights of the masked-LM model that no masked-LM loss reaches (name prefixes): frozen when it trains
    # without its sentence-pair head, since DDP needs every trained weight to get a gradient.
    masked_lm_unused: tuple[str, ...] = ()

    def read_config(self, data: dict[str, Any], source: str | os.PathLike):
        return self.config_class.from_dict(data, source)

    def max_positions(self, config) -> int | None:
        """The longest input the model takes (None: any length)."""
        return None if self.positions is None else getattr(config, self.positions)


FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    """Make ``family`` known by its name (registering a name again replaces the record)."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str, source: str | os.PathLike | None = None) -> ModelFamily:
    """The family whose model_type is ``name``; a ConfigError naming ``source`` (a config.json) and the known
    families otherwise."""
    if name not in FAMILIES:
        raise ConfigError(f"model_type {name!r} is not one bertforge reads", source=source,
                          hint=f"known model types: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of(config) -> ModelFamily:
    """The family whose config class ``config`` is."""
    for family in FAMILIES.values():
        if type(config) is family.config_class:
            return family
    raise ConfigError(f"{type(config).__name__} is the config of no registered model family",
                      hint=f"known model types: {', '.join(FAMILIES)}")


def read_config_file(path: str | os.PathLike) -> tuple[ModelFamily, Any]:
    """The family and config of a config.json (or of the model directory holding one), the file parsed once;
    ``model_type`` absent means BERT, as in Google's and old `transformers` configs."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path
    data = read_json_object(path)
    family = get_family(data.get("model_type", "bert"), path)
    return family, family.read_config(data, path)


def model_type(path: str | os.PathLike) -> str:
    """``model_type`` of a model directory's (or a config file's) config.json, checked to be a known one."""
    return read_config_file(path)[0].name


def read_config(path: str | os.PathLike):
    """The config in a config.json file (or a model directory), as its family's class."""
    return read_config_file(path)[1]


def preset_config(family: str, preset: str, **overrides: Any):
    """A preset of ``family`` (see each family's ``preset``)."""
    record = get_family(family)
    if record.preset is None:
        raise ConfigError(f"the {family} family has no presets")
    return record.preset(preset, **overrides)


# --- the families ------------------------------------------------------------------------------------------------

_CHAR_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]  # ELMo's, cut to size


def _xlnet_preset(preset: str, **overrides: Any):
    """Google's BERT size ``preset`` as XLNet: the same layers, width and heads."""
    from bertforge.model.xlnet import XLNetConfig

    layers, hidden, heads = PRESETS[preset]
    return XLNetConfig(**{**dict(d_model=hidden, n_layer=layers, n_head=heads, d_inner=4 * hidden, mem_len=None,
                                 bos_token_id=None, eos_token_id=None), **overrides})


def _electra_preset(preset: str, **overrides: Any):
    """Google's BERT size ``preset`` as ELECTRA: the embedding size is the width, so the encoder is BERT's."""
    from bertforge.model.electra import ElectraConfig

    layers, hidden, heads = PRESETS[preset]
    return ElectraConfig(**{**dict(embedding_size=hidden, hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, intermediate_size=4 * hidden), **overrides})


def _elmo_preset(preset: str, **overrides: Any):
    """Google's BERT size ``preset`` as ELMo: a 2-layer biLM whose projection is the width and whose cells are
    4x it, with ELMo's character filters up to 4x the width."""
    from bertforge.model.elmo import ElmoConfig

    hidden = PRESETS[preset][1]
    filters, total = [], 0
    for width, n in _CHAR_FILTERS:
        if total >= 4 * hidden:
            break
        filters.append([width, n])
        total += n
    return ElmoConfig(**{**dict(filters=filters, projection_dim=hidden, lstm_dim=4 * hidden, n_layers=2,
                                n_highway=2), **overrides})


def _register_builtins() -> None:
    from bertforge.model import (BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
                                 BertForSequenceClassification, BertForTokenClassification, BertLMHeadModel, BertModel)
    from bertforge.model import electra, modernbert, roformer, xlnet
    from bertforge.model.elmo import ElmoConfig
    from bertforge.model.elmo.pieces import ElmoPieceLM
    from bertforge.model.static import StaticConfig

    positions = "max_position_embeddings"
    register(ModelFamily(
        "bert", BertConfig, BertConfig.preset,
        heads={ENCODER: BertModel, PRETRAINING: BertForPreTraining, MASKED_LM: BertForPreTraining,
               CAUSAL_LM: BertLMHeadModel, SEQUENCE: BertForSequenceClassification, TOKEN: BertForTokenClassification,
               CHOICE: BertForMultipleChoice, SPAN: BertForQuestionAnswering},
        features=bert_features, dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"),
        can=frozenset({ENCODE, FILL_MASK, GENERATE, EXPORT, SERVE, ATTENTION}), positions=positions,
        default_objective="mlm+nsp", masked_lm_unused=("bert.pooler.", "cls.seq_relationship.")))
    register(ModelFamily(
        "xlnet", xlnet.XLNetConfig, _xlnet_preset,
        heads={ENCODER: xlnet.XLNetModel, PERMUTATION_LM: xlnet.XLNetLMHeadModel,
               SEQUENCE: xlnet.XLNetForSequenceClassification, TOKEN: xlnet.XLNetForTokenClassification,
               CHOICE: xlnet.XLNetForMultipleChoice, SPAN: xlnet.XLNetForQuestionAnsweringSimple},
        dropout_fields=("dropout",), default_objective="plm"))
    register(ModelFamily("elmo", ElmoConfig, _elmo_preset, heads={BILM: ElmoPieceLM}, features=elmo_features,
                         frozen=True, dropout_fields=("dropout",), default_objective="bilm"))
    register(ModelFamily("static", StaticConfig, features=static_features, frozen=True))
    register(ModelFamily(
        "electra", electra.ElectraConfig, _electra_preset,
        heads={ENCODER: electra.ElectraModel, REPLACED_TOKEN: electra.ElectraPair,
               SEQUENCE: electra.ElectraForSequenceClassification, TOKEN: electra.ElectraForTokenClassification,
               CHOICE: electra.ElectraForMultipleChoice, SPAN: electra.ElectraForQuestionAnswering},
        dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"), positions=positions,
        default_objective="electra"))
    register(ModelFamily(
        "modernbert", modernbert.ModernBertConfig, modernbert.ModernBertConfig.preset,
        heads={ENCODER: modernbert.ModernBertModel, MASKED_LM: modernbert.ModernBertForMaskedLM,
               SEQUENCE: modernbert.ModernBertForSequenceClassification,
               TOKEN: modernbert.ModernBertForTokenClassification, CHOICE: modernbert.ModernBertForMultipleChoice,
               SPAN: modernbert.ModernBertForQuestionAnswering},
        dropout_fields=("embedding_dropout", "attention_dropout", "mlp_dropout", "classifier_dropout"),
        can=frozenset({ENCODE, FILL_MASK, EXPORT, SERVE, ATTENTION}), positions=positions, default_objective="mlm",
        pretrain_config={"sparse_prediction": True}))  # the masked LM decodes the labelled positions alone
    register(ModelFamily(  # BERT with rotary positions: mlm+nsp and mlm+sop train the pre-training model, mlm the MLM,
        # electra the discriminator and its generator
        "roformer", roformer.RoFormerConfig, roformer.RoFormerConfig.preset,
        heads={ENCODER: roformer.RoFormerModel, PRETRAINING: roformer.RoFormerForPreTraining,
               MASKED_LM: roformer.RoFormerForMaskedLM, CAUSAL_LM: roformer.RoFormerForCausalLM,
               SEQUENCE: roformer.RoFormerForSequenceClassification, TOKEN: roformer.RoFormerForTokenClassification,
               CHOICE: roformer.RoFormerForMultipleChoice, SPAN: roformer.RoFormerForQuestionAnswering,
               REPLACED_TOKEN: roformer.RoFormerElectraPair},
        features=bert_features, dropout_fields=("hidden_dropout_prob", "attention_probs_dropout_prob"),
        can=frozenset({ENCODE, FILL_MASK, GENERATE, EXPORT, SERVE, ATTENTION}), positions=positions,
        default_objective="mlm+nsp"))


_register_builtins()
