"""``maskllp validate``: check a cohort manifest and print a summary (placeholder until io lands)."""
