"""Soft tokens to scored answers on the synthetic corpus, with tiny random LLMs of two architectures.

pretrain (or --checkpoint) -> extract (pooled features of all 40 speakers) -> instruction rows -> frontend-train
with LoRA on speakers 0-31 -> generate free-text answers for the held-out speakers 32-39 with their own soft
tokens, zeroed tokens and another clip's tokens -> score-answers. Everything runs through the library functions
behind ``cmer frontend-train``, ``cmer frontend-generate`` and ``cmer score-answers``.

    python experiments/mllm_answers.py                          # pretrains a 2-epoch demo encoder first
    python experiments/mllm_answers.py --fast                   # a smaller corpus: minutes on a CPU
    python experiments/mllm_answers.py --checkpoint runs/demo/checkpoints/last.ckpt --archs llama,qwen2

Writes ``<out>/<arch>/{rows,held_out}.jsonl``, ``train/``, ``answers_{real,zeros,shuffled}/``,
``report.json`` and ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contrastive_mer.evaluation.answer_scores import format_table, score_files  # noqa: E402
from contrastive_mer.extract.extraction import ExtractOptions, extract_from_checkpoint  # noqa: E402
from contrastive_mer.frontend.config import FrontEndConfig  # noqa: E402
from contrastive_mer.frontend.front_end import FrontEnd  # noqa: E402
from contrastive_mer.frontend.generation import GenerateSettings, generate_answers  # noqa: E402
from contrastive_mer.frontend.instructions import (  # noqa: E402
    InstructionRow,
    RowRecipe,
    store_instruction_rows,
    write_instructions,
)
from contrastive_mer.frontend.lora import LoraSettings  # noqa: E402
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, load_llm, save_tiny_llm  # noqa: E402
from contrastive_mer.frontend.train import TrainSettings, train_frontend  # noqa: E402
from contrastive_mer.store.hdf5 import FeatureStore  # noqa: E402

HELD_OUT = range(32, 40)
RECIPE = RowRecipe(tokens="Audio: <audio> Video: <video> Text: <text> Overall: <fused>",
                   prompts=("{tokens} What emotion does this person express?", "{tokens} How does the speaker feel?"),
                   answers=("{emotion}", "The person sounds {emotion}."))
PROMPT = "Audio: <audio> Video: <video> Text: <text> Overall: <fused> What emotion does this person express?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="encoder checkpoint (default: pretrain a 2-epoch demo encoder first)")
    p.add_argument("--out", default="runs/mllm_answers")
    p.add_argument("--archs", default="llama,qwen2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lora-r", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--fast", action="store_true", help="pretrain on a smaller synthetic corpus (2 clips per speaker "
                                                       "and emotion, 32-pixel frames): minutes on a laptop CPU")
    return p.parse_args(argv)


#: the smaller corpus and inputs of --fast (the extraction reads them from the checkpoint's config)
FAST = ("data.options.clips_per_speaker_emotion=2", "data.options.num_frames=4", "data.options.frame_size=32",
        "model.modalities.video.preprocess.size=32", "model.modalities.video.preprocess.num_frames=2",
        "model.modalities.audio.preprocess.max_seconds=1.0")


def pretrain_encoder(out: Path, epochs: int, *, fast: bool) -> Path:
    from contrastive_mer.experiment import load_config
    from contrastive_mer.pretrain.loop import pretrain

    cfg = load_config(REPO / "experiments" / "demo.yaml", [f"trainer.max_epochs={epochs}",
                                                           "trainer.enable_progress_bar=false",
                                                           *(FAST if fast else ())])
    print(f"[answers] pretraining a {epochs}-epoch demo encoder -> {out}", flush=True)
    return pretrain(cfg, output=out, overwrite=True).checkpoint


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        ckpt = pretrain_encoder(out / "encoder", args.pretrain_epochs, fast=args.fast)
    feats = extract_from_checkpoint(ckpt, out / "feats.h5", overrides=["data.options.speakers=null"],
                                    options=ExtractOptions(device=args.device, progress=False))
    summary: dict[str, dict] = {}
    with FeatureStore(feats) as store:
        speaker = store.groups("speaker")
        train_rows = [i for i, s in enumerate(speaker) if int(str(s).lstrip("s")) not in HELD_OUT]
        test_rows = [i for i, s in enumerate(speaker) if int(str(s).lstrip("s")) in HELD_OUT]
        classes = store.class_names("emotion") or []
        codes = store.labels("emotion")
        refs = out / "references.csv"
        refs.write_text("id,emotion\n" + "".join(f"{store.ids[i]},{classes[int(codes[i])]}\n" for i in test_rows))
        for arch in args.archs.split(","):
            work = out / arch
            rows = store_instruction_rows(store, recipe=RECIPE, rows=train_rows)
            write_instructions(work / "rows.jsonl", rows)
            held = [InstructionRow(str(store.ids[i]), PROMPT) for i in test_rows]
            write_instructions(work / "held_out.jsonl", held)
            llm_dir = save_tiny_llm(work / "tiny_llm", TinyLLMConfig(arch=arch),
                                    RECIPE.words() + [PROMPT, " ".join(classes)])
            llm, tok = load_llm(llm_dir)
            llm.to(args.device)
            front = FrontEnd.from_store_dims(store, FrontEndConfig(llm_hidden=llm.config.hidden_size,
                                                                   level="feature", tokens_per_modality=1))
            t0 = time.perf_counter()
            front, llm, logs = train_frontend(
                front, llm, tok, store, rows=rows, out_dir=work / "train",
                settings=TrainSettings(epochs=args.epochs, batch_size=32, lr=2e-3, chat=False,
                                       lora=LoraSettings(r=args.lora_r, alpha=2 * args.lora_r)),
                on_epoch=lambda x: print(f"[{arch}] epoch {x.epoch}: loss {x.loss:.3f}, "
                                         f"{x.seconds_per_step * 1000:.0f} ms/step", flush=True))
            train_s = time.perf_counter() - t0
            baselines = {}
            for variant in ("real", "zeros", "shuffled"):
                path, _ = generate_answers(front, llm, tok, store, rows=held, out_dir=work / f"answers_{variant}",
                                           settings=GenerateSettings(batch_size=32, max_new_tokens=6, chat=False,
                                                                     variant=variant))
                baselines[variant] = path
            report = score_files(baselines["real"], refs, baselines={"zeroed tokens": baselines["zeros"],
                                                                      "another clip's tokens": baselines["shuffled"]})
            (work / "report.json").write_text(json.dumps({k: report[k] for k in ("systems", "labels")}, indent=2))
            print(f"[{arch}] held-out speakers {HELD_OUT.start}-{HELD_OUT.stop - 1}, {len(test_rows)} clips\n"
                  + format_table(report["systems"]), flush=True)
            summary[arch] = {"systems": report["systems"], "train_seconds": train_s,
                             "ms_per_step": logs[-1].seconds_per_step * 1000, "first_loss": logs[0].loss,
                             "last_loss": logs[-1].loss,
                             "trainable_parameters": sum(p.numel() for p in llm.parameters() if p.requires_grad)
                             + sum(p.numel() for p in front.trainable_parameters())}
    summary["seconds"] = {"total": time.perf_counter() - start}  # type: ignore[assignment]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
