"""The /v1 HTTP API: JSON rows, CSV files and the seed keystroke payload, as a codec over the
data plane."""
