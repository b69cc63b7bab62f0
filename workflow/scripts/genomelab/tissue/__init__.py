"""Tissue-of-origin classification from per-sample methylation (whole-sample models)."""
