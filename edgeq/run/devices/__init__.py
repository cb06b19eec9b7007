"""Devices beyond this process: profiles, transports (SSH, adb, emulation, AI Hub), the on-device script and benchmark_model."""
