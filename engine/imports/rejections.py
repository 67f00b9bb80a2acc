"""The rejected rows of one import: the error report, and the `--rejects` file.

Atomic imports keep every error, to report them all at the end (FORMATS.md: every bad row,
not only the first); their memory grows with the number of errors, never with the number
of rows. With `--skip-invalid` errors are handed to `on_reject` as they come and not kept.
The rejects file repeats each rejected row's cells as read, under the file's own header,
plus an `error` column with the same `FILE:LINE: FIELD: message` text as stderr.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import TextIO

from campaigns.errors import InputError
from engine.imports.csv_source import Header

__all__ = ["Rejections"]


class Rejections:
    def __init__(
        self,
        path: str,
        header: Header,
        *,
        keep: bool,
        rejects_path: str | None = None,
        on_reject: Callable[[InputError], None] | None = None,
    ) -> None:
        self.path = path
        self.count = 0
        self.errors: list[InputError] = []
        self._keep = keep
        self._on_reject = on_reject
        self._width = len(header.cells)
        self._file: TextIO | None = None
        if rejects_path is not None:
            self._file = open(rejects_path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._file)
            self._writer.writerow([*header.cells, "error"])

    def add(self, line: int, cells: list[str], problems: list[tuple[str, str]]) -> None:
        """One rejected row with its problems `(field, message)`, in column order."""
        self.count += 1
        errors = [InputError(message, self.path, line, field) for field, message in problems]
        if self._keep:
            self.errors.extend(errors)
        if self._on_reject is not None:
            for error in errors:
                self._on_reject(error)
        if self._file is not None:
            padded = cells + [""] * (self._width - len(cells))
            self._writer.writerow([*padded, "; ".join(str(error) for error in errors)])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
