"""Training machinery shared by pre-training and fine-tuning: optimizers, schedules, checkpoints,
logs."""
