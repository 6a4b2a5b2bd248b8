"""Stage 1: heatmap cell detector (U-Net), tumour classifier (ResNet-50 + linear head), tumour mask."""
