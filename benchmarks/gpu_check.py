"""Figure f: the prepared GPU check -- training, extraction, loss, linear probe and FAISS figures in one command.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out`` and prints the Markdown. Sections, cheapest first:

1. pairwise loss, forward + backward, library vs the naive per-pair implementation, B = 256 / 1024 / 4096;
2. linear probe (L-BFGS, one weight decay) on the GPU vs the CPU, same data;
3. FAISS exact inner-product kNN on the GPU vs the CPU (where ``faiss`` is installed and has GPU support);
4. the data feed: the training step of ``benchmarks/ravdess_av.yaml`` (the model of figure d: RAVDESS audio +
   action units + video) and the DataLoader workers it needs, from the clips/s one worker prepares (figure d);
5. training of the demo and paper configs (``experiments/{demo,paper}.yaml``): samples/s and peak GPU memory in
   fp32 and bf16-mixed (autocast, as Lightning's ``bf16-mixed``), at the config's batch and at 256;
6. extraction (eval forward: encoders + heads, outputs copied to the host): clips/s, fp32 and bf16;
7. training again with ``torch.compile`` on every encoder and head (compilation takes the longest);
8. a speech backbone (wav2vec 2.0 base, random init) through ``hf_audio``: audio s/s in fp32 and bf16, peak memory
   on 1 / 3 / 10-minute clips in windows, cached vs live epochs (BENCHMARKS.md i).

Inputs are synthetic tensors in memory with the shapes the configs' preprocessors produce, so the check needs
none of the media or index packages; what needs a missing package (``omegaconf`` for the model, ``faiss``) is
skipped and the output says so. A ``--budget-s`` guard skips what would not fit (default: 300 s, so that the
whole run stays under 6 minutes on one H100/H200). ``--tiny`` runs every section at toy sizes on the CPU in
seconds (``torch.compile`` with its ``eager`` backend): the test suite runs that.

    python benchmarks/gpu_check.py --out runs/gpu_check            # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import math
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):  # the library from this tree (a GPU machine may not have it installed)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_loss import naive_loss  # noqa: E402
from common import cpu_model, table  # noqa: E402

from contrastive_mer.model.losses import PairwiseInfoNCE  # noqa: E402

CONFIGS = {"demo": ROOT / "experiments" / "demo.yaml", "paper": ROOT / "experiments" / "paper.yaml"}
FEED_CONFIG = "ravdess_av"  # benchmarks/ravdess_av.yaml: the model whose data pipeline figure d measures
#: clips/s one DataLoader worker prepares for that model (BENCHMARKS.md d, `benchmarks/bench_data.py --threads 1`
#: on a 2-core Xeon under load): a corpus where every clip has video, and epochs read from data.cache=disk
WORKER_CLIPS_PER_S = {"video_no_cache": 1.18, "disk_cached": 115.0}
OPTIONAL = ("omegaconf", "yaml", "faiss", "av", "soundfile")


@dataclass
class Sizes:
    """Problem sizes of one run (full on a GPU, toy with ``--tiny``)."""

    loss_batches: tuple[int, ...] = (256, 1024, 4096)
    loss_dim: int = 512
    loss_modalities: int = 4
    repeats: int = 10
    probe_rows: int = 50_000
    probe_dim: int = 1536
    probe_test: int = 5_000
    knn_queries: int = 5_000
    knn_k: int = 20
    train_batches: tuple[int | None, ...] = (None, 256)  # None: the config's own batch size
    compile_batch: int = 256
    train_steps: int = 20
    train_warmup: int = 3
    extract_batch: int = 256
    extract_steps: int = 10
    max_input: tuple[float, int, int, int] | None = None  # caps (audio s, frames, frame size, tokens); None: none
    compile_rows: tuple[tuple[str, str], ...] | None = None  # (config, precision) pairs; None: all of them
    backbone_tiny: bool = False  # True: a 2-layer, 32-wide wav2vec 2.0 instead of the base size (95M)
    backbone_clips: int = 16
    backbone_clip_s: float = 8.0
    backbone_minutes: tuple[float, ...] = (1.0, 3.0, 10.0)


TINY = Sizes(loss_batches=(64, 128, 256), loss_dim=64, repeats=3, probe_rows=2_000, probe_dim=64, probe_test=500,
             knn_queries=200, knn_k=5, train_batches=(2,), compile_batch=2, train_steps=2, train_warmup=1,
             extract_batch=2, extract_steps=2, max_input=(0.25, 2, 32, 8),
             compile_rows=(("demo", "fp32"),), backbone_tiny=True, backbone_clips=2, backbone_clip_s=0.5,
             backbone_minutes=(0.01,))


@dataclass
class Check:
    """Runs the sections, keeps their rows and the notes on what was skipped, and enforces the time budget."""

    device: torch.device
    sizes: Sizes
    budget_s: float
    strict: bool
    compile_backend: str
    start: float = field(default_factory=time.monotonic)
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fits(self, what: str, needs_s: float) -> bool:
        """False (with a note) when ``needs_s`` more seconds would overrun the budget."""
        left = self.budget_s - self.elapsed()
        if left < needs_s:
            self.notes.append(f"{what}: skipped, {left:.0f} s of the {self.budget_s:.0f} s budget left "
                              f"(needs about {needs_s:.0f} s)")
            return False
        return True

    def row(self, section: str, what: str, fn: Callable[[], dict[str, Any]]) -> None:
        """Run one measurement; a failure becomes a note (or propagates with ``--strict``)."""
        try:
            self.sections.setdefault(section, []).append(fn())
        except Exception as err:  # one failed figure must not lose the others on an unattended machine
            if self.strict:
                raise
            self.notes.append(f"{what}: failed: {type(err).__name__}: {err}")
            traceback.print_exc()
        finally:
            release(self.device)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
        """Seconds per call, each call synchronised with the device."""
        for _ in range(warmup):
            fn()
        self.sync()
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            self.sync()
            out.append(time.perf_counter() - t)
        return out

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2 ** 20 if self.cuda else None


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def available(name: str) -> bool:
    """Whether ``name`` imports here."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------------------- loss
