"""Which function runs each rule: rule name -> ``"module:function"``.

Every rule's ``script:`` is ``workflow/scripts/run_step.py``, which looks up its rule here
(``genomelab.entry.dispatch``). Entries are strings, imported only when their rule runs, so
a CPU rule never pays for importing torch. A new step is one function, one line here and
one rule; the rule's name is ``<module>_<name>`` and its step ``<name>_step`` (the gate,
one rule for every module, is ``gate``; tissue's per-model ``tissue_gate`` runs its step).
"""

from __future__ import annotations

from types import MappingProxyType

STEPS = MappingProxyType(
    {
        "ingest_cpg_index": "genomelab.ingest.steps:cpg_index_step",
        "ingest_sample": "genomelab.ingest.steps:sample_step",
        "ingest_sheet": "genomelab.ingest.steps:sheet_step",
        "ingest_cpg_bed": "genomelab.ingest.steps:cpg_bed_step",
        "ingest_block_counts": "genomelab.ingest.steps:block_counts_step",
        "deconv_uxm": "genomelab.deconv.uxm_steps:uxm_step",
        "tissue_simulate": "genomelab.tissue.steps:simulate_step",
        "tissue_features": "genomelab.tissue.steps:features_step",
        "tissue_splits": "genomelab.tissue.steps:splits_step",
        # Three rules (JSON only, JSON + figure, overfit) differing in outputs and resources;
        # the check itself is the rule's ``params.check``.
        "tissue_diagnostic": "genomelab.tissue.steps:diagnostic_step",
        "tissue_diagnostic_plot": "genomelab.tissue.steps:diagnostic_step",
        "tissue_diagnostic_overfit": "genomelab.tissue.steps:diagnostic_step",
        # One model's gate (its training's input): the shared gate step on fewer files.
        "tissue_gate": "genomelab.diagnostics.steps:gate_step",
        "tissue_baselines": "genomelab.tissue.steps:baselines_step",
        "tissue_train": "genomelab.tissue.steps:train_step",
        "tissue_ensemble": "genomelab.tissue.steps:ensemble_step",
        "tissue_reads": "genomelab.tissue.steps:reads_step",
        "tissue_summary": "genomelab.tissue.steps:summary_step",
        "deconv_simulate": "genomelab.deconv.steps:simulate_step",
        "deconv_sources": "genomelab.deconv.steps:sources_step",
        "deconv_reference": "genomelab.deconv.steps:reference_step",
        "deconv_mixtures": "genomelab.deconv.steps:mixtures_step",
        "deconv_diagnostics": "genomelab.deconv.steps:diagnostics_step",
        "deconv_nnls": "genomelab.deconv.steps:nnls_step",
        "deconv_train": "genomelab.deconv.steps:train_step",
        "deconv_compare": "genomelab.deconv.steps:compare_step",
        "deconv_independent": "genomelab.deconv.steps:independent_step",
        "deconv_evaluate": "genomelab.deconv.steps:evaluate_step",
        "deconv_infer": "genomelab.deconv.steps:infer_step",
        "deconv_summary": "genomelab.deconv.steps:summary_step",
        "regulon_process": "genomelab.regulon.steps:process_step",
        "regulon_targets": "genomelab.regulon.steps:targets_step",
        "regulon_diagnostics": "genomelab.regulon.steps:diagnostics_step",
        "regulon_baselines": "genomelab.regulon.steps:baselines_step",
        "regulon_train": "genomelab.regulon.steps:train_step",
        "regulon_evaluate": "genomelab.regulon.steps:evaluate_step",
        "regulon_folds": "genomelab.regulon.steps:folds_step",
        "regulon_summary": "genomelab.regulon.steps:summary_step",
        "assoc_data": "genomelab.assoc.steps:data_step",
        "assoc_features": "genomelab.assoc.steps:features_step",
        "assoc_diagnostics": "genomelab.assoc.steps:diagnostics_step",
        "assoc_baselines": "genomelab.assoc.steps:baselines_step",
        "assoc_train": "genomelab.assoc.steps:train_step",
        "assoc_select": "genomelab.assoc.steps:select_step",
        "assoc_summary": "genomelab.assoc.steps:summary_step",
        "assoc_infer": "genomelab.assoc.steps:infer_step",
        "binning_shred": "genomelab.binning.steps:shred_step",
        "binning_features": "genomelab.binning.steps:features_step",
        "binning_diagnostics": "genomelab.binning.steps:diagnostics_step",
        "binning_baseline": "genomelab.binning.steps:baseline_step",
        "binning_views": "genomelab.binning.steps:views_step",
        "binning_train": "genomelab.binning.steps:train_step",
        "binning_encode": "genomelab.binning.steps:encode_step",
        "binning_bins": "genomelab.binning.steps:bins_step",
        "binning_markers": "genomelab.binning.markers:markers_step",
        "binning_evaluate": "genomelab.binning.steps:evaluate_step",
        "binning_summary": "genomelab.binning.steps:summary_step",
        "tissue_predict": "genomelab.predict.steps:tissue_step",
        "deconv_predict": "genomelab.predict.steps:deconv_step",
        "regulon_predict": "genomelab.predict.steps:regulon_step",
        "assoc_predict": "genomelab.predict.steps:assoc_step",
        "binning_predict": "genomelab.predict.steps:binning_step",
        "gate": "genomelab.diagnostics.steps:gate_step",
        "report_summary": "genomelab.report.steps:summary_step",
        "report_software_versions": "genomelab.report.steps:software_versions_step",
    }
)
