"""Layer 2: the model, its checkpoint format, the inference runner and command safety."""
