"""``cmer demo``: the whole chain on the embedded synthetic corpus.

pretrain (speakers the config lists) -> extract training and held-out speakers with (a) the pretrained encoders
and (b) the same encoders untrained -> (c) raw-input baseline features -> linear and kNN probes on the held-out
speakers -> FAISS index and cross-modal retrieval -> one table, a JSON report and pictures in the run folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig

from contrastive_mer.config import to_dict
from contrastive_mer.configs import config_path
from contrastive_mer.evaluation.protocol import ProbeResults, probe_stores, run_probes
from contrastive_mer.experiment import config_from_dict, load_config
from contrastive_mer.extract.extraction import ExtractOptions, extract
from contrastive_mer.model.module import load_module
from contrastive_mer.pretrain.loop import make_run_dir, pretrain
from contrastive_mer.utils import file_sha256, write_text_atomic
from contrastive_mer.workflows.comparison import (
    format_comparison,
    merge_tables,
    random_init_like,
    raw_features_for,
    raw_views_split,
)

#: the demo's experiment config, shipped inside the package (experiments/demo.yaml is the same file)
DEMO_CONFIG = config_path("demo.yaml")
FAST_OVERRIDES = ["trainer.max_epochs=3", "data.options.clips_per_speaker_emotion=4"]
LABEL = "emotion"


def with_speakers(cfg: DictConfig, speakers: Sequence[int]) -> DictConfig:
    data = to_dict(cfg)
    data["data"]["options"]["speakers"] = list(speakers)
    return config_from_dict(data)


@dataclass(frozen=True)
class DemoSpeakers:
    """Speaker indices of the three roles in the demo."""

    pretrain: list[int]
    labelled: list[int]
    test: list[int]


def demo_speakers(cfg: DictConfig) -> DemoSpeakers:
    """Pretraining speakers (``data.options.speakers``), labelled ones (``demo.labelled_speakers``, default: the
    pretraining ones) and test ones (``demo.test_speakers``, default: the rest); test speakers are unseen."""
    everyone = list(range(int(cfg.data.options.get("num_speakers", 12))))
    pretrain_spk = list(cfg.data.options.get("speakers") or everyone)
    labelled = list(cfg.demo.labelled_speakers or pretrain_spk)
    test = list(cfg.demo.test_speakers or [s for s in everyone if s not in pretrain_spk])
    if not test:
        raise ValueError("the demo needs held-out speakers: set data.options.speakers to a subset")
    for key, values in (("data.options.speakers", pretrain_spk), ("demo.labelled_speakers", labelled),
                        ("demo.test_speakers", test)):
        unknown = sorted(set(values) - set(everyone))
        if unknown:
            raise ValueError(f"{key}: speaker(s) {unknown} not in the corpus (0..{len(everyone) - 1})")
    seen = sorted(set(test) & (set(pretrain_spk) | set(labelled)))
    if seen:
        raise ValueError(f"demo.test_speakers: speaker(s) {seen} are also pretraining or labelled speakers")
    return DemoSpeakers(pretrain_spk, labelled, test)


def raw_probe(cfg: DictConfig, train_speakers: list[int], test_speakers: list[int],
              probes: Sequence[str]) -> ProbeResults:
    """Probes on raw-input baseline features (pooled log-mel statistics, downsampled frames, bag of words)."""
    train = raw_features_for(with_speakers(cfg, train_speakers))
    test = raw_features_for(with_speakers(cfg, test_speakers))
    return run_probes(raw_views_split(train, test, LABEL, "speaker"), task="multiclass", label=LABEL,
                      probes=probes)


def run_demo(output: str | Path | None = None, *, fast: bool = False, overrides: Sequence[str] = (),
             config: str | Path | None = None) -> dict[str, Any]:
    """Run the demo; returns the report (also written to ``<run>/report.json``)."""
    start = time.perf_counter()
    cfg = load_config(config or DEMO_CONFIG, (FAST_OVERRIDES if fast else []) + list(overrides))
    run_dir = make_run_dir(cfg, output)
    speakers = demo_speakers(cfg)
    train_spk, test_spk = speakers.labelled, speakers.test
    print(f"[demo] run folder: {run_dir}")
    print(f"[demo] 1/5 pretraining on speakers {speakers.pretrain} (labels unused)")
    result = pretrain(cfg, run_dir / "pretrain", overwrite=True)  # the demo redoes its whole folder
    trained = load_module(str(result.checkpoint))
    untrained = random_init_like(cfg)
    modalities = trained.modalities

    print(f"[demo] 2/5 extracting features of labelled speakers {train_spk} and test speakers {test_spk}")
    stores: dict[str, dict[str, Path]] = {}
    opts = ExtractOptions(progress=False, overwrite=True, fusion_modes=("concat", "mean"))
    sha = file_sha256(result.checkpoint)
    for name, module in (("pretrained", trained), ("random_init", untrained)):
        stores[name] = {}
        for split, split_speakers in (("train", train_spk), ("test", test_spk)):
            path = run_dir / f"features-{name}-{split}.h5"
            extract(module, with_speakers(cfg, split_speakers), path, opts,
                    checkpoint_sha256=sha if name == "pretrained" else "untrained")
            stores[name][split] = path

    print("[demo] 3/5 probes on held-out speakers")
    probes = ("linear", "knn")
    views = [*modalities, "fused/concat", "fused/mean"]
    results = {name: probe_stores(s["train"], s["test"], label=LABEL, views=views, probes=probes,
                                  seed=cfg.seed) for name, s in stores.items()}
    results["raw_input"] = raw_probe(cfg, train_spk, test_spk, probes)
    table = merge_tables(results)
    text = format_comparison(table, "held-out speakers, emotion accuracy (linear probe / kNN probe, %)")

    print("[demo] 4/5 FAISS index and cross-modal retrieval")
    retrieval, neighbours = _retrieval(stores["pretrained"]["test"], run_dir)

    print("[demo] 5/5 report and pictures")
    pictures = _pictures(run_dir, results["pretrained"], stores["pretrained"]["test"], result.run_dir)
    report = {"config": to_dict(cfg), "pretrain_speakers": speakers.pretrain, "train_speakers": train_spk,
              "test_speakers": test_spk,
              "pretrain": {"seconds": result.seconds, "checkpoint": str(result.checkpoint),
                           "final_metrics": result.metrics},
              "table": table, "probes": {k: v.to_dict() for k, v in results.items()},
              "retrieval": retrieval, "neighbours": neighbours, "pictures": [str(p) for p in pictures],
              "seconds": time.perf_counter() - start}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=1, default=str))
    print()
    print(text)
    print()
    from contrastive_mer.evaluation.retrieval import format_table

    print("cross-modal retrieval on held-out speakers (pretrained projections)")
    print(format_table(retrieval))
    print(f"\n[demo] finished in {report['seconds']:.0f} s; report: {run_dir / 'report.json'}")
    return report


def _retrieval(test_store: Path, run_dir: Path) -> tuple[dict, list]:
    from contrastive_mer.evaluation.retrieval import cross_modal_retrieval
    from contrastive_mer.store.hdf5 import FeatureStore
    from contrastive_mer.store.index import index_from_store

    with FeatureStore(test_store) as store:
        projections = {m: store.view(f"projections/{m}") for m in store.modalities}  # the one view rule
        metrics = cross_modal_retrieval({m: v.vectors for m, v in projections.items()},
                                        {m: v.usable for m, v in projections.items()})
        index = index_from_store(store, "fused/mean")
        index.save(run_dir / "test-fused-mean.faiss")
        labels = store.labels(LABEL)
        names = store.class_names(LABEL) or []
        fused = store.view("fused/mean")
        queries = fused.rows[:3]
        scores, ids = index.search(fused.vectors[queries], k=6)
        neighbours = []
        for q, row in enumerate(queries):
            hits = [i for i in ids[q] if i != store.ids[row]][:5]
            neighbours.append({"query": str(store.ids[row]), "emotion": names[labels[row]],
                               "neighbours": [(h, names[labels[store.index_of(h)]]) for h in hits]})
    return metrics, neighbours


def _pictures(run_dir: Path, results: ProbeResults, test_store: Path, pretrain_dir: Path) -> list[Path]:
    from contrastive_mer.evaluation.plots import plot_confusion, plot_embedding, plot_history
    from contrastive_mer.store.hdf5 import FeatureStore

    out = []
    row = next(r for r in results.rows if r.view == "fused/concat" and r.probe == "linear")
    names = results.class_names or [str(i) for i in range(len(row.details["confusion_matrix"]))]
    out.append(plot_confusion(np.asarray(row.details["confusion_matrix"]), names,
                              run_dir / "confusion_fused_linear.png", "fused (concat), linear probe"))
    with FeatureStore(test_store) as store:
        fused = store.view("fused/mean")
        out.append(plot_embedding(fused.vectors[fused.rows], store.labels(LABEL)[fused.rows], names,
                                  run_dir / "embedding_fused_pca.png",
                                  title="held-out speakers, fused embedding (PCA)"))
    history_file = pretrain_dir / "history.json"
    if history_file.is_file():
        out.append(plot_history(json.loads(history_file.read_text()), run_dir / "pretraining_loss.png"))
    return out
