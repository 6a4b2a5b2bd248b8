"""Stage-1 metrics: detection precision / recall / F1 against points (one-to-one matching within a
radius, Hungarian), cell-classification accuracy / F1 on matched cells, and tumour-mask Dice.

Undefined values (precision with no detection, Dice of two empty masks...) are None, never 0 or NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from maskllp.classes import CellClass
from maskllp.detection.mask import tumour_mask


def match_points(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to true points within ``radius``.

    pred: (N, 2), truth: (M, 2) float, same coordinates and units as ``radius``. Among all
    matchings that pair only points closer than ``radius`` (<=), the one with the most pairs and,
    among those, the least total distance (Hungarian algorithm on each connected group of nearby
    points, so large images stay cheap). Returns (pred index (K,), truth index (K,)) int64.
    """
    pred = np.asarray(pred, np.float64).reshape(-1, 2)
    truth = np.asarray(truth, np.float64).reshape(-1, 2)
    if len(pred) == 0 or len(truth) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = cKDTree(pred).query_ball_tree(cKDTree(truth), r=radius)
    rows = np.repeat(np.arange(len(pred)), [len(p) for p in pairs])
    cols = np.fromiter((j for p in pairs for j in p), np.int64, count=len(rows))
    if len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n, m = len(pred), len(truth)
    graph = coo_matrix((np.ones(len(rows)), (rows, n + cols)), shape=(n + m, n + m))
    _, label = connected_components(graph, directed=False)
    edge_group = label[rows]
    order = np.argsort(edge_group, kind="stable")
    rows, cols, edge_group = rows[order], cols[order], edge_group[order]
    bounds = np.flatnonzero(np.diff(edge_group)) + 1
    out_p, out_t = [], []
    for r, c in zip(np.split(rows, bounds), np.split(cols, bounds), strict=True):
        pu, pi = np.unique(r, return_inverse=True)
        tu, ti = np.unique(c, return_inverse=True)
        dist = np.linalg.norm(pred[pu][pi] - truth[tu][ti], axis=1)
        big = 1.0 + radius * (len(pu) + len(tu) + 1)  # any extra pair beats any distance saving
        cost = np.full((len(pu), len(tu)), 2.0 * big)
        cost[pi, ti] = dist - big
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] < 0
        out_p.append(pu[a[ok]])
        out_t.append(tu[b[ok]])
    p, t = np.concatenate(out_p), np.concatenate(out_t)
    order = np.argsort(t, kind="stable")
    return p[order].astype(np.int64), t[order].astype(np.int64)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass
class DetectionScores:
    """Counts and rates of a point matching (rates None when undefined)."""

    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None

    @staticmethod
    def from_counts(tp: int, fp: int, fn: int) -> DetectionScores:
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        return DetectionScores(int(tp), int(fp), int(fn), precision, recall, _f1(precision, recall))

    def __add__(self, other: DetectionScores) -> DetectionScores:
        return DetectionScores.from_counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self) -> dict:
        return asdict(self)


def detection_scores(pred: np.ndarray, truth: np.ndarray, radius: float) -> DetectionScores:
    """Precision / recall / F1 of detections against true points (see :func:`match_points`)."""
    p, _ = match_points(pred, truth, radius)
    tp = len(p)
    return DetectionScores.from_counts(tp, len(np.asarray(pred).reshape(-1, 2)) - tp,
                                       len(np.asarray(truth).reshape(-1, 2)) - tp)


@dataclass
class ClassificationScores:
    """Agreement of predicted and true classes on matched cells."""

    n: int
    accuracy: float | None
    f1: float | None
    """Binary: F1 of the positive class (tumour). Several classes: macro F1 over the true classes."""

    def as_dict(self) -> dict:
        return asdict(self)


def classification_scores(
    pred: np.ndarray, truth: np.ndarray, positive: int | None = 1
) -> ClassificationScores:
    """Accuracy and F1 of class labels (N,) int.

    ``positive``: the class whose F1 is reported (binary task); None: macro F1 over the classes
    present in ``truth`` or ``pred``. With no cells everything is None.
    """
    from sklearn.metrics import f1_score

    pred, truth = np.asarray(pred).ravel(), np.asarray(truth).ravel()
    if len(truth) == 0:
        return ClassificationScores(0, None, None)
    accuracy = float(np.mean(pred == truth))
    if positive is not None:
        tp = int(np.sum((pred == positive) & (truth == positive)))
        f1 = _f1(_ratio(tp, int(np.sum(pred == positive))), _ratio(tp, int(np.sum(truth == positive))))
    else:
        f1 = float(f1_score(truth, pred, average="macro"))
    return ClassificationScores(len(truth), accuracy, f1)


