"""Per-module summaries and the run-level report."""

from genomelab.report.summary import Comparison, ModuleSummary, read_module_summary, write_module_summary

__all__ = ["Comparison", "ModuleSummary", "read_module_summary", "write_module_summary"]
