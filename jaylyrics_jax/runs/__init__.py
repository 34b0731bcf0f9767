"""A run on disk: training, checkpoints, the saved model, logs, tuning."""
