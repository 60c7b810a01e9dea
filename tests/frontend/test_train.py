"""Front-end instruction tuning with LoRA: the base LLM's parameter digest is unchanged and only adapters and
projectors train; a run killed after an epoch resumes to the same weights as an uninterrupted one; a checkpoint
is tied to its LLM; the Lightning Trainer takes exactly the steps of a plain PyTorch loop (bit-identical weights);
``--device`` / ``--devices`` / ``--strategy`` become Lightning's settings. Two-process DDP: test_train_ddp.py."""

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


def test_lightning_training_equals_a_plain_pytorch_loop(tmp_path) -> None:
    """The Trainer does what a hand-written loop does (the same row order, AdamW steps, loss): bit-identical
    weights and the same epoch losses on one CPU process."""
    import random

    from contrastive_mer.frontend.instructions import render_prompt
    from contrastive_mer.frontend.lora import attach_lora
    from contrastive_mer.frontend.sources import StoreSources

    s = TrainSettings(epochs=2, chat=False, **SETTINGS)
    front, llm, tok, store, rows = _setup(tmp_path)
    front, trained_llm, logs = train_frontend(front, llm, tok, store, rows=rows, out_dir=tmp_path / "run", settings=s)

    ref_front, ref_llm, *_ = _setup(tmp_path / "ref")
    ref_llm.requires_grad_(False)
    torch.manual_seed(s.seed)
    ref_llm = attach_lora(ref_llm, s.lora)
    ref_front.train()
    ref_llm.train()
    params = ref_front.trainable_parameters() + [p for p in ref_llm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    sources = StoreSources(store, ref_front.modalities, "feature", fused=False)
    splicer = ref_front.splicer(tok, ref_llm, padding_side="right", add_bos=True)
    index = {str(i): n for n, i in enumerate(store.ids)}
    losses = []
    for epoch in range(s.epochs):
        order = list(range(len(rows)))
        random.Random(s.seed + epoch).shuffle(order)
        total = []
        for start in range(0, len(order), s.batch_size):
            chunk = [rows[i] for i in order[start:start + s.batch_size]]
            tokens = ref_front(sources([index[r.clip] for r in chunk]))
            spliced = splicer([render_prompt(r, tok, ["<audio>"], chat=False) for r in chunk], tokens,
                              [str(r.answer) for r in chunk], ids=[r.id for r in chunk])
            loss = ref_llm(**spliced.model_inputs()).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total.append(float(loss.detach()))
        losses.append(sum(total) / len(total))
    assert [x.loss for x in logs] == pytest.approx(losses, rel=1e-6)
    got, want = trained_state(front, trained_llm, lora=True), trained_state(ref_front, ref_llm, lora=True)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
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


def test_trainer_settings_from_the_device_option() -> None:
    from contrastive_mer.errors import UserError
    from contrastive_mer.frontend.train import TrainerSettings

    assert TrainerSettings.from_device("cpu", devices=2, strategy="ddp") == TrainerSettings("cpu", 2, "ddp", 1)
    assert TrainerSettings.from_device("cuda", devices=4) == TrainerSettings("gpu", 4, "auto", 1)
    assert TrainerSettings.from_device("cuda:1") == TrainerSettings("gpu", [1], "auto", 1)
    assert TrainerSettings.from_device("auto") == TrainerSettings("auto", 1, "auto", 1)
    assert TrainerSettings.of_model(torch.nn.Linear(2, 2)) == TrainerSettings("cpu", 1)
    with pytest.raises(UserError, match="names one GPU"):
        TrainerSettings.from_device("cuda:1", devices=2)
    with pytest.raises(UserError, match="not auto, cpu, cuda"):
        TrainerSettings.from_device("tpu")
