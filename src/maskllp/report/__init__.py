"""Figures and reports: overlays (paper Fig. 5), loss curves (Fig. 3), cohort report."""
