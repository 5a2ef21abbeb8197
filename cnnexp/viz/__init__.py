"""Pictures of trained models, one module per kind: curves (loss and error against epoch), activations
(feature-map grids for one image), filters (first-layer kernels and gradient-ascent patterns) and
gradcam (class heat maps); common holds what they share. Used by `cnnexp viz`."""
