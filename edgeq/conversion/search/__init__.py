"""Choosing among candidate models: the accuracy-budget search and --optimize latency."""
