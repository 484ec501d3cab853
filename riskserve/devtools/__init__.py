"""Helpers shared by the tests, the benchmarks and k8s/image tooling (a real `bentoml serve`,
the pinned helm). Not part of the served Bento."""
