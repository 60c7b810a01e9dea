"""``cmer evaluate --checkpoint CKPT [--config CFG] --folds K --group speaker --label emotion --output DIR``

Pretrained vs random-init encoders vs raw-input baselines (openSMILE eGeMAPS included), group-disjoint K-fold
linear and kNN probes; with ``--normalize-by speaker`` every view also standardised within each speaker.
``--labels-per-class 1,5,20 --draws 5`` adds label-efficiency tables and ``label_efficiency.png``;
``--missing video`` tests without a modality; ``--transductive`` declares that pretraining saw the test clips."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

from contrastive_mer.cli._common import add_output_dir, comma_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="pretrained checkpoint (.ckpt) to evaluate")
    parser.add_argument("--config", help="experiment YAML for the data section (default: the checkpoint's)")
    add_output_dir(parser, "feature stores, evaluation.json and evaluation.txt", required=True)
    parser.add_argument("--folds", type=int, default=4, help="number of group-disjoint folds (default 4)")
    parser.add_argument("--group", default="speaker", help="group the folds are disjoint by (default speaker)")
    parser.add_argument("--label", default="emotion", help="label to predict (default emotion)")
    parser.add_argument("--probe", choices=["linear", "knn", "both"], default="both",
                        help="which probe(s) (default both)")
    parser.add_argument("--fusion", default="concat,mean",
                        help="comma-separated late-fusion modes to probe (default concat,mean; the first one is "
                             "the headline row compared with the strongest baseline)")
    parser.add_argument("--modalities", default=None,
                        help="comma-separated views of the pretrained / random-init stores (default: every "
                             "modality and fused/<mode> for each --fusion mode)")
    parser.add_argument("--normalize-by", default=None, metavar="GROUP",
                        help="also probe every view standardised within each GROUP (e.g. speaker), from that "
                             "group's own clips: label-free, assumes a test speaker's other clips are available")
    parser.add_argument("--weight-decays", default=None,
                        help="comma-separated weight-decay grid of the linear probe (default 1e-6 ... 1e2)")
    parser.add_argument("--test-groups", default=None,
                        help="instead of folds: one split, these comma-separated --group values (e.g. "
                             "actor13,actor14) against all other clips")
    parser.add_argument("--no-audio-baselines", action="store_true",
                        help="leave out the eGeMAPS and log-mel statistics baselines of the audio (computed "
                             "otherwise when the model has a waveform input and they are not among its inputs)")
    few = parser.add_argument_group("few labels, missing modalities, transductive runs")
    few.add_argument("--labels-per-class", default=None, metavar="K[,K...]",
                     help="also fit every column's probes on K labelled clips per class of each fold's training "
                          "rows (the same clips for every column and view), mean ± sd over --draws draws; writes "
                          "a table per K and label_efficiency.png")
    few.add_argument("--draws", type=int, default=5, help="draws per K with --labels-per-class (default 5)")
    few.add_argument("--few-weight-decay", type=float, default=None, metavar="WD",
                     help="with --labels-per-class: fit the K-per-class linear probes with this one weight decay "
                          "instead of choosing it on validation clips drawn from the K labelled ones (about 10x "
                          "faster; with 1-5 labels per class there is little to choose it on)")
    few.add_argument("--plot-views", default=None,
                     help="comma-separated views plotted in label_efficiency.png besides the headline fused view "
                          "(e.g. a voice-only view: egemaps, or egemaps@speaker with --normalize-by speaker)")
    few.add_argument("--missing", default=None, metavar="MODALITY",
                     help="test without MODALITY: only the test clips that lack it, or, when none does, every test "
                          "clip with it masked out and the fusion recomputed (training clips as they are)")
    few.add_argument("--transductive", action="store_true",
                     help="declare that pretraining saw the test groups' unlabelled clips (recorded in the report); "
                          "without it, --test-groups refuses a checkpoint whose run listed those clips")
    parser.add_argument("overrides", nargs="*", help="data overrides as key=value")


def few_linear_config(linear: Any, weight_decay: float | None) -> Any:
    """The linear probe's settings for the K-per-class fits: ``linear`` with one fixed weight decay (None:
    ``linear`` as it is)."""
    if weight_decay is None:
        return None
    return dataclasses.replace(linear, weight_decays=(float(weight_decay),))


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.config import precheck

    precheck(args.config, args.overrides, settings=False)  # misspelt keys and inf before torch is imported
    from contrastive_mer.config import to_dict
    from contrastive_mer.errors import UserError
    from contrastive_mer.evaluation.linear import LinearProbeConfig
    from contrastive_mer.experiment import config_for_checkpoint
    from contrastive_mer.model.module import load_module
    from contrastive_mer.utils import file_sha256
    from contrastive_mer.workflows.comparison import evaluate_folds, pretraining_overlap

    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    ks = comma_list(args.labels_per_class, int, option="--labels-per-class")
    if ks is not None and (not ks or min(ks) < 1 or args.draws < 1):
        raise UserError(f"--labels-per-class needs values >= 1 and --draws >= 1, got {args.labels_per_class!r} "
                        f"and {args.draws}")
    if args.few_weight_decay is not None and (not math.isfinite(args.few_weight_decay) or args.few_weight_decay < 0
                                              or ks is None):
        raise UserError(f"--few-weight-decay needs --labels-per-class and a finite value >= 0, got "
                        f"{args.few_weight_decay}")
    module = load_module(args.checkpoint)
    cfg = config_for_checkpoint(to_dict(module.cfg), args.config, args.overrides)
    if args.missing is not None and args.missing not in module.modalities:
        raise UserError(f"--missing {args.missing!r}: not a modality of the model; it has {module.modalities}")
    test_groups = comma_list(args.test_groups, option="--test-groups")
    if test_groups and not args.transductive:
        overlap = pretraining_overlap(args.checkpoint, cfg, args.group, test_groups)
        if overlap is None:
            print("[cmer evaluate] warning: no split.json beside the checkpoint's run folder: cannot tell whether "
                  "pretraining saw the test groups' clips (add --transductive if it did)", file=sys.stderr)
        elif overlap[0]:
            raise UserError(f"pretraining saw {overlap[0]} of the {overlap[1]} clips of --test-groups "
                            f"{','.join(test_groups)} (the run's split.json): add --transductive to evaluate anyway")
    probes = ("linear", "knn") if args.probe == "both" else (args.probe,)
    decays = comma_list(args.weight_decays, float, option="--weight-decays")
    linear = LinearProbeConfig(seed=cfg.seed, weight_decays=tuple(decays)) if decays else \
        LinearProbeConfig(seed=cfg.seed)
    try:
        report = evaluate_folds(cfg, module, args.output, label=args.label, group=args.group, folds=args.folds,
                                probes=probes, checkpoint_sha256=file_sha256(args.checkpoint),
                                fusion_modes=comma_list(args.fusion, option="--fusion"),
                                normalize_by=args.normalize_by, views=comma_list(args.modalities),
                                linear=linear, audio_baselines=not args.no_audio_baselines,
                                test_groups=test_groups, labels_per_class=ks, draws=args.draws,
                                missing=args.missing, transductive=args.transductive,
                                plot_views=comma_list(args.plot_views, option="--plot-views"),
                                few_linear=few_linear_config(linear, args.few_weight_decay))
    except ValueError as e:
        raise UserError(str(e)) from e
    print(report["text"])
    print(f"report written to {args.output}/evaluation.json")
    return 0
