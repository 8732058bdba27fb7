"""Using trained models: sentence vectors, fill-mask, and fine-tuned predictors. Imports models and
tasks, never training code."""

from bertforge.inference.encode import encode
from bertforge.inference.fill_mask import fill_mask
from bertforge.inference.predictor import Predictor

__all__ = ["encode", "fill_mask", "Predictor"]
