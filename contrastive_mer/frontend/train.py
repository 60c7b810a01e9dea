"""Instruction tuning of the front end (what ``cmer frontend-train`` does): the projectors, and LoRA adapters on
the LLM when asked, trained on instruction rows whose soft tokens come from a feature store; the base LLM and
the encoders stay frozen.

Training runs in a Lightning Trainer (:class:`~contrastive_mer.frontend.train_module.FrontEndTraining`,
:class:`TrainerSettings`: accelerator, devices, strategy, nodes); ``bf16`` is Lightning's ``bf16-mixed``.

The checkpoint (``<out>/train_state.pt``, written atomically by rank 0 after every epoch) holds only trained
weights (projectors, adapters), the optimiser and the epoch, tied to the encoder checkpoint's SHA-256 (the
store's) and the base LLM's :func:`~contrastive_mer.frontend.lora.parameter_digest`; resuming checks both (it is
this file, not a Lightning checkpoint, that a rerun resumes from). The row order of epoch ``e`` is drawn from
``seed + e`` (:class:`~contrastive_mer.frontend.train_module.EpochOrder`).

What is identical: in one process the Trainer takes exactly the steps of a hand-written loop (same order, same
AdamW steps: bit-identical weights on CPU, tested), and a run killed after an epoch and rerun ends with weights
bit-identical to an uninterrupted run (tested on CPU; the RNG state is not saved, so this needs a step without
randomness: ``LoraSettings.dropout`` 0, the default). Under DDP rank ``r`` of ``W`` takes every ``W``-th row of
the epoch's order and the gradients are averaged, so every rank holds the same weights (tested with 2 CPU
processes), but the global batch is ``W x batch_size``: the weights differ from a one-process run's. The world
size is not tied to the checkpoint: a resume on other hardware continues from the saved weights and optimiser.
At the end ``<out>/frontend.safetensors`` (``FrontEnd.save``) and ``<out>/lora/`` (peft's adapter folder) are
written by rank 0 for ``cmer frontend-generate``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from contrastive_mer.distributed import is_launched_rank
from contrastive_mer.errors import UserError
from contrastive_mer.frontend.front_end import FrontEnd
from contrastive_mer.frontend.instructions import InstructionError, InstructionRow, render_prompt, template_writes_bos
from contrastive_mer.frontend.lora import (
    LoraSettings,
    adapter_state,
    attach_lora,
    load_adapter_state,
    parameter_digest,
)
from contrastive_mer.frontend.sources import StoreSources
from contrastive_mer.frontend.train_module import FrontEndTraining
from contrastive_mer.model.checkpoint_io import atomic_torch_save
from contrastive_mer.pretrain.progress import quiet_lightning

STATE = "train_state.pt"

# noise from Lightning's own internals on current torch; nothing a user can act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class CheckpointMismatchError(UserError):
    """A training checkpoint made with another encoder checkpoint, LLM or settings."""


@dataclass
class TrainSettings:
    """Optimisation of :func:`train_frontend`; ``lora=None`` trains the projectors only."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    chat: bool = True
    system: str | None = None
    lora: LoraSettings | None = None
    bf16: bool = False
    gradient_checkpointing: bool = False


@dataclass
class EpochLog:
    """What one epoch did: mean target loss, steps, seconds per step, peak GPU memory (bytes; 0 on CPU)."""

    epoch: int
    loss: float
    steps: int
    seconds_per_step: float
    peak_memory: int


def _tied(settings: TrainSettings) -> dict[str, Any]:
    """The settings a resumed run must share with the checkpoint."""
    out = asdict(settings)
    out.pop("epochs")
    return out


@dataclass
class TrainerSettings:
    """Where :func:`train_frontend` runs: Lightning's ``accelerator`` (``auto``, ``cpu``, ``gpu``), ``devices``
    (a count, or a list of device indices), ``strategy`` (``auto``; ``ddp`` for several devices) and
    ``num_nodes``. Not tied to the checkpoint: a run may resume on other hardware."""

    accelerator: str = "auto"
    devices: int | list[int] | str = 1
    strategy: str = "auto"
    num_nodes: int = 1

    @classmethod
    def from_device(cls, device: str, *, devices: int = 1, strategy: str = "auto", num_nodes: int = 1
                    ) -> "TrainerSettings":
        """From the ``--device`` of the command line: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (device N)."""
        if device in ("auto", "cpu"):
            return cls(device, devices, strategy, num_nodes)
        if device == "cuda" or device == "gpu":
            return cls("gpu", devices, strategy, num_nodes)
        if device.startswith("cuda:") and device[5:].isdigit():
            if devices != 1:
                raise UserError(f"--device {device} names one GPU; use --device cuda --devices {devices}")
            return cls("gpu", [int(device[5:])], strategy, num_nodes)
        raise UserError(f"--device: {device!r} is not auto, cpu, cuda or cuda:N")

    @classmethod
    def of_model(cls, model: torch.nn.Module) -> "TrainerSettings":
        """One process on the device ``model`` is on (what :func:`train_frontend` uses when not told)."""
        device = next(model.parameters()).device
        if device.type == "cuda":
            return cls("gpu", [device.index if device.index is not None else torch.cuda.current_device()])
        return cls("cpu", 1)


