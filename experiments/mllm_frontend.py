"""Projector-only instruction tuning of the MLLM front end on the synthetic corpus.

Prompt: "... <audio> ... <video> ... <text> ... <fused> What emotion does this person express?"; target: the
emotion word. The encoders and the LLM stay frozen; only the projectors learn. The held-out speakers' LM loss
on the target tokens is compared with the same LLM given zeroed front-end tokens (same number of tokens) and
with the tokens of another held-out clip (``shuffled``: a fixed random permutation), which keep the prompt
and the learned answer prior but carry no information about the clip itself.

    python experiments/mllm_frontend.py                       # pretrains a 2-epoch encoder, tiny random LLaMA
    python experiments/mllm_frontend.py --checkpoint runs/demo/checkpoints/last.ckpt --llm /path/to/local/llm
    python experiments/mllm_frontend.py train.epochs=10 frontend.projector=resampler llm.arch=qwen2

Writes ``<out>/frontend.safetensors`` (the trained projectors) and ``<out>/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contrastive_mer.config import to_dict  # noqa: E402
from contrastive_mer.data.datasets.synthetic import split_speakers  # noqa: E402
from contrastive_mer.experiment import load_config  # noqa: E402
from contrastive_mer.frontend.config import FrontEndConfig  # noqa: E402
from contrastive_mer.frontend.front_end import FrontEnd  # noqa: E402
from contrastive_mer.frontend.inputs import (  # noqa: E402
    dataset_config,
    dataset_records,
    load_frontend_yaml,
    source_batches,
)
from contrastive_mer.frontend.sources import SourceBatch  # noqa: E402
from contrastive_mer.frontend.splice import IGNORE_INDEX  # noqa: E402
from contrastive_mer.frontend.tiny_llm import TinyLLMConfig, load_llm, save_tiny_llm  # noqa: E402
from contrastive_mer.model.module import load_module  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "experiments" / "mllm_frontend.yaml"))
    p.add_argument("--checkpoint", help="encoder checkpoint (default: pretrain a 2-epoch demo encoder first)")
    p.add_argument("--llm", help="local transformers causal-LM folder (default: a tiny random LLaMA/Qwen2)")
    p.add_argument("--out", default="runs/mllm_frontend", help="output folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("overrides", nargs="*", help="key=value overrides of the YAML (train.epochs=10, ...)")
    return p.parse_args(argv)


def pretrain_encoder(out: Path, epochs: int) -> Path:
    from contrastive_mer.pretrain.loop import pretrain

    cfg = load_config(REPO / "experiments" / "demo.yaml",
                      [f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"])
    print(f"[mllm] pretraining a {epochs}-epoch demo encoder -> {out}", flush=True)
    return pretrain(cfg, output=out, overwrite=True).checkpoint


def llm_and_tokenizer(args: argparse.Namespace, llm_cfg: dict, words: list[str], out: Path):
    if args.llm:
        return load_llm(args.llm)
    folder = save_tiny_llm(out / "tiny_llm", TinyLLMConfig(**llm_cfg), words)
    return load_llm(folder)  # loaded back from the local folder, as a real model would be


def cache_sources(front: FrontEnd, cfg, records, adapter, device: str) -> list[SourceBatch]:
    """Encode every clip once (the encoders are frozen) and keep one single-clip SourceBatch per clip."""
    out: list[SourceBatch] = []
    for batch in source_batches(front.encoder, cfg, records, adapter, modalities=front.modalities,
                                fused=front.config.fused,
                                fusion_mode=front.config.fusion_mode, batch_size=32, device=device):
        out += batch.split()
    return out


def target_nll(llm, spliced) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Summed NLL of the target tokens, their number, and the logits at each sample's first target token."""
    logits = llm(**spliced.model_inputs(with_labels=False)).logits.float()
    labels = spliced.labels[:, 1:]
    logp = torch.log_softmax(logits[:, :-1], -1)
    keep = labels != IGNORE_INDEX
    nll = -logp[keep].gather(-1, labels[keep].unsqueeze(-1)).sum()
    first = torch.stack([logits[i, a - 1] for i, (a, _) in enumerate(spliced.target_spans)])
    return nll, int(keep.sum()), first


