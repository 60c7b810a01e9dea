"""Issue 21's recipe search on RAVDESS: which pretraining recipe gives features worth more than the same encoders
at random init, with few labels and with all of them?

Protocol ``tune`` (actors 13-16 are never read): pretrain on actors 01-12 without labels, extract the
pretrained and the random-init stores of actors 01-12, then probe with actor-grouped 4-fold CV on 01-12:

* all labels: the library's linear probe (weight decay chosen on actor-disjoint validation rows of each fold);
* k labelled clips per class (k = 1, 5), ``--draws`` draws per fold, drawn from the fold's training rows with the
  same draw for both columns; the linear probe with one fixed weight decay (no labels left to choose it);

on two views, every modality's pre-projection features standardised within each actor (label-free) and
concatenated: ``fused`` (all modalities) and ``voice`` (the audio-derived modalities only).

    python benchmarks/recipe_search.py --out runs/search                 # every candidate
    python benchmarks/recipe_search.py --out runs/search --only base epochs10
    python benchmarks/recipe_search.py --out runs/search --holdout --only base --seeds 0 1 2 --draws 20

``--holdout`` is the one check on actors 13-16 (after the choice): pretraining and probe training on actors
01-12, one test on 13-16, each actor standardised with its own unlabelled clips.

Writes ``<out>/<candidate>/`` (run, stores) and ``<out>/search.json`` / ``search.md`` (one row per candidate).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from contrastive_mer.data.normalization import zscore_by_group
from contrastive_mer.data.splits import group_kfold
from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe
from contrastive_mer.experiment import load_config
from contrastive_mer.extract.extraction import ExtractOptions, extract
from contrastive_mer.model.module import load_module
from contrastive_mer.pretrain.loop import pretrain
from contrastive_mer.store.hdf5 import FeatureStore
from contrastive_mer.workflows.comparison import random_init_like

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "ravdess_speaker3.yaml"
TUNE = [f"data.options.speakers={list(range(1, 13))}"]
ALL16 = [f"data.options.speakers={list(range(1, 17))}"]
HELD_OUT = range(13, 17)
VOICE = ("egemaps", "melstats")
#: candidate -> overrides of experiments/ravdess_speaker3.yaml (the issue's list of things worth trying)
CANDIDATES: dict[str, list[str]] = {
    "base": [],
    "epochs10": ["trainer.max_epochs=10"],
    "featdrop0.5": ["model.feature_dropout=0.5"],
    "voicepair": ["loss.pairs=[egemaps-au,melstats-au,egemaps-melstats]"],
    "speakerbatch": ["data.batch_grouping=speaker", "data.groups_per_batch=2"],
    "temp0.3": ["loss.temperature=0.3"],
    "featdrop0.5+temp0.3": ["model.feature_dropout=0.5", "loss.temperature=0.3"],
    "wd0.1": ["optim.weight_decay=0.1"],
    # VICReg-style variance / covariance terms on the projections (loss.variance_weight, loss.covariance_weight),
    # added to the chosen recipe (session 7; VICReg's 25:1 ratio of the two terms)
    "featdrop0.5+temp0.3+vc1": ["model.feature_dropout=0.5", "loss.temperature=0.3", "loss.variance_weight=1.0",
                                "loss.covariance_weight=0.04"],
    "featdrop0.5+temp0.3+vc5": ["model.feature_dropout=0.5", "loss.temperature=0.3", "loss.variance_weight=5.0",
                                "loss.covariance_weight=0.2"],
    # session 8: batches from two speakers, and SCARF-style corruption of the vector inputs (Bahri et al. 2022:
    # each value replaced, with this probability, by the same feature of a random clip of the batch), on top of
    # the chosen recipe
    "featdrop0.5+temp0.3+speakerbatch": ["model.feature_dropout=0.5", "loss.temperature=0.3",
                                         "data.batch_grouping=speaker", "data.groups_per_batch=2"],
    **{f"featdrop0.5+temp0.3+scarf{r}": ["model.feature_dropout=0.5", "loss.temperature=0.3",
                                         *(f"model.modalities.{m}.input_augment.corrupt={r}"
                                           for m in ("egemaps", "melstats", "au"))] for r in (0.3, 0.6)},
    # frame-level voice (eGeMAPS low-level descriptors through a TCN) with two 1 s windows per clip: its own config
    "lld2win": [],
    "small": ["model.modalities.egemaps.encoder_args.hidden_dims=[128]",
              "model.modalities.melstats.encoder_args.hidden_dims=[128]",
              "model.modalities.au.encoder_args.hidden_dims=[128]",
              "model.modalities.egemaps.encoder_args.output_dim=64",
              "model.modalities.melstats.encoder_args.output_dim=64",
              "model.modalities.au.encoder_args.output_dim=64", "model.head.hidden_dim=64", "model.head.output_dim=32"],
}

#: candidates whose base config is not experiments/ravdess_speaker3.yaml (their overrides apply to it)
CONFIGS: dict[str, Path] = {"lld2win": ROOT / "experiments" / "ravdess_lld_twowindow.yaml"}


def views_of(path: Path, modalities: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``{"fused": X, "voice": X}`` (per-actor standardised features, concatenated), labels, actors."""
    with FeatureStore(path) as store:
        y = np.asarray(store.labels("emotion"))
        groups = np.asarray(store.groups("speaker")).astype(str)
        if not all(store.present(m).all() for m in modalities):
            raise ValueError(f"{path}: a clip lacks a modality; this search assumes every clip has all of them")
        feats = {m: zscore_by_group(np.asarray(store.features(m), dtype=np.float32), groups) for m in modalities}
    voice = [m for m in modalities if m in VOICE]
    return {"fused": np.concatenate([feats[m] for m in modalities], 1),
            "voice": np.concatenate([feats[m] for m in voice], 1)}, y, groups


