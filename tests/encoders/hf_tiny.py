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


VISION_ARCHS = ("clip", "dinov2", "vit")


def save_tiny_vision(arch: str, folder: Path, seed: int = 0) -> Path:
    """A tiny ``arch`` vision model (32 px images, 8 px patches, 2 layers) with its image processor's statistics."""
    import transformers as tf

    torch.manual_seed(seed)
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
              patch_size=8)
    if arch == "clip":
        config = tf.CLIPConfig(vision_config=kw, text_config=dict(hidden_size=32, num_hidden_layers=1,
                                                                   num_attention_heads=2, intermediate_size=37,
                                                                   vocab_size=99), projection_dim=16)
        model = tf.CLIPModel(config)
        mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    elif arch == "dinov2":
        model = tf.Dinov2Model(tf.Dinov2Config(**kw))
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    elif arch == "vit":
        model = tf.ViTModel(tf.ViTConfig(**kw), add_pooling_layer=False)
        mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    else:
        raise ValueError(arch)
    model.save_pretrained(folder)
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=mean,
                          image_std=std).save_pretrained(folder)
    return folder
