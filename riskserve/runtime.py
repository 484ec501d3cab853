"""What one worker process serves with: settings, the model registry and its metrics.

Built once per worker by the BentoML service and shared by the /v1 API, the Open Inference
Protocol REST routes and the gRPC server, so every protocol scores, validates and counts alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from riskserve.core import store
from riskserve.core.registry import Registry
from riskserve.metrics import Metrics, get_metrics
from riskserve.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    metrics: Metrics

    @classmethod
    def create(cls, stored: Mapping[str, Any], settings: Settings) -> Runtime:
        """Load each public name's stored BentoML model (its production version)."""
        metrics = get_metrics()
        loaded = {name: store.load_stored(model) for name, model in stored.items()}
        registry = Registry(loaded, max_batch_rows=settings.max_batch_size,
                            max_wait_s=settings.max_batch_wait_ms / 1000,
                            extra_versions=settings.extra_versions_cache, metrics=metrics)
        return cls(settings, registry, metrics)
