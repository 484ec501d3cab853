"""Scored CSVs echo the caller's lines only where each line is exactly one of pandas' rows: the
right prediction lands on the right row for line endings, blank lines, a BOM, quoted fields and
a column named like an added one, in any chunking and any read block size. The real handler
and data plane, in process.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskserve.core.validation import columns_from_frame
from riskserve.dataplane import Call
from riskserve.devtools.samples import sample_frame
from riskserve.errors import InvalidInput
from riskserve.v1 import handlers
from tests.test_dataplane import make_dp

ROWS = 40


async def _body(response: object) -> bytes:
    return b"".join([block async for block in response.body_iterator])  # type: ignore[attr-defined]


def score(trained: dict, tmp_path: Path, data: bytes, chunk_rows: int = 7) -> bytes:
    path = tmp_path / "upload.csv"
    path.write_bytes(data)
    dp = make_dp(trained, csv_chunk_rows=chunk_rows)
    response = asyncio.run(handlers.predict_csv(dp, Call("fraud"), path))
    return asyncio.run(_body(response))


@pytest.fixture(autouse=True, params=[1 << 20, 61], ids=["one-block", "61-byte-blocks"])
def read_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The echo reads the upload in blocks: every case also with lines cut across blocks."""
    from riskserve.v1 import csv_echo

    monkeypatch.setattr(csv_echo, "READ_BYTES", request.param)
    return request.param


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return sample_frame("fraud", ROWS)


def expected(trained: dict, frame: pd.DataFrame) -> np.ndarray:
    return trained["fraud"].model.predict(columns_from_frame(trained["fraud"].model.spec,
                                                             frame)).scores


def sent(frame: pd.DataFrame) -> list[str]:
    """The frame's CSV lines with every float written to 4 decimals (80202.1900): a format
    pandas never writes, so an echoed cell is told apart from a re-rendered one."""
    return frame.to_csv(index=False, float_format="%.4f").splitlines()


def assert_scored(trained: dict, data: bytes, out: bytes) -> pd.DataFrame:
    """Every row of the upload is in the answer, in order, with its own prediction."""
    frame = pd.read_csv(io.BytesIO(data), skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    got = pd.read_csv(io.BytesIO(out), skipinitialspace=True)
    assert len(got) == len(frame)
    pd.testing.assert_frame_equal(got[list(frame.columns)], frame, check_dtype=False)
    np.testing.assert_allclose(got["probability"], expected(trained, frame), rtol=1e-12)
    return got


def echoed(out: bytes) -> list[bytes]:
    """The answer's lines without the two added cells."""
    return [line.rsplit(b",", 2)[0] for line in out.splitlines()]


def test_plain_file_comes_back_line_for_line(trained: dict, tmp_path: Path,
                                             frame: pd.DataFrame) -> None:
    data = "\n".join(sent(frame)).encode() + b"\n"
    out = score(trained, tmp_path, data)
    assert out.splitlines()[0] == data.splitlines()[0] + b",prediction,probability"
    assert echoed(out) == data.splitlines()  # every cell exactly as sent
    assert_scored(trained, data, out)


def test_crlf_blank_lines_bom_and_spaces_stay_aligned(trained: dict, tmp_path: Path,
                                                      frame: pd.DataFrame) -> None:
    lines = [line.replace(",", ", ") for line in sent(frame)]
    spaced = [lines[0], "", *lines[1:10], "", "", *lines[10:]]
    data = b"\xef\xbb\xbf" + "\r\n".join(spaced).encode()  # and no newline after the last row
    out = score(trained, tmp_path, data)
    assert echoed(out) == [line.encode() for line in lines]  # spaces and all, BOM dropped
    assert_scored(trained, data, out)


@pytest.mark.parametrize("at", [0, 3, 20, ROWS - 1])
def test_a_quoted_field_hands_the_rest_to_pandas(trained: dict, tmp_path: Path,
                                                 frame: pd.DataFrame, at: int) -> None:
    text = sent(frame)
    kind = frame.loc[at, "type"]
    text[at + 1] = text[at + 1].replace(f",{kind},", f',"{kind}",')
    data = ("\n".join(text) + "\n").encode()
    out = score(trained, tmp_path, data)
    assert_scored(trained, data, out)
    back = echoed(out)
    echoed_rows = at // 7 * 7  # the whole 7-row chunks before the quoted line
    assert back[1:echoed_rows + 1] == [line.encode() for line in text[1:echoed_rows + 1]]
    assert all(b".0000," not in line + b"," for line in back[echoed_rows + 1:])  # pandas'



def test_a_column_named_like_an_added_one_is_overwritten_as_before(
        trained: dict, tmp_path: Path, frame: pd.DataFrame) -> None:
    data = ("\n".join(sent(frame.assign(probability=-1.0))) + "\n").encode()
    got = pd.read_csv(io.BytesIO(score(trained, tmp_path, data)))
    assert list(got.columns).count("probability") == 1
    np.testing.assert_allclose(got["probability"], expected(trained, frame), rtol=1e-12)


@pytest.mark.parametrize("row", [4, 30])  # in the first chunk; while an earlier one scores
def test_a_short_row_is_still_refused(trained: dict, tmp_path: Path,
                                      frame: pd.DataFrame, row: int) -> None:
    text = sent(frame)
    text[row + 1] = text[row + 1].rsplit(",", 1)[0]  # one field short: pandas reads NaN there
    with pytest.raises(InvalidInput) as err:
        score(trained, tmp_path, ("\n".join(text) + "\n").encode())
    assert err.value.detail["rows"] == [row]


@pytest.mark.parametrize("column", [
    np.arange(-50, 50), np.array([True, False] * 50),
    np.concatenate([np.random.default_rng(1).random(50),
                    10 ** np.random.default_rng(2).uniform(-12, 20, 47), [0.0, 1.0, 1e16]]),
    np.array([f"u{i:03d}" for i in range(100)], dtype=object),
    np.array([0.5, np.nan] * 50), np.array([0.1, 0.2] * 50, dtype=np.float32),
    np.array(["a,b", 'say "hi"', "", None] * 25, dtype=object),
], ids=["int", "bool", "float64", "labels", "nan", "float32", "needs-quoting"])
def test_added_cells_read_exactly_as_pandas_writes_them(column: np.ndarray) -> None:
    from riskserve.v1.csv_echo import _cells

    added = {"prediction": column, "probability": np.linspace(0, 1, len(column))}
    pandas = pd.DataFrame(added).to_csv(index=False, header=False, lineterminator="\n")
    assert b"\n".join(_cells(added)) == pandas.encode()
