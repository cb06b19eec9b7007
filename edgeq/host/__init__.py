"""This machine and the processes edgeq runs on it: CPU facts, native output, the crash-contained child, scratch folders."""