class EpochStateCallback(Callback):
    """After every epoch: the epoch's :class:`EpochLog` (loss averaged over steps and ranks), the training
    checkpoint written by rank 0, then ``on_epoch``."""

    def __init__(self, state_path: Path, *, s: TrainSettings, llm_digest: str, logs: list[EpochLog],
                 start_epoch: int, on_epoch: Callable[[EpochLog], None] | None):
        self.state_path, self.s, self.llm_digest, self.logs = state_path, s, llm_digest, logs
        self.start_epoch, self.on_epoch = start_epoch, on_epoch
        self.total, self.steps, self.t0 = 0.0, 0, 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
        self.total, self.steps, self.t0 = 0.0, 0, time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.total += float(loss.detach())
        self.steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not isinstance(module, FrontEndTraining):
            raise TypeError(f"EpochStateCallback needs a FrontEndTraining, not {type(module).__name__}")
        seconds = time.perf_counter() - self.t0
        mean = trainer.strategy.reduce(torch.tensor(self.total / self.steps, device=module.device),
                                       reduce_op="mean")
        log = EpochLog(self.start_epoch + trainer.current_epoch, float(mean), self.steps, seconds / self.steps,
                       torch.cuda.max_memory_allocated(module.device) if module.device.type == "cuda" else 0)
        self.logs.append(log)
        if trainer.is_global_zero:
            _save(self.state_path, module.front, module.llm, trainer.optimizers[0], s=self.s,
                  epoch=log.epoch + 1, logs=self.logs, llm_digest=self.llm_digest)
        trainer.strategy.barrier("frontend-train state")
        if self.on_epoch is not None:
            self.on_epoch(log)


def build_trainer(t: TrainerSettings, *, epochs: int, bf16: bool, callbacks: list[Callback]) -> pl.Trainer:
    """A Trainer for ``epochs`` epochs with no logger, no Lightning checkpoint (the callback writes the state
    file) and no validation; ``bf16`` is Lightning's ``bf16-mixed`` (autocast)."""
    quiet_lightning()
    return pl.Trainer(max_epochs=epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
                      num_nodes=t.num_nodes, precision="bf16-mixed" if bf16 else "32-true", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False,
                      callbacks=callbacks)


