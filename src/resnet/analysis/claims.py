"""Verdicts on the paper's claims: **shown**, **contradicted** or **inconclusive**, each with its criterion.

A report never leaves a reader to guess whether a 20-iteration run "reproduced" anything. Every claim is
checked against a stated criterion: a difference counts only when it is larger than a margin (a fixed
floor, or twice the standard error of the difference where the data give one), and a comparison involving
a run that did not reach its target iteration, or nets still near chance, is inconclusive by rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SHOWN, CONTRADICTED, INCONCLUSIVE = "shown", "contradicted", "inconclusive"
#: A net whose training error is still above this has not started to fit CIFAR-10 (chance: 90%).
STILL_NEAR_CHANCE = 50.0


@dataclass(frozen=True)
class Verdict:
    claim: str  # the paper's statement, with its section
    word: str  # shown | contradicted | inconclusive
    evidence: str  # our numbers
    criterion: str  # how the word was decided

    def markdown(self) -> str:
        return f"- **{self.word}**: {self.claim}. Ours: {self.evidence}. Criterion: {self.criterion}."


def final_error(records: Sequence[Mapping[str, Any]], share: float = 0.05, least: int = 5) -> tuple[float, float]:
    """Mean training error over the last ``share`` of the logged records (at least ``least`` of them), and its
    standard error: single records are single mini-batches, too noisy to compare (section 4.2 curves)."""
    rows = [float(r["error"]) for r in records if r.get("split") == "train" and "error" in r]
    if not rows:
        return math.nan, math.nan
    k = min(len(rows), max(least, math.ceil(share * len(rows))))
    tail = rows[-k:]
    mean = sum(tail) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in tail) / (k - 1)) if k > 1 else math.nan
    return mean, sd / math.sqrt(k) if k > 1 else math.nan


def compare(
    claim: str,
    deeper: str,
    shallower: str,
    errors: Mapping[str, tuple[float, float]],
    *,
    expect: str,
    floor: float,
    quantity: str = "final training error",
    unfinished: Sequence[str] = (),
    near_chance: float = STILL_NEAR_CHANCE,
    chance: float = 90.0,
) -> Verdict:
    """Is ``deeper``'s error ``expect``-ed ("higher", "lower" or "not higher") than ``shallower``'s, by more than
    the margin? "not higher" is shown unless the deeper net is worse by more than the margin. ``near_chance``:
    the error above which the shallower net counts as not yet learning (CIFAR: 50%, chance being 90%)."""
    margin_text = f"max({floor:g} points, 2 standard errors of the difference)"
    rule = (
        f"{SHOWN} unless {deeper}'s {quantity} is above {shallower}'s by more than {margin_text}, then {CONTRADICTED}"
        if expect == "not higher"
        else f"{SHOWN} when {deeper}'s {quantity} is {'above' if expect == 'higher' else 'below'} {shallower}'s by "
        f"more than {margin_text}; {CONTRADICTED} when it is off by that much the other way"
    )
    otherwise = "" if expect == "not higher" else " otherwise, and"
    criterion = (
        f"{rule}; {INCONCLUSIVE}{otherwise} whenever a run is missing or incomplete or the shallower net's "
        f"error is still above {near_chance:.3g}% (not yet learning; chance is {chance:.3g}%)"
    )
    missing = [n for n in (deeper, shallower) if n not in errors or math.isnan(errors[n][0])]
    if missing or unfinished:
        why = ", ".join(
            [*(f"{n} incomplete" for n in unfinished), *(f"{n} not run" for n in missing if n not in unfinished)]
        )
        return Verdict(claim, INCONCLUSIVE, why, criterion)
    (a, sa), (b, sb) = errors[deeper], errors[shallower]
    se = math.sqrt((sa if not math.isnan(sa) else 0) ** 2 + (sb if not math.isnan(sb) else 0) ** 2)
    margin = max(floor, 2 * se)
    gap = a - b
    evidence = f"{deeper} {a:.2f}% vs {shallower} {b:.2f}% ({gap:+.2f} points; margin {margin:.2f})"
    if b > near_chance:
        return Verdict(claim, INCONCLUSIVE, evidence + "; too short to tell", criterion)
    if expect == "not higher":
        return Verdict(claim, CONTRADICTED if gap > margin else SHOWN, evidence, criterion)
    signed = gap if expect == "higher" else -gap
    word = SHOWN if signed > margin else CONTRADICTED if signed < -margin else INCONCLUSIVE
    return Verdict(claim, word, evidence, criterion)


def ratio_verdict(claim: str, evidence: str, ratio: float, tolerance: float, criterion: str) -> Verdict:
    """``ratio`` below ``1 - tolerance``: shown; above ``1 + tolerance``: contradicted; else inconclusive."""
    word = SHOWN if ratio < 1 - tolerance else CONTRADICTED if ratio > 1 + tolerance else INCONCLUSIVE
    return Verdict(claim, word, evidence, criterion)


def render(verdicts: Sequence[Verdict]) -> str:
    """The markdown block of a report's verdicts."""
    if not verdicts:
        return "No claim can be checked yet: no finished runs."
    return "## Verdicts\n\n" + "\n".join(v.markdown() for v in verdicts)
