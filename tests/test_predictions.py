"""One prediction row for ``predict`` and ``cv``: columns, empty cells for undefined values."""

from __future__ import annotations

import csv
import io

from maskllp.predictions import PREDICTION_COLUMNS, PredictionRow, predictions_csv


def test_rows_write_every_column_and_leave_undefined_values_empty() -> None:
    rows = [PredictionRow("a", "/x/a.png", "ours", 0.123456789, "1-25 %", "masked ratio", s_p=2.0, s_n=14.0,
                          fold=1, truth=0.1),
            PredictionRow("b", "/x/b.png", "det", None, None, "cell count", s_p=0.0, s_n=0.0,
                          note="no tumour cells detected: TPS undefined")]
    text = predictions_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0]) == PREDICTION_COLUMNS
    assert parsed[0]["proportion"] == "0.123457" and parsed[0]["percent"] == "12.35"
    assert parsed[0]["fold"] == "1" and parsed[0]["label"] == ""
    assert parsed[1]["proportion"] == "" and parsed[1]["percent"] == "" and parsed[1]["interval"] == ""
    assert parsed[1]["s_p"] == "0"
    assert rows[0].to_json()["percent"] == 12.35 and rows[1].to_json()["proportion"] is None