def loss_section(c: Check) -> None:
    s = c.sizes
    names = ["audio", "video", "text", "au", "landmarks", "physio"][: s.loss_modalities]
    for batch in s.loss_batches:
        def measure(batch: int = batch) -> dict[str, Any]:
            gen = torch.Generator(device=c.device).manual_seed(batch)
            raw = {m: torch.randn(batch, s.loss_dim, generator=gen, device=c.device).requires_grad_(True)
                   for m in names}
            present = {m: torch.ones(batch, dtype=torch.bool, device=c.device) for m in names}
            loss_fn = PairwiseInfoNCE(names, temperature=0.07).to(c.device)

            def naive() -> torch.Tensor:
                loss = naive_loss(raw, present, 0.07)
                loss.backward()
                return loss

            def library() -> torch.Tensor:
                loss = loss_fn({m: F.normalize(x, dim=-1) for m, x in raw.items()}, present).loss
                loss.backward()
                return loss

            values, grads = [], []
            for step in (naive, library):
                for x in raw.values():
                    x.grad = None
                values.append(float(step().detach()))
                grads.append([x.grad.clone() for x in raw.values()])
            grad_diff = max(float((g0 - g1).abs().max()) for g0, g1 in zip(*grads))
            if abs(values[0] - values[1]) > 1e-4 * max(1.0, abs(values[0])) or grad_diff > 1e-5:
                raise RuntimeError(f"B={batch}: naive and library losses disagree ({values[0]} vs {values[1]}, "
                                   f"max gradient difference {grad_diff:.2e})")
            c.reset_peak()
            t_naive = statistics.median(c.timed(naive, s.repeats))
            t_lib = statistics.median(c.timed(library, s.repeats))
            return {"batch": batch, "dim": s.loss_dim, "modalities": len(names), "naive_ms": 1e3 * t_naive,
                    "library_ms": 1e3 * t_lib, "ratio": t_lib / t_naive, "loss": values[1],
                    "max_grad_diff": grad_diff, "peak_mib": c.peak_mib()}

        if c.fits(f"loss B={batch}", 5):
            c.row("loss", f"loss B={batch}", measure)


