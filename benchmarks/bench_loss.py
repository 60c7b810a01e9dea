"""Figure a: pairwise InfoNCE forward+backward against a naive per-pair implementation.

The naive loss is what common implementations do: inside every pair, normalise both modalities, select the rows
carrying both, compute the a->b and b->a logits with two matmuls and two cross-entropies. The library loss
normalises each modality once and uses one matmul per pair (the transpose serves the other direction).
Target: library time <= 0.6x naive at 4 modalities, B=256, D=512.

    .venv/bin/python benchmarks/bench_loss.py [--batch 256 --dim 512 --modalities 4 --repeats 30]
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from common import apply_threads, base_parser, interleaved, ms, report, table, verdict

from contrastive_mer.model.losses import PairwiseInfoNCE

NAMES = ["audio", "video", "text", "au", "landmarks", "physio"]
TARGET = 0.6


def naive_loss(raw: dict[str, torch.Tensor], present: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
    losses = []
    for a, b in itertools.combinations(list(raw), 2):
        valid = present[a] & present[b]
        if int(valid.sum()) < 2:
            continue
        xa, xb = raw[a], raw[b]
        if not bool(valid.all()):
            xa, xb = xa[valid], xb[valid]
        za, zb = F.normalize(xa, dim=-1), F.normalize(xb, dim=-1)
        target = torch.arange(za.shape[0], device=za.device)
        loss_ab = F.cross_entropy(za @ zb.t() / temperature, target)
        loss_ba = F.cross_entropy(zb @ za.t() / temperature, target)
        losses.append((loss_ab + loss_ba) / 2)
    return torch.stack(losses).mean()


def make_inputs(n_mod: int, batch: int, dim: int, missing: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    names = NAMES[:n_mod]
    raw = {m: torch.randn(batch, dim, generator=gen).requires_grad_(True) for m in names}
    present = {m: torch.rand(batch, generator=gen) >= missing for m in names}
    return names, raw, present


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--modalities", type=int, default=4)
    parser.add_argument("--missing", type=float, nargs="+", default=[0.0, 0.3],
                        help="fractions of rows missing each modality (one scenario per value)")
    parser.add_argument("--temperature", type=float, default=0.07)
    args = parser.parse_args()
    apply_threads(args.threads)

    rows, met_main = [], None
    for missing in args.missing:
        names, raw, present = make_inputs(args.modalities, args.batch, args.dim, missing)
        loss_fn = PairwiseInfoNCE(names, temperature=args.temperature)

        def naive_step() -> torch.Tensor:
            loss = naive_loss(raw, present, args.temperature)
            loss.backward()
            return loss

        def library_step() -> torch.Tensor:
            z = {m: F.normalize(x, dim=-1) for m, x in raw.items()}
            loss = loss_fn(z, present).loss
            loss.backward()
            return loss

        # both compute the same loss and gradients
        grads = []
        for step in (naive_step, library_step):
            for x in raw.values():
                x.grad = None
            value = step().item()
            grads.append(([x.grad.clone() for x in raw.values()], value))
        agree = abs(grads[0][1] - grads[1][1]) < 1e-4 and all(
            torch.allclose(g0, g1, atol=1e-6, rtol=1e-4) for g0, g1 in zip(grads[0][0], grads[1][0]))
        if not agree:
            raise SystemExit(f"naive and library losses disagree at missing={missing}: "
                             f"{grads[0][1]} vs {grads[1][1]}")

        t = interleaved({"naive": naive_step, "library": library_step}, args.repeats, args.warmup)
        ratio = t["library"].median / t["naive"].median
        target_row = missing == args.missing[0]
        if target_row:
            met_main = ratio <= TARGET
        rows.append([f"{missing:.0%}", args.modalities, len(list(itertools.combinations(names, 2))),
                     ms(t["naive"].median), ms(t["library"].median), f"{ratio:.2f}x",
                     f"{t['naive'].spread:.0%} / {t['library'].spread:.0%}",
                     verdict(ratio <= TARGET) if target_row else "(no target)"])

    body = table(["missing rows", "modalities", "pairs", "naive ms", "library ms", "library / naive",
                  "IQR / median (naive / library)", f"target <= {TARGET}x"], rows)
    body += (f"\n\nB={args.batch}, D={args.dim}, float32, forward + backward from unnormalised embeddings "
             f"(normalisation included in both), median of {args.repeats} interleaved repeats after "
             f"{args.warmup} warm-up. Values and gradients of both agree (checked in the run). "
             f"Target on the first scenario: {verdict(bool(met_main))}.\n\n"
             "Where the time goes: per pair the naive version normalises twice and runs 2 forward + 4 backward "
             "matmuls of B x B x D; the library normalises each modality once and runs 1 forward + 2 backward "
             "matmuls, so the floor is about 0.5x, and softmax / cross-entropy over the B x B logits are the "
             "rest. With missing rows (the second scenario, not the target configuration) each pair keeps "
             "about half the batch, the matmuls become 4x cheaper, and what they save no longer dominates: "
             "selecting each pair's valid rows (and scattering their gradients back), normalising all rows "
             "of every modality, and per-operation overhead take a larger share, so the ratio rises toward 1 "
             "as batches shrink.")
    report("loss", "a. Pairwise loss: library vs naive per-pair implementation", body, not args.no_write)


if __name__ == "__main__":
    main()
