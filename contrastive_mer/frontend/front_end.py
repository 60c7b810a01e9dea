"""``FrontEnd``: frozen pretrained encoders (optional) + one projector per token source -> soft tokens.

Save/load: the projector weights (and the encoders' weights only when they were trained too) go to a
safetensors file whose metadata holds the front-end config, the source widths and the SHA-256 of the encoder
checkpoint the projector was trained on. Loading checks that SHA against the encoder checkpoint (or the
feature store) it is used with and refuses a mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import torch
from torch import nn

from contrastive_mer.data.sample import Batch
from contrastive_mer.frontend.config import FUSED, FrontEndConfig
from contrastive_mer.frontend.projector import build_projector
from contrastive_mer.frontend.sources import SourceBatch, encode_sources
from contrastive_mer.frontend.splice import PromptSplicer, SoftTokens, SplicedBatch, embedding_weight
from contrastive_mer.fusion import fused_dim
from contrastive_mer.utils import file_sha256

if TYPE_CHECKING:
    from contrastive_mer.model.module import PairwiseContrastiveModule

FORMAT = "contrastive-mer-frontend/1"


class CausalLM(Protocol):
    """What the front end calls on an LLM: a transformers causal LM (``AutoModelForCausalLM``) has both."""

    def get_input_embeddings(self) -> nn.Module: ...

    def generate(self, **kwargs: Any) -> Any: ...


class EncoderMismatchError(ValueError):
    """Projector weights used with an encoder checkpoint other than the one they were trained on."""


def encoder_source_dims(module: Any, config: FrontEndConfig) -> dict[str, int]:
    """Input width of every token source of ``module`` (frame width = feature width for the encoders)."""
    feature_dims = {m: int(module.encoders[m].output_dim) for m in module.modalities}
    dims = {m: feature_dims[m] for m in config.source_names(list(module.modalities)) if m != FUSED}
    if config.fused:
        dims[FUSED] = fused_dim(config.fusion_mode, feature_dims, int(module.cfg.model.head.output_dim),
                                modalities=list(module.modalities))
    return dims


class FrontEnd(nn.Module):
    """Encoders (optional, frozen by default) + per-source projectors + optional learned "missing" tokens.

    Build with :meth:`from_checkpoint` (raw inputs) or :meth:`from_store_dims` (a feature store), or restore
    with :meth:`load`. ``forward`` takes a :class:`Batch` (needs the encoders) or a :class:`SourceBatch`.
    """

    def __init__(self, config: FrontEndConfig, source_dims: Mapping[str, int],
                 encoder: PairwiseContrastiveModule | None = None, encoder_sha256: str = ""):
        super().__init__()
        self.config = config
        self.source_dims = {k: int(v) for k, v in source_dims.items()}
        self.encoder_sha256 = encoder_sha256
        self.encoder = encoder
        self.modalities = [s for s in self.source_dims if s != FUSED]
        for key in ("tokens", "placeholders"):
            unknown = sorted(set(getattr(config, key)) - set(self.source_dims))
            if unknown:
                raise ValueError(f"frontend config: {key} names {unknown}, which are not token sources "
                                 f"{list(self.source_dims)}")
        if encoder is not None:
            expected = encoder_source_dims(encoder, config)
            if expected != self.source_dims:
                raise ValueError(f"frontend: source widths {self.source_dims} do not match the encoder's {expected}")
            if config.freeze_encoders:
                encoder.requires_grad_(False)
                encoder.eval()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed)
        try:
            self.projectors = nn.ModuleDict({
                s: build_projector(config.projector, d, config.llm_hidden, config.num_tokens(s),
                                   level=config.source_level(s), mlp_hidden=config.mlp_hidden,
                                   resampler_dim=config.resampler_dim,
                                   resampler_heads=config.resampler_heads, resampler_layers=config.resampler_layers)
                for s, d in self.source_dims.items()})
            self.missing_tokens = nn.ParameterDict(
                {s: nn.Parameter(torch.randn(config.llm_hidden) * 0.02) for s in self.source_dims}
                if config.missing == "learned" else {})
        finally:
            torch.random.set_rng_state(generator_state)

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, encoder_ckpt: str | Path, config: FrontEndConfig,
                        map_location: str | torch.device = "cpu") -> "FrontEnd":
        """Encoders from a contrastive-mer checkpoint (weights-only load) + fresh projectors."""
        from contrastive_mer.model.module import load_module

        path = Path(encoder_ckpt)
        if not path.is_file():
            raise FileNotFoundError(f"encoder checkpoint not found: {path}")
        module = load_module(str(path), map_location)
        return cls(config, encoder_source_dims(module, config), module, file_sha256(path))

    @classmethod
    def from_store_dims(cls, store: Any, config: FrontEndConfig) -> "FrontEnd":
        """Projectors only, sized for the token sources of an open feature store (no encoders): the views
        ``<m>`` and ``fused/<fusion_mode>`` (see :class:`~contrastive_mer.frontend.sources.StoreSources`), or a
        modality's frame width at ``sequence`` level when the store has its sequences."""
        mods = config.source_names(list(store.modalities))
        dims: dict[str, int] = {}
        for m in mods:
            if m == FUSED:
                dims[m] = store.view_dim(f"fused/{config.fusion_mode}")
            elif config.level == "sequence" and store.has_sequences(m) and len(store):
                dims[m] = int(store.sequence(m, 0).shape[1])
            else:
                dims[m] = store.view_dim(m)
        return cls(config, dims, None, str(store.attrs.get("checkpoint_sha256", "")))

    # ------------------------------------------------------------------------------------------------ running
    def train(self, mode: bool = True) -> "FrontEnd":
        super().train(mode)
        if self.encoder is not None and self.config.freeze_encoders:
            self.encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def sources(self, batch: Batch) -> SourceBatch:
        """Token sources of a raw batch (encoders without gradients when frozen)."""
        if self.encoder is None:
            raise RuntimeError("this front end has no encoders (built from a feature store); pass a SourceBatch")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoders):
            return encode_sources(self.encoder, batch, self.modalities, fused=self.config.fused,
                                  fusion_mode=self.config.fusion_mode,
                                  fusion_weights=self.config.fusion_weights)

    def forward(self, batch: Batch | SourceBatch) -> dict[str, SoftTokens]:
        """Soft tokens per source (see :class:`SoftTokens`); absent samples follow ``config.missing``."""
        sources = batch if isinstance(batch, SourceBatch) else self.sources(batch)
        out = {}
        for name, projector in self.projectors.items():
            if name not in sources.sources:
                raise KeyError(f"frontend: no token source {name!r}; got {sorted(sources.sources)}")
            src = sources.sources[name]
            seq, lengths = src.as_sequence(self.config.source_level(name))
            tokens, counts = projector(seq.to(self._dtype()), lengths)
            present = src.present.to(tokens.device)
            counts = torch.where(present, counts, 0)
            if name in self.missing_tokens:
                first = torch.zeros(tokens.shape[1], dtype=torch.bool, device=tokens.device)
                first[0] = True
                slot = (~present)[:, None, None] & first[None, :, None]
                tokens = torch.where(slot, self.missing_tokens[name].to(tokens.dtype), tokens)
                counts = torch.where(present, counts, 1)
            out[name] = SoftTokens(tokens, counts, present)
        return out

    def _dtype(self) -> torch.dtype:
        return next(iter(self.projectors.parameters())).dtype

    def splicer(self, tokenizer: Any, llm: CausalLM, *, padding_side: str = "right", add_bos: bool = True,
                add_eos: bool = True) -> PromptSplicer:
        """A :class:`PromptSplicer` for ``llm`` with this front end's placeholders."""
        if int(embedding_weight(llm.get_input_embeddings()).shape[1]) != self.config.llm_hidden:
            raise ValueError(f"frontend: llm_hidden={self.config.llm_hidden} but the LLM's embeddings are "
                             f"{embedding_weight(llm.get_input_embeddings()).shape[1]} wide")
        return PromptSplicer(tokenizer, llm.get_input_embeddings(),
                             {s: self.config.placeholder(s) for s in self.source_dims}, padding_side,
                             add_bos=add_bos, add_eos=add_eos)

    @torch.no_grad()
    def generate(self, llm: CausalLM, tokenizer: Any, batch: Batch | SourceBatch, prompt: str | list[str],
                 **generate_kwargs: Any) -> list[str]:
        """Spliced (left-padded) prompts -> ``llm.generate`` -> decoded new text per sample."""
        spliced: SplicedBatch = self.splicer(tokenizer, llm, padding_side="left")(prompt, self(batch))
        ids = llm.generate(**spliced.model_inputs(with_labels=False), **generate_kwargs)
        return tokenizer.batch_decode(ids, skip_special_tokens=True)

    # ----------------------------------------------------------------------------------------------- save/load
    def _saved_state(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        if self.config.freeze_encoders:
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save(self, path: str | Path) -> Path:
        """Write the projector weights and metadata (config, source widths, encoder SHA-256) to a
        ``.safetensors`` file."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "config": json.dumps(self.config.to_dict()),
                "source_dims": json.dumps(self.source_dims), "encoder_sha256": self.encoder_sha256}
        tmp = path.with_name(path.name + ".tmp")
        save_file(self._saved_state(), str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @staticmethod
    def read_metadata(path: str | Path) -> dict[str, Any]:
        """Config, source widths and encoder SHA-256 stored in a saved front end."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"front-end weights not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path}: not a safetensors file ({err})") from err
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a contrastive-mer front end (format {meta.get('format')!r})")
        return {"config": FrontEndConfig.from_dict(json.loads(meta["config"])),
                "source_dims": json.loads(meta["source_dims"]), "encoder_sha256": meta["encoder_sha256"]}

    @classmethod
    def load(cls, path: str | Path, encoder_ckpt: str | Path | None = None, store: Any = None,
             map_location: str | torch.device = "cpu") -> "FrontEnd":
        """Restore a saved front end with the encoders of ``encoder_ckpt`` or for the feature ``store``.

        Raises :class:`EncoderMismatchError` when the SHA-256 of ``encoder_ckpt`` (or the store's
        ``checkpoint_sha256``) differs from the one recorded at save time.
        """
        from safetensors.torch import load_file

        meta = cls.read_metadata(path)
        recorded, config = meta["encoder_sha256"], meta["config"]
        if (encoder_ckpt is None) == (store is None):
            raise ValueError("FrontEnd.load: pass exactly one of encoder_ckpt and store")
        if encoder_ckpt is not None:
            actual, where = file_sha256(encoder_ckpt), str(encoder_ckpt)
        else:
            actual, where = str(store.attrs.get("checkpoint_sha256", "")), f"the store {store.path}"
        if actual != recorded:
            raise EncoderMismatchError(
                f"{path}: the projector was trained on the encoder checkpoint with SHA-256 {recorded[:16] or '?'}..., "
                f"but {where} has {actual[:16] or 'none'}...; use the matching encoder checkpoint")
        if encoder_ckpt is not None:
            front = cls.from_checkpoint(encoder_ckpt, config, map_location)
        else:
            front = cls(config, meta["source_dims"], None, actual)
        if front.source_dims != meta["source_dims"]:
            raise ValueError(f"{path}: saved source widths {meta['source_dims']} differ from {front.source_dims}")
        state = load_file(str(path), device=str(map_location))
        missing, unexpected = front.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k.startswith("encoder.") and config.freeze_encoders)]
        if missing or unexpected:
            raise ValueError(f"{path}: weights do not fit the front end (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        return front.eval()
