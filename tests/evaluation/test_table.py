"""The Table 1 printer: the paper's layout as text, CSV and Markdown, with its footer."""

from __future__ import annotations

import csv
import io

from maskllp.evaluation.metrics import interval_metrics, proportion_metrics
from maskllp.evaluation.table import (
    MethodScores,
    format_csv,
    format_markdown,
    format_text,
    table_cells,
    table_footer,
)
from maskllp.intervals import PAPER_FIVE


def scores() -> list[MethodScores]:
    true = [0, 1, 2, 3, 4, 0]
    ours = MethodScores("ours", "Ours", "yes", interval_metrics(true, [0, 1, 2, 3, 4, -1], 5),
                        proportion_metrics([0.005, 0.1, None, None, None, None],
                                           [0.004, 0.2, 0.3, 0.6, 0.9, None]), (0.5, 0.7))
    cls = MethodScores("class", "Class", "", interval_metrics(true, [0, 0, 0, 0, 0, 0], 5), None, (0.1, 0.2),
                       interval_only=True)
    return [cls, ours]


def test_table_layout() -> None:
    header, rows = table_cells(scores(), PAPER_FIVE, (0.01, 0.5))
    assert header == ["Method", "mask", "0-1 %", "1-25 %", "25-50 %", "50-75 %", "75-100 %", "mRecall",
                      "mPrecision", "mF1", "MAE", "agree 1 %", "agree 50 %", "undefined"]
    cls, ours = rows
    assert cls[:3] == ["Class", "", "1.000"] and cls[7] == "0.200" and cls[10:13] == ["", "", ""]
    assert ours[:3] == ["Ours", "yes", "0.500"] and ours[7] == "0.900" and ours[-1] == "1"
    assert ours[10] == "0.051"  # (0.001 + 0.1) / 2


def test_text_markdown_csv() -> None:
    header, rows = table_cells(scores(), PAPER_FIVE, (0.01, 0.5))
    footer = table_footer(scores(), 6, 2, "stage1", 0)
    text = format_text(header, rows, footer)
    lines = text.splitlines()
    assert lines[0].startswith("Method") and lines[2].startswith("Class") and lines[3].startswith("Ours")
    assert len({len(lines[0]), len(lines[1])}) == 1
    assert "undefined predictions (empty tumour mask / no tumour cell found) count as wrong: Ours 1" in text
    assert "Class predicts an interval only" in text and "2-fold" in text
    md = format_markdown(header, rows, footer)
    assert md.splitlines()[0].startswith("| Method | mask | 0-1 %") and "|---|---|---:|" in md
    parsed = list(csv.reader(io.StringIO(format_csv(header, rows))))
    assert parsed[0] == header and parsed[2][0] == "Ours"


def test_oracle_masks_are_labelled() -> None:
    footer = table_footer(scores(), 6, 2, "truth", 0)
    assert any("ORACLE" in line for line in footer)


def test_the_footer_says_how_often_the_ranges_held() -> None:
    from dataclasses import replace

    from maskllp.evaluation.metrics import RangeCoverage

    cls, ours = scores()
    ours = replace(ours, ranges=RangeCoverage(5, 0.8, 2, 0.5, 0.123))
    footer = table_footer([cls, ours], 6, 2, "stage1", 0)
    line = next(f for f in footer if f.startswith("90 % TPS range"))
    assert line == ("90 % TPS range on the held-out cores: Ours meets the labelled interval 80 %, holds the "
                    "exact TPS 50 %, mean width 12.3 pp.")
    assert not any(f.startswith("90 % TPS range") for f in table_footer(scores(), 6, 2, "stage1", 0))
    whole = replace(ours, ranges=RangeCoverage(5, 1.0, 2, 1.0, 1.0))  # margin 1: too few validation cores
    line = next(f for f in table_footer([cls, whole], 6, 2, "stage1", 0) if f.startswith("90 % TPS range"))
    assert "0-100 % on every core (too few validation cores" in line
