"""Probes and metrics over arrays and feature stores: linear, kNN and MLP probes (one signature, the ``PROBES``
registry), the protocol over views and folds, raw-input baselines, retrieval metrics and report pictures."""
