"""The gathered pairwise loss on 2 gloo processes equals a single process holding the concatenated batch.

Two worker processes (this file run as a script) each hold identical float64 ``nn.Linear`` encoders, feed their
part of a batch, compute :func:`pairwise_infonce` with ``gather=True`` and back-propagate. Gradients are averaged
over ranks the way DDP does (all-reduce / world size); one scenario also runs real ``DistributedDataParallel``
for two steps. The test process then reruns every case in one process on the concatenated batch and compares
loss values, pair counts, accuracies and gradients (encoder weights, biases and learnable per-pair temperatures)
to 1e-6. Cases cover full and local-loss scoring, missing-modality masks, a modality absent from one rank's
whole batch or from the whole global batch, pairs valid only after gathering, and unequal per-rank batch sizes.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastive_mer.model.losses import pairwise_infonce

MODS = ("audio", "video", "text")
PAIRS = list(itertools.combinations(MODS, 2))
PAIR_NAMES = [f"{a}-{b}" for a, b in PAIRS]
IN_DIM, OUT_DIM = 6, 5
WORLD = 2
TOL = dict(atol=1e-6, rtol=1e-6)

#: case -> (rows on rank 0, rows on rank 1), mask kind
CASES = {
    "all_present": ((6, 6), "all"),
    "random_masks": ((6, 6), "random"),
    "text_absent_on_rank1": ((6, 6), "absent_on_rank1"),
    "text_absent_everywhere": ((6, 6), "absent_everywhere"),
    "text_valid_only_after_gather": ((6, 6), "one_per_rank"),
    "text_single_valid_row": ((6, 6), "single_valid"),
    "unequal_batches": ((7, 4), "random"),
}
MODES = ("full", "local")
DDP_STEPS = ("text_absent_everywhere", "random_masks")  # consecutive steps of the real-DDP scenario


def make_inputs(case: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The concatenated (global) batch of ``case``: inputs and presence masks per modality."""
    (n0, n1), kind = CASES[case]
    n = n0 + n1
    gen = torch.Generator().manual_seed(sorted(CASES).index(case) + 1)
    x = {m: torch.randn(n, IN_DIM, generator=gen, dtype=torch.float64) for m in MODS}
    random = {m: torch.rand(n, generator=gen) > 0.3 for m in MODS}
    ones = torch.ones(n, dtype=torch.bool)
    if kind == "all":
        present = {m: ones.clone() for m in MODS}
    elif kind == "random":
        present = random
    elif kind == "absent_on_rank1":
        present = {**random, "text": torch.arange(n) < n0}
    elif kind == "absent_everywhere":
        present = {**random, "text": torch.zeros(n, dtype=torch.bool)}
    elif kind == "one_per_rank":  # one text row per rank: < 2 locally, 2 after gathering
        text = torch.zeros(n, dtype=torch.bool)
        text[[1, n0 + 2]] = True
        present = {"audio": ones.clone(), "video": ones.clone(), "text": text}
    elif kind == "single_valid":  # one text row in the whole batch: text pairs never count
        text = torch.zeros(n, dtype=torch.bool)
        text[n0 + 1] = True
        present = {"audio": ones.clone(), "video": ones.clone(), "text": text}
    else:
        raise ValueError(kind)
    return x, present


def rank_slice(case: str, rank: int) -> slice:
    (n0, n1), _ = CASES[case]
    return slice(0, n0) if rank == 0 else slice(n0, n0 + n1)


