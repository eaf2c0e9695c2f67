"""Compute backends of fastrnn."""
