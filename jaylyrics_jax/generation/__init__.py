"""Writing text: the on-device sampler, its processors and the lyrics on top."""
