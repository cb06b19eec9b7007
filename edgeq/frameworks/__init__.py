"""Loading sources from their frameworks (Keras, SavedModel, float .tflite, PyTorch, ONNX), what
edgeq trusts in them, and TensorFlow's own converter modules edgeq drives."""