# ------------------------------------------------------------------------------------------------------ probe
def gaussian_classes(rows: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32) * 0.15
    y = rng.integers(0, classes, rows)
    return (centres[y] + rng.normal(size=(rows, dim)).astype(np.float32)), y


def probe_section(c: Check) -> None:
    from contrastive_mer.evaluation.linear import LinearProbeConfig, linear_probe

    s = c.sizes
    X, y = gaussian_classes(s.probe_rows + s.probe_test, s.probe_dim, 8, 0)
    Xtr, ytr, Xte, yte = X[: s.probe_rows], y[: s.probe_rows], X[s.probe_rows:], y[s.probe_rows:]
    devices = ["cpu"] + (["cuda"] if c.cuda else [])
    if not c.cuda:
        c.notes.append("linear probe: no GPU here, CPU row only")
    results: dict[str, Any] = {}
    for dev in devices:
        def measure(dev: str = dev) -> dict[str, Any]:
            cfg = LinearProbeConfig(weight_decays=(1e-4,), max_iter=100, device=dev)
            t = time.perf_counter()
            res = linear_probe(Xtr, ytr, Xte, yte, config=cfg, num_classes=8)
            c.sync()
            seconds = time.perf_counter() - t
            results[dev] = res
            row = {"device": dev, "train_rows": s.probe_rows, "dim": s.probe_dim, "seconds": seconds,
                   "test_accuracy": float((res.predictions == yte).mean())}
            if dev == "cuda" and "cpu" in results:
                cpu_row = c.sections["probe"][0]
                row["speedup_vs_cpu"] = cpu_row["seconds"] / seconds
                row["same_predictions"] = float((res.predictions == results["cpu"].predictions).mean())
            return row

        if c.fits(f"linear probe on {dev}", 20 if dev == "cpu" and c.cuda else 3):
            c.row("probe", f"linear probe on {dev}", measure)


# ------------------------------------------------------------------------------------------------------ faiss
def faiss_section(c: Check) -> None:
    if not available("faiss"):
        c.notes.append("FAISS: skipped, faiss is not installed here (GPU: see BENCHMARKS.md f, 'FAISS on a GPU')")
        return
    import faiss

    s = c.sizes
    X, _ = gaussian_classes(s.probe_rows + s.knn_queries, s.probe_dim, 8, 1)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    base, queries = np.ascontiguousarray(X[: s.probe_rows]), np.ascontiguousarray(X[s.probe_rows:])
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    found: dict[str, np.ndarray] = {}

    def run(where: str) -> dict[str, Any]:
        index = faiss.IndexFlatIP(s.probe_dim)
        if where == "gpu":
            resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(resources, 0, index)
        t = time.perf_counter()
        index.add(base)
        _, ids = index.search(queries, s.knn_k)
        seconds = time.perf_counter() - t
        found[where] = ids
        row = {"where": where, "rows": s.probe_rows, "dim": s.probe_dim, "queries": s.knn_queries, "k": s.knn_k,
               "seconds": seconds, "faiss": faiss.__version__}
        if where == "gpu":
            row["speedup_vs_cpu"] = c.sections["faiss"][0]["seconds"] / seconds
            row["same_neighbours"] = float(np.mean([set(a) == set(b) for a, b in zip(found["cpu"], ids)]))
        return row

    c.row("faiss", "FAISS on the CPU", lambda: run("cpu"))
    if gpus > 0 and c.cuda and hasattr(faiss, "StandardGpuResources"):
        c.row("faiss", "FAISS on the GPU", lambda: run("gpu"))
    else:
        c.notes.append(f"FAISS on the GPU: skipped, this faiss {faiss.__version__} has no GPU support "
                       f"(GPUs visible to faiss: {gpus})")


# ------------------------------------------------------------------------------------------ training, extraction
def load_experiment(name: str) -> Any:
    """``(config, module class, input shapes)`` of an experiment YAML through the library's own config code."""
    import yaml

    from contrastive_mer.data.kinds import preprocess_config
    from contrastive_mer.encoders import get_entry
    from contrastive_mer.experiment import config_from_dict

    path = CONFIGS[name] if name in CONFIGS else HERE / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    cfg = config_from_dict(data)
    shapes = {}
    for m, spec in cfg.model.modalities.items():
        kind = get_entry(spec.encoder).input_kind
        shapes[m] = (kind, preprocess_config(spec, kind))
    return data, cfg, shapes


