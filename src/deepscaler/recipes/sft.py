"""Stage 0: supervised fine-tuning on (prompt, response) pairs, the distillation warm start before RL.

Each pair is rendered with the model's chat template (prompt as the user turn, response as the
assistant turn, closed by the end-of-turn token so the model learns to stop); the loss is the mean
cross-entropy over response tokens only. Batches group examples of similar length, so little compute
goes to padding, and on CPUs with bfloat16 support the forward and backward passes run under bfloat16
autocast (the weights and the optimizer stay in float32). The same seed, data and thread count give
the same weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from deepscaler.algorithms import lm_head_logprobs
from deepscaler.cpu import cpu_has_native_bf16
from deepscaler.trainer.sequences import model_forward

IGNORE = -100


@dataclass
class SFTConfig:
    """Optimisation settings for `run_sft`.

    epochs: passes over the examples (may be fractional; the last pass is cut short). batch_size:
    examples per optimizer step. lr: peak learning rate, reached after warmup_steps, then cosine decay
    to min_lr_ratio * lr. bf16: "auto" uses bfloat16 autocast where the CPU has native bfloat16.
    threads: torch threads (0: every core). max_length: longer examples are dropped, not truncated,
    so the model never learns a response without its end.
    """

    epochs: float = 1.0
    batch_size: int = 8
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    seed: int = 0
    bf16: str = "auto"
    threads: int = 0
    max_length: int = 1024
    group_batches: int = 16  # length grouping works within windows of this many batches
    progress: bool = True


def encode_examples(
    tokenizer: Any, examples: Sequence[tuple[str, str]], max_length: int
) -> list[tuple[list[int], int]]:
    """Token ids of each rendered example and where its response starts; too-long examples are dropped."""
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    encoded = []
    for prompt, response in examples:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos]
        if len(prompt_ids) + len(response_ids) <= max_length:
            encoded.append((prompt_ids + response_ids, len(prompt_ids)))
    return encoded


def plan_batches(lengths: Sequence[int], config: SFTConfig) -> list[list[int]]:
    """Example indices per optimizer step: shuffled, then grouped by length within windows of batches."""
    rng = random.Random(config.seed)
    passes = math.ceil(config.epochs)
    total = round(config.epochs * len(lengths))
    order: list[int] = []
    for _ in range(passes):
        indices = list(range(len(lengths)))
        rng.shuffle(indices)
        order += indices
    order = order[:total]
    window = config.batch_size * config.group_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        group = [chunk[i : i + config.batch_size] for i in range(0, len(chunk), config.batch_size)]
        rng.shuffle(group)
        batches += group
    return batches


def collate(encoded: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded input ids, attention mask, and labels that keep only response tokens."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, start) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def response_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, bf16: bool) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (response) positions, through the trainer's lean forward
    where it supports the model (the same numbers as Hugging Face's, faster), and the LM head only at those
    positions, a block of the vocabulary at a time (no logits held)."""
    forward = model_forward(model, "bfloat16" if bf16 else "float32")
    # Padding is on the right and attention is causal, so real tokens never attend to padding: no mask
    # is needed, and without one attention takes the faster plain-causal kernel.
    hidden = forward(input_ids)[0][:, :-1]
    targets = labels[:, 1:]
    kept = targets != IGNORE
    logp, _ = lm_head_logprobs(hidden[kept], forward.head, targets[kept], compute_dtype=forward.dtype)
    return -logp.mean()


def _use_bf16(setting: str) -> bool:
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"bf16 must be 'auto', 'on' or 'off', got {setting!r}")
    if setting == "auto":
        # Without native bfloat16 (AVX512-BF16 / AMX) autocast emulates it and is slower than float32.
        return cpu_has_native_bf16()
    return setting == "on"


def lr_at(step: int, total: int, config: SFTConfig) -> float:
    """Linear warmup to config.lr, then cosine decay to config.lr * config.min_lr_ratio."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def run_sft(model_dir: str | Path, out_dir: str | Path, examples: Sequence[tuple[str, str]],
            config: SFTConfig | None = None, on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune the model in `model_dir` on (user prompt, assistant response) pairs; save it to `out_dir`.

    The saved folder (safetensors weights, config, tokenizer) loads with `LLM(model=out_dir)`.
    on_step, if given, is called after every optimizer step with {"step", "steps", "loss", "lr", "tokens"}.
    Returns metrics: steps, examples, tokens, wall time, throughput and the per-step loss curve.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepscaler.inference.models import quiet_transformers

    config = config or SFTConfig()
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or torch.get_num_threads())
    torch.manual_seed(config.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.train()
        encoded = encode_examples(tokenizer, examples, config.max_length)
        if not encoded:
            raise ValueError("no training examples (all were empty or longer than max_length)")
        batches = plan_batches([len(ids) for ids, _ in encoded], config)
        bf16 = _use_bf16(config.bf16)
        losses, tokens, response_tokens = _train(model, encoded, batches, tokenizer.pad_token_id, bf16, config,
                                                 on_step)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.eval()
        with quiet_transformers():
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
    finally:
        torch.set_num_threads(previous_threads)
    wall = time.perf_counter() - started
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps": len(batches), "examples": len(encoded), "dropped": len(examples) - len(encoded),
        "tokens": tokens, "response_tokens": response_tokens, "wall_time": wall, "seconds": wall,
        "tokens_per_second": tokens / wall, "bf16": bf16, "first_loss": losses[0],
        "final_loss": sum(tail) / len(tail), "losses": losses, "config": asdict(config),
    }


def _train(model: torch.nn.Module, encoded: list[tuple[list[int], int]], batches: list[list[int]], pad_id: int,
           bf16: bool, config: SFTConfig, on_step: Callable[[dict[str, Any]], None] | None
           ) -> tuple[list[float], int, int]:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "norm" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "norm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=config.lr, betas=config.betas,
                                  fused=True)  # several times faster than foreach on a model this small
    losses: list[float] = []
    tokens = response_tokens = 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("SFT"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn()]
    with Progress(*columns, transient=True, disable=not config.progress) as progress:
        task = progress.add_task("sft", total=len(batches), loss="-")
        for step, batch in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, len(batches), config)
            input_ids, mask, labels = collate([encoded[i] for i in batch], pad_id)
            loss = response_loss(model, input_ids, labels, bf16)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += int(mask.sum())
            response_tokens += int((labels != IGNORE).sum())
            progress.update(task, advance=1, loss=f"{losses[-1]:.3f}")
            if on_step is not None:
                on_step({"step": step + 1, "steps": len(batches), "loss": losses[-1],
                         "lr": optimizer.param_groups[0]["lr"], "tokens": tokens})
    return losses, tokens, response_tokens