def train_frontend(front: FrontEnd, llm: Any, tokenizer: Any, store: Any, *, rows: Sequence[InstructionRow],
                   out_dir: str | Path, settings: TrainSettings | None = None, resume: bool = True,
                   on_epoch: Callable[[EpochLog], None] | None = None,
                   trainer: TrainerSettings | None = None) -> tuple[FrontEnd, Any, list[EpochLog]]:
    """Train with a Lightning Trainer and return ``(front, llm, logs)`` (on every rank, on the device they trained
    on); ``llm`` comes back wrapped with its adapters when LoRA is on. ``trainer`` picks the hardware (default:
    one process on the device ``llm`` is on)."""
    s = settings or TrainSettings()
    t = trainer or TrainerSettings.of_model(llm)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows if r.answer]
    if not rows:
        raise InstructionError("frontend-train: no instruction row has an answer to train on")
    index = {str(i): n for n, i in enumerate(store.ids)}
    missing = [r.id for r in rows if r.clip not in index]
    if missing:
        raise InstructionError(f"{len(missing)} instruction rows refer to clips not in {store.path}, e.g. row "
                               f"{missing[0]!r}")
    llm_digest = parameter_digest(llm)
    llm.requires_grad_(False)
    if s.gradient_checkpointing:
        llm.gradient_checkpointing_enable()
        llm.config.use_cache = False
    torch.manual_seed(s.seed)  # LoRA's initialisation
    if s.lora is not None:
        llm = attach_lora(llm, s.lora)
    start_epoch, logs, opt_state = 0, list[EpochLog](), None
    state_path = out / STATE
    if resume and state_path.is_file():
        start_epoch, logs, opt_state = _restore(state_path, front, llm, s=s, llm_digest=llm_digest)
    sources = StoreSources(store, front.modalities, front.config.level, fused=front.config.fused,
                           fusion_mode=front.config.fusion_mode)
    placeholders = [front.config.placeholder(src) for src in front.source_dims]
    splicer = front.splicer(tokenizer, llm, padding_side="right",
                            add_bos=not (s.chat and template_writes_bos(tokenizer)))
    prompts = {r.id: render_prompt(r, tokenizer, placeholders, chat=s.chat, system=s.system) for r in rows}

    def batch_inputs(chunk: list[InstructionRow], device: torch.device) -> dict[str, Any]:
        tokens = front(sources([index[r.clip] for r in chunk]).to(device))
        spliced = splicer([prompts[r.id] for r in chunk], tokens, [str(r.answer) for r in chunk],
                          ids=[r.id for r in chunk])
        return dict(spliced.model_inputs())

    module = FrontEndTraining(front, llm, rows=rows, batch_inputs=batch_inputs, lr=s.lr,
                              weight_decay=s.weight_decay, batch_size=s.batch_size, seed=s.seed,
                              start_epoch=start_epoch, optimizer_state=opt_state)
    front.train()  # Lightning keeps the modes it finds (a loaded LLM is in eval mode: dropout off)
    llm.train()
    if start_epoch < s.epochs:
        callback = EpochStateCallback(state_path, s=s, llm_digest=llm_digest, logs=logs, start_epoch=start_epoch,
                                      on_epoch=on_epoch)
        fitter = build_trainer(t, epochs=s.epochs - start_epoch, bf16=s.bf16, callbacks=[callback])
        fitter.fit(module)
        is_zero = fitter.is_global_zero
        front.to(fitter.strategy.root_device)  # Lightning's teardown moved them to the CPU
        llm.to(fitter.strategy.root_device)
    else:
        is_zero = not is_launched_rank()
    front.eval()
    llm.eval()
    if is_zero:
        front.save(out / "frontend.safetensors")
        if s.lora is not None:
            llm.save_pretrained(str(out / "lora"))
        (out / "train_log.jsonl").write_text("".join(json.dumps(asdict(x)) + "\n" for x in logs), encoding="utf-8")
    return front, llm, logs


def trained_state(front: FrontEnd, llm: Any, *, lora: bool) -> dict[str, torch.Tensor]:
    """Every trained tensor: ``frontend.<name>`` (projectors) and ``lora.<name>`` (adapters)."""
    out = {f"frontend.{k}": v for k, v in front._saved_state().items()}
    if lora:
        out.update({f"lora.{k}": v for k, v in adapter_state(llm).items()})
    return out


def _save(path: Path, front: FrontEnd, llm: Any, opt: torch.optim.Optimizer, *, s: TrainSettings, epoch: int,
          logs: list[EpochLog], llm_digest: str) -> None:
    atomic_torch_save({"weights": trained_state(front, llm, lora=s.lora is not None),
                       "optimizer": opt.state_dict(), "epoch": epoch, "logs": [asdict(x) for x in logs],
                       "encoder_sha256": front.encoder_sha256, "llm_digest": llm_digest,
                       "settings": _tied(s)}, path)


def _restore(path: Path, front: FrontEnd, llm: Any, *, s: TrainSettings,
             llm_digest: str) -> tuple[int, list[EpochLog], dict]:
    """Load the trained weights into ``front`` / ``llm``; returns the epoch reached, the logs and the optimiser
    state (loaded by :class:`FrontEndTraining`)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["encoder_sha256"] != front.encoder_sha256:
        raise CheckpointMismatchError(f"{path}: trained on the encoder checkpoint {state['encoder_sha256'][:16]}..., "
                                      f"not {front.encoder_sha256[:16] or 'none'}...; use --overwrite to start again")
    if state["llm_digest"] != llm_digest:
        raise CheckpointMismatchError(f"{path}: trained on another LLM (parameter digest {state['llm_digest'][:16]}"
                                      f"... vs {llm_digest[:16]}...); use --overwrite to start again")
    if state["settings"] != _tied(s):
        changed = sorted(k for k in state["settings"] if state["settings"][k] != _tied(s).get(k))
        raise CheckpointMismatchError(f"{path}: settings differ from the checkpoint's ({', '.join(changed)}); "
                                      "use --overwrite to start again")
    weights = state["weights"]
    front_state = {k.removeprefix("frontend."): v for k, v in weights.items() if k.startswith("frontend.")}
    missing, unexpected = front.load_state_dict(front_state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("encoder.")]:
        raise CheckpointMismatchError(f"{path}: projector weights do not fit this front end")
    if s.lora is not None:
        load_adapter_state(llm, {k.removeprefix("lora."): v for k, v in weights.items() if k.startswith("lora.")})
    return int(state["epoch"]), [EpochLog(**x) for x in state["logs"]], state["optimizer"]
