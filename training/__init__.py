"""Training: one module per model family, a shared pipeline, and the `python -m training` CLI."""

import os

# OpenMP threads that finish their share spin on the CPU waiting for the next parallel region
# (libgomp's default). Two trainings at once on two cores (two test workers, or `make train`
# beside a running server) then spin against each other: a quick phishing fit went from 6 s
# to 78 s. Passive waiting sleeps instead and costs nothing measurable alone. Set before
# scikit-learn, LightGBM or XGBoost load libgomp, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
