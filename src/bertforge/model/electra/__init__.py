"""The ELECTRA family (Clark et al., 2020): BERT's encoder behind narrower embeddings, the replaced-token-detection
discriminator, the small masked-LM generator that shares its embeddings, and fine-tuning heads, numerically
identical to `transformers`' ELECTRA."""

from bertforge.model.electra.config import ElectraConfig, check_generator_size, generator_config
from bertforge.model.electra.heads import (ElectraClassificationHead, ElectraForMultipleChoice,
                                           ElectraForQuestionAnswering, ElectraForSequenceClassification,
                                           ElectraForTokenClassification, ElectraSequenceSummary)
from bertforge.model.electra.model import ElectraEmbeddings, ElectraModel
from bertforge.model.electra.outputs import ElectraForPreTrainingOutput, ElectraPairOutput, MaskedLMOutput
from bertforge.model.electra.pair import ElectraPair, sample_tokens, share_embeddings
from bertforge.model.electra.pretrained import ElectraPreTrainedModel
from bertforge.model.electra.pretraining import ElectraForMaskedLM, ElectraForPreTraining

__all__ = ["ElectraConfig", "generator_config", "check_generator_size", "ElectraPreTrainedModel", "ElectraEmbeddings",
           "ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM", "ElectraForSequenceClassification",
           "ElectraForTokenClassification", "ElectraForMultipleChoice", "ElectraForQuestionAnswering",
           "ElectraClassificationHead", "ElectraSequenceSummary", "ElectraPair", "sample_tokens", "share_embeddings",
           "ElectraForPreTrainingOutput", "MaskedLMOutput", "ElectraPairOutput"]
