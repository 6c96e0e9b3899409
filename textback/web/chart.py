"""The scorecard as bar-chart geometry for a server-rendered SVG. Pure: figures in, shapes out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textback.scorecard import FUNNEL, funnel

WIDTH, BAR_AREA, BAR_GAP, TOP, LABEL = 360, 120, 8, 18, 16


@dataclass(frozen=True)
class Bar:
    """One stage: its conversations (None in a month kept before the funnel was counted) and
    the share of the stage before that reached it (None for the first, or nothing to divide)."""

    label: str
    value: int | None
    conversion: float | None
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
    height: int = TOP + BAR_AREA + LABEL * 3


def funnels(cards: list[dict[str, Any]], labels: dict[str, str]) -> list[Funnel]:
    """One funnel per business number (textback.scorecard.funnel: conversations at each stage);
    `labels` names the numbers as people know them."""
    made = []
    for card in cards:
        stages = funnel(card)
        top = max((count or 0 for _, _, count, _ in stages), default=0) or 1
        width = (WIDTH - BAR_GAP * (len(FUNNEL) + 1)) / len(FUNNEL)
        bars = []
        for index, (_, label, count, rate) in enumerate(stages):
            height = BAR_AREA * (count or 0) / top
            bars.append(Bar(label, count, rate, BAR_GAP + index * (width + BAR_GAP),
                            TOP + BAR_AREA - height, width, height))
        made.append(Funnel(labels.get(card["business_number"], card["business_number"]),
                           tuple(bars), card["won_value"],
                           card["median_minutes_reply_to_human_answer"]))
    return made
