"""The training engine: one loop, checkpoints, early stopping and loggers."""
