"""LoRA adapters on the LLM through ``peft`` (the ``llm`` extra, imported lazily), and the parameter digest that
ties trained weights to the base LLM they were trained on.

The digest is the SHA-256 of the base model's parameters and buffers (names and bytes, sorted by name), with
LoRA's own tensors left out and peft's renaming (``base_model.model.``, ``.base_layer``) undone: the same
number before and after adapters are attached, and as long as training leaves the base weights alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from contrastive_mer.errors import UserError

#: attention projections of LLaMA / Qwen2 / Mistral-style models
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


class MissingExtraError(UserError):
    """An optional dependency (an extra) is not installed; the message names the pip command."""


@dataclass
class LoraSettings:
    """LoRA rank ``r``, scale ``alpha``, ``dropout`` and the module names adapted (``target_modules``)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: Sequence[str] = DEFAULT_TARGETS


def _peft() -> Any:
    try:
        import peft
    except ModuleNotFoundError:
        raise MissingExtraError("LoRA needs the 'peft' package: pip install 'contrastive-mer[llm]' "
                                "(or pip install peft)") from None
    return peft


def attach_lora(llm: nn.Module, settings: LoraSettings) -> Any:
    """``llm`` wrapped as a peft model with LoRA adapters; only the adapters require gradients."""
    peft = _peft()
    names = {n.rsplit(".", 1)[-1] for n, _ in llm.named_modules()}
    targets = [t for t in settings.target_modules if t in names]
    if not targets:
        raise UserError(f"LoRA: none of the target modules {list(settings.target_modules)} exist in "
                        f"{type(llm).__name__}")
    llm.requires_grad_(False)
    config = peft.LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=targets, bias="none", task_type="CAUSAL_LM")
    return peft.get_peft_model(llm, config)


def load_adapter(llm: nn.Module, folder: str) -> Any:
    """``llm`` with the LoRA adapter saved in ``folder`` (``save_pretrained``), for inference."""
    return _peft().PeftModel.from_pretrained(llm, folder).eval()


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors of a peft model (what a checkpoint keeps of the LLM)."""
    return {k: v.detach().cpu().clone() for k, v in _peft().get_peft_model_state_dict(model).items()}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    result = _peft().set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"LoRA state does not fit the model (unexpected {unexpected[:3]})")


def base_name(name: str) -> str | None:
    """A parameter's name in the base model, or None for LoRA's own tensors."""
    if "lora_" in name or "modules_to_save" in name:
        return None
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of the base model's tensors (see the module docstring)."""
    h = hashlib.sha256()
    state = model.state_dict()
    named = sorted((n, t) for n, t in ((base_name(k), v) for k, v in state.items()) if n is not None)
    for name, tensor in named:
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
