"""The ELMo family (Peters et al., 2018): a character-CNN biLM, its bilm-tf weights, LM training, features.

Numerically the biLM of bilm-tf (checked on its own test weights and activations); h5py is imported
only when a bilm-tf weight file is read.
"""

from bertforge.model.elmo.bilm import ElmoBiLM
from bertforge.model.elmo.bilm_tf import load_bilm_tf_weights
from bertforge.model.elmo.chars import (BOS_TOKEN, EOS_TOKEN, add_sentence_boundaries, batch_to_char_ids,
                                        remove_sentence_boundaries, word_to_char_ids)
from bertforge.model.elmo.config import ElmoConfig
from bertforge.model.elmo.features import ElmoFeatures
from bertforge.model.elmo.lm import ElmoLanguageModel, ElmoLMOutput
from bertforge.model.elmo.vocab import UNK_TOKEN, WordVocab

__all__ = ["ElmoConfig", "ElmoBiLM", "ElmoLanguageModel", "ElmoLMOutput", "ElmoFeatures", "WordVocab",
           "batch_to_char_ids", "word_to_char_ids", "add_sentence_boundaries", "remove_sentence_boundaries",
           "load_bilm_tf_weights", "BOS_TOKEN", "EOS_TOKEN", "UNK_TOKEN"]