def run_batches(front, llm, splicer, items, prompt, class_names, batch_size, device, variant="real",
                optimizer=None, rng=None):
    """One pass over ``items``; trains when ``optimizer`` is given. Returns mean target NLL and accuracy
    (argmax over the class words' first tokens at the first target position).

    ``variant``: ``real`` (each clip's own tokens), ``zeros`` (zeroed tokens, same counts) or ``shuffled``
    (the tokens of a clip drawn by a fixed random permutation of the whole set).
    """
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    donors = random.Random(12345).sample(range(len(items)), len(items)) if variant == "shuffled" else order
    donor_of = dict(zip(range(len(items)), donors))
    class_ids = [splicer.token_ids(c)[0] for c in class_names]
    total, count, correct = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = SourceBatch.concat([items[i] for i in rows]).to(device)
        source = batch if variant != "shuffled" else SourceBatch.concat([items[donor_of[i]] for i in rows]).to(device)
        tokens = front(source)
        if variant == "zeros":
            tokens = {s: t.zeroed() for s, t in tokens.items()}
        labels = batch.labels["emotion"].tolist()
        spliced = splicer(prompt, tokens, [class_names[y] for y in labels], ids=batch.ids)
        nll, n, first = target_nll(llm, spliced)
        if optimizer is not None:
            optimizer.zero_grad()
            (nll / n).backward()
            optimizer.step()
        total += float(nll.detach())
        count += n
        pred = first[:, class_ids].argmax(-1).tolist()
        correct += sum(int(p == y) for p, y in zip(pred, labels))
    return total / count, correct / len(items)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    yaml = load_frontend_yaml(args.config, args.overrides)
    train_cfg = yaml["train"]
    start = time.perf_counter()
    ckpt = Path(args.checkpoint) if args.checkpoint else pretrain_encoder(out / "encoder", args.pretrain_epochs)
    prompt = train_cfg["prompt"]

    # the corpus: all speakers, held-out speakers for evaluation
    cfg = dataset_config(to_dict(load_module(str(ckpt)).cfg), yaml.get("data"))
    adapter, records = dataset_records(cfg)
    class_names = adapter.label_names["emotion"]
    train_records, test_records = split_speakers(records, train_cfg["held_out_speakers"])

    words = [prompt, " ".join(class_names)]
    llm, tokenizer = llm_and_tokenizer(args, yaml.get("llm", {}), words, out)
    llm.to(args.device).requires_grad_(False)
    fcfg = FrontEndConfig.from_dict({**yaml.get("frontend", {}), "llm_hidden": llm.config.hidden_size})
    front = FrontEnd.from_checkpoint(ckpt, fcfg).to(args.device)
    splicer = front.splicer(tokenizer, llm)
    t0 = time.perf_counter()
    train_items = cache_sources(front, cfg, train_records, adapter, args.device)
    test_items = cache_sources(front, cfg, test_records, adapter, args.device)
    print(f"[mllm] encoded {len(train_items)} training and {len(test_items)} held-out clips "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    seed = int(train_cfg.get("seed", 0))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    bs = int(train_cfg["batch_size"])
    evaluate = lambda variant: run_batches(front, llm, splicer, test_items, prompt, class_names, bs,  # noqa: E731
                                           args.device, variant)
    front.eval()
    with torch.no_grad():
        before, acc_before = evaluate("real")
    opt = torch.optim.AdamW(front.trainable_parameters(), lr=float(train_cfg["lr"]),
                            weight_decay=float(train_cfg["weight_decay"]))
    history = []
    for epoch in range(int(train_cfg["epochs"])):
        front.train()
        loss, acc = run_batches(front, llm, splicer, train_items, prompt, class_names, bs, args.device,
                                optimizer=opt, rng=rng)
        history.append(loss)
        if epoch % 5 == 0 or epoch == int(train_cfg["epochs"]) - 1:
            print(f"[mllm] epoch {epoch:3d}  train target loss {loss:.3f}  train acc {acc:.2f}", flush=True)
    front.eval()
    with torch.no_grad():
        results = {v: evaluate(v) for v in ("real", "zeros", "shuffled")}
        sample = SourceBatch.concat(test_items[:4]).to(args.device)
        generated = front.generate(llm, tokenizer, sample, prompt, max_new_tokens=2, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
    path = front.save(out / "frontend.safetensors")
    metrics = {
        "held_out_speakers": train_cfg["held_out_speakers"], "n_train": len(train_items), "n_test": len(test_items),
        "chance_acc": 1.0 / len(class_names),
        "held_out_loss_untrained": before, "held_out_acc_untrained": acc_before,
        "held_out_loss": results["real"][0], "held_out_acc": results["real"][1],
        "held_out_loss_zeroed_tokens": results["zeros"][0], "held_out_acc_zeroed_tokens": results["zeros"][1],
        "held_out_loss_shuffled_tokens": results["shuffled"][0],
        "held_out_acc_shuffled_tokens": results["shuffled"][1],
        "train_loss_first_epoch": history[0], "train_loss_last_epoch": history[-1],
        "generated": dict(zip(sample.ids, generated)),
        "truth": {i: class_names[int(y)] for i, y in zip(sample.ids, sample.labels["emotion"].tolist())},
        "seconds": time.perf_counter() - start, "checkpoint": str(ckpt), "projector": str(path),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))
    print(f"[mllm] held-out target loss {metrics['held_out_loss']:.3f} vs zeroed tokens "
          f"{metrics['held_out_loss_zeroed_tokens']:.3f} (shuffled {metrics['held_out_loss_shuffled_tokens']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
