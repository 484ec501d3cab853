"""Observability as code for riskserve: Prometheus rules, Grafana dashboards and their generator."""
