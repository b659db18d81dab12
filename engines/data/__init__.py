"""Training and benchmark data for the FSR engines: aligned faces, splits, degradations, real LR faces."""
