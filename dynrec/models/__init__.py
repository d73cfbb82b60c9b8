"""Item fusion, user sequence model and their training loop."""
