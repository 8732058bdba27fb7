"""The BERT model family: encoder and heads, with `transformers` weight names."""

from bertforge.model.bert import BertModel
from bertforge.model.heads import (BertForMultipleChoice, BertForQuestionAnswering,
                                   BertForSequenceClassification, BertForTokenClassification)
from bertforge.model.outputs import (BertOutput, CausalLMOutput, MultipleChoiceModelOutput, PreTrainingOutput,
                                     QuestionAnsweringOutput, SequenceClassifierOutput, TokenClassifierOutput)
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.pretraining import BertForPreTraining, BertLMHeadModel

__all__ = ["BertModel", "BertForPreTraining", "BertLMHeadModel", "BertPreTrainedModel", "BertOutput",
           "PreTrainingOutput", "CausalLMOutput", "BertForSequenceClassification", "BertForMultipleChoice",
           "BertForTokenClassification", "BertForQuestionAnswering", "SequenceClassifierOutput",
           "MultipleChoiceModelOutput", "TokenClassifierOutput", "QuestionAnsweringOutput"]