@dataclass
class PositivityScores:
    """Positive / negative calls of tumour cells against the true stain of the matched true tumour
    cells (counts add up over cores; rates None when undefined)."""

    tp: int = 0
    """Called positive, truly positive."""
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: PositivityScores) -> PositivityScores:
        return PositivityScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                                self.tn + other.tn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        """F1 of the positive calls."""
        return _f1(self.precision, self.recall)

    @property
    def f1_negative(self) -> float | None:
        return _f1(_ratio(self.tn, self.tn + self.fn), _ratio(self.tn, self.tn + self.fp))

    @property
    def macro_f1(self) -> float | None:
        """Mean of the positive and negative F1 (None when either is undefined)."""
        if self.f1 is None or self.f1_negative is None:
            return None
        return 0.5 * (self.f1 + self.f1_negative)

    def as_dict(self) -> dict:
        return {"n": self.n, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "f1_negative": self.f1_negative, "macro_f1": self.macro_f1}


def positivity_scores(pred_yx: np.ndarray, pred_positive: np.ndarray, truth_yx: np.ndarray,
                      truth_classes: np.ndarray, radius: float) -> PositivityScores:
    """Score the positive / negative calls (``pred_positive`` (N,) bool) of cells at ``pred_yx``
    (N, 2) against the true cells (M, 2) with their CellClass values: predicted cells are matched
    one-to-one to true positive or negative tumour cells within ``radius`` (:func:`match_points`);
    unmatched cells, and true cells of other classes, do not count."""
    stained = np.isin(truth_classes, [CellClass.POSITIVE_TUMOUR, CellClass.NEGATIVE_TUMOUR])
    p, t = match_points(pred_yx, np.asarray(truth_yx)[stained], radius)
    call = np.asarray(pred_positive, bool)[p]
    true = np.asarray(truth_classes)[stained][t] == CellClass.POSITIVE_TUMOUR
    return PositivityScores(int(np.sum(call & true)), int(np.sum(call & ~true)), int(np.sum(~call & true)),
                            int(np.sum(~call & ~true)))


