"""Trajectory transfer (placeholder docstring replaced below)."""
