"""The /v1 codec: JSON rows, CSV files and the seed keystroke payload in, riskserve's JSON out.

Each handler decodes its wire format into a `dataplane.Call` and a decoder, lets the data plane
resolve, authorize, validate, batch, score and count, and encodes the answer. Errors are
`RiskserveError`s raised through to the one renderer (riskserve.http), never built here.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from starlette.responses import StreamingResponse

from riskserve.core import validation
from riskserve.core.encoding import Columns
from riskserve.core.scoring import Prediction, ScoringModel
from riskserve.core.specs import KEYSTROKE_BY_SEED_NAME, ModelSpec
from riskserve.dataplane import Call, DataPlane, Decoder, Inference
from riskserve.errors import BadRequest, InvalidInput, PayloadTooLarge
from riskserve.v1.csv_echo import LineEcho
from riskserve.v1.schemas import PredictResponse

if TYPE_CHECKING:  # pandas is imported where used (see riskserve.core.encoding)
    import pandas as pd

# The explanation's top reasons per row, unless the request asks for another number.
DEFAULT_TOP = 3
# A scored CSV stays in memory up to this size while the rest of the file validates, then on disk.
SPOOL_BYTES = 64 * 1024 * 1024
STREAM_BLOCK = 1024 * 1024


def records(inputs: Sequence[Mapping[str, Any]]) -> Decoder:
    """JSON rows (`[{feature: value}]`): the row count first, validation when asked."""
    async def decode(model: ScoringModel) -> tuple[int, Callable[[], Columns]]:
        return len(inputs), lambda: validation.columns_from_records(model.spec, inputs)

    return decode


def render(model: ScoringModel, pred: Prediction) -> PredictResponse:
    """The response object, built without re-validating what the model just produced."""
    return PredictResponse.model_construct(
        model=model.spec.name,
        version=model.version,
        predictions=pred.predictions.tolist(),
        probabilities=None if pred.probabilities is None else pred.probabilities.tolist(),
        classes=None if pred.probabilities is None else list(model.classes),
    )


async def predict(dp: DataPlane, call: Call, inputs: Sequence[Mapping[str, Any]]
                  ) -> PredictResponse:
    """POST /v1/predict: validate rows, score them (batched with concurrent requests)."""
    result = await dp.infer(call, records(inputs))
    return render(result.model, result.prediction)


async def keystroke(dp: DataPlane, call: Call, timings: Mapping[str, Any]) -> dict[str, Any]:
    """POST /v1/keystroke: the seed project's payload, answered with {"UserID": ...}."""
    row = {}
    for group in ("HT", "PPT", "RRT", "RPT"):
        row[f"{group.lower()}_mean"] = float(timings[group].Mean)
        row[f"{group.lower()}_std"] = float(timings[group].STD)
    result = await dp.infer(call, records([row]))
    user = result.prediction.predictions[0]
    return {"UserID": user.item() if hasattr(user, "item") else user}


def seed_call(seed_model: str, caller_call: Call) -> Call:
    """The seed payload names its model "SVM" / "RF" / "XGB"."""
    return Call(KEYSTROKE_BY_SEED_NAME[seed_model], None, caller_call.caller,
                caller_call.protocol)


def _top(top: int | None, spec: ModelSpec) -> int:
    n = len(spec.feature_names) + len(spec.derived)
    top = DEFAULT_TOP if top is None else top
    if not 1 <= top <= n:
        raise InvalidInput("top", f"an integer in [1, {n}] (the model's feature count)",
                           got=top)
    return top


async def explain(dp: DataPlane, call: Call, inputs: Sequence[Mapping[str, Any]],
                  top: int | None) -> dict[str, Any]:
    """POST /v1/explain: /v1/predict's answer plus per-row contributions and top reasons."""
    from riskserve.core import explain as ex

    result = await dp.explain(call, records(inputs))
    k = _top(top, result.model.spec)
    body = render(result.model, result.prediction).model_dump()
    expl = result.explanation
    body["space"] = expl.space
    body["explanations"] = [
        {"base": float(expl.base[i]),
         "contributions": dict(zip(expl.features, map(float, expl.contributions[i]),
                                   strict=True)),
         "reasons": ex.reasons(expl, i, inputs[i], k)}
        for i in range(len(inputs))
    ]
    return body


async def feedback(dp: DataPlane, call: Call, outcomes: Sequence[Any]) -> dict[str, Any]:
    """POST /v1/feedback: ground truth for served predictions, counted, nothing stored."""
    model, n = await dp.feedback(call, outcomes)
    return {"model": model.spec.name, "version": model.version, "accepted": n}


# ---- CSV ------------------------------------------------------------------------------------

def _prediction_columns(model: ScoringModel, pred: Prediction) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"prediction": pred.predictions}
    if pred.probabilities is not None:
        out["probability"] = (pred.probabilities[:, 1] if model.spec.task == "binary"
                              else pred.probabilities.max(axis=1))
    return out


