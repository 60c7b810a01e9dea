"""Diagnostic: how far can the demo's encoders go on held-out speakers when trained *with* labels?

Trains the encoders of a config (default ``experiments/demo.yaml``) with cross-entropy on the emotion labels of
the labelled speakers (a linear head per modality, AdamW), then runs the demo's linear probe
(:func:`~contrastive_mer.evaluation.linear.linear_probe`: standardised features, weight decay chosen on a
speaker-grouped validation split) on the frozen encoder features (per modality and concatenated) of the same
speakers and tests it on the held-out ones, before training (random init) and every few epochs. An upper
reference for what label-free pretraining can reach with these encoders on this corpus; it decided the demo
corpus' difficulty (README, "How the demo's recipe was chosen").

    # the corpus defaults (README: random init 55%, supervised 73% fused after 8 epochs)
    .venv/bin/python benchmarks/supervised_ceiling.py --epochs 8 data.options.num_speakers=12 \
        "data.options.speakers=[0,1,2,3,4,5,6,7]" demo.labelled_speakers=null \
        data.options.clips_per_speaker_emotion=32 data.options.text_emotion_word_fraction=0.3 \
        data.options.latent_spread=0.3 data.options.noise=1.0
    # the same with latent_spread=0.15 noise=0.5 (README: 67% -> 92%)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn

from contrastive_mer.data.datamodule import MERDataModule
from contrastive_mer.evaluation.linear import linear_probe
from contrastive_mer.experiment import load_config
from contrastive_mer.model.module import PairwiseContrastiveModule
from contrastive_mer.workflows.demo import DEMO_CONFIG, demo_speakers, with_speakers

LABEL = "emotion"


def loader(cfg, speakers: list[int], shuffle: bool):
    data = MERDataModule(with_speakers(cfg, speakers))
    data.setup("fit")
    return data.loader(data.train_set, cfg.data.batch_size, shuffle, False)


@torch.no_grad()
def features(module: PairwiseContrastiveModule, batches) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Encoder features per modality, labels and speakers of every clip."""
    module.eval()
    out: dict[str, list[np.ndarray]] = {m: [] for m in module.modalities}
    labels, speakers = [], []
    for batch in batches:
        encoded = module.encode(batch)
        for m in out:
            out[m].append(encoded[m].feature.numpy())
        labels.append(batch.labels[LABEL].numpy())
        speakers += batch.groups["speaker"]
    return {m: np.concatenate(v) for m, v in out.items()}, np.concatenate(labels), np.asarray(speakers)


def probe(module, train_batches, test_batches) -> dict[str, float]:
    """Held-out accuracy (%) of the linear probe per modality and on the concatenation."""
    xtr, ytr, groups = features(module, train_batches)
    xte, yte, _ = features(module, test_batches)
    views = {**{m: (xtr[m], xte[m]) for m in module.modalities},
             "fused": (np.concatenate(list(xtr.values()), 1), np.concatenate(list(xte.values()), 1))}
    return {name: round(100 * linear_probe(a, ytr, b, yte, groups_train=groups).metrics["accuracy"], 1)
            for name, (a, b) in views.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEMO_CONFIG))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--every", type=int, default=4, help="probe every N epochs (and after the last)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = load_config(args.config, ["data.val_fraction=0", *args.overrides])
    roles = demo_speakers(cfg)
    train, train_fixed, test = (loader(cfg, roles.labelled, True), loader(cfg, roles.labelled, False),
                                loader(cfg, roles.test, False))
    module = PairwiseContrastiveModule(cfg)
    num_classes = int(cfg.data.options.get("num_emotions", 6))
    heads = nn.ModuleDict({m: nn.LazyLinear(num_classes) for m in module.modalities})
    print(f"labelled speakers {roles.labelled} -> test speakers {roles.test}")
    print("random init", probe(module, train_fixed, test), flush=True)
    optimiser = None
    for epoch in range(args.epochs):
        module.train()
        start, total = time.perf_counter(), 0.0
        for batch in train:
            encoded = module.encode(batch)
            y = batch.labels[LABEL]
            loss = sum(nn.functional.cross_entropy(heads[m](encoded[m].feature)[batch.present[m]],
                                                   y[batch.present[m]]) for m in module.modalities)
            if optimiser is None:  # after the lazy heads know their input size
                optimiser = torch.optim.AdamW([*module.encoders.parameters(), *heads.parameters()], 1e-3,
                                              weight_decay=1e-4)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total:.1f} ({time.perf_counter() - start:.0f} s)", flush=True)
        if (epoch + 1) % args.every == 0 or epoch == args.epochs - 1:
            print(f"supervised, epoch {epoch}", probe(module, train_fixed, test), flush=True)


if __name__ == "__main__":
    main()
