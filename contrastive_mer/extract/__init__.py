"""Stage 2, extraction: the one encode loop over records (:mod:`~contrastive_mer.extract.encode`), features into
a feature store (:mod:`~contrastive_mer.extract.extraction`), sharding over processes, and how labels are stored."""
