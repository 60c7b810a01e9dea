"""The LightningModule: one encoder and one projection head per modality, trained with the pairwise loss."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from contrastive_mer.config import container_dict, refuse_interpolations, to_dict
from contrastive_mer.data.sample import Batch
from contrastive_mer.encoders import EncoderOutput, build_encoder
from contrastive_mer.encoders.base import ModalityEncoder, lone_row_batchnorm
from contrastive_mer.errors import UserError
from contrastive_mer.experiment import config_from_dict
from contrastive_mer.model.augment import InputAugmentConfig, SpecAugmentConfig, input_augment, spec_augment
from contrastive_mer.model.heads import HeadConfig, ProjectionHead
from contrastive_mer.model.losses import ContrastiveLoss, LossOutput, build_loss


class NonFiniteTraining(UserError):
    """Training produced a NaN or infinite loss, or weights that are no longer finite (a learning rate too high,
    fp16 overflow, non-finite inputs); raised before such weights reach a checkpoint."""


def first_non_finite(state: dict[str, Any]) -> str | None:
    """A description of the first floating-point tensor of ``state`` holding NaN or inf, or None when all are
    finite."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan = int(torch.isnan(value).sum())
            return f"tensor {name!r} holds {nan} NaN and {int(torch.isinf(value).sum())} inf of {value.numel()} values"
    return None


