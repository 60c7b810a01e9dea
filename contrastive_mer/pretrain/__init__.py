"""Stage 1, pretraining without labels: the Lightning loop and run folder (:mod:`~contrastive_mer.pretrain.loop`),
what a run shows (progress lines, embedding figures) and the online probe."""
