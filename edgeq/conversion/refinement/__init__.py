"""Refinement after quantization: bias correction, adaptive rounding, their shared layer records, and the choice among them."""