class Toy(nn.Module):
    """One linear encoder per modality and a learnable log inverse-temperature per pair."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoders = nn.ModuleDict({m: nn.Linear(IN_DIM, OUT_DIM) for m in MODS})
        self.log_scale = nn.Parameter(torch.tensor([math.log(10.0), math.log(5.0), math.log(14.0)]))
        self.double()

    def forward(self, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor], gather: bool,
                local_loss: bool):
        z = {m: F.normalize(self.encoders[m](x[m]), dim=-1) for m in MODS}
        scales = {name: self.log_scale[i].exp() for i, name in enumerate(PAIR_NAMES)}
        return pairwise_infonce(z, present, scales, PAIRS, gather=gather, local_loss=local_loss)


def grads_of(model: Toy) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def run_case(model: Toy, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor], gather: bool,
             local_loss: bool) -> dict:
    """Loss, counts, accuracies and parameter gradients of one forward/backward."""
    model.zero_grad(set_to_none=True)
    out = model(x, present, gather, local_loss)
    out.loss.backward()
    return {"loss": out.loss.detach(), "count": dict(out.count), "grads": grads_of(model),
            "accuracy": {k: v.clone() for k, v in out.accuracy.items()}}


# --------------------------------------------------------------------------------------------- worker side
def _average(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def worker(rank: int, port: int, out_dir: Path) -> None:
    """Run every case on this rank and save what the test compares (``rank<r>.pt``)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=20))
    results: dict = {}
    model = Toy()
    for case in CASES:
        x, present = make_inputs(case)
        part = rank_slice(case, rank)
        x, present = {m: v[part] for m, v in x.items()}, {m: v[part] for m, v in present.items()}
        for mode, (gather, local) in {"full": (True, False), "local": (True, True),
                                      "nogather": (False, False)}.items():
            print(f"rank {rank}: {case}/{mode}", flush=True)
            r = run_case(model, x, present, gather, local)
            r["loss_mean"] = _average(r["loss"])
            r["grads"] = {n: _average(g) for n, g in r["grads"].items()}  # what DDP does
            if gather:  # without gather, ranks may count different pairs
                r["accuracy_mean"] = {k: _average(v) for k, v in r["accuracy"].items()}
            results[f"{case}/{mode}"] = r
    # real DDP (find_unused_parameters=False, as Lightning's "ddp"): two steps, the first without any text
    for local in (False, True):
        ddp = DistributedDataParallel(Toy())
        for step, case in enumerate(DDP_STEPS):
            print(f"rank {rank}: ddp local={local} step {step} ({case})", flush=True)
            x, present = make_inputs(case)
            part = rank_slice(case, rank)
            ddp.zero_grad(set_to_none=True)
            out = ddp({m: v[part] for m, v in x.items()}, {m: v[part] for m, v in present.items()}, True, local)
            out.loss.backward()
            results[f"ddp/{'local' if local else 'full'}/{step}"] = {
                "loss_mean": _average(out.loss.detach()), "grads": grads_of(ddp.module)}
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------- test side
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Launch the two workers once; return each rank's results."""
    out_dir = tmp_path_factory.mktemp("dist")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(port), str(out_dir)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [f"rank {r} (exit {p.returncode}):\n{log[-3000:]}" for r, (p, log) in enumerate(zip(procs, logs))
              if p.returncode != 0]
    assert not failed, "worker failed:\n" + "\n".join(failed)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def naive_loss(model: Toy, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
    """Independent reference: per pair, keep the rows carrying both modalities, two cross-entropies."""
    losses = []
    for i, (a, b) in enumerate(PAIRS):
        valid = present[a] & present[b]
        if int(valid.sum()) < 2:
            continue
        za = F.normalize(model.encoders[a](x[a][valid]), dim=-1)
        zb = F.normalize(model.encoders[b](x[b][valid]), dim=-1)
        logits = za @ zb.t() * model.log_scale[i].exp()
        target = torch.arange(len(za))
        losses.append((F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2)
    return torch.stack(losses).mean()


def reference(case: str) -> dict:
    """The single-process run on the concatenated batch (checked against :func:`naive_loss`)."""
    x, present = make_inputs(case)
    model = Toy()
    ref = run_case(model, x, present, gather=False, local_loss=False)
    model.zero_grad(set_to_none=True)
    naive = naive_loss(model, x, present)
    naive.backward()
    torch.testing.assert_close(ref["loss"], naive.detach(), **TOL)
    for name, g in grads_of(model).items():
        torch.testing.assert_close(ref["grads"][name], g, **TOL, msg=f"single-process {name} vs naive")
    return ref


def assert_grads_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], where: str) -> None:
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], **TOL, msg=lambda m: f"{where}: {name}: {m}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_gathered_loss_equals_single_process(ranks, case, mode):
    ref = reference(case)
    for rank, res in enumerate(ranks):
        got = res[f"{case}/{mode}"]
        where = f"{case}/{mode} rank {rank}"
        assert got["count"] == ref["count"], where  # counts are global: the masks were gathered
        torch.testing.assert_close(got["loss_mean"], ref["loss"], **TOL, msg=lambda m: f"{where}: {m}")
        if mode == "full":  # every rank scores the whole gathered batch
            torch.testing.assert_close(got["loss"], ref["loss"], **TOL)
            assert set(got["accuracy"]) == set(ref["accuracy"])
            for k in ref["accuracy"]:
                torch.testing.assert_close(got["accuracy"][k], ref["accuracy"][k])
        assert_grads_equal(got["grads"], ref["grads"], where)
        # an encoder's gradient is non-zero exactly when its modality takes part in a counted pair
        for m in MODS:
            counted = any(ref["count"][f"{a}-{b}"] >= 2 for a, b in PAIRS if m in (a, b))
            assert counted == bool(got["grads"][f"encoders.{m}.weight"].abs().sum() > 0), (where, m)


def test_local_accuracy_averages_to_global_with_equal_shards(ranks):
    ref = reference("all_present")
    for k, acc in ref["accuracy"].items():
        torch.testing.assert_close(ranks[0]["all_present/local"]["accuracy_mean"][k], acc)


def test_without_gather_the_ranks_do_not_match_the_global_batch(ranks):
    """Sanity check of the comparison itself: per-rank losses (no gather) differ from the global loss."""
    ref = reference("all_present")
    got = ranks[0]["all_present/nogather"]
    assert abs(float(got["loss_mean"]) - float(ref["loss"])) > 1e-3
    assert got["count"]["audio-video"] == 6


@pytest.mark.parametrize("mode", MODES)
def test_real_ddp_two_steps_with_a_modality_absent_everywhere(ranks, mode):
    """DDP without find_unused_parameters: a step where no rank has text must still give every parameter a
    gradient (zero for text), or the next step fails; both steps match the single-process gradients."""
    for step, case in enumerate(DDP_STEPS):
        ref = reference(case)
        got = ranks[0][f"ddp/{mode}/{step}"]
        torch.testing.assert_close(got["loss_mean"], ref["loss"], **TOL)
        assert_grads_equal(got["grads"], ref["grads"], f"ddp {mode} step {step} ({case})")
        assert_grads_equal(ranks[1][f"ddp/{mode}/{step}"]["grads"], got["grads"], "rank 1 vs rank 0")


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
