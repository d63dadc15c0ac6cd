"""Sealpost: certified communications turned into verifiable evidence."""

__version__ = "0.1.0"
