"""Training: one module per model family, a shared pipeline, and the `python -m training` CLI."""
