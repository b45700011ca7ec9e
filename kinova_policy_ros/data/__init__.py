"""Layer 1: the npz episode schema and writer, the one preprocessing, the dataset."""
