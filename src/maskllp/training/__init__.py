"""Lightning modules and data modules shared by every method (single GPU to DDP by a flag)."""
