"""Analyses of a model beyond its outputs: per-layer quantization error (TensorFlow's
QuantizationDebugger, from the recipe) and the op an accelerator computes wrongly (bisection over cut models)."""