def make_batch(shapes: dict[str, Any], batch: int, device: torch.device, caps: Any = None, seed: int = 0) -> Any:
    """A :class:`Batch` of random inputs shaped as the preprocessors would shape them (every modality present);
    ``caps`` = (audio seconds, frames, frame size, tokens) shrinks them (``--tiny``)."""
    from contrastive_mer.data.sample import Batch

    seconds, frames, size, tokens = caps or (float("inf"), 1 << 30, 1 << 30, 32)
    gen = torch.Generator().manual_seed(seed)
    inputs, lengths = {}, {}
    for m, (kind, p) in shapes.items():
        if kind == "logmel":
            steps = int(min(p.max_seconds or 8.0, seconds) * p.sample_rate) // p.hop_length + 1
            inputs[m] = torch.randn(batch, p.n_mels, steps, generator=gen)
            lengths[m] = torch.full((batch,), steps)
        elif kind == "frames":
            t, hw = min(p.num_frames, frames), min(p.size, size)
            inputs[m] = torch.randn(batch, t, 3, hw, hw, generator=gen)
            lengths[m] = torch.full((batch,), t)
        elif kind == "tokens":
            steps = min(p.max_length, tokens)
            inputs[m] = torch.randint(1, p.vocab_size, (batch, steps), generator=gen)
            lengths[m] = torch.randint(steps // 2, steps + 1, (batch,), generator=gen)
        elif kind == "vector" and getattr(p, "sequence", False):  # frame sequences, e.g. landmarks for ST-GCN
            steps = min(32, tokens)
            inputs[m] = torch.randn(batch, steps, p.input_dim, generator=gen)
            lengths[m] = torch.full((batch,), steps)
        elif kind == "vector":
            inputs[m] = torch.randn(batch, p.input_dim, generator=gen)
        else:
            raise ValueError(f"modality {m}: no synthetic input for input kind {kind!r}")
    move = {m: x.to(device) for m, x in inputs.items()}
    return Batch(ids=[str(i) for i in range(batch)], inputs=move, lengths={m: x.to(device) for m, x in lengths.items()},
                 present={m: torch.ones(batch, dtype=torch.bool, device=device) for m in inputs})


def build_module(data: dict[str, Any], device: torch.device, compiled: bool, backend: str) -> Any:
    from contrastive_mer.model.module import PairwiseContrastiveModule

    module = PairwiseContrastiveModule(data).to(device)
    if compiled:
        for group in (module.encoders, module.heads):
            for m in list(group):
                group[m] = torch.compile(group[m], backend=backend)
    return module


def autocast(c: Check, precision: str) -> Any:
    return torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def train_row(c: Check, name: str, precision: str, compiled: bool, batch_size: int | None) -> dict[str, Any]:
    data, cfg, shapes = load_experiment(name)
    batch_size = batch_size or int(cfg.data.batch_size)
    module = build_module(data, c.device, compiled, c.compile_backend).train()
    optim = module.configure_optimizers()
    optim = optim["optimizer"] if isinstance(optim, dict) else optim
    batch = make_batch(shapes, batch_size, c.device, c.sizes.max_input)
    losses = []

    def step() -> None:
        with autocast(c, precision):
            loss = module.compute_loss(batch).loss  # the configured loss (pairwise, or two-window halves)
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.detach())

    t = time.perf_counter()
    step()  # the first step (compilation, cuDNN autotuning), timed apart
    c.sync()
    first = time.perf_counter() - t
    c.reset_peak()
    times = c.timed(step, c.sizes.train_steps, warmup=c.sizes.train_warmup - 1)
    final = float(losses[-1])
    if not np.isfinite(final):
        raise RuntimeError(f"{name} {precision}: the loss is not finite ({final})")
    per_step = statistics.median(times)
    return {"config": name, "precision": precision, "compile": compiled, "batch": batch_size,
            "params_m": sum(p.numel() for p in module.parameters()) / 1e6, "ms_per_step": 1e3 * per_step,
            "samples_per_s": batch_size / per_step, "first_step_s": first, "peak_mib": c.peak_mib(),
            "loss": final}


