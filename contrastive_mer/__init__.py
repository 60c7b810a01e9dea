"""contrastive-mer: modality-pairwise contrastive learning for multimodal emotion recognition."""

__version__ = "0.1.0"
