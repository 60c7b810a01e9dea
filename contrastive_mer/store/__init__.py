"""The feature store (HDF5, crash-safe and resumable; :mod:`~contrastive_mer.store.hdf5`), its view rule, the FAISS
index, writer locks, and TensorBoard projector files."""
