"""Metrics (scikit-learn), cross-validation, and the Table 1 printer."""
