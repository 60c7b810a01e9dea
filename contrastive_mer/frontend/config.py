"""``FrontEndConfig``: which token sources, which projector, how many tokens, how a missing modality is spliced."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from contrastive_mer.fusion import FUSION_MODES

#: name of the late-fused source (a reserved source name, not a modality)
FUSED = "fused"
PROJECTORS = ("linear", "mlp", "resampler")
LEVELS = ("sequence", "feature")
MISSING = ("drop", "learned")


@dataclass
class FrontEndConfig:
    """How encoder outputs become soft tokens for a causal LM.

    Attributes:
        llm_hidden: hidden size of the LLM (width of every soft token).
        modalities: modalities that become token sources (None: every modality of the encoder checkpoint).
        fused: add the late-fused feature (``fusion_mode``) as the extra source ``"fused"``.
        fusion_mode: late-fusion mode of the fused source (``concat``, ``mean``, ``weighted``).
        fusion_weights: modality -> weight of the ``weighted`` mode (required by it when the front end encodes;
            a feature store's ``fused/weighted`` holds the weights given at extraction).
        level: ``sequence`` (frame-level encoder output, before pooling) or ``feature`` (the pooled feature).
            An encoder without a time axis contributes its feature as a one-frame sequence.
        projector: ``linear``, ``mlp`` (2 layers, GELU) or ``resampler`` (learned queries cross-attending
            to the valid frames). Single-vector sources (``fused``, or any source at ``feature`` level) get the
            MLP when ``resampler`` is chosen: attention over one vector would ignore the queries.
        tokens_per_modality: soft tokens per modality source. With ``linear``/``mlp`` at sequence level the
            valid frames are split into that many equal segments and averaged; ``0`` keeps one token per
            valid frame (a variable number). At feature level one vector is mapped to that many tokens.
        fused_tokens: soft tokens of the fused source.
        tokens: per-source overrides of the token count (source -> count).
        mlp_hidden: hidden width of the MLP projector (None: ``llm_hidden``).
        resampler_dim, resampler_heads, resampler_layers: size of the query-based resampler.
        missing: what a sample lacking a source gets in place of its placeholder: ``drop`` (zero tokens:
            the placeholder vanishes) or ``learned`` (one learned "missing" token per source).
        freeze_encoders: keep the pretrained encoders frozen (eval mode, no gradients).
        placeholders: source -> placeholder text in prompts (default ``<audio>``, ``<video>``, ``<fused>``...).
        seed: seed of the projector initialisation.
    """

    llm_hidden: int = 0
    modalities: list[str] | None = None
    fused: bool = True
    fusion_mode: str = "concat"
    fusion_weights: dict[str, float] = field(default_factory=dict)
    level: str = "sequence"
    projector: str = "mlp"
    tokens_per_modality: int = 4
    fused_tokens: int = 1
    tokens: dict[str, int] = field(default_factory=dict)
    mlp_hidden: int | None = None
    resampler_dim: int = 256
    resampler_heads: int = 4
    resampler_layers: int = 1
    missing: str = "drop"
    freeze_encoders: bool = True
    placeholders: dict[str, str] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first offending field."""

        def bad(key: str, expected: str) -> None:
            raise ValueError(f"frontend config: {key}={getattr(self, key)!r}, expected {expected}")

        if int(self.llm_hidden) < 1:
            bad("llm_hidden", "the LLM hidden size (an integer >= 1)")
        if self.fusion_mode not in FUSION_MODES:
            bad("fusion_mode", f"one of {FUSION_MODES.names()}")
        if self.level not in LEVELS:
            bad("level", f"one of {list(LEVELS)}")
        if self.projector not in PROJECTORS:
            bad("projector", f"one of {list(PROJECTORS)}")
        if self.missing not in MISSING:
            bad("missing", f"one of {list(MISSING)}")
        if self.tokens_per_modality < 0 or self.fused_tokens < 1:
            bad("tokens_per_modality" if self.tokens_per_modality < 0 else "fused_tokens", "a token count >= 1")
        if any(int(n) < 0 for n in self.tokens.values()):
            bad("tokens", "token counts >= 0")
        if self.modalities is not None and (not self.modalities or FUSED in self.modalities):
            bad("modalities", f"None or a non-empty list of modality names (not {FUSED!r})")
        if self.resampler_dim % self.resampler_heads:
            bad("resampler_dim", f"a multiple of resampler_heads={self.resampler_heads}")

    # ------------------------------------------------------------------------------------------------ derived
    def source_names(self, encoder_modalities: list[str]) -> list[str]:
        """Token sources in their fixed order: the modalities, then ``fused`` when enabled."""
        mods = list(self.modalities) if self.modalities is not None else list(encoder_modalities)
        unknown = [m for m in mods if m not in encoder_modalities]
        if unknown:
            raise ValueError(f"frontend config: modalities {unknown} are not in the encoder's {encoder_modalities}")
        return mods + ([FUSED] if self.fused else [])

    def num_tokens(self, source: str) -> int:
        """Token count of ``source`` (0: one token per valid frame)."""
        if source in self.tokens:
            return int(self.tokens[source])
        return self.fused_tokens if source == FUSED else self.tokens_per_modality

    def source_level(self, source: str) -> str:
        """The fused source is always a single vector."""
        return "feature" if source == FUSED else self.level

    def placeholder(self, source: str) -> str:
        return self.placeholders.get(source, f"<{source}>")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrontEndConfig":
        """Build from a plain mapping; an unknown key raises ``ValueError`` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"frontend config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))