def draw_per_class(y: np.ndarray, rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` rows of each class among ``rows`` (all of a class's rows when it has fewer)."""
    picked = [rng.choice(rows[y[rows] == c], size=min(k, int((y[rows] == c).sum())), replace=False)
              for c in np.unique(y[rows])]
    return np.sort(np.concatenate(picked))


def probe(views: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, *, ks: list[int], draws: int,
          few_wd: float, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """``{view: {"all": [acc per fold], "k5": [acc per fold and draw], ...}}``."""
    out: dict[str, dict[str, list[float]]] = {v: {} for v in views}
    for fold, (tr, te) in enumerate(group_kfold(groups, 4, seed)):
        for v, X in views.items():
            res = linear_probe(X[tr], y[tr], X[te], y[te], LinearProbeConfig(seed=seed), groups_train=groups[tr])
            out[v].setdefault("all", []).append(res.metrics["accuracy"])
        for k in ks:
            for d in range(draws):
                rows = draw_per_class(y, tr, k, np.random.default_rng([seed, fold, k, d]))
                for v, X in views.items():
                    res = linear_probe(X[rows], y[rows], X[te], y[te],
                                       LinearProbeConfig(seed=seed, weight_decays=(few_wd,)))
                    out[v].setdefault(f"k{k}", []).append(res.metrics["accuracy"])
    return out


def probe_holdout(views: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, *, ks: list[int], draws: int,
                  few_wd: float, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Probes trained on actors 01-12 (all labels, or k per class over ``draws`` draws), tested once on 13-16."""
    test = np.isin(groups, [f"actor{a:02d}" for a in HELD_OUT])
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    out: dict[str, dict[str, list[float]]] = {v: {} for v in views}
    for v, X in views.items():
        res = linear_probe(X[tr], y[tr], X[te], y[te], LinearProbeConfig(seed=seed), groups_train=groups[tr])
        out[v]["all"] = [res.metrics["accuracy"]]
    for k in ks:
        for d in range(draws):
            rows = draw_per_class(y, tr, k, np.random.default_rng([seed, 0, k, d]))
            for v, X in views.items():
                res = linear_probe(X[rows], y[rows], X[te], y[te],
                                   LinearProbeConfig(seed=seed, weight_decays=(few_wd,)))
                out[v].setdefault(f"k{k}", []).append(res.metrics["accuracy"])
    return out


def run(name: str, overrides: list[str], out: Path, *, seed: int, ks: list[int], draws: int,
        few_wd: float, holdout: bool = False) -> dict:
    config = CONFIGS.get(name, CONFIG)
    cfg = load_config(config, [f"seed={seed}", "trainer.enable_progress_bar=false", *TUNE, *overrides])
    folder = out / (f"{name}-holdout-seed{seed}" if holdout else name)
    start = time.perf_counter()
    result = pretrain(cfg, folder / "run", overwrite=True)
    pretrain_s = time.perf_counter() - start
    trained = load_module(str(result.checkpoint))
    opts = ExtractOptions(progress=False, overwrite=True, fusion_modes=("concat",))
    record: dict = {"name": name, "overrides": overrides, "seed": seed, "pretrain_seconds": pretrain_s,
                    "protocol": "holdout" if holdout else "tune"}
    # holdout: the stores hold actors 01-16; pretraining saw 01-12 only
    ev = load_config(config, [f"seed={seed}", *ALL16, *overrides]) if holdout else cfg
    for column, module in (("pretrained", trained), ("random_init", random_init_like(cfg))):
        store = extract(module, ev, folder / f"{column}.h5", opts)
        views, y, groups = views_of(store, list(module.modalities))
        fn = probe_holdout if holdout else probe
        record[column] = fn(views, y, groups, ks=ks, draws=draws, few_wd=few_wd, seed=seed)
    record["seconds"] = time.perf_counter() - start
    return record


def row(record: dict) -> str:
    cells = [record["name"]]
    for view in ("fused", "voice"):
        for key in record["pretrained"][view]:
            p, r = (100 * np.mean(record[c][view][key]) for c in ("pretrained", "random_init"))
            cells.append(f"{p:.1f} / {r:.1f} ({p - r:+.1f})")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "search")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--few-wd", type=float, default=1e-1, help="the linear probe's weight decay with k labels")
    parser.add_argument("--holdout", action="store_true",
                        help="the check on actors 13-16: pretrain and train probes on 01-12, test once on 13-16")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="several pretraining seeds")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / ("holdout.json" if args.holdout else "search.json")
    done = json.loads(done_path.read_text()) if done_path.exists() else []
    names = args.only or list(CANDIDATES)
    for seed in args.seeds if args.seeds is not None else [args.seed]:
        for name in names:
            if any(r["name"] == name and r["seed"] == seed for r in done):
                continue
            done.append(run(name, CANDIDATES[name], args.out, seed=seed, ks=args.ks, draws=args.draws,
                            few_wd=args.few_wd, holdout=args.holdout))
            done_path.write_text(json.dumps(done, indent=1))
            print(row(done[-1]), flush=True)
    keys = ["all", *(f"k{k}" for k in args.ks)]
    head = ["candidate", *(f"{v} {k}" for v in ("fused", "voice") for k in keys)]
    where = ("probes trained on actors 01-12, tested once on 13-16 (pretraining: 01-12)" if args.holdout else
             "actor-grouped 4-fold CV on actors 01-12 (pretraining saw all of 01-12, unlabelled: transductive)")
    lines = [f"linear probe accuracy (%), pretrained / random init (gap), {where}", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += [row(r) + f" seed {r['seed']}" for r in done]
    (args.out / ("holdout.md" if args.holdout else "search.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
