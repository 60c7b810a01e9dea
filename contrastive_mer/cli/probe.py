"""``cmer probe``: linear and/or kNN probes on stored features, printed as a table.

    cmer probe --train a.h5 --test b.h5 --label emotion [--modalities audio,video,fused] [--json out.json]
    cmer probe --train a.h5 --folds 4 --group speaker --label emotion [--probe linear|knn|both|mlp|all]
    cmer probe --train a.h5 --test b.h5 --label emotion --labels-per-class 1,5,20 --draws 5 [--missing video]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from contrastive_mer.cli._common import comma_list, open_store
from contrastive_mer.errors import UserError

if TYPE_CHECKING:
    from contrastive_mer.evaluation.linear import LinearProbeConfig

_PROBES = {"linear": ("linear",), "knn": ("knn",), "both": ("linear", "knn"), "mlp": ("mlp",),
           "all": ("linear", "knn", "mlp")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, help="feature store (.h5) to train the probes on")
    split = parser.add_mutually_exclusive_group(required=True)
    split.add_argument("--test", help="feature store (.h5) to evaluate on")
    split.add_argument("--folds", type=int, help="instead of --test: K group-disjoint folds of --train")
    parser.add_argument("--group", default=None,
                        help="group the folds and the linear probe's validation split are disjoint by "
                             "(default: speaker when the store has it; required with --folds)")
    parser.add_argument("--label", required=True, help="label to predict (a /labels/<name> of the store)")
    parser.add_argument("--modalities", default=None,
                        help="comma-separated views: modality names, fused (every fused mode), fused mode "
                             "names, or features/<m>, projections/<m>, fused/<mode> keys (default: all)")
    parser.add_argument("--probe", choices=sorted(_PROBES), default="both",
                        help="which probe(s) (default both: linear and knn; mlp: the official code's 2-layer "
                             "classifier, evaluation/mlp_probe.py; all: the three)")
    parser.add_argument("--task", choices=["multiclass", "multilabel", "regression"], default=None,
                        help="default: from the label (int -> multiclass, (N, K) -> multilabel, float -> regression)")
    parser.add_argument("--k", type=int, default=20, help="kNN neighbours (default 20)")
    parser.add_argument("--temperature", type=float, default=0.07, help="kNN vote temperature (default 0.07)")
    parser.add_argument("--weight-decays", default=None,
                        help="comma-separated weight-decay grid of the linear probe (default 1e-6 ... 1e2)")
    parser.add_argument("--solver", choices=["lbfgs", "adamw"], default="lbfgs", help="linear-probe solver")
    parser.add_argument("--normalize-by", default=None, metavar="GROUP",
                        help="standardise every view within each GROUP (e.g. speaker) from that group's own rows "
                             "before probing: label-free, assumes a test speaker's other clips are available")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the folds, the validation split and the --labels-per-class draws")
    few = parser.add_argument_group("few labels and missing modalities")
    few.add_argument("--labels-per-class", default=None, metavar="K[,K...]",
                     help="fit the probes on K labelled training clips per class only (drawn by clip id, the same "
                          "clips for every view), test on every test clip; mean ± sd over --draws draws per K")
    few.add_argument("--draws", type=int, default=5, help="draws per K with --labels-per-class (default 5)")
    few.add_argument("--missing", default=None, metavar="MODALITY",
                     help="test without MODALITY: only the test clips that lack it, or, when none does, every test "
                          "clip with it masked out and the fusion recomputed (training clips as they are)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    adamw = parser.add_argument_group("adamw solver (--solver adamw; the same objective as L-BFGS)")
    adamw.add_argument("--lr", type=float, default=None, help="peak learning rate, decayed by a cosine (default 0.1)")
    adamw.add_argument("--epochs", type=int, default=None,
                       help="passes over the training set (default 1000; one step each when full batch)")
    adamw.add_argument("--batch-size", type=int, default=None,
                       help="rows per step (default: the whole training set)")


def _linear_config(args: argparse.Namespace) -> LinearProbeConfig:
    from contrastive_mer.evaluation.linear import LinearProbeConfig

    adamw = {k: v for k, v in (("lr", args.lr), ("epochs", args.epochs), ("batch_size", args.batch_size))
             if v is not None}
    if adamw and args.solver != "adamw":
        raise UserError(f"--{next(iter(adamw)).replace('_', '-')} sets the adamw solver: add --solver adamw")
    try:
        LinearProbeConfig(**adamw)
    except ValueError as e:
        raise UserError(str(e)) from e
    if args.weight_decays is None:
        return LinearProbeConfig(solver=args.solver, seed=args.seed, **adamw)
    grid = tuple(comma_list(args.weight_decays, float, "--weight-decays"))
    try:
        return LinearProbeConfig(solver=args.solver, seed=args.seed, weight_decays=grid, **adamw)
    except ValueError as e:
        raise UserError(f"--weight-decays {args.weight_decays!r}: {e}") from e


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.evaluation.knn import KnnProbeConfig
    from contrastive_mer.evaluation.protocol import format_table, probe_stores

    if args.folds is not None and args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    if args.folds is not None and args.group is None:
        raise UserError("--folds needs --group (e.g. --group speaker) so that the folds are group-disjoint")
    if args.k < 1 or args.temperature <= 0:
        raise UserError(f"--k must be >= 1 and --temperature > 0, got {args.k} and {args.temperature}")
    views = comma_list(args.modalities, option="--modalities") or None
    ks = comma_list(args.labels_per_class, int, option="--labels-per-class")
    if ks is not None and (not ks or min(ks) < 1 or args.draws < 1):
        raise UserError(f"--labels-per-class needs values >= 1 and --draws >= 1, got {args.labels_per_class!r} "
                        f"and {args.draws}")
    linear = _linear_config(args)
    knn = KnnProbeConfig(k=args.k, temperature=args.temperature)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    results: Any
    with contextlib.ExitStack() as stack:
        train = stack.enter_context(open_store(args.train))
        test = stack.enter_context(open_store(args.test)) if args.test else None
        if ks is not None:
            from contrastive_mer.evaluation.label_efficiency import label_efficiency_stores

            results = label_efficiency_stores(train, test, label=args.label, ks=ks, draws=args.draws, views=views,
                                              folds=args.folds, group=args.group, probes=_PROBES[args.probe],
                                              linear=linear, knn=knn, task=args.task, seed=args.seed,
                                              normalize_by=args.normalize_by, missing=args.missing, log=log)
        else:
            results = probe_stores(train, test, label=args.label, views=views, folds=args.folds, group=args.group,
                                   probes=_PROBES[args.probe], linear=linear, knn=knn, task=args.task,
                                   seed=args.seed, log=log, normalize_by=args.normalize_by, missing=args.missing)
    if "missing" in results.setup:
        print(f"missing {args.missing}: {results.setup['missing']['text']}")
    print(results.format() if ks is not None else format_table(results))
    if args.json:
        from contrastive_mer.utils import write_text_atomic

        out = write_text_atomic(args.json, json.dumps(results.to_dict(), indent=2))
        print(f"wrote {out}")
    return 0
