"""Measurements of a trained model that are neither training nor decoding: how much of the full
transducer lattice the pruned loss keeps (prune_coverage), and its report (prune_report)."""
