"""What a run trains on, said before it trains: clips, per-modality coverage and groups per split.

:func:`data_summary` counts from the adapter's records (no decoding), :func:`summary_warnings` names what will
silently not train (a modality with no training clip, or too few per batch; a loss pair held by fewer clips than a
batch), :func:`refuse_untrainable_pairs` stops a run none of whose pairs can train, :func:`format_summary` is the
printed table, and :func:`split_ids` is the split saved as ``split.json`` in the run folder.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from contrastive_mer.data.datasets.base import ClipRecord
from contrastive_mer.errors import UserError

#: a modality pair needs at least this many clips with both modalities in a batch for in-batch negatives
MIN_PER_BATCH = 2.0


def has_input(record: ClipRecord, source: str) -> bool:
    """Whether the adapter lists an input named ``source`` for ``record``."""
    return record.sources.get(source) is not None


def data_summary(splits: Mapping[str, Sequence[ClipRecord]], sources: Mapping[str, str], group: str,
                 batch_size: int, *, skipped: Sequence[Any] = (),
                 pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Counts per split: clips, clips having each modality (``sources``: modality -> adapter input name),
    clips having both modalities of each of the loss's ``pairs`` (``"a-b"``), and the distinct values of the
    ``group`` (e.g. speakers); plus the scan's skipped entries and warnings."""
    out: dict[str, Any] = {"split_group": group, "batch_size": int(batch_size),
                           "clips": {name: len(recs) for name, recs in splits.items()},
                           "modalities": {m: {name: sum(has_input(r, src) for r in recs)
                                              for name, recs in splits.items()} for m, src in sources.items()},
                           "groups": {name: sorted({str(r.groups.get(group, r.id)) for r in recs})
                                      for name, recs in splits.items()},
                           "pairs": {f"{a}-{b}": {name: sum(has_input(r, sources[a]) and has_input(r, sources[b])
                                                            for r in recs) for name, recs in splits.items()}
                                     for a, b in pairs},
                           "skipped_at_scan": len(skipped),
                           "skipped_examples": [str(s) for s in list(skipped)[:5]]}
    out["warnings"] = summary_warnings(out)
    return out


def summary_warnings(summary: Mapping[str, Any]) -> list[str]:
    """One line per modality that will not (or barely) train."""
    warnings = []
    n_train, batch = summary["clips"].get("train", 0), summary["batch_size"]
    for m, counts in summary["modalities"].items():
        train = counts.get("train", 0)
        others = {k: v for k, v in counts.items() if k != "train" and v}
        if train == 0:
            where = (" (its clips are all in " + ", ".join(f"{k}: {v}" for k, v in others.items()) + ")"
                     if others else "")
            warnings.append(f"modality {m!r} has no training clip{where}; its encoder will not train. "
                            f"Change the split (seed, data.val_fraction, data.split_group) or drop the modality")
        elif n_train and train / n_train * min(batch, n_train) < MIN_PER_BATCH:
            per_batch = train / n_train * min(batch, n_train)
            warnings.append(f"modality {m!r} is in {train} of {n_train} training clips, about {per_batch:.1f} per "
                            f"batch of {batch}: its pairs get almost no in-batch negatives")
    for pair, counts in summary.get("pairs", {}).items():
        train = counts.get("train", 0)
        if train < batch:
            warnings.append(f"pair {pair!r} is held by {train} training clip(s), fewer than a batch "
                            f"({batch}): it gets few in-batch negatives")
    return warnings


def refuse_untrainable_pairs(summary: Mapping[str, Any]) -> None:
    """A :class:`~contrastive_mer.errors.UserError` when no configured pair is held (both modalities) by at least
    2 training clips: every pair's loss would be 0 and nothing would train. The line gives each pair's count."""
    pairs = summary.get("pairs", {})
    counts = {pair: c.get("train", 0) for pair, c in pairs.items()}
    if counts and max(counts.values()) < MIN_PER_BATCH:
        listed = ", ".join(f"{pair}: {n}" for pair, n in counts.items())
        raise UserError(f"no modality pair of the loss can train: training clips holding both modalities of each "
                        f"pair: {listed} (a pair needs at least {MIN_PER_BATCH:g}); check the corpus's modality "
                        "columns, data.options.modalities and loss.pairs")


def format_summary(summary: Mapping[str, Any], title: str = "") -> str:
    """The printed form: one table of clips and modality coverage per split, then the groups of the
    non-training splits (all of them when few), then skipped clips."""
    splits = list(summary["clips"])
    group = summary["split_group"]
    rows = [["", *splits], ["clips", *[str(summary["clips"][s]) for s in splits]]]
    rows += [[m, *[str(c.get(s, 0)) for s in splits]] for m, c in summary["modalities"].items()]
    rows.append([f"{group}s", *[str(len(summary["groups"][s])) for s in splits]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    lines += ["  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    for s in splits:
        names = summary["groups"][s]
        if s != "train" or len(names) <= 8:
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            lines.append(f"  {s} {group}s: {shown or '-'}")
    if summary.get("skipped_at_scan"):
        lines.append(f"  skipped when listing the corpus: {summary['skipped_at_scan']} "
                     f"(e.g. {summary['skipped_examples'][0]})")
    return "\n".join(lines)


def split_ids(splits: Mapping[str, Sequence[ClipRecord]], group: str, seed: int,
              val_fraction: float) -> dict[str, Any]:
    """The split as saved in ``split.json``: how it was drawn and the clip ids of each part."""
    return {"split_group": group, "seed": int(seed), "val_fraction": float(val_fraction),
            **{name: [r.id for r in recs] for name, recs in splits.items()}}
