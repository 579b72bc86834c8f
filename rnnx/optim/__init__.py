"""What turns a gradient into an update: the optimizers, learning-rate schedules and the
gradient-clipping transformations."""
