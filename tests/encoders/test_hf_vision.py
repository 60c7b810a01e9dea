"""``hf_vision`` on tiny random CLIP / DINOv2 / ViT vision towers saved to a folder, through the real path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from contrastive_mer.encoders import build_encoder
from contrastive_mer.encoders.hf_backbone import BackboneNotFound
from tests.encoders.hf_tiny import VISION_ARCHS, save_tiny_vision

IMAGENET_MEAN, IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_vision")
    return {arch: save_tiny_vision(arch, root / arch) for arch in VISION_ARCHS}


def _frames(b: int, t: int, seed: int) -> torch.Tensor:
    """Frames as the ``frames`` preprocessor gives them: [0, 1] pixels standardised with ImageNet statistics."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(b, t, 3, 32, 32, generator=g)
    return (pixels - IMAGENET_MEAN.view(3, 1, 1)) / IMAGENET_STD.view(3, 1, 1)


def _reference(folder: Path, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """transformers' own vision tower on the pixels renormalised with the model's image processor statistics."""
    import transformers as tf

    spec = json.loads((folder / "preprocessor_config.json").read_text())
    mean, std = torch.tensor(spec["image_mean"]).view(3, 1, 1), torch.tensor(spec["image_std"]).view(3, 1, 1)
    pixels = frames * IMAGENET_STD.view(3, 1, 1) + IMAGENET_MEAN.view(3, 1, 1)
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    cls = tf.CLIPVisionModel if model_type == "clip" else tf.AutoModel
    model = cls.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return model(pixel_values=(pixels - mean) / std, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("arch", VISION_ARCHS)
def test_selected_layers_equal_transformers_hidden_states(models, arch):
    frames = _frames(1, 3, 0)
    ref = _reference(models[arch], frames[0])
    for layers, token_pool in ((-1, "cls"), (1, "mean"), ([0, 2], "cls")):
        enc = build_encoder("hf_vision", {"model_path": str(models[arch]), "layers": layers,
                                          "token_pool": token_pool, "layer_combine": "concat"})
        with torch.no_grad():
            out = enc(frames)
        idx = [layers] if isinstance(layers, int) else layers
        per = [ref[i][:, 0] if token_pool == "cls" else ref[i][:, 1:].mean(1) for i in idx]
        expected = torch.cat(per, dim=-1)
        torch.testing.assert_close(out.sequence[0], expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.feature[0], expected.mean(0), atol=2e-5, rtol=1e-4)


def test_padded_frames_change_nothing_and_larger_frames_are_resized(models):
    enc = build_encoder("hf_vision", {"model_path": str(models["dinov2"]), "layers": "all", "output_dim": 8})
    frames = _frames(2, 4, 1)
    lengths = torch.tensor([4, 2])
    with torch.no_grad():
        batched = enc(frames, lengths)
        alone = enc(frames[1:, :2])
        torch.testing.assert_close(batched.feature[1], alone.feature[0], atol=1e-5, rtol=1e-4)
        assert torch.all(batched.sequence[1, 2:] == 0) and batched.sequence_lengths.tolist() == [4, 2]
        big = torch.nn.functional.interpolate(frames[0], size=(64, 64), mode="bilinear", align_corners=False)
        assert enc(big[None]).feature.shape == (1, 8)


def test_frozen_by_default_top_layers_trainable(models):
    folder = str(models["clip"])
    frozen = build_encoder("hf_vision", {"model_path": folder, "layers": "all"}).train()
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    frozen(_frames(1, 2, 2)).feature.sum().backward()
    assert frozen.mixer.weights.grad is not None and not frozen.backbone.training
    top = build_encoder("hf_vision", {"model_path": folder, "trainable_layers": 1}).train()
    names = {n for n, p in top.backbone.named_parameters() if p.requires_grad}
    assert names and all(".layers.1." in n for n in names)
    top(_frames(1, 2, 3)).feature.sum().backward()
    assert all(p.grad is not None for n, p in top.backbone.named_parameters() if p.requires_grad)


def test_missing_model_is_one_line(tmp_path):
    with pytest.raises(BackboneNotFound, match="model_path") as err:
        build_encoder("hf_vision", {"model_path": str(tmp_path / "clip-vit-base")})
    assert "\n" not in str(err.value) and str(tmp_path / "clip-vit-base") in str(err.value)
