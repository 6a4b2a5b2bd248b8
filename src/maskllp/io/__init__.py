"""Input and output: images (any size, by window), the cohort manifest, annotations, atomic writes."""
