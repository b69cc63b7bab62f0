"""Readers and atomic writers shared by every module."""

from genomelab.io.atomic import atomic_output, atomic_write_json, atomic_write_text

__all__ = ["atomic_output", "atomic_write_json", "atomic_write_text"]
