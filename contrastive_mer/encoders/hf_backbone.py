"""What the transformers backbone encoders share: finding a model folder offline, its identity digest, layer
selection and mixing (SUPERB's learned softmax weights), and freezing all but the top layers.

A model is a local folder (``config.json`` + weights) or a hub id looked up in the Hugging Face cache with
``local_files_only`` unless ``allow_download`` is set (and the process is not in offline mode). A model that is
not there is a :class:`BackboneNotFound`: one line naming the path and the setting to change.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from contrastive_mer.errors import UserError

#: files whose bytes define a model's identity (config, weights, preprocessing)
IDENTITY_PATTERNS = ("config.json", "preprocessor_config.json", "*.safetensors", "*.bin")
#: how selected layers become one sequence
LAYER_COMBINES = ("weighted", "mean", "concat")


class BackboneNotFound(UserError):
    """A transformers backbone that is neither a local folder nor in the Hugging Face cache."""


def resolve_backbone(model_path: str | None, *, allow_download: bool = False, cache_dir: str | None = None,
                     key: str = "encoder_args.model_path") -> Path:
    """The local folder of ``model_path`` (a folder, or a hub id in the HF cache); BackboneNotFound otherwise."""
    if not model_path:
        raise BackboneNotFound(f"{key} is not set: name a local transformers folder (config.json + weights) or a "
                               "hub id already in the Hugging Face cache")
    folder = Path(model_path).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise BackboneNotFound(f"{key}: {folder} has no config.json (expected a transformers model folder "
                                   "saved with save_pretrained)")
        return folder
    if folder.is_absolute() or model_path.startswith((".", "~")) or model_path.count("/") > 1:
        raise BackboneNotFound(f"{key}: no folder {folder}; set {key} to a local transformers model folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_path, cache_dir=cache_dir, local_files_only=not allow_download))
    except Exception as err:  # LocalEntryNotFoundError, OfflineModeIsEnabled, HTTP errors
        where = cache_dir or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        hint = ("set encoder_args.allow_download: true (and HF_HUB_OFFLINE=0) to fetch it" if not allow_download
                else "export HF_HUB_OFFLINE=0 to allow the download")
        raise BackboneNotFound(f"{key}: {model_path!r} is neither a local folder nor in the Hugging Face cache "
                               f"({where}); put the model folder there or point {key} at it, or {hint} "
                               f"({type(err).__name__})") from None


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def model_identity(folder: Path) -> str:
    """SHA-256 over the names and digests of a model folder's config, preprocessing and weight files (what
    determines its outputs; its location does not)."""
    files = sorted({p for pattern in IDENTITY_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.name}={_file_digest(path)}\n".encode())
    return h.hexdigest()


def layer_indices(layers: Any, count: int, key: str = "layers") -> list[int]:
    """``layers`` (an index into ``hidden_states``, a list of them, or ``"all"``) as non-negative indices among
    ``count`` hidden states (index 0 is the input to the first transformer layer, -1 the last layer)."""
    if layers == "all":
        return list(range(count))
    items = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
    if not isinstance(items, (list, tuple)) or not items or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise ValueError(f"{key} must be an int, a list of ints or 'all', got {layers!r}")
    out = []
    for i in items:
        if not -count <= i < count:
            raise ValueError(f"{key}: layer {i} out of range; the model has hidden states 0..{count - 1}")
        out.append(i % count)
    if len(set(out)) != len(out):
        raise ValueError(f"{key}: layer listed twice in {layers!r}")
    return out


def check_layers(layers: Any, combine: str) -> None:
    """Config-time checks of ``layers`` and ``layer_combine`` (the range is checked when the model is loaded)."""
    if combine not in LAYER_COMBINES:
        raise ValueError(f"layer_combine must be one of {', '.join(LAYER_COMBINES)}, got {combine!r}")
    layer_indices(layers, 10**6)


class LayerMixer(nn.Module):
    """Selected hidden states ``(S, B, T, H)`` -> ``(B, T, H')``: the one layer, or the learned softmax-weighted
    sum (SUPERB), plain mean or concatenation of several."""

    def __init__(self, count: int, hidden: int, combine: str = "weighted"):
        super().__init__()
        self.count, self.combine = count, combine
        self.weights = nn.Parameter(torch.zeros(count)) if count > 1 and combine == "weighted" else None
        self.output_dim = hidden * count if combine == "concat" and count > 1 else hidden

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        if self.count == 1:
            return stacked[0]
        if self.combine == "concat":
            return torch.cat(list(stacked), dim=-1)
        if self.weights is None:
            return stacked.mean(0)
        w = torch.softmax(self.weights, 0).to(stacked.dtype)
        return torch.einsum("s,sbth->bth", w, stacked)


def freeze_backbone(model: nn.Module, layers: Sequence[nn.Module], *, freeze: bool, trainable_layers: int,
                    tail: Sequence[nn.Module] = ()) -> bool:
    """Freeze ``model`` (when ``freeze``) except its top ``trainable_layers`` of ``layers`` (and the ``tail``
    modules after them, e.g. a final layer norm, when any are trainable); True when any parameter trains."""
    if trainable_layers < 0 or trainable_layers > len(layers):
        raise ValueError(f"trainable_layers must be in 0..{len(layers)}, got {trainable_layers}")
    if not freeze:
        model.requires_grad_(True)
        return True
    model.requires_grad_(False)
    if trainable_layers:
        for module in [*layers[len(layers) - trainable_layers:], *tail]:
            module.requires_grad_(True)
    return trainable_layers > 0
