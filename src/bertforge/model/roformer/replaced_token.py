"""ELECTRA's objective on RoFormer (`pretrain --objective electra --arch roformer`): the replaced-token-detection
discriminator and the small masked-LM generator with rotary positions. At a small budget ELECTRA's own model,
with a learned position table, stays on the unigram plateau as BERT's does, and its discriminator never leaves
the base rate; with rotary positions both learn (docs/recipes.md). This is how the ablation study trains ELECTRA's
row on the architecture of its other rows.

transformers has no RoFormer discriminator, so the discriminator is bertforge's own, as RoFormerForPreTraining is:
RoFormerModel with ELECTRA's ``discriminator_predictions`` head. transformers' RoFormerModel (and its fine-tuning
heads) load it, with that head reported unused; the generator, in ``generator/``, is transformers'
RoFormerForMaskedLM at ``generator_size`` of the width, sharing the word and segment embeddings and their
LayerNorm (there is no position table to share).
"""

from __future__ import annotations

from bertforge.model.electra.pair import ElectraPair
from bertforge.model.electra.pretraining import ElectraDiscriminatorPredictions, ElectraForPreTraining
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.roformer.model import RoFormerModel
from bertforge.model.roformer.pretrained import RoFormerPreTrainedModel
from bertforge.model.roformer.pretraining import RoFormerForMaskedLM


class RoFormerForReplacedTokenDetection(RoFormerPreTrainedModel):
    """The discriminator: RoFormerModel -> discriminator_predictions, one "replaced" logit per token
    (ElectraForPreTraining's head and loss)."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.roformer = RoFormerModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.init_weights()

    forward = ElectraForPreTraining.forward


class RoFormerElectraPair(ElectraPair):
    """ELECTRA's pair (one module: the runtime sees one model and one forward) with RoFormer's two models."""

    discriminator_class = RoFormerForReplacedTokenDetection
    generator_class = RoFormerForMaskedLM
    shared = ("word_embeddings", "token_type_embeddings", "LayerNorm")
    tied_output = None  # RoFormerForMaskedLM reads the word embeddings at each forward
