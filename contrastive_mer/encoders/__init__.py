"""Modality encoders. Importing this package registers the built-in ones."""

from contrastive_mer.encoders import (  # noqa: F401  (registration)
    audio,
    graph,
    hf_audio,
    hf_vision,
    sequence,
    tcn_seq,
    text,
    vector,
    video3d,
    vision,
)
from contrastive_mer.encoders.base import EncoderOutput, ModalityEncoder
from contrastive_mer.encoders.registry import (
    ENCODERS,
    EncoderEntry,
    build_encoder,
    check_encoder,
    encoder_config,
    encoder_names,
    get_entry,
    register_encoder,
)

__all__ = ["ENCODERS", "EncoderEntry", "EncoderOutput", "ModalityEncoder", "build_encoder", "check_encoder",
           "encoder_config", "encoder_names", "get_entry", "register_encoder"]
