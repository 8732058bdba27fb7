"""Values shared by data preparation, models and losses."""

IGNORE_INDEX = -100  # a label that adds no loss: torch's cross-entropy default, used everywhere
