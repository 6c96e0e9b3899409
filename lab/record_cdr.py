"""Record the CSV CDR rows (cdr_csv's Master.csv) of every lab call flow into tests/cdr/<name>.csv.

    python -m lab.record_cdr              # every flow (about two minutes)
    python -m lab.record_cdr voicemail    # just these

The flows are those of lab.record_traces, so tests/cdr/<name>.csv and
tests/traces/<name>.jsonl are the same call flow seen twice: once in the
CDR Asterisk writes, once in the AMI events. The unit tests
(tests/test_recovery.py) check that a call recovered from the CDR gets the
outcome the tracker gives it live. Regenerate with this script, never by hand.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from lab.pbx import LabPBX
from lab.record_traces import TRACES

CDR_DIR = Path(__file__).resolve().parent.parent / "tests" / "cdr"
# After the last actor is done: long enough for Asterisk to write the last CDR of the flow.
SETTLE_SECONDS = 1.0


def record(lab: LabPBX, name: str) -> None:
    before = lab.cdr_csv.stat().st_size if lab.cdr_csv.exists() else 0
    TRACES[name](lab)
    time.sleep(SETTLE_SECONDS)
    with lab.cdr_csv.open("rb") as csv:
        csv.seek(before)
        rows = csv.read()
    path = CDR_DIR / f"{name}.csv"
    path.write_bytes(rows)
    print(f"{path.relative_to(CDR_DIR.parent.parent)}: {len(rows.splitlines())} rows")


def main(names: list[str]) -> None:
    unknown = set(names) - set(TRACES)
    if unknown:
        raise SystemExit(f"unknown flow(s) {', '.join(sorted(unknown))}; known: {', '.join(TRACES)}")
    CDR_DIR.mkdir(exist_ok=True)
    lab = LabPBX(Path(tempfile.mkdtemp(prefix="textback-cdr-")))
    lab.start()
    try:
        for name in names or list(TRACES):
            record(lab, name)
    finally:
        lab.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
