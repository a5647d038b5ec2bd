"""Assign: dispatches units of link-building work to a fleet of tool servers."""

__version__ = "0.1.0"
