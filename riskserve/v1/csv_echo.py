"""A scored CSV built from the caller's own lines: each data line as uploaded, then the added
columns (prediction, probability, reasons).

Writing the parsed frame back with pandas (`to_csv`) took 0.40 s of a 100k-row fraud file's
~0.9 s, almost all of it formatting the caller's own numbers back into text. Echoing the lines
costs ~0.1 s and returns every input cell exactly as sent. It reads the upload's bytes a second
time, in 1 MiB blocks beside pandas' chunks (from the page cache, no parsing), each block checked
and split with bytes methods rather than in a Python loop per line (a 50k-row fraud chunk's
echo: 0.28 s -> 0.14 s on a 2 GHz core; formatting the added cells is now most of it).

The echo is only used while each line is provably one of pandas' rows, in the same order: no
quote character (a quoted field may hold a newline or a comma), no bare carriage return (pandas
ends a row there), the header's field count (pandas fills short rows with NaN and makes an
extra leading field the index), and a header that does not already name an added column
(pandas overwrites that one). Blank lines are skipped by both. From the first line that breaks
a condition, the rest of the file is written by pandas, as before: the answer is the same, only
the formatting of the input cells may differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import repeat
from pathlib import Path
from typing import BinaryIO

import numpy as np

BOM = b"\xef\xbb\xbf"
# A cell with one of these is quoted by pandas' writer: left to pandas.
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def _column_text(values: np.ndarray) -> list[str] | None:
    """The column's cells as pandas' `to_csv` writes them (str/repr: the same text, checked on
    400k random ints, floats from 1e-12 to 1e20 and labels), or None when pandas must write
    them: NaN (a blank there), float32, quoting, anything else. Twice as fast as pandas."""
    kind = values.dtype.kind
    if kind in "iub":
        return [str(v) for v in values.tolist()]
    if kind == "f" and values.dtype.itemsize == 8 and not np.isnan(values).any():
        return [repr(v) for v in values.tolist()]
    if kind in "UO":
        items = values.tolist()
        if all(type(v) is str and v and not _NEEDS_QUOTES.search(v) for v in items):
            return items
    return None


def _cells(added: Mapping[str, np.ndarray]) -> list[bytes]:
    """Each row's added cells, comma-joined, plus a final empty entry (split on newlines)."""
    columns = [_column_text(np.asarray(v)) for v in added.values()]
    if any(c is None for c in columns):
        import pandas as pd  # imported where used (see riskserve.core.encoding)

        text = pd.DataFrame(dict(added)).to_csv(index=False, header=False, lineterminator="\n")
    else:
        text = "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"
    return text.encode().split(b"\n")


def _content(line: bytes) -> bytes | None:
    """The line without its terminator, or None when it may not be exactly one CSV record."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if b'"' in line or b"\r" in line:
        return None
    return line


def _before_line_of(data: bytes, at: int) -> int:
    """The offset where the line holding `data[at]` starts."""
    return data.rfind(b"\n", 0, at) + 1


def echoable_lines(data: bytes, commas: int) -> tuple[list[bytes], bool]:
    """The data lines of `data` (whole lines, blank ones skipped) up to the first one that may
    not be exactly one of pandas' rows, and whether there was no such line.

    Whole blocks are checked with bytes methods (a quote, a bare carriage return) and the lines
    split once: ~0.02 s for 50k lines, where a Python loop over the file's lines took 0.14 s,
    half of the echo's time."""
    clean = True
    quote = data.find(b'"')
    if quote >= 0:
        data, clean = data[:_before_line_of(data, quote)], False
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        bare = data.find(b"\r")
        if bare >= 0:
            data, clean = data[:_before_line_of(data, bare)], False
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # after the last terminator
    if b"" in lines:
        lines = [line for line in lines if line]  # blank lines: pandas skips them too
    counts = list(map(bytes.count, lines, repeat(b",")))
    if counts.count(commas) != len(counts):
        first = next(i for i, c in enumerate(counts) if c != commas)
        lines, clean = lines[:first], False
    return lines, clean


READ_BYTES = 1 << 20


class LineEcho:
    """Hands out the upload's data lines chunk by chunk, aligned with pandas' chunks."""

    def __init__(self, fh: BinaryIO, header: bytes) -> None:
        self._fh = fh
        self.header = header
        self.names = {n.strip() for n in header.decode("utf-8", "replace").split(",")}
        self._commas = header.count(b",")
        self._lines: list[bytes] = []  # echoable lines read ahead, in order
        self._rest = b""  # the block's last line, until its terminator is read
        self._more = True  # False at the end of the file or after a line pandas must write
        self._open = True

    @classmethod
    def open(cls, path: Path) -> LineEcho | None:
        """None when the header itself cannot be echoed (quoted, or no header line)."""
        fh = path.open("rb")
        for raw in fh:
            line = _content(raw)
            if line == b"":
                continue  # blank lines before the header: pandas skips them too
            if line is None:
                break
            return cls(fh, line.removeprefix(BOM))
        fh.close()
        return None

    def close(self) -> None:
        self._open = False
        self._lines = []
        self._fh.close()

    def _read(self) -> None:
        """The next block's echoable lines onto the read-ahead ones."""
        block = self._fh.read(READ_BYTES)
        data = self._rest + block
        if block:
            cut = data.rfind(b"\n") + 1
            data, self._rest = data[:cut], data[cut:]
        else:  # the end: a last line without a terminator is a row too
            self._rest, self._more = b"", False
            data = data.removesuffix(b"\r")
        if data:
            lines, clean = echoable_lines(data, self._commas)
            self._lines += lines
            self._more = self._more and clean

    def _take(self, n: int) -> list[bytes] | None:
        while len(self._lines) < n and self._more:
            self._read()
        if len(self._lines) < n:
            self.close()  # a line that breaks a condition, or fewer lines than rows: pandas' turn
            return None
        out = self._lines[:n]
        del self._lines[:n]
        return out

    def render(self, rows: int, added: Mapping[str, np.ndarray], header: bool) -> bytes | None:
        """The next `rows` lines with the added cells, or None (and no more echo) when they
        cannot be echoed; the caller then renders this chunk and the rest with pandas."""
        if not self._open or self.names & set(added):
            return None
        lines = self._take(rows)
        if lines is None:
            return None
        cells = _cells(added)
        if len(cells) != rows + 1:  # a cell with a newline in it: pandas writes this chunk
            self.close()
            return None
        body = b"\n".join(map(b",".join, zip(lines, cells[:rows], strict=True))) + b"\n"
        if header:
            body = self.header + b"," + ",".join(added).encode() + b"\n" + body
        return body
