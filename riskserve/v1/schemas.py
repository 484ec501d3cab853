"""Pydantic schemas of the public HTTP API (they also document it in the OpenAPI spec).

`PredictResponse`, `Timing` and `SeedModel` type the @bentoml.api handlers in service.py; the
other answers are built as dicts by riskserve.v1 and riskserve.dataplane, and their models here
exist so /docs.json (riskserve.openapi) says exactly what those dicts hold.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskserve.core.specs import Kind, Task


class PredictResponse(BaseModel):
    """Predictions for the rows sent, in order."""

    model: str = Field(description="Public model name that answered.")
    version: str = Field(description="Model version that answered.")
    predictions: list[float | int | str] = Field(
        description="Class label (classifiers) or value (regression) per row.")
    probabilities: list[list[float]] | None = Field(
        None, description="Per row, the probability of each class in `classes` (classifiers).")
    classes: list[int | str] | None = Field(None, description="Class order of `probabilities`.")


class Reason(BaseModel):
    """One of a row's top features by absolute contribution."""

    feature: str = Field(description="Input or derived feature name.")
    value: Any = Field(description="The row's value of the feature, as sent (derived: computed).")
    contribution: float = Field(description="What the feature added, in the explanation space.")


class RowExplanation(BaseModel):
    """One row's exact decomposition: `base` plus every contribution is the model's raw score."""

    base: float = Field(description="The model's expected raw score (the same for every row).")
    contributions: dict[str, float] = Field(
        description="Feature -> contribution (tree SHAP for boosted trees, terms for Ridge).")
    reasons: list[Reason] = Field(description="The `top` features by |contribution|.")


class ExplainResponse(PredictResponse):
    """`/v1/predict`'s answer plus an explanation per row."""

    space: str = Field(description="What contributions add up to, e.g. the log-odds of the "
                                   "positive class, or the regression target.")
    explanations: list[RowExplanation] = Field(description="One per row, in order.")


class FeedbackResponse(BaseModel):
    """How many outcomes were counted into the live-quality metrics (nothing is stored)."""

    model: str = Field(description="Public model name the outcomes were counted for.")
    version: str = Field(description="Model version the outcomes were counted for.")
    accepted: int = Field(description="Outcomes counted.")


class KeystrokeResponse(BaseModel):
    """The Threat Fabric seed API's answer."""

    UserID: int | str = Field(description="The user predicted to have typed the sample.")


class FeatureInfo(BaseModel):
    """One input of a model's contract."""

    name: str
    dtype: Kind = Field(description="riskserve's kind: float, int or category.")
    datatype: str = Field(description="The Open Inference Protocol tensor datatype (/v2, gRPC).")
    min: float | None = Field(description="Smallest accepted value (numeric features).")
    max: float | None = Field(description="Largest accepted value (numeric features).")
    categories: list[str] | None = Field(
        description="Accepted values of a closed category; null: any value (open vocabulary).")
    nullable: bool = Field(description="Whether the value may be sent as null (missing).")
    description: str


class ModelInfo(BaseModel):
    """One model's listing entry: what it takes, what serves it and how well it scored."""

    name: str = Field(description="Public model name.")
    version: str = Field(description="Production version (what a request without version gets).")
    task: Task
    algorithm: str
    runtime: str | None = Field(description="What computes the predictions, e.g. onnxruntime.")
    description: str
    features: list[FeatureInfo] = Field(description="The inputs, in the model's order.")
    classes: list[int | str] | None = Field(description="Class labels (classifiers).")
    metrics: dict[str, float] = Field(description="Held-out metrics of this version.")
    primary_metric: str
    trained_at: str | None = Field(description="When this version was trained (ISO 8601).")
    shadow: str | None = Field(description="The shadow candidate scored beside it, if any.")


class ModelList(BaseModel):
    """Every model the calling key may use."""

    models: list[ModelInfo]


class Timing(BaseModel):
    """Mean and standard deviation of one keystroke timing, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    Mean: float = Field(description="Mean, ms.")
    STD: float = Field(ge=0, description="Standard deviation, ms.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: what went wrong, and structured detail naming the field."""

    error: str = Field(description="One line: the field, what was expected, what arrived.")
    detail: Any = Field(None, description="Structured detail: the field, the rows, expected "
                                          "values, known models or pydantic's errors.")


SeedModel = Literal["SVM", "RF", "XGB"]
