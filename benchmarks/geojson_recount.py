"""Does counting the cells of the exported GeoJSON give the TPS the tool reports? (as QuPath would)

    python benchmarks/geojson_recount.py PREDICTION_DIR

PREDICTION_DIR is what ``maskllp predict`` wrote. For each core's ``<name>.tps.json`` its
``<name>.cells.geojson`` is read as plain JSON (not through maskllp's reader, so this checks the file
a QuPath user gets): detections classified ``Tumor: Positive`` and ``Tumor: Negative`` (or the
``[classes] write_positive`` / ``write_negative`` names of the run's ``config.yaml``) are counted
and their ratio is set against the reported TPS. Where the file says its positive / negative calls
are the ones the TPS counts (the cell-level methods and Det), the two must agree; a map method's
TPS is the ratio of its masked sums, which the file says, so its recount is shown, not checked.
Prints one line per core and a summary; exits 1 when a counted core disagrees.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from maskllp.classes import CellClass, ClassMapping
from maskllp.config import load_config
from maskllp.inference.pipeline import POSITIVITY_NOTES

COUNTED_NOTES = {POSITIVITY_NOTES["cell method"], POSITIVITY_NOTES["counted"]}
"""The cells' ``Positivity`` notes that say the TPS is the count of their calls."""
TOLERANCE = 1e-6
"""Largest |recount - reported| of a counted TPS that still agrees (the JSON keeps full precision)."""


@dataclass(frozen=True)
class Recount:
    name: str
    reported: float | None
    positive: int
    negative: int
    other: int
    counted: bool
    """Whether the file says its calls are what the TPS counts."""

    @property
    def recount(self) -> float | None:
        n = self.positive + self.negative
        return None if n == 0 else self.positive / n

    @property
    def agrees(self) -> bool:
        if self.reported is None or self.recount is None:
            return self.reported is None and self.recount is None
        return abs(self.recount - self.reported) <= TOLERANCE


def _names(feature: dict) -> tuple[str, ...]:
    c = feature.get("properties", {}).get("classification") or {}
    if "names" in c:
        return tuple(str(n).strip() for n in c["names"])
    return tuple(p.strip() for p in str(c.get("name", "")).split(":"))


def recount_core(tps_json: Path, mapping: ClassMapping | None = None) -> Recount:
    """Count the classes of one core's cells GeoJSON next to its ``.tps.json`` (positive and negative
    as ``mapping`` writes them; QuPath's names by default)."""
    mapping = mapping or ClassMapping()
    row = json.loads(tps_json.read_text())
    name = row["name"]
    cells = tps_json.with_name(f"{name}.cells.geojson")
    features = json.loads(cells.read_text())["features"]
    names = [_names(f) for f in features]
    positive = names.count(tuple(mapping.written_names(CellClass.POSITIVE_TUMOUR)))
    negative = names.count(tuple(mapping.written_names(CellClass.NEGATIVE_TUMOUR)))
    notes = {str(f.get("properties", {}).get("metadata", {}).get("Positivity", "")) for f in features}
    counted = bool(notes & COUNTED_NOTES)
    other = len(features) - positive - negative
    return Recount(name, row.get("proportion"), positive, negative, other, counted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a maskllp predict output folder")
    args = parser.parse_args(argv)
    files = sorted(args.folder.glob("*.tps.json"))
    if not files:
        print(f"{args.folder}: no *.tps.json (is it a maskllp predict output folder?)", file=sys.stderr)
        return 2
    run_config = args.folder / "config.yaml"  # the names the run wrote
    mapping = load_config(run_config).classes if run_config.is_file() else ClassMapping()
    recounts = [recount_core(f, mapping) for f in files]
    bad = 0
    print(f"core | reported TPS | {mapping.write_positive} | {mapping.write_negative} | other | recount "
          "| check")
    for r in recounts:
        shown = "undefined" if r.reported is None else f"{100 * r.reported:.2f} %"
        again = "undefined" if r.recount is None else f"{100 * r.recount:.2f} %"
        verdict = (("agrees" if r.agrees else "DISAGREES") if r.counted
                   else "not checked (map method: masked ratio)")
        bad += r.counted and not r.agrees
        print(f"{r.name} | {shown} | {r.positive} | {r.negative} | {r.other} | {again} | {verdict}")
    print(f"{len(recounts)} cores; {sum(r.counted for r in recounts)} with counted calls, {bad} disagreeing")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