def _chunks(path: Path, chunk_rows: int) -> pd.io.parsers.TextFileReader:
    import pandas as pd

    try:
        return pd.read_csv(path, chunksize=chunk_rows, skipinitialspace=True,
                           **validation.CSV_READ_OPTIONS)
    except pd.errors.EmptyDataError:
        raise BadRequest("the CSV file is empty; send a header row and data rows",
                         {"field": "file"}) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the file is not a readable CSV: {exc}", {"field": "file"}) from None


def _next_chunk(reader: pd.io.parsers.TextFileReader) -> pd.DataFrame | None:
    import pandas as pd

    try:
        return next(reader, None)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the file is not a readable CSV: {exc}", {"field": "file"}) from None


async def _added_columns(dp: DataPlane, call: Call, model: ScoringModel, columns: Columns,
                         rows: int, explain: bool) -> dict[str, np.ndarray]:
    """One chunk's prediction (and reason) columns, scored on the model's thread."""
    from riskserve.core import explain as ex

    added = _prediction_columns(model, await dp.score_chunk(model, columns, rows, call.protocol))
    if explain:
        added |= ex.reason_columns(await dp.explain_chunk(model, columns, rows))
    return added


class _Scoring:
    """A chunk whose scoring has started: rendered once its columns are in."""

    def __init__(self, chunk: pd.DataFrame, header: bool,
                 task: asyncio.Task[dict[str, np.ndarray]]) -> None:
        self.chunk, self.header, self.task = chunk, header, task

    async def render(self, out: IO[bytes], echo: LineEcho | None) -> None:
        added = await self.task
        await asyncio.to_thread(render_chunk, out, echo, self.chunk, added, self.header)

    async def cancel(self) -> None:
        """The request failed: drop this chunk's answer (its thread finishes on its own)."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def predict_csv(dp: DataPlane, call: Call, path: Path, explain: bool = False
                      ) -> StreamingResponse:
    """POST /v1/predict_csv: the file with predictions (and `reason_1..3` when `explain`).

    One pass over the file: each chunk is parsed, validated, scored and rendered (the caller's
    own lines plus the added columns where that is exact: riskserve.v1.csv_echo), and the
    rendered chunks wait in a spooled temporary file until the last row validated. So a bad row
    deep in a large file is still a clean 4xx naming the row (nothing has been sent yet), the
    file is parsed once, and memory stays bounded by two chunks and SPOOL_BYTES.

    A chunk scores on the model's thread while the previous one is rendered and the next one
    parsed and validated (the model's native code and pandas' parser release the GIL): on two
    cores a 100k-row fraud file takes ~0.6 of the time of doing the steps one after another.
    """
    from riskserve.core import explain as ex

    settings = dp.settings
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (streamed later)
    echo: LineEcho | None = None
    scoring: _Scoring | None = None
    try:
        async with dp.accounted(call):
            model = dp.resolve(call)
            if explain and not ex.can_explain(model):
                raise ex.NotExplainable(model.spec.name, ex.explainable(
                    [dp.registry.production[n] for n in dp.visible(call.caller)]))
            reader = await asyncio.to_thread(_chunks, path, settings.csv_chunk_rows)
            echo = await asyncio.to_thread(LineEcho.open, path)
            rows = 0
            while (chunk := await asyncio.to_thread(_next_chunk, reader)) is not None:
                if rows + len(chunk) > settings.csv_max_rows:
                    raise PayloadTooLarge(f"the CSV has more than {settings.csv_max_rows} rows; "
                                          "split it",
                                          {"field": "file", "limit_rows": settings.csv_max_rows})
                columns = await asyncio.to_thread(validation.columns_from_frame, model.spec,
                                                  chunk, rows)
                previous, scoring = scoring, _Scoring(chunk, rows == 0, asyncio.create_task(
                    _added_columns(dp, call, model, columns, len(chunk), explain)))
                if previous is not None:
                    await previous.render(out, echo)
                rows += len(chunk)
            if scoring is None:
                raise InvalidInput("file", "at least one data row after the header")
            await scoring.render(out, echo)
    except BaseException:
        if scoring is not None:
            await scoring.cancel()
        out.close()
        raise
    finally:
        if echo is not None:
            echo.close()
    out.seek(0)

    async def stream() -> AsyncIterator[bytes]:
        try:
            while block := await asyncio.to_thread(out.read, STREAM_BLOCK):
                yield block
        finally:
            out.close()

    return StreamingResponse(stream(), media_type="text/csv",
                             headers={"x-riskserve-rows": str(rows),
                                      "x-riskserve-model": model.spec.name,
                                      "x-riskserve-version": model.version})


def render_chunk(out: IO[bytes], echo: LineEcho | None, chunk: pd.DataFrame,
            added: Mapping[str, np.ndarray], header: bool) -> None:
    """The chunk's lines as uploaded plus the added columns (csv_echo), else via pandas."""
    block = echo.render(len(chunk), added, header) if echo is not None else None
    if block is not None:
        out.write(block)
        return
    for col, values in added.items():
        chunk[col] = values
    buf = io.StringIO()
    chunk.to_csv(buf, index=False, header=header)
    out.write(buf.getvalue().encode())


__all__ = ["Inference", "explain", "feedback", "keystroke", "predict", "predict_csv",
           "render_chunk", "seed_call"]
