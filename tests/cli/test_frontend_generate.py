"""``cmer frontend-generate`` end to end on a tiny store, a saved projector and a tiny LLM folder: answers for
every clip, a rerun resumes (nothing generated twice), and ``cmer score-answers`` reads the result."""

from __future__ import annotations

import json

from contrastive_mer.cli.main import main
from contrastive_mer.frontend.config import FrontEndConfig
from contrastive_mer.frontend.front_end import FrontEnd
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, save_tiny_llm
from contrastive_mer.store.hdf5 import FeatureStore
from tests.frontend.test_generation import _store


def test_generate_resume_and_score(tmp_path, capsys) -> None:
    store_path = _store(tmp_path / "s.h5", n=3)
    with FeatureStore(store_path) as store:
        front = FrontEnd.from_store_dims(store, FrontEndConfig(llm_hidden=16, level="feature", fused=False))
        projector = front.save(tmp_path / "frontend.safetensors")
    llm = save_tiny_llm(tmp_path / "llm", TinyLLMConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                                        intermediate_size=16),
                        ["What emotion does this person express ? happy sad calm"])
    args = ["frontend-generate", "--features", str(store_path), "--projector", str(projector), "--llm", str(llm),
            "--output", str(tmp_path / "gen"), "--no-chat", "--max-new-tokens", "3", "--device", "cpu"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "gen" / "answers.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["clip0", "clip1", "clip2"]
    assert rows[0]["prompt"] == "<audio> What emotion does this person express?"
    assert main(args) == 0  # resumed: nothing left to do
    assert (tmp_path / "gen" / "answers.jsonl").read_text().count("\n") == 3
    refs = tmp_path / "refs.csv"
    refs.write_text("name,emotion\nclip0,happy\nclip1,sad\nclip2,happy\n")
    capsys.readouterr()
    assert main(["score-answers", "--answers", str(tmp_path / "gen" / "answers.csv"), "--references", str(refs)]) == 0
    assert "chance (uniform)" in capsys.readouterr().out


def test_train_with_lora_then_generate_with_the_adapter(tmp_path, capsys) -> None:
    from contrastive_mer.frontend.instructions import RowRecipe, store_instruction_rows, write_instructions

    store_path = _store(tmp_path / "s.h5", n=4)
    recipe = RowRecipe(tokens="<audio>", prompts=("{tokens} What emotion ?",), answers=("{emotion}",))
    with FeatureStore(store_path) as store:
        rows = write_instructions(tmp_path / "rows.jsonl", store_instruction_rows(store, recipe=recipe))
    llm = save_tiny_llm(tmp_path / "llm", TinyLLMConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                                        intermediate_size=16), ["What emotion ? happy sad"])
    run = tmp_path / "run"
    train = ["frontend-train", "--features", str(store_path), "--instructions", str(rows), "--llm", str(llm),
             "--output", str(run), "--lora", "--lora-r", "2", "--epochs", "2", "--batch-size", "2", "--no-chat",
             "--device", "cpu", "level=feature", "fused=false", "tokens_per_modality=1"]
    assert main(train) == 0
    assert "epoch 1: loss" in capsys.readouterr().out
    assert main(["frontend-generate", "--features", str(store_path), "--projector", str(run / "frontend.safetensors"),
                 "--llm", str(llm), "--adapter", str(run / "lora"), "--instructions", str(rows), "--no-chat",
                 "--output", str(tmp_path / "gen"), "--max-new-tokens", "2", "--device", "cpu"]) == 0
    assert (tmp_path / "gen" / "answers.jsonl").read_text().count("\n") == 4
    assert main(train[:-3] + ["projector=linear", "nonsense"]) == 2
    assert "expected key=value" in capsys.readouterr().err
