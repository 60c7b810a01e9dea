"""``cmer frontend-train --features feats.h5 --instructions rows.jsonl --llm DIR --output DIR [--lora] [key=value ...]``

Instruction tuning of the front end's projectors, with LoRA adapters on the LLM when ``--lora`` is given (needs
the ``llm`` extra: peft); the base LLM and the encoders stay frozen. A rerun resumes from
``<output>/train_state.pt``; ``key=value`` overrides set the front end (``projector=resampler``,
``level=feature``, ``tokens_per_modality=8``). Writes ``frontend.safetensors``, ``lora/`` and
``train_log.jsonl`` for ``cmer frontend-generate``. Training runs in a Lightning Trainer: ``--device cuda
--devices 4 --strategy ddp`` trains on 4 GPUs (Lightning starts the other ranks by re-running the command),
``--device cpu --devices 2 --strategy ddp`` on 2 CPU processes; ``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_device, add_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="feature store the soft tokens come from")
    parser.add_argument("--instructions", required=True, help="JSONL rows {id, prompt, answer} or {id, messages}")
    parser.add_argument("--llm", required=True, help="local transformers causal-LM folder (nothing is downloaded)")
    add_output_dir(parser, "train_state.pt, frontend.safetensors, lora/, train_log.jsonl", required=True)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters on the LLM's attention too")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-chat", action="store_true", help="plain prompts instead of the chat template")
    parser.add_argument("--system", help="a system message before each prompt (chat template)")
    add_device(parser)
    parser.add_argument("--devices", type=int, default=1, help="devices per node (processes with --strategy ddp)")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy: auto, ddp, ... (ddp for --devices > 1)")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming")
    parser.add_argument("overrides", nargs="*", help="front-end settings as key=value (projector=mlp, ...)")


def _frontend_settings(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    from contrastive_mer.errors import UserError

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError(f"expected key=value front-end settings, got {bad[0]!r}")
    return dict(OmegaConf.to_container(OmegaConf.from_dotlist(overrides)))  # type: ignore[arg-type]


def _print_epoch(x) -> None:  # an EpochLog; rank 0 only
    from contrastive_mer.distributed import is_launched_rank

    if not is_launched_rank():
        print(f"epoch {x.epoch}: loss {x.loss:.4f}, {x.seconds_per_step * 1000:.0f} ms/step, "
              f"peak GPU memory {x.peak_memory / 2**20:.0f} MiB", flush=True)


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.cli._common import open_store
    from contrastive_mer.distributed import is_launched_rank
    from contrastive_mer.frontend.config import FrontEndConfig
    from contrastive_mer.frontend.front_end import FrontEnd
    from contrastive_mer.frontend.instructions import read_instructions
    from contrastive_mer.frontend.lora import LoraSettings
    from contrastive_mer.frontend.tiny_llm import load_llm
    from contrastive_mer.frontend.train import TrainerSettings, TrainSettings, train_frontend

    rows = read_instructions(args.instructions)
    lora = LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout) if args.lora else None
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, seed=args.seed, chat=not args.no_chat,
                             system=args.system, lora=lora, bf16=args.bf16,
                             gradient_checkpointing=args.gradient_checkpointing)
    hardware = TrainerSettings.from_device(args.device, devices=args.devices, strategy=args.strategy,
                                           num_nodes=args.num_nodes)
    with open_store(args.features) as store:
        llm, tokenizer = load_llm(args.llm)
        config = FrontEndConfig.from_dict({**_frontend_settings(args.overrides),
                                           "llm_hidden": llm.config.hidden_size})
        front = FrontEnd.from_store_dims(store, config)
        _, _, logs = train_frontend(
            front, llm, tokenizer, store, rows=rows, out_dir=args.output, settings=settings,
            resume=not args.overwrite, trainer=hardware,
            on_epoch=_print_epoch)
    if not is_launched_rank():
        print(f"trained front end written to {args.output} ({len(logs)} epochs)")
    return 0
