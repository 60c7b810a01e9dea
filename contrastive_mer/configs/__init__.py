"""Configs the library itself needs, shipped as package data (``cmer demo`` reads ``demo.yaml`` from here, so a
wheel or ``pip install .`` runs it without the repository). ``experiments/`` holds the user-facing copies; a
test keeps the two identical."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["TINY_DEMO", "config_path"]

#: overrides that shrink ``demo.yaml`` to a run of seconds on a CPU (tiny synthetic corpus, tiny encoders, one
#: epoch): for runnable examples and smoke tests
TINY_DEMO = (
    "data.options.num_speakers=4", "data.options.speakers=[0,1,2]", "data.options.clips_per_speaker_emotion=2",
    "data.options.num_frames=4", "data.options.frame_size=32", "data.batch_size=8", "data.val_fraction=0.34",
    "model.modalities.video.preprocess.size=32", "model.modalities.video.preprocess.num_frames=2",
    "model.modalities.audio.encoder_args.n_mels=32", "model.modalities.audio.encoder_args.blocks=2",
    "model.modalities.audio.encoder_args.output_dim=32", "model.modalities.video.encoder_args.output_dim=32",
    "model.modalities.text.encoder_args.output_dim=32", "model.head.hidden_dim=32", "model.head.output_dim=16",
    "model.modalities.audio.preprocess.max_seconds=1.0", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1", "demo.labelled_speakers=null",
)


def config_path(name: str) -> Path:
    """Path of the packaged config ``name`` (e.g. ``"demo.yaml"``); ``FileNotFoundError`` naming the ones there."""
    folder = files(__name__)
    resource = folder / name
    if not resource.is_file():
        known = sorted(r.name for r in folder.iterdir() if r.name.endswith(".yaml"))
        raise FileNotFoundError(f"no packaged config {name!r}; shipped: {', '.join(known)}")
    return Path(str(resource))