def extract_row(c: Check, name: str, precision: str) -> dict[str, Any]:
    data, _, shapes = load_experiment(name)
    module = build_module(data, c.device, False, c.compile_backend).eval()
    batch = make_batch(shapes, c.sizes.extract_batch, c.device, c.sizes.max_input)

    def step() -> None:
        with torch.inference_mode(), autocast(c, precision):
            outputs, projections = module(batch)
            [out.feature.float().cpu() for out in outputs.values()]
            [z.float().cpu() for z in projections.values()]

    c.reset_peak()
    per_step = statistics.median(c.timed(step, c.sizes.extract_steps, warmup=2))
    return {"config": name, "precision": precision, "batch": c.sizes.extract_batch,
            "ms_per_batch": 1e3 * per_step, "clips_per_s": c.sizes.extract_batch / per_step,
            "peak_mib": c.peak_mib()}


def model_sections(c: Check, configs: list[str], compile_too: bool) -> None:
    missing = [name for name in ("omegaconf", "yaml") if not available(name)]
    if missing:
        c.notes.append(f"training and extraction: skipped, the library's model needs {', '.join(missing)} "
                       "(pure Python): put it on PYTHONPATH (BENCHMARKS.md f shows how to carry it)")
        return
    precisions = ("fp32", "bf16-mixed")
    for name, precision, batch in itertools.product(configs, precisions, c.sizes.train_batches):
        what = f"training {name} {precision} batch {batch or 'config'}"
        if c.fits(what, 15 if c.cuda else 0):
            c.row("training", what, lambda: train_row(c, name, precision, False, batch))
    for name, precision in itertools.product(configs, ("fp32", "bf16")):
        what = f"extraction {name} {precision}"
        if c.fits(what, 5 if c.cuda else 0):
            c.row("extraction", what, lambda: extract_row(c, name, "bf16-mixed" if precision == "bf16" else precision))
    if not compile_too:
        c.notes.append("training with torch.compile: skipped (--no-compile)")
        return
    pairs = c.sizes.compile_rows or tuple(itertools.product(configs, precisions))
    if c.sizes.compile_rows:
        c.notes.append("training with torch.compile: only " + ", ".join(f"{n} {p}" for n, p in pairs)
                       + " at these sizes")
    for name, precision in [(n, p) for n, p in pairs if n in configs]:
        what = f"training {name} {precision} torch.compile"
        if c.fits(what, 100 if c.cuda else 0):
            c.row("training", what, lambda: train_row(c, name, precision, True, c.sizes.compile_batch))
            torch._dynamo.reset()


def feed_section(c: Check) -> None:
    """The training step of figure d's model, and the workers = step clips/s / one worker's clips/s."""
    if not all(available(name) for name in ("omegaconf", "yaml")):
        c.notes.append("data feed: skipped, the library's model needs omegaconf and yaml")
        return

    def measure() -> dict[str, Any]:
        row = train_row(c, FEED_CONFIG, "fp32", False, c.sizes.train_batches[0])
        row.update({f"workers_{kind}": math.ceil(row["samples_per_s"] / rate)
                    for kind, rate in WORKER_CLIPS_PER_S.items()})
        return row

    if c.fits("data feed", 15 if c.cuda else 0):
        c.row("feed", "data feed", measure)


