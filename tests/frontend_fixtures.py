"""Shared builders for the front-end tests: a tiny encoder checkpoint, a mixed batch, a tiny LLM."""

from __future__ import annotations

from pathlib import Path

import torch

from contrastive_mer.config import load_config, to_dict
from contrastive_mer.data.datamodule import build_corpus, build_preprocessors
from contrastive_mer.data.dataset import Collator, MERDataset
from contrastive_mer.data.datasets.synthetic import EMOTION_NAMES
from contrastive_mer.data.sample import Batch
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, build_tiny_llm, build_word_tokenizer
from contrastive_mer.fusion import fuse
from contrastive_mer.module import PairwiseContrastiveModule
from contrastive_mer.store.hdf5 import FeatureStoreWriter

REPO = Path(__file__).resolve().parents[1]
#: small encoders and a 2-speaker synthetic corpus where half the clips lack one modality
TINY_OVERRIDES = [
    "model.modalities.audio.encoder_args={n_mels: 32, bottleneck: 16, hidden: 32, blocks: 2, repeats: 1, "
    "output_dim: 24}",
    "model.modalities.audio.preprocess={max_seconds: 1.0}",
    "model.modalities.video.encoder_args.output_dim=20",
    "model.modalities.video.preprocess={num_frames: 3, size: 32}",
    "model.modalities.text.encoder_args={output_dim: 16, bert_hidden: 16, bert_layers: 1, bert_heads: 2, "
    "bert_intermediate: 32}",
    "model.head={hidden_dim: 32, output_dim: 12}",
    "data.options={seed: 0, speakers: null, num_speakers: 2, clips_per_speaker_emotion: 1, missing_fraction: 0.5, "
    "frame_size: 32, min_seconds: 0.5, max_seconds: 1.0}",
]
PROMPT_WORDS = ["Listen", "to", "and", "watch", "What", "emotion", "does", "this", "person", "express", "?",
                "neutral", "happy", "sad", "angry", "fearful", "surprised"]


def tiny_config(seed: int = 0):
    return load_config(REPO / "experiments" / "demo.yaml", TINY_OVERRIDES + [f"seed={seed}"])


def save_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised (seeded) encoder checkpoint in the format ``load_module`` reads."""
    cfg = tiny_config(seed)
    torch.manual_seed(seed)
    module = PairwiseContrastiveModule(cfg)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": to_dict(cfg)}}, path)
    return path


def mixed_batch(n: int = 6) -> Batch:
    """The first ``n`` clips of the tiny corpus: every modality is missing from at least one clip."""
    cfg = tiny_config()
    adapter = build_corpus(cfg)
    pre = build_preprocessors(cfg)
    dataset = MERDataset(adapter, adapter.records()[:n], pre, cache="none")
    batch = Collator(pre)([dataset[i] for i in range(n)])
    for m, p in batch.present.items():
        assert not bool(p.all()) and bool(p.any()), f"fixture expects {m} missing from some clips"
    return batch


def tiny_llm(arch: str = "llama", hidden: int = 32):
    tokenizer = build_word_tokenizer([" ".join(PROMPT_WORDS)])
    model = build_tiny_llm(TinyLLMConfig(arch=arch, hidden_size=hidden, num_layers=2, num_heads=4,
                                         num_kv_heads=2, intermediate_size=64), tokenizer)
    return model, tokenizer


def write_store(path: Path, module: PairwiseContrastiveModule, batch: Batch, sha: str) -> Path:
    """A feature store of ``batch`` with frame-level sequences, laid out as extraction writes it."""
    mods = module.modalities
    with torch.no_grad():
        outputs = module.encode(batch)
    feats = {m: outputs[m].feature.numpy() for m in mods}
    present = {m: batch.present[m].numpy() for m in mods}
    seqs = {m: [outputs[m].sequence[i, :int(n)].numpy() if present[m][i] else None
                for i, n in enumerate(outputs[m].sequence_lengths.tolist())] for m in mods}
    fused = fuse(feats, None, present, "concat", modalities=mods)
    with FeatureStoreWriter(path, mods, {m: f.shape[1] for m, f in feats.items()}, None, {"concat": fused.shape[1]},
                            sequences=mods, labels={"emotion": list(EMOTION_NAMES[:6])}, groups=["speaker"],
                            attrs={"checkpoint_sha256": sha}, fsync=False) as w:
        w.append(batch.ids, {"emotion": batch.labels["emotion"].numpy()}, batch.groups, feats, {}, present,
                 {"concat": fused}, seqs)
    return path
