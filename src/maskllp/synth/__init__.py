"""Synthetic PD-L1 / Ki-67 IHC cohorts with exact per-cell truth."""
