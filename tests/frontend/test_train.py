"""Front-end instruction tuning with LoRA: the base LLM's parameter digest is unchanged and only adapters and
projectors train; a run killed after an epoch resumes to the same weights as an uninterrupted one; a checkpoint
is tied to its LLM."""

from __future__ import annotations

import pytest
import torch

from contrastive_mer.frontend.config import FrontEndConfig
from contrastive_mer.frontend.front_end import FrontEnd
from contrastive_mer.frontend.instructions import RowRecipe, store_instruction_rows
from contrastive_mer.frontend.lora import LoraSettings, parameter_digest
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, build_tiny_llm
from contrastive_mer.frontend.train import CheckpointMismatchError, TrainSettings, train_frontend, trained_state
from contrastive_mer.store.hdf5 import FeatureStore
from tests.fixtures.chat_tokenizers import word_chat_tokenizer
from tests.frontend.test_generation import _store

RECIPE = RowRecipe(tokens="<audio>", prompts=("{tokens} What emotion ?",), answers=("{emotion}",))


def _setup(tmp_path, seed: int = 3):
    tok = word_chat_tokenizer(["What emotion ? happy sad"])
    llm = build_tiny_llm(TinyLLMConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                       intermediate_size=16, seed=seed), tok)
    store = FeatureStore(_store(tmp_path / "s.h5", n=6))
    front = FrontEnd.from_store_dims(store, FrontEndConfig(llm_hidden=16, level="feature", fused=False,
                                                           tokens_per_modality=1))
    return front, llm, tok, store, store_instruction_rows(store, recipe=RECIPE)


SETTINGS = dict(batch_size=4, lr=1e-2, lora=LoraSettings(r=2, alpha=4))


def test_lora_trains_adapters_and_projectors_only(tmp_path) -> None:
    front, llm, tok, store, rows = _setup(tmp_path)
    base = parameter_digest(llm)
    named_before = {k: v.clone() for k, v in llm.state_dict().items()}
    proj_before = {k: v.clone() for k, v in front.state_dict().items()}
    front, wrapped, logs = train_frontend(front, llm, tok, store, rows=rows, out_dir=tmp_path / "run",
                                          settings=TrainSettings(epochs=3, **SETTINGS))
    assert parameter_digest(wrapped) == base
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(torch.equal(v, named_before[k]) for k, v in wrapped.get_base_model().state_dict().items()
               if "lora_" not in k and k in named_before)
    assert any(not torch.equal(v, proj_before[k]) for k, v in front.state_dict().items())
    lora_b = [p for n, p in wrapped.named_parameters() if "lora_B" in n]
    assert any(bool(p.abs().sum() > 0) for p in lora_b)  # B starts at zero: it moved
    assert logs[-1].loss < logs[0].loss
    saved = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)["weights"]
    assert all(k.startswith("frontend.") or ".lora_" in k for k in saved)  # only trained weights
    assert (tmp_path / "run" / "lora" / "adapter_config.json").is_file()
    store.close()


class Killed(Exception):
    pass


def test_resume_after_kill_gives_the_same_weights(tmp_path) -> None:
    front, llm, tok, store, rows = _setup(tmp_path)
    _, full_llm, _ = train_frontend(front, llm, tok, store, rows=rows, out_dir=tmp_path / "full",
                                    settings=TrainSettings(epochs=3, **SETTINGS))
    full = trained_state(front, full_llm, lora=True)

    def kill(log) -> None:
        if log.epoch == 1:
            raise Killed

    front2, llm2, *_ = _setup(tmp_path / "b")
    with pytest.raises(Killed):
        train_frontend(front2, llm2, tok, store, rows=rows, out_dir=tmp_path / "part",
                       settings=TrainSettings(epochs=3, **SETTINGS), on_epoch=kill)
    front3, llm3, *_ = _setup(tmp_path / "c")  # a fresh process: new objects, same base LLM
    _, llm3, logs = train_frontend(front3, llm3, tok, store, rows=rows, out_dir=tmp_path / "part",
                                   settings=TrainSettings(epochs=3, **SETTINGS))
    assert [x.epoch for x in logs] == [0, 1, 2]
    again = trained_state(front3, llm3, lora=True)
    assert again.keys() == full.keys()
    assert all(torch.equal(again[k], full[k]) for k in full)
    front4, llm4, *_ = _setup(tmp_path / "d", seed=4)  # another LLM
    with pytest.raises(CheckpointMismatchError, match="trained on another LLM"):
        train_frontend(front4, llm4, tok, store, rows=rows, out_dir=tmp_path / "part",
                       settings=TrainSettings(epochs=4, **SETTINGS))
    store.close()
