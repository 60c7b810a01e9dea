"""The contrastive network and what defines it: one encoder and projection head per modality
(:mod:`~contrastive_mer.model.module`), the pairwise losses, SpecAugment masking, and atomic checkpoint I/O. Used by
pretraining (which trains it) and by extraction and the front end (which load it)."""
