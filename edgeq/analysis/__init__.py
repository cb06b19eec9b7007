"""Analyses that rebuild a model from its recipe: per-layer quantization error (TensorFlow's QuantizationDebugger)."""
