"""riskserve's benchmarks: against the in-process limit, a seed-style FastAPI app and MLServer.

Run on demand with `make bench` (or `python -m benchmarks --help`); not part of the tests.
"""
