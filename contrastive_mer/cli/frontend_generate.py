"""``cmer frontend-generate --features feats.h5 --projector frontend.safetensors --llm DIR --output DIR``

Free-text answers for every instruction row (``--instructions rows.jsonl``) or every clip of the store (one
``--prompt``): greedy, batched with left padding and the KV cache, written to ``<output>/answers.jsonl`` (a rerun
resumes) and ``<output>/answers.csv`` (MER2025's ``name,answer``). ``--variant zeros|shuffled`` gives the
baselines (zeroed tokens, another clip's tokens) for ``cmer score-answers``.
"""

from __future__ import annotations

import argparse

from contrastive_mer.cli._common import add_device, add_output_dir

DEFAULT_PROMPT = "{tokens} What emotion does this person express?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="feature store the soft tokens come from (extracted "
                                                          "with --sequences at level=sequence)")
    parser.add_argument("--projector", required=True, help="front-end weights (FrontEnd.save / frontend-train)")
    parser.add_argument("--llm", required=True, help="local transformers causal-LM folder (nothing is downloaded)")
    parser.add_argument("--adapter", help="LoRA adapter folder written by cmer frontend-train (<output>/lora)")
    add_output_dir(parser, "answers.jsonl and answers.csv", required=True)
    parser.add_argument("--instructions", help="JSONL rows {id, prompt} or {id, messages} (clip: the store id)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT,
                        help="without --instructions: the prompt for every clip; {tokens} becomes every source's "
                             "placeholder")
    parser.add_argument("--variant", choices=("real", "zeros", "shuffled"), default="real",
                        help="the clip's own tokens, zeroed tokens, or another clip's tokens (baselines)")
    parser.add_argument("--no-chat", action="store_true", help="plain prompts instead of the chat template")
    parser.add_argument("--system", help="a system message before each prompt (chat template)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    add_device(parser)
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming")


def run(args: argparse.Namespace) -> int:
    from contrastive_mer.cli._common import open_store
    from contrastive_mer.extract.encode import resolve_device
    from contrastive_mer.frontend.front_end import FrontEnd
    from contrastive_mer.frontend.generation import GenerateSettings, generate_answers
    from contrastive_mer.frontend.instructions import InstructionRow, read_instructions
    from contrastive_mer.frontend.tiny_llm import load_llm

    device = resolve_device(args.device)
    with open_store(args.features) as store:
        front = FrontEnd.load(args.projector, store=store)
        llm, tokenizer = load_llm(args.llm)
        if args.adapter:
            from contrastive_mer.frontend.lora import load_adapter

            llm = load_adapter(llm, args.adapter)
        llm.to(device)
        if args.instructions:
            rows = read_instructions(args.instructions)
        else:
            tokens = " ".join(front.config.placeholder(s) for s in front.source_dims)
            rows = [InstructionRow(str(i), args.prompt.replace("{tokens}", tokens)) for i in store.ids]
        settings = GenerateSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                    chat=not args.no_chat, system=args.system, variant=args.variant)
        answers, mer = generate_answers(front, llm, tokenizer, store, rows=rows, out_dir=args.output, settings=settings,
                                        progress=lambda done, total: print(f"{done}/{total} answered", flush=True))
    print(f"answers written to {answers} and {mer}")
    return 0
