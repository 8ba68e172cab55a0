"""The planner against reality: the config's model at its real widths with 2 layers, one micro-batch of the
trainer's own update on the CPU, its peak memory measured and set beside the memory model's prediction.

The measurement runs in a fresh process (`python -m deepscaler.planner.check SPEC`) so nothing else this process
holds counts: its peak resident set (VmHWM) minus its resident set after imports, before the model exists. The
micro-batch measured is one as the trainer's second and later micro-batches of an optimizer step see it: Adam's
state already made (one step on zero gradients first) and the first micro-batch's gradients held.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from deepscaler.planner.architecture import ModelDims
from deepscaler.planner.memory import GIB, Setup, predict
from deepscaler.trainer.config import TrainConfig

CHECK_LAYERS = 2
PROMPT_TOKENS = 16  # each sequence: a short prompt, the rest response


class CheckFailed(RuntimeError):
    """The measuring process did not finish (out of memory, killed, or an error)."""


def check_setup(config: TrainConfig) -> Setup:
    """The update the check runs, as the memory model sees it: one CPU, no vLLM, no reference model."""
    return Setup(gpus=1, strategy="ddp", compute_dtype=config.model.dtype,
                 checkpointing=config.model.gradient_checkpointing, reference="none", device="cpu")


def check_dtype(config_dtype: str, native_bf16: bool) -> str:
    """The compute dtype the check measures and predicts: the config's, except bfloat16 on a CPU without it natively,
    where float32 stands in (emulated bfloat16 products kept the recipe's check running past 8 minutes on an AVX2
    CPU, against 1.5 in float32; the memory model covers both)."""
    return "float32" if config_dtype == "bfloat16" and not native_bf16 else config_dtype


def run_check(dims: ModelDims, config: TrainConfig, tokens: int, timeout: float = 1800) -> dict:
    """Measure in a fresh process and predict; the "check" object of `deepscaler plan --json`."""
    from deepscaler.cpu import cpu_has_native_bf16

    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, dtype=check_dtype(config.model.dtype, cpu_has_native_bf16())))
    spec = {"dims": dataclasses.asdict(dims), "tokens": tokens,
            "model": dataclasses.asdict(config.model), "algorithm": dataclasses.asdict(config.algorithm),
            "optim": dataclasses.asdict(config.optim), "temperature": config.rollout.temperature}
    done = subprocess.run([sys.executable, "-m", "deepscaler.planner.check", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise CheckFailed(f"the CPU check's process failed ({last})")
    measured = json.loads(done.stdout.strip().splitlines()[-1])["measured_bytes"]
    predicted = predict(dims, check_setup(config), tokens, layers=CHECK_LAYERS).peak
    return {"layers": CHECK_LAYERS, "tokens": tokens, "dtype": config.model.dtype,
            "predicted_gb": round(predicted / GIB, 3), "measured_gb": round(measured / GIB, 3),
            "error": round((predicted - measured) / measured, 3)}


def _status_bytes(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM: kB) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise CheckFailed(f"/proc/self/status has no {field} (the CPU check needs Linux)")


def _build_model(dims: ModelDims):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        dims.model_type, vocab_size=dims.vocab, hidden_size=dims.hidden, intermediate_size=dims.intermediate,
        num_hidden_layers=CHECK_LAYERS, num_attention_heads=dims.heads, num_key_value_heads=dims.kv_heads,
        head_dim=dims.head_dim, tie_word_embeddings=dims.tied, max_position_embeddings=1 << 20,
        use_sliding_window=False, sliding_window=None)
    if dims.model_type != "qwen2":
        config.attention_bias = dims.attention_bias
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _measure(spec: dict) -> int:
    """Peak bytes the model, its optimizer and one micro-batch's update add to this process."""
    import torch

    from deepscaler.config import from_dict
    from deepscaler.trainer.config import AlgorithmConfig, ModelConfig, OptimConfig, StageConfig
    from deepscaler.trainer.sequences import Sample
    from deepscaler.trainer.update import update_policy

    tokens = spec["tokens"]
    optim = dataclasses.replace(from_dict(OptimConfig, spec["optim"]), mini_batches=1, epochs=1,
                                micro_batch_tokens=tokens)
    config = TrainConfig(model=from_dict(ModelConfig, spec["model"]), algorithm=from_dict(AlgorithmConfig,
                         spec["algorithm"]), optim=optim,
                         stages=[StageConfig(name="check", max_response_tokens=tokens - PROMPT_TOKENS,
                                             samples_per_prompt=2, prompts_per_step=1)])
    dims = ModelDims(**spec["dims"])
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, dims.vocab, (2, tokens), generator=generator).tolist()
    samples = [Sample(prompt=row[:PROMPT_TOKENS], response=row[PROMPT_TOKENS:], group=0, advantage=sign)
               for row, sign in zip(ids, (1.0, -1.0))]
    baseline = _status_bytes("VmRSS")
    torch.manual_seed(0)
    model = _build_model(dims).train()
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=(optim.beta1, optim.beta2),
                                  weight_decay=optim.weight_decay, fused=True)  # as the trainer makes it on one rank
    for param in params:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # Two sequences of `tokens` tokens: two micro-batches, the second measured with the first's gradients held.
    update_policy(model, optimizer, samples, num_groups=1, config=config, max_response_tokens=tokens - PROMPT_TOKENS,
                  pad_id=0, temperature=spec["temperature"], seed=0)
    return _status_bytes("VmHWM") - baseline


def main() -> None:
    print(json.dumps({"measured_bytes": _measure(json.loads(sys.argv[1]))}))


if __name__ == "__main__":
    main()
