"""Pydantic schemas of the public HTTP API (they also document it in the OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PredictResponse(BaseModel):
    """Predictions for the rows sent, in order."""

    model: str = Field(description="Public model name that answered.")
    version: str = Field(description="Model version that answered.")
    predictions: list[float | int | str] = Field(
        description="Class label (classifiers) or value (regression) per row.")
    probabilities: list[list[float]] | None = Field(
        None, description="Per row, the probability of each class in `classes` (classifiers).")
    classes: list[int | str] | None = Field(None, description="Class order of `probabilities`.")


class Timing(BaseModel):
    """Mean and standard deviation of one keystroke timing, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    Mean: float = Field(description="Mean, ms.")
    STD: float = Field(ge=0, description="Standard deviation, ms.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: what went wrong, and structured detail naming the field."""

    error: str
    detail: Any = None


SeedModel = Literal["SVM", "RF", "XGB"]
