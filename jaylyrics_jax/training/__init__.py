"""One training step: the train state, optimizer, step function, device mesh."""
