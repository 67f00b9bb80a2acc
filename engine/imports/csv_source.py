"""Reading an import's CSV file a chunk of rows at a time, with line numbers.

The file is never held in memory: rows come out in chunks of a few thousand, each row with
the physical line it starts on (FORMATS.md: the header is line 1). The header is checked
before any row is read, because a wrong column makes every row wrong: an unknown column, a
column given twice or a required one missing is a bad file (line 1, field = the column),
even with `--skip-invalid`.

Rows the CSV layer can already tell are broken (a wrong number of fields, bytes that are
not UTF-8, a NUL character, broken quoting) travel in the chunk as `broken`, so they are
reported in line order with the rest; blank lines are skipped. Quoting is read strictly:
a quote left open at the end of the file, or text after a closing quote, is an error
rather than a cell that silently swallows the following lines. After one, reading goes
on at the next line, and the error names every line it could not read.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from campaigns.errors import InputError, InputErrors

__all__ = ["Chunk", "CsvSource", "Header"]

CHUNK_ROWS = 4000


@dataclass(frozen=True, slots=True)
class Header:
    cells: tuple[str, ...]  # as written in the file (the rejects file repeats them)
    columns: tuple[str, ...]  # the column names, trimmed and lower-cased

    def index(self, column: str) -> int:
        """Position of a column, -1 when the file does not have it."""
        return self.columns.index(column) if column in self.columns else -1


@dataclass(slots=True)
class Chunk:
    """Consecutive rows of the file: `(line, cells)`, plus the rows already known broken."""

    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    broken: list[tuple[int, list[str], str, str]] = field(default_factory=list)  # line, cells, field, message
    end_offset: int = 0  # bytes of the file read once this chunk is complete

    def __len__(self) -> int:
        return len(self.rows) + len(self.broken)


class CsvSource:
    """One CSV file with a header row, read as chunks (use as a context manager)."""

    def __init__(
        self,
        path: str,
        known: tuple[str, ...],
        required: tuple[str, ...] = (),
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        self._known = known
        self._required = required
        self._chunk_rows = chunk_rows
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._offset = 0
        self._bad_lines: dict[int, str] = {}  # line -> what is wrong with its bytes
        self._reader = csv.reader(self._lines(), strict=True)
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _lines(self) -> Iterator[str]:
        # Decoding line by line (not with a text wrapper) keeps a count of the bytes read,
        # for the progress bar, and pins an encoding error on its row instead of failing
        # the whole file.
        for number, data in enumerate(self._file, 1):
            self._offset += len(data)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._bad_lines[number] = "is not valid UTF-8 text"
                text = data.decode("utf-8", "replace")
            if "\x00" in text:  # PostgreSQL cannot store it; no CSV writer means it
                self._bad_lines[number] = "contains a NUL character"
            if number == 1 and text.startswith("\ufeff"):  # Excel's byte-order mark
                text = text[1:]
            yield text

    def _error(self, line: int | None, column: str | None, message: str) -> InputError:
        return InputError(message, self.path, line, column)

    def _read_header(self) -> Header:
        try:
            cells = next(self._reader, None)
        except csv.Error as exc:
            raise InputErrors([self._error(1, None, f"unreadable CSV header: {exc}")]) from None
        if not cells or not any(cell.strip() for cell in cells):
            expected = ",".join(self._known)
            raise InputErrors([self._error(1, None, f"no header row (expected columns {expected})")])
        columns = tuple(cell.strip().lower() for cell in cells)
        errors = []
        seen: set[str] = set()
        for position, (cell, column) in enumerate(zip(cells, columns, strict=True), 1):
            if not column:
                errors.append(self._error(1, f"column {position}", "column has no name"))
            elif column not in self._known:
                known = ", ".join(self._known)
                errors.append(self._error(1, cell.strip(), f"unknown column (known columns: {known})"))
            elif column in seen:
                errors.append(self._error(1, cell.strip(), "column appears more than once"))
            seen.add(column)
        for column in self._required:
            if column not in seen:
                errors.append(self._error(1, column, "required column is missing"))
        if errors:
            raise InputErrors(errors)
        return Header(tuple(cells), columns)

    def _problem(self, first: int, last: int) -> str | None:
        for line in range(first, last + 1):
            if line in self._bad_lines:
                return self._bad_lines[line]
        return None

    def chunks(self) -> Iterator[Chunk]:
        """The data rows, `chunk_rows` at a time, in file order."""
        width = len(self.header.columns)
        chunk = Chunk()
        reader = self._reader
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                end = reader.line_num
                lines = f"line {start}" if end <= start else f"lines {start}-{end}"
                chunk.broken.append((start, [], "row", f"unreadable CSV ({exc}); {lines} skipped"))
                cells = []
            if cells is None:
                break
            if not any(cells):  # a blank line, or one of only commas
                pass
            elif self._bad_lines and (problem := self._problem(start, reader.line_num)):
                chunk.broken.append((start, cells, "row", problem))
            elif len(cells) != width:
                chunk.broken.append((start, cells, "row", f"has {len(cells)} fields, the header has {width}"))
            else:
                chunk.rows.append((start, cells))
            if len(chunk) >= self._chunk_rows:
                chunk.end_offset = self._offset
                yield chunk
                chunk = Chunk()
        if len(chunk):
            chunk.end_offset = self._offset
            yield chunk
