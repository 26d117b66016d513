"""Background workers: the inference thread and the image sources."""
