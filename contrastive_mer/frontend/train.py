"""Instruction tuning of the front end (what ``cmer frontend-train`` does): the projectors, and LoRA adapters on
the LLM when asked, trained on instruction rows whose soft tokens come from a feature store; the base LLM and
the encoders stay frozen.

The checkpoint (``<out>/train_state.pt``, written atomically after every epoch) holds only trained weights
(projectors, adapters), the optimiser and the epoch, tied to the encoder checkpoint's SHA-256 (the store's) and
the base LLM's :func:`~contrastive_mer.frontend.lora.parameter_digest`; resuming checks both. The batch order
of epoch ``e`` is drawn from ``seed + e``, so a resumed run gives the same weights as an uninterrupted one.
At the end ``<out>/frontend.safetensors`` (``FrontEnd.save``) and ``<out>/lora/`` (peft's adapter folder) are
written for ``cmer frontend-generate``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

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
from contrastive_mer.model.checkpoint_io import atomic_torch_save

STATE = "train_state.pt"


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


def train_frontend(front: FrontEnd, llm: Any, tokenizer: Any, store: Any, *, rows: Sequence[InstructionRow],
                   out_dir: str | Path, settings: TrainSettings | None = None, resume: bool = True,
                   on_epoch: Callable[[EpochLog], None] | None = None) -> tuple[FrontEnd, Any, list[EpochLog]]:
    """Train and return ``(front, llm, logs)``; ``llm`` comes back wrapped with its adapters when LoRA is on."""
    s = settings or TrainSettings()
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
    device = next(llm.parameters()).device
    llm_digest = parameter_digest(llm)
    llm.requires_grad_(False)
    if s.gradient_checkpointing:
        llm.gradient_checkpointing_enable()
        llm.config.use_cache = False
    torch.manual_seed(s.seed)  # LoRA's initialisation
    if s.lora is not None:
        llm = attach_lora(llm, s.lora)
    front.to(device)
    params = front.trainable_parameters() + [p for p in llm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    start_epoch, logs = 0, list[EpochLog]()
    state_path = out / STATE
    if resume and state_path.is_file():
        start_epoch, logs = _restore(state_path, front, llm, opt, s=s, llm_digest=llm_digest)
    sources = StoreSources(store, front.modalities, front.config.level, fused=front.config.fused,
                           fusion_mode=front.config.fusion_mode)
    placeholders = [front.config.placeholder(src) for src in front.source_dims]
    splicer = front.splicer(tokenizer, llm, padding_side="right",
                            add_bos=not (s.chat and template_writes_bos(tokenizer)))
    prompts = {r.id: render_prompt(r, tokenizer, placeholders, chat=s.chat, system=s.system) for r in rows}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.bf16)
    for epoch in range(start_epoch, s.epochs):
        front.train()
        llm.train()
        order = list(range(len(rows)))
        random.Random(s.seed + epoch).shuffle(order)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        total, steps, t0 = 0.0, 0, time.perf_counter()
        for start in range(0, len(order), s.batch_size):
            chunk = [rows[i] for i in order[start:start + s.batch_size]]
            with autocast:
                tokens = front(sources([index[r.clip] for r in chunk]).to(device))
                spliced = splicer([prompts[r.id] for r in chunk], tokens, [str(r.answer) for r in chunk],
                                  ids=[r.id for r in chunk])
                loss = llm(**spliced.model_inputs()).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        seconds = time.perf_counter() - t0
        log = EpochLog(epoch, total / steps, steps, seconds / steps,
                       torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0)
        logs.append(log)
        _save(state_path, front, llm, opt, s=s, epoch=epoch + 1, logs=logs, llm_digest=llm_digest)
        if on_epoch is not None:
            on_epoch(log)
    front.eval()
    llm.eval()
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


def _restore(path: Path, front: FrontEnd, llm: Any, opt: torch.optim.Optimizer, *, s: TrainSettings,
             llm_digest: str) -> tuple[int, list[EpochLog]]:
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
    opt.load_state_dict(state["optimizer"])
    return int(state["epoch"]), [EpochLog(**x) for x in state["logs"]]
