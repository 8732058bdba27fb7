"""bertforge: pre-train, fine-tune, evaluate and serve BERT, with transformers-compatible checkpoints."""

__version__ = "0.1.0"