def mask_dice(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Dice 2|A & B| / (|A| + |B|) of two boolean masks of one shape; None when both are empty."""
    a, b = np.asarray(pred, bool), np.asarray(truth, bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * int(np.sum(a & b)) / total


# ================================================================================ cohort evaluation
def _tumour_code(classes: np.ndarray) -> np.ndarray:
    """CellClass values -> 1 tumour, 0 non-tumour."""
    return (np.asarray(classes) != CellClass.NON_TUMOUR).astype(np.int64)


def _three_code(classes: np.ndarray) -> np.ndarray:
    """CellClass values -> 0 positive tumour, 1 negative tumour, 2 non-tumour, -1 tumour of unknown stain."""
    lookup = {CellClass.POSITIVE_TUMOUR: 0, CellClass.NEGATIVE_TUMOUR: 1, CellClass.NON_TUMOUR: 2}
    return np.array([lookup.get(CellClass(int(c)), -1) for c in classes], np.int64)


@dataclass(frozen=True)
class EvaluationSettings:
    """Lengths in level-0 pixels of the core at hand."""

    radius_px: float
    """Matching radius."""
    alpha_px: float
    """Tumour-mask radius."""
    threshold: float = 0.5
    """Tumour-score threshold."""
    downsample: float = 1.0
    """Resolution of the compared masks."""


@dataclass
class CoreEvaluation:
    """Stage 1 on one core against its true cells; ``matched_*`` hold tumour codes of matched cells."""

    name: str
    detection: DetectionScores
    tumour: ClassificationScores
    three_class: ClassificationScores | None
    mask_dice: float | None
    matched_pred: np.ndarray
    matched_true: np.ndarray
    subtypes: dict[str, tuple[int, int]] | None = None
    """True subtype -> (matched cells, of which called tumour), when the truth names subtypes."""

    def as_dict(self) -> dict:
        out = {"name": self.name, "detection": self.detection.as_dict(), "tumour": self.tumour.as_dict(),
               "mask_dice": self.mask_dice}
        if self.three_class is not None:
            out["three_class"] = self.three_class.as_dict()
        if self.subtypes is not None:
            out["subtypes"] = subtype_errors(self.subtypes)
        return out


def subtype_errors(counts: dict[str, tuple[int, int]]) -> dict[str, dict[str, float | int | None]]:
    """Per true subtype: matched cells and the error stage 1 makes on them (a tumour cell called
    non-tumour; any other cell called tumour): ``{"lymphocyte": {"n": 332, "called tumour": 0.61}}``."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name, (n, tumour) in sorted(counts.items()):
        if name == "tumour":
            out[name] = {"n": n, "called non-tumour": _ratio(n - tumour, n)}
        else:
            out[name] = {"n": n, "called tumour": _ratio(tumour, n)}
    return out


def evaluate_cells(cells, truth_yx: np.ndarray, truth_classes: np.ndarray, settings: EvaluationSettings,
                   name: str = "", truth_subtypes: Sequence[str] | None = None) -> CoreEvaluation:
    """Compare ``cells`` (``maskllp.detection.cells.DetectedCells``) with the true cells of one core.

    truth_yx: (M, 2) level-0 coordinates; truth_classes: (M,) CellClass values. Detection: one-to-one
    matching within the radius. Tumour classification: tumour vs non-tumour on matched cells.
    Three-class (when the cells carry three-class probabilities): on matched cells whose true stain
    is known, macro F1. Mask Dice: M of the detections against M of the true tumour cells (same
    alpha and resolution). ``truth_subtypes`` (M,) names what each true cell is (``tumour``,
    ``lymphocyte``...): the errors are then counted per subtype.
    """
    s = settings
    p, t = match_points(cells.yx, truth_yx, s.radius_px)
    det = DetectionScores.from_counts(len(p), len(cells) - len(p), len(truth_yx) - len(p))
    pred_tumour = cells.is_tumour(s.threshold).astype(np.int64)[p]
    true_tumour = _tumour_code(truth_classes[t])
    tumour = classification_scores(pred_tumour, true_tumour, positive=1)
    three = None
    if cells.class_probs is not None:
        true3 = _three_code(truth_classes[t])
        pred3 = _three_code(cells.cell_classes(s.threshold)[p])
        known = true3 >= 0
        three = classification_scores(pred3[known], true3[known], positive=None)
    pred_mask = tumour_mask(cells.yx, cells.is_tumour(s.threshold), cells.shape, s.alpha_px, s.downsample)
    true_mask = tumour_mask(truth_yx, _tumour_code(truth_classes) == 1, cells.shape, s.alpha_px, s.downsample)
    dice = mask_dice(pred_mask, true_mask)
    subtypes = None
    if truth_subtypes is not None:
        names = np.asarray(truth_subtypes, dtype=object)[t]
        subtypes = {str(s): (int(np.sum(names == s)), int(pred_tumour[names == s].sum()))
                    for s in np.unique(names)}
    return CoreEvaluation(name, det, tumour, three, dice, pred_tumour, true_tumour, subtypes)


def summarise(cores: list[CoreEvaluation]) -> dict:
    """Pooled over cores: detection counts, tumour classification of all matched cells; mean Dice."""
    det = DetectionScores.from_counts(sum(c.detection.tp for c in cores), sum(c.detection.fp for c in cores),
                                      sum(c.detection.fn for c in cores))
    pred = np.concatenate([c.matched_pred for c in cores]) if cores else np.zeros(0, np.int64)
    true = np.concatenate([c.matched_true for c in cores]) if cores else np.zeros(0, np.int64)
    dices = [c.mask_dice for c in cores if c.mask_dice is not None]
    out = {"cores": len(cores), "detection": det.as_dict(),
           "tumour": classification_scores(pred, true, positive=1).as_dict(),
           "mask_dice_mean": float(np.mean(dices)) if dices else None}
    if cores and all(c.subtypes is not None for c in cores):
        pooled: dict[str, tuple[int, int]] = {}
        for c in cores:
            for name, (n, tumour) in (c.subtypes or {}).items():
                a, b = pooled.get(name, (0, 0))
                pooled[name] = (a + n, b + tumour)
        out["subtypes"] = subtype_errors(pooled)
    return out


def format_score(value: float | None) -> str:
    """A score at 3 decimals, or "undefined"."""
    return "undefined" if value is None else f"{value:.3f}"


def summary_line(overall: dict) -> str:
    """One line of a :func:`summarise` result, as ``maskllp evaluate-detection`` prints it."""
    det, tum, f = overall["detection"], overall["tumour"], format_score
    return (f"{overall['cores']} cores: detection precision {f(det['precision'])}, recall "
            f"{f(det['recall'])}, F1 {f(det['f1'])}; tumour accuracy {f(tum['accuracy'])}, "
            f"F1 {f(tum['f1'])} ({tum['n']} matched cells); mask Dice {f(overall['mask_dice_mean'])}"
            + "".join(f"; {name} {what} {f(v[what])} (n {v['n']})"
                      for name, v in overall.get("subtypes", {}).items()
                      for what in ("called tumour", "called non-tumour") if what in v))
