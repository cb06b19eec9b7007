"""Calibration: TensorFlow's calibrated graph, observed and parallel calibration, range methods and the choice among them."""
