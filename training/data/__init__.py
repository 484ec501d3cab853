"""Training data per model family, in each real data set's own raw column layout."""
