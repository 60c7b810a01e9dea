"""Tiny randomly initialised transformers speech and vision models saved to a folder (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

#: a small convolutional front end: 2 layers, stride 10 (1.6 kHz frames at 16 kHz), receptive field 20 samples
CONV = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=(8, 8),
            conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
AUDIO_ARCHS = ("wav2vec2_group", "wav2vec2_layer", "hubert", "wavlm", "data2vec", "whisper")


def save_tiny_audio(arch: str, folder: Path, seed: int = 0, **overrides: Any) -> Path:
    """Build the tiny ``arch`` model with seed ``seed``, save it and its feature extractor to ``folder``."""
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "whisper":
        config = tf.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                  decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16,
                                  vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                  decoder_start_token_id=1, max_target_positions=32, **overrides)
        model = tf.WhisperModel(config)
        extractor = tf.WhisperFeatureExtractor(feature_size=16)
    else:
        kw = {**CONV, **overrides}
        if arch.startswith("wav2vec2"):
            norm = "group" if arch == "wav2vec2_group" else "layer"
            config = tf.Wav2Vec2Config(feat_extract_norm=norm, do_stable_layer_norm=norm == "layer", **kw)
            model = tf.Wav2Vec2Model(config)
        elif arch == "hubert":
            model = tf.HubertModel(tf.HubertConfig(feat_extract_norm="layer", **kw))
        elif arch == "wavlm":
            model = tf.WavLMModel(tf.WavLMConfig(feat_extract_norm="layer", num_buckets=16, max_bucket_distance=40,
                                                 **kw))
        elif arch == "data2vec":
            model = tf.Data2VecAudioModel(tf.Data2VecAudioConfig(**kw))
        else:
            raise ValueError(arch)
        group = getattr(model.config, "feat_extract_norm", "layer") == "group"
        extractor = tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=not group)
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder
