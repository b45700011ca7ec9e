"""Layer 3: the training loop, offline evaluation and their plots."""
