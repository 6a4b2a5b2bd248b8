"""Tiling (cut, run, merge), model folders, and the end-to-end prediction pipeline."""
