"""Chains of stages run as one job: the pretrained / random-init / raw-input comparison behind ``cmer evaluate``
(:mod:`~contrastive_mer.workflows.comparison`) and ``cmer demo`` (:mod:`~contrastive_mer.workflows.demo`)."""
