"""The registry's look-ups under their older names (``serve/`` imports ``model_type`` from here); the families
themselves are in ``model/registry.py``."""

from bertforge.model.registry import FAMILIES, model_type, preset_config, read_config

__all__ = ["FAMILIES", "model_type", "preset_config", "read_config"]
