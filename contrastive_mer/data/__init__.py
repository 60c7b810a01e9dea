"""From files to batches: corpus adapters (:mod:`~contrastive_mer.data.datasets`), decoding, preprocessing by
input kind, label-free normalisation, caching, collation, splits and samplers."""
