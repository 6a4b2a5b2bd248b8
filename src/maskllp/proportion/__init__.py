"""Stage 2: the proportion network (ResNet-18 maps F_p, F_n), masked sums, and the losses."""
