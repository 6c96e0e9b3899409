"""The lab's recorded CDR rows (tests/cdr/*.csv), moved in time, for the tests of CDR recovery.

The rows stay what Asterisk wrote; only their start, answer and end move
together, so a recorded call can have ended a minute or two hours ago.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

from textback.core.recovery import CSV_TIME_FORMAT, CsvLayout

CDR_DIR = Path(__file__).parent / "cdr"
COLUMNS = CsvLayout().columns()
TIME_COLUMNS = [COLUMNS.index(name) for name in ("start", "answer", "end")]


def load_fields(name: str) -> list[list[str]]:
    with open(CDR_DIR / f"{name}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def moved(name: str, ended_at: float) -> list[list[str]]:
    """The rows of a recorded flow, moved so that its last row ends at `ended_at` (local time)."""
    rows = load_fields(name)
    last_end = max(datetime.strptime(row[COLUMNS.index("end")], CSV_TIME_FORMAT) for row in rows)
    shift = datetime.fromtimestamp(round(ended_at)) - last_end
    for row in rows:
        for index in TIME_COLUMNS:
            if row[index]:
                row[index] = (datetime.strptime(row[index], CSV_TIME_FORMAT) + shift).strftime(CSV_TIME_FORMAT)
    return rows


def as_csv(rows: list[list[str]]) -> str:
    """Rows in cdr_csv's own quoting: every text field quoted, numbers and empty times bare."""
    out = io.StringIO()
    numeric = {COLUMNS.index(n) for n in ("duration", "billsec", "sequence")}
    for row in rows:
        cells = [value if index in numeric or (index in TIME_COLUMNS and not value)
                 else '"' + value.replace('"', '""') + '"' for index, value in enumerate(row)]
        out.write(",".join(cells) + "\n")
    return out.getvalue()
