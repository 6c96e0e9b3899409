"""The scorecard as bar-chart geometry for a server-rendered SVG. Pure: figures in, shapes out.

The funnel's bars are horizontal, one stage a row with its label at the left: labels never
collide however narrow the screen, so they can be set large enough to read on a phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textback.core.scorecard import FUNNEL, funnel

# In SVG units; the chart is drawn about as wide as a phone's card (360), so a unit is ~1 px.
# Right of each bar: its count, then (right-aligned at the edge) the share of the stage before.
WIDTH, LABEL_WIDTH, VALUE_ROOM, ROW, BAR, TOP, FOOT = 360, 84, 96, 28, 20, 4, 26
FONT_SIZE = 16  # at a 390 px screen's scale (~0.97) still over 14 px


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
    height: int = TOP + ROW * len(FUNNEL) + FOOT
    font_size: int = FONT_SIZE


def funnels(cards: list[dict[str, Any]], labels: dict[str, str]) -> list[Funnel]:
    """One funnel per business number (textback.core.scorecard.funnel: conversations at each stage);
    `labels` names the numbers as people know them."""
    made = []
    room = WIDTH - LABEL_WIDTH - VALUE_ROOM
    for card in cards:
        stages = funnel(card)
        top = max((count or 0 for _, _, count, _ in stages), default=0) or 1
        bars = tuple(Bar(label, count, rate, LABEL_WIDTH, TOP + index * ROW + (ROW - BAR) / 2,
                         room * (count or 0) / top, BAR)
                     for index, (_, label, count, rate) in enumerate(stages))
        made.append(Funnel(labels.get(card["business_number"], card["business_number"]), bars,
                           card["won_value"], card["median_minutes_reply_to_human_answer"]))
    return made
