"""The scorecard as bar-chart geometry for a server-rendered SVG. Pure: figures in, shapes out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The funnel, left to right: each stage's scorecard figure and its label.
STAGES = (("missed_calls", "missed"), ("texts_sent", "texted"), ("replies", "replied"),
          ("booked", "booked"), ("qualified", "qualified"), ("won", "won"))
WIDTH, BAR_AREA, BAR_GAP, TOP, LABEL = 360, 120, 8, 20, 19


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Funnel:
    title: str
    bars: tuple[Bar, ...]
    won_value: float
    median_minutes: float | None
    width: int = WIDTH
    height: int = TOP + BAR_AREA + LABEL * 2


def funnels(cards: list[dict[str, Any]], labels: dict[str, str]) -> list[Funnel]:
    """One funnel per business number; `labels` names the numbers as people know them."""
    made = []
    for card in cards:
        values = [int(card[key]) for key, _ in STAGES]
        top = max(values) or 1
        width = (WIDTH - BAR_GAP * (len(STAGES) + 1)) / len(STAGES)
        bars = []
        for index, ((_, label), value) in enumerate(zip(STAGES, values)):
            height = BAR_AREA * value / top
            bars.append(Bar(label, value, BAR_GAP + index * (width + BAR_GAP),
                            TOP + BAR_AREA - height, width, height))
        made.append(Funnel(labels.get(card["business_number"], card["business_number"]),
                           tuple(bars), card["won_value"],
                           card["median_minutes_reply_to_human_answer"]))
    return made
