"""Judging outputs: the figures (SQNR, agreement), output roles, gates, speed ratios."""