# -------------------------------------------------------------------------------------------------- backbones
def backbone_section(c: Check) -> None:
    """A randomly initialised wav2vec 2.0 base through ``hf_audio`` (frozen, all layers): audio seconds per second
    in fp32 and bf16, peak memory on long clips in 20 s windows, and one training epoch of the pairwise heads on
    cached features against the frozen backbone run every batch (BENCHMARKS.md i on the CPU)."""
    if not all(available(name) for name in ("omegaconf", "yaml", "transformers")):
        c.notes.append("backbones: skipped, hf_audio needs omegaconf, yaml and transformers")
        return
    import tempfile

    from backbones import save_base_wav2vec2

    from contrastive_mer.encoders import build_encoder

    s = c.sizes
    root = Path(tempfile.mkdtemp())
    tiny = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37, conv_dim=(8, 8), conv_kernel=(16, 20),
                conv_stride=(16, 20), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    folder = save_base_wav2vec2(root / "w2v", layers=2, **tiny) if s.backbone_tiny else save_base_wav2vec2(root / "w2v")
    enc = build_encoder("hf_audio", {"model_path": str(folder), "layers": "all"}).to(c.device)
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(s.backbone_clips, int(s.backbone_clip_s * 16000), generator=gen) * 0.1).to(c.device)
    audio_s = s.backbone_clips * s.backbone_clip_s

    def throughput(precision: str) -> dict[str, Any]:
        c.reset_peak()
        with torch.no_grad(), autocast(c, precision):
            secs = statistics.median(c.timed(lambda: enc(batch), max(1, s.repeats // 3)))
        return {"what": "throughput, frozen, all layers", "precision": precision, "audio_s": audio_s,
                "seconds": secs, "audio_s_per_s": audio_s / secs, "peak_mib": c.peak_mib()}

    def long_clip(minutes: float) -> dict[str, Any]:
        wave = torch.randn(1, int(minutes * 60 * 16000), generator=gen).to(c.device) * 0.1
        c.reset_peak()
        with torch.no_grad():
            secs = c.timed(lambda: enc(wave), 1, warmup=0)[0]
        return {"what": f"{minutes:g} min clip, 20 s windows", "precision": "fp32", "audio_s": minutes * 60,
                "seconds": secs, "audio_s_per_s": minutes * 60 / secs, "peak_mib": c.peak_mib()}

    def epochs() -> dict[str, Any]:
        from contrastive_mer.config import HeadConfig
        from contrastive_mer.model.heads import ProjectionHead

        head = HeadConfig(hidden_dim=256, output_dim=128)
        live = torch.nn.ModuleList([build_encoder("hf_audio", {"model_path": str(folder), "layers": "all",
                                                               "output_dim": 128}), ProjectionHead(128, head)])
        with torch.no_grad():
            cached = enc(batch).feature
        heads = torch.nn.ModuleList([build_encoder("mlp", {"input_dim": cached.shape[1], "output_dim": 128}),
                                     ProjectionHead(128, head)])
        pair = torch.nn.functional.normalize(torch.randn(s.backbone_clips, 128, generator=gen), dim=-1).to(c.device)
        loss_fn = PairwiseInfoNCE(["a", "b"], temperature=0.1)
        present = torch.ones(s.backbone_clips, dtype=torch.bool, device=c.device)

        def step(parts: torch.nn.ModuleList, x: torch.Tensor) -> Callable[[], None]:
            opt = torch.optim.AdamW([p for p in parts.parameters() if p.requires_grad], lr=1e-3)

            def run() -> None:
                z = torch.nn.functional.normalize(parts[1](parts[0](x).feature), dim=-1)
                loss = loss_fn({"a": z, "b": pair}, {"a": present, "b": present}).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
            return run

        t_live = statistics.median(c.timed(step(live.to(c.device).train(), batch), 3))
        t_cached = statistics.median(c.timed(step(heads.to(c.device).train(), cached), 3))
        return {"what": "one epoch: cached features vs backbone every batch", "precision": "fp32",
                "audio_s": audio_s, "seconds": t_cached, "live_seconds": t_live, "ratio": t_live / t_cached}

    for precision in ("fp32", "bf16-mixed"):
        if c.fits(f"backbone throughput {precision}", 20 if c.cuda else 0):
            c.row("backbones", f"backbone throughput {precision}", lambda p=precision: throughput(p))
    for minutes in s.backbone_minutes:
        if c.fits(f"backbone {minutes:g} min clip", minutes * 6 if c.cuda else 0):
            c.row("backbones", f"backbone {minutes:g} min clip", lambda m=minutes: long_clip(m))
    if c.fits("backbone epochs", 20 if c.cuda else 0):
        c.row("backbones", "backbone epochs", epochs)


# ----------------------------------------------------------------------------------------------------- output
def environment(c: Check) -> dict[str, Any]:
    """The device, versions and which optional packages import here."""
    return {
        "device": torch.cuda.get_device_name(c.device) if c.cuda else f"CPU ({cpu_model()})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "packages": {name: available(name) for name in OPTIONAL},
        "compile_backend": c.compile_backend, "budget_s": c.budget_s,
    }


def fmt(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return float(value) if isinstance(value, (int, float, np.floating)) and not isinstance(value, int) else value


def markdown(env: dict[str, Any], c: Check, command: str) -> str:
    cols = {
        "loss": ["batch", "dim", "modalities", "naive_ms", "library_ms", "ratio", "max_grad_diff", "peak_mib"],
        "probe": ["device", "train_rows", "dim", "seconds", "test_accuracy", "speedup_vs_cpu", "same_predictions"],
        "faiss": ["where", "rows", "dim", "queries", "k", "seconds", "speedup_vs_cpu", "same_neighbours"],
        "training": ["config", "precision", "compile", "batch", "params_m", "ms_per_step", "samples_per_s",
                     "first_step_s", "peak_mib"],
        "extraction": ["config", "precision", "batch", "ms_per_batch", "clips_per_s", "peak_mib"],
        "feed": ["config", "batch", "ms_per_step", "samples_per_s", "workers_video_no_cache", "workers_disk_cached"],
        "backbones": ["what", "precision", "audio_s", "seconds", "audio_s_per_s", "peak_mib", "live_seconds",
                      "ratio"],
    }
    titles = {"loss": "Pairwise loss, forward + backward: library vs naive",
              "probe": "Linear probe (L-BFGS, 8 classes, one weight decay)",
              "faiss": "FAISS exact inner-product kNN (add + search)",
              "training": "Training step (forward, loss, backward, optimiser)",
              "extraction": "Extraction forward (encoders + heads, outputs to the host)",
              "feed": "Data feed: DataLoader workers per GPU for figure d's model (RAVDESS audio + AU + video; "
                      f"one worker: {WORKER_CLIPS_PER_S['video_no_cache']:g} clips/s with video, "
                      f"{WORKER_CLIPS_PER_S['disk_cached']:g} from the disk cache, BENCHMARKS.md d)",
              "backbones": "Speech backbone: wav2vec 2.0 base, random init, through hf_audio (BENCHMARKS.md i)"}
    packages = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in env["packages"].items())
    lines = [f"Device: {env['device']}; torch {env['torch']} (CUDA {env['cuda']}), Python {env['python']}; "
             f"optional packages: {packages}; torch.compile backend: {env['compile_backend']}.  ",
             f"Command: `{command}`; {c.elapsed():.0f} s in all (budget {c.budget_s:.0f} s).", ""]
    for key, headers in cols.items():
        rows = c.sections.get(key)
        if not rows:
            continue
        lines += [f"**{titles[key]}**", "", table(headers, [[fmt(r.get(h)) for h in headers] for r in rows]), ""]
    if c.notes:
        lines += ["Skipped or failed:", ""] + [f"- {n}" for n in c.notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (seconds); the suite runs this")
    parser.add_argument("--device", default=None, help="default: cuda if available (cpu with --tiny)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--budget-s", type=float, default=300.0, help="skip what would not fit in this time")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--compile-backend", default=None, help="default: inductor (eager with --tiny)")
    parser.add_argument("--strict", action="store_true", help="stop at the first failure instead of noting it")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    if args.tiny:
        torch.set_num_threads(1)  # toy sizes: thread hand-offs would cost more than the arithmetic
    c = Check(device, TINY if args.tiny else Sizes(), args.budget_s, args.strict,
              args.compile_backend or ("eager" if args.tiny else "inductor"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    loss_section(c)
    probe_section(c)
    faiss_section(c)
    feed_section(c)
    model_sections(c, args.configs, not args.no_compile)  # the torch.compile rows run last of the model's
    backbone_section(c)  # added later: after the figures that were there, so that it never takes their budget

    env = environment(c)
    command = " ".join(["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])])
    text = markdown(env, c, command)
    (out / "gpu_check.md").write_text(text + "\n")
    (out / "gpu_check.json").write_text(json.dumps(
        {"environment": env, "command": command, "elapsed_s": c.elapsed(), "sections": c.sections,
         "notes": c.notes}, indent=1, default=str) + "\n")
    print(text)
    print(f"wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