class PairwiseContrastiveModule(pl.LightningModule):
    """Encoders + heads (modality-keyed ``ModuleDict``s) and the modality-pairwise InfoNCE loss.

    Built from a plain config dict (saved as the checkpoint's hyper-parameters), so a checkpoint alone
    rebuilds the model: ``PairwiseContrastiveModule.load_from_checkpoint(path, weights_only=True)``.
    """

    def __init__(self, config: dict[str, Any] | DictConfig):
        super().__init__()
        if isinstance(config, DictConfig):
            config = to_dict(config)
        self.save_hyperparameters({"config": config})
        self.cfg = config_from_dict(config)
        self.modalities = list(self.cfg.model.modalities)
        head_cfg = HeadConfig(**container_dict(self.cfg.model.head, "model.head"))
        encoders: dict[str, ModalityEncoder] = {}
        for m, spec in self.cfg.model.modalities.items():
            args = container_dict(spec.encoder_args, f"model.modalities.{m}.encoder_args", resolve=True)
            encoders[m] = build_encoder(spec.encoder, args)
        self.encoders = nn.ModuleDict(encoders)
        augment = {m: SpecAugmentConfig(**container_dict(spec.augment, f"model.modalities.{m}.augment"))
                   for m, spec in self.cfg.model.modalities.items()}
        self.augment = {m: a for m, a in augment.items() if a.active}
        corrupt = {m: InputAugmentConfig(**container_dict(spec.input_augment, f"model.modalities.{m}.input_augment"))
                   for m, spec in self.cfg.model.modalities.items()}
        self.input_augment = {m: a for m, a in corrupt.items() if a.active}
        self.feature_dropout = nn.Dropout(self.cfg.model.feature_dropout)
        #: per modality: ``model.modalities.<m>.feature_dropout`` when set, else ``model.feature_dropout``
        self.feature_dropouts = nn.ModuleDict({
            m: self.feature_dropout if spec.feature_dropout is None else nn.Dropout(spec.feature_dropout)
            for m, spec in self.cfg.model.modalities.items()})
        self.heads = nn.ModuleDict({m: ProjectionHead(encoders[m].output_dim, head_cfg) for m in self.modalities})
        #: the configured loss (``loss.name`` in :data:`~contrastive_mer.model.losses.LOSSES`); the module only
        #: uses the :class:`~contrastive_mer.model.losses.ContrastiveLoss` interface
        self.loss_fn: ContrastiveLoss = build_loss(self.cfg.loss, self.modalities)

    # ----------------------------------------------------------------------------------------------- inference
    def encode_modality(self, modality: str, x: torch.Tensor, lengths: torch.Tensor | None,
                        present: torch.Tensor) -> EncoderOutput:
        """Run one encoder on the rows where ``present`` is True; absent rows get zeros.

        When no row is present the encoder still runs on one row (result multiplied by zero) so every parameter
        takes part in the graph, as DDP requires. One row (a lone present clip, or that placeholder) meets batch
        norm in eval mode (:func:`~contrastive_mer.encoders.base.lone_row_batchnorm`).
        """
        encoder = self.encoders[modality]
        batch = x.shape[0]
        idx = present.nonzero(as_tuple=True)[0]
        if idx.numel() == batch:
            with lone_row_batchnorm(encoder, batch):
                return encoder(x, lengths)
        none = idx.numel() == 0
        if none:
            idx = torch.zeros(1, dtype=torch.long, device=x.device)
        with lone_row_batchnorm(encoder, idx.numel()):
            out = encoder(x[idx], None if lengths is None else lengths[idx])
        feature = out.feature.new_zeros(batch, out.feature.shape[1])
        feature = feature.index_copy(0, idx, out.feature) if not none else feature + out.feature.sum() * 0
        seq = seq_len = None
        if out.sequence is not None:
            seq = out.sequence.new_zeros(batch, *out.sequence.shape[1:])
            seq_len = torch.zeros(batch, dtype=torch.long, device=x.device)
            if not none:
                seq = seq.index_copy(0, idx, out.sequence)
                seq_len = seq_len.index_copy(0, idx, out.sequence_lengths)
        return EncoderOutput(feature, seq, seq_len)

    def encode(self, batch: Batch) -> dict[str, EncoderOutput]:
        """Encoder outputs (features before projection, sequences) of every modality."""
        return {m: self.encode_modality(m, batch.inputs[m], batch.lengths.get(m), batch.present[m])
                for m in self.modalities}

    def project(self, outputs: dict[str, EncoderOutput]) -> dict[str, torch.Tensor]:
        """L2-normalised projections ``(B, P)``, normalised once per modality."""
        return {m: F.normalize(self.heads[m](self.feature_dropouts[m](out.feature)), dim=-1)
                for m, out in outputs.items()}

    def forward(self, batch: Batch) -> tuple[dict[str, EncoderOutput], dict[str, torch.Tensor]]:
        outputs = self.encode(batch)
        return outputs, self.project(outputs)

    # ------------------------------------------------------------------------------------------------ training
    def compute_loss(self, batch: Batch) -> LossOutput:
        """The configured loss of a batch's projections (the loss reads the rows as its batches lay them out,
        e.g. two windows per clip)."""
        _, projections = self(batch)
        return self.loss_fn(projections, batch.present, batch.labels)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor | None:
        if len(batch) == 0:
            return None
        result = self.compute_loss(batch)
        loss = result.loss.detach()
        finite = bool(torch.isfinite(loss)) if stage == "train" else True
        if stage == "train" and self._trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)  # every rank stops together
        if not finite:
            raise NonFiniteTraining(f"the training loss is {float(loss)} in epoch {self.current_epoch + 1}, "
                                    f"step {self.global_step + 1} (learning rate too high? optim.lr="
                                    f"{self.cfg.optim.lr})")
        size = len(batch) // self.loss_fn.rows_per_clip
        on_step = stage == "train"
        # with gathered embeddings every rank scores the same pairs, so metrics can be averaged across ranks;
        # without gathering ranks may score different pairs and a collective would deadlock: log rank 0's
        sync = self.trainer is not None and self.trainer.world_size > 1 and self.loss_fn.gather
        self.log(f"{stage}/loss", result.loss, prog_bar=True, on_step=on_step, on_epoch=True, batch_size=size,
                 sync_dist=sync)
        for name, value in result.per_pair.items():
            self.log(f"{stage}/loss_{name}", value, on_step=False, on_epoch=True, batch_size=size, sync_dist=sync)
            self.log(f"{stage}/acc_{name}", result.accuracy[name], on_step=False, on_epoch=True,
                     batch_size=size, sync_dist=sync, prog_bar=stage == "val" and len(result.per_pair) == 1)
        if stage == "train":
            for name, temp in self.loss_fn.temperatures().items():
                self.log(f"temperature/{name}", temp, on_step=True, on_epoch=False, batch_size=size)
        return result.loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Never write non-finite weights: the checkpoint already on disk (the last finite one) stays."""
        bad = first_non_finite(checkpoint.get("state_dict", {}))
        if bad is not None:
            raise NonFiniteTraining(f"the weights are no longer finite in epoch {self.current_epoch + 1} ({bad})")

    def augmented(self, batch: Batch) -> Batch:
        """``batch`` with SpecAugment masks and input corruption on the modalities that configure them (training
        batches only)."""
        if (not self.augment and not self.input_augment) or len(batch) == 0:
            return batch
        inputs = dict(batch.inputs)
        for m, cfg in self.augment.items():
            inputs[m] = spec_augment(inputs[m], cfg)
        for m, corrupt in self.input_augment.items():
            inputs[m] = input_augment(inputs[m], batch.present[m], corrupt)
        return dataclasses.replace(batch, inputs=inputs)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        return self._step(self.augmented(batch), "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        self.loss_fn.clamp_()

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        params = [p for p in self.parameters() if p.requires_grad]
        opt: torch.optim.Optimizer
        if o.name == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        if o.scheduler == "none":
            return opt
        main: torch.optim.lr_scheduler.LRScheduler
        if o.scheduler == "step":
            main = torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
        else:
            epochs = max(self.cfg.trainer.max_epochs - o.warmup_epochs, 1)
            main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        sched: torch.optim.lr_scheduler.LRScheduler = main
        if o.warmup_epochs > 0:
            warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=o.warmup_epochs)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, main], milestones=[o.warmup_epochs])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def load_module(checkpoint: str, map_location: str | torch.device = "cpu") -> PairwiseContrastiveModule:
    """Rebuild a trained module from a checkpoint without executing code from the file (weights-only load).

    A truncated, corrupt or pickled (code-carrying) file, weights that do not fit the file's own config, or a NaN
    or inf in any weight is a one-line :class:`~contrastive_mer.errors.UserError` naming the file (and the first
    non-finite tensor)."""
    from contrastive_mer.model.checkpoint_io import verify_checkpoint_crc

    verify_checkpoint_crc(checkpoint)  # torch's reader does not check the zip CRCs: damaged weights would load
    try:
        state = torch.load(checkpoint, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001  (a hostile file can make the unpickler fail in any way)
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"{checkpoint}: not a readable weights-only checkpoint ({type(err).__name__}: "
                        f"{reason})") from None
    try:
        config = state["hyper_parameters"]["config"]
    except (KeyError, TypeError):
        raise ValueError(f"{checkpoint}: not a contrastive-mer checkpoint (no hyper_parameters.config)") from None
    refuse_interpolations(config, str(checkpoint))  # never run resolvers (oc.env, ...) from a shared file
    weights = state.get("state_dict") if isinstance(state, dict) else None
    bad = first_non_finite(weights) if isinstance(weights, dict) else None
    if bad is not None:  # every feature it gives would be NaN: refuse before anything is encoded
        raise UserError(f"{checkpoint}: non-finite weights: {bad} (training diverged?); use an earlier checkpoint")
    check_model_fits(config, str(checkpoint), training=False)  # its saved dimensions, before any allocation
    module = PairwiseContrastiveModule(config)
    try:
        module.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{checkpoint}: its weights do not fit its config ({first})") from None
    return module.eval()


def model_bytes(config: dict[str, Any] | DictConfig) -> int:
    """Bytes of the parameters and buffers of the model ``config`` describes, built on the meta device (shapes
    only: nothing is allocated)."""
    with torch.device("meta"):
        module = PairwiseContrastiveModule(config)
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def check_model_fits(config: dict[str, Any] | DictConfig, what: str, *, training: bool) -> int:
    """Refuse (:class:`~contrastive_mer.errors.ConfigError` with the estimate, see :mod:`~contrastive_mer.model.size`)
    a model of ``config`` that needs more memory than the machine has, before any weight is allocated."""
    from contrastive_mer.model.size import refuse_if_too_big

    return refuse_if_too_big(model_bytes(config), config, what, training=training)


def random_init_like(cfg: DictConfig) -> PairwiseContrastiveModule:
    """The architecture of ``cfg``, untrained: weights drawn after ``pl.seed_everything(cfg.seed)``, in eval mode.

    The one seed rule of every random-init column (``cmer evaluate``, ``cmer demo``) and of
    ``cmer extract --random-init``: the same config gives the same weights."""
    pl.seed_everything(cfg.seed, verbose=False)
    return PairwiseContrastiveModule(cfg).eval()
