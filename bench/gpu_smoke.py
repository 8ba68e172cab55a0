"""GPU smoke run of the trainer at DeepScaleR-1.5B's widths: two GRPO steps with 8K-token responses; prints each
step's time and peak GPU memory.

The model is a Qwen2 with DeepSeek-R1-Distill-Qwen-1.5B's widths (hidden 1536, MLP 8960, 12 query and 2 key-value
heads, vocabulary 151,936, untied output head) but random weights and fewer layers (4 by default, of 28), built on
the spot with a small local tokenizer: no download. The settings are configs/deepscaler-1.5b.yaml's (bfloat16
compute, gradient checkpointing, KL against a reference model, 2 mini-batches, micro-batches of 32K tokens) with
fewer prompts. Every response is exactly --response-tokens long: end-of-sequence is ignored, as vLLM's ignore_eos.

Needs PyTorch with a CUDA GPU, neither vLLM nor a network. Rollouts come from `TorchSampler` below: the built-in
engine runs on CPU only and vLLM may be missing, so a plain PyTorch sampler decodes on the GPU from its own
bfloat16 copy of the policy, and behaves as a colocated vLLM with sleep mode does: it frees that copy after the
rollouts (level 2) and takes the trainer's streamed weights after each update.

    python bench/gpu_smoke.py [--layers 4] [--response-tokens 8192] [--prompts 2] [--samples 4] [KEY=VALUE ...]
    python bench/gpu_smoke.py --cpu-dry-run     # the same code on CPU at tiny sizes (tests/trainer/test_gpu_smoke.py)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEEPSCALER_WIDTHS = dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12, num_key_value_heads=2,
                         vocab_size=151_936)
# The dry run's: still a vocabulary larger than the tokenizer's, as DeepScaleR's model has (151,936 > 151,665).
DRY_RUN_WIDTHS = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=2048)


class TorchSampler:
    """The engine protocol (deepscaler.inference.engines.base) with temperature sampling in plain PyTorch: a copy
    of the model on `device` (bfloat16 on a GPU, as vLLM serves the checkpoint; float32 on CPU, where bfloat16
    products this small run several times slower), the n samples of a prompt decoded as one batch with a KV
    cache, every response max_tokens long. sleep() frees the weights (vLLM's level 2), wake_up(["weights"])
    allocates them again, empty, for update_weights to fill."""

    name = "torch-sampler"

    def __init__(self, model_dir: str, device: torch.device, tokenizer) -> None:
        from transformers import AutoModelForCausalLM

        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=self.dtype).to(device).eval()
        self.device, self.tokenizer = device, tokenizer
        # Rotary tables and such are not weights the trainer sends: kept aside to survive sleep.
        self.buffers = {name: buffer.clone() for name, buffer in self.model.named_buffers()}

    @torch.inference_mode()
    def generate(self, prompts: Sequence[list[int]], params: Sequence, use_tqdm: bool = False) -> list[list]:
        return [self._sample(prompt, p) for prompt, p in zip(prompts, params, strict=True)]

    def _sample(self, prompt: list[int], params) -> list:
        from transformers import DynamicCache

        from deepscaler.inference.outputs import CompletionOutput

        if params.top_p < 1 or params.top_k > 0 or params.temperature <= 0:
            raise ValueError("TorchSampler samples at a positive temperature without top-p or top-k")
        generator = torch.Generator(self.device).manual_seed(params.seed)
        cache, tokens, logprobs = DynamicCache(), [], []
        inputs = torch.tensor([prompt] * params.n, device=self.device)
        for _ in range(params.max_tokens):
            logits = self.model(inputs, past_key_values=cache, use_cache=True).logits[:, -1].float()
            logp = torch.log_softmax(logits / params.temperature, dim=-1)
            inputs = torch.multinomial(logp.exp(), 1, generator=generator)
            tokens.append(inputs)
            logprobs.append(logp.gather(1, inputs))
        rows, row_logprobs = torch.cat(tokens, 1).tolist(), torch.cat(logprobs, 1).tolist()
        return [CompletionOutput(index=i, text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                                 finish_reason="length", token_logprobs=lps)
                for i, (ids, lps) in enumerate(zip(rows, row_logprobs, strict=True))]

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = dict(self.model.named_parameters())
        for name, tensor in named_tensors:
            params[name].copy_(tensor)

    def sleep(self, level: int = 1) -> None:
        self.model.to("meta")

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        if self.model.device.type == "meta" and (tags is None or "weights" in tags):
            self.model.to_empty(device=self.device)
            for name, buffer in self.model.named_buffers():
                buffer.copy_(self.buffers[name])

    def close(self) -> None:
        self.model = None


def make_inputs(root: Path, layers: int, widths: dict) -> tuple[Path, Path]:
    """The model folder (random weights, bfloat16 like the real checkpoint) and a file of addition problems."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from deepscaler.inference.models import train_tokenizer

    tokenizer = train_tokenizer()
    config = Qwen2Config(**widths, num_hidden_layers=layers, max_position_embeddings=131_072, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 10_000.0}, tie_word_embeddings=False,
                         use_sliding_window=False, sliding_window=None, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, dtype="bfloat16",
                         architectures=["Qwen2ForCausalLM"])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialising on the GPU is much faster
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rows = [{"id": i, "problem": f"What is {i % 9 + 1}+{i // 9 + 1}?", "answer": str(i % 9 + i // 9 + 2)}
            for i in range(32)]
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "model", root / "train.jsonl"


def make_trainer(model: Path, train: Path, out: Path, args: argparse.Namespace):
    from deepscaler.config import load_config
    from deepscaler.trainer import distributed as dist
    from deepscaler.trainer.config import TrainConfig
    from deepscaler.trainer.loop import Trainer

    class SmokeTrainer(Trainer):
        def _start_rollout_engine(self, model_dir: str):
            from deepscaler.inference import LLM

            return LLM(model_dir, engine=TorchSampler(model_dir, dist.device(), self.tokenizer))

    overrides = [f"model.path={model}", f"data.train_files=[{train}]", "data.val_files=[]", f"out_dir={out}",
                 "tensorboard=false", "validation.every_steps=0", f"stages.0.prompts_per_step={args.prompts}",
                 f"stages.0.samples_per_prompt={args.samples}", f"stages.0.max_response_tokens={args.response_tokens}",
                 *args.overrides]
    config = load_config(TrainConfig, REPO / "configs" / "deepscaler-1.5b.yaml", overrides)
    return SmokeTrainer(config)


def run(args: argparse.Namespace) -> None:
    on_gpu = not args.cpu_dry_run
    with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as folder:
        root = Path(folder)
        model, train = make_inputs(root, args.layers, DEEPSCALER_WIDTHS if on_gpu else DRY_RUN_WIDTHS)
        trainer = make_trainer(model, train, root / "run", args)
        try:
            parameters = sum(p.numel() for p in trainer.policy.parameters())
            device = torch.cuda.get_device_name() if on_gpu else "CPU (dry run)"
            print(f"{args.layers}-layer Qwen2 at {'DeepScaleR-1.5B' if on_gpu else 'dry-run'} widths "
                  f"({parameters:,} parameters), {args.prompts} prompts x {args.samples} samples x "
                  f"{args.response_tokens} response tokens, bfloat16 compute, on {device}", flush=True)
            stage = trainer.config.stages[0]
            for _ in range(2):
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                metrics = trainer.step(stage)
                seconds = time.perf_counter() - start
                split = ", ".join(f"{name} {metrics[f'time/{name}']:.1f}"
                                  for name in ("generate", "logprobs", "update", "sync") if f"time/{name}" in metrics)
                memory = (f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB allocated, "
                          f"{torch.cuda.max_memory_reserved() / 2**30:.1f} GiB reserved" if on_gpu else "no GPU")
                print(f"step {metrics['step']}: {seconds:.1f} s ({split}), {memory}, mean response "
                      f"{metrics['response_length/mean']:.0f} tokens, rollout log-prob gap "
                      f"{metrics.get('rollout/logprob_gap', float('nan')):.1e}", flush=True)
        finally:
            trainer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, help="decoder layers (default 4; dry run 2)")
    parser.add_argument("--response-tokens", type=int, help="tokens per response (default 8192; dry run 64)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step, even (default 2)")
    parser.add_argument("--samples", type=int, help="samples per prompt (default 4; dry run 2)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the same code on CPU at tiny sizes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="training config overrides, e.g. optim.micro_batch_tokens=16384")
    args = parser.parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("gpu_smoke.py needs a CUDA GPU, and PyTorch sees none (--cpu-dry-run runs the same code on CPU at "
              "tiny sizes)", file=sys.stderr)
        return 2
    defaults = (2, 64, 2) if args.cpu_dry_run else (4, 8192, 4)
    args.layers, args.response_tokens, args.samples = (
        given or default for given, default in zip((args.layers, args.response_tokens, args.samples), defaults))
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
