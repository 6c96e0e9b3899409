"""Precision and recall of the intake extractor on the labelled corpus, per field and part.

The corpus (tests/intake_corpus/) is homeowner replies labelled by hand: `dev.yaml`, the part
the extractor and its vocabulary were tuned on, and `heldout.yaml`, written with it and never
tuned on. For each field, a prediction is right when it equals the label (a street address
without a ZIP: when it starts with the labelled street line); precision = right / predicted,
recall = right / labelled. It also counts the "trap" numbers (phones, house numbers, square
feet, ZIPs, counts) read as a budget, which must be zero.

Usage: python bench/intake.py [--part dev|heldout|all] [--misses]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textback.core.intake import (BUDGET, LOCATION, PROJECT, TIMING, Intake,  # noqa: E402
                                  extract, parse_budget_value)

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "intake_corpus"
PARTS = ("dev", "heldout")
# The moment every label was written against: a Monday morning in the business's zone.
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("America/New_York"))
SCORED = {PROJECT: "p", BUDGET: "b", TIMING: "w", LOCATION: "l"}


def load(part: str) -> list[dict]:
    return yaml.safe_load((CORPUS / f"{part}.yaml").read_text(encoding="utf-8"))


def matches(name: str, predicted: str | None, expected: str | None) -> bool:
    if predicted is None or expected is None:
        return False
    if name == LOCATION and not re.fullmatch(r"\d{5}", expected):
        return predicted.lower().startswith(expected.lower())
    return predicted == expected


def trap_budgets(item: dict, intake: Intake) -> list[str]:
    """The trap numbers of an item that its extracted budget came from (should be none)."""
    fact = intake.get(BUDGET)
    if fact is None:
        return []
    budget = parse_budget_value(fact.value)
    amounts = {a for a in (budget.low, budget.high) if a is not None} if budget else set()
    taken = []
    for trap in item.get("traps") or []:
        digits = re.sub(r"\D", "", str(trap))
        written = re.sub(r"[^\d\s]", "", fact.evidence).split()
        if digits and (int(digits) in amounts or int(digits) * 1000 in amounts
                       or digits in written):
            taken.append(str(trap))
    return taken


@dataclass
class Score:
    predicted: int = 0
    labelled: int = 0
    right: int = 0

    @property
    def precision(self) -> float:
        return self.right / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.right / self.labelled if self.labelled else 1.0


@dataclass
class Result:
    items: int = 0
    scores: dict[str, Score] = field(default_factory=lambda: {n: Score() for n in SCORED})
    traps_taken: list[tuple[str, list[str]]] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(items: list[dict]) -> Result:
    result = Result()
    started = time.perf_counter()
    for item in items:
        intake = extract(item["t"], NOW)
        result.items += 1
        for name, key in SCORED.items():
            expected = item.get(key)
            expected = None if expected is None else str(expected)
            predicted = intake.value(name)
            score = result.scores[name]
            score.predicted += predicted is not None
            score.labelled += expected is not None
            right = matches(name, predicted, expected)
            score.right += right
            if not right and (predicted is not None or expected is not None):
                result.misses.append(f"{name:8} got {predicted!s:28} want {expected!s:28} "
                                     f"{item['t']}")
        taken = trap_budgets(item, intake)
        if taken:
            result.traps_taken.append((item["t"], taken))
    result.seconds = time.perf_counter() - started
    return result


def report(part: str, result: Result) -> str:
    lines = [f"{part}: {result.items} replies, {result.seconds * 1000 / max(1, result.items):.1f}"
             f" ms per reply"]
    for name, score in result.scores.items():
        lines.append(f"  {name:9} precision {score.precision:.3f} ({score.right}/{score.predicted})"
                     f"  recall {score.recall:.3f} ({score.right}/{score.labelled})")
    lines.append(f"  trap numbers read as a budget: {len(result.traps_taken)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--misses", action="store_true", help="list every wrong or missed field")
    args = parser.parse_args()
    extract("warm-up: kitchen next Tuesday, $5k", NOW)  # dateparser loads its languages once
    for part in PARTS if args.part == "all" else (args.part,):
        result = evaluate(load(part))
        print(report(part, result))
        for text, taken in result.traps_taken:
            print(f"    TRAP {taken}: {text}")
        if args.misses:
            print("\n".join("    " + miss for miss in result.misses))


if __name__ == "__main__":
    main()
