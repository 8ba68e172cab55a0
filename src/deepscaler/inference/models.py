"""Build small, randomly initialised Qwen2 models with a locally trained math tokenizer.

The folders written here are ordinary Hugging Face checkpoints (config.json, model.safetensors,
tokenizer.json, generation_config.json), so `AutoModelForCausalLM`, `AutoTokenizer` and vLLM load them.
Nothing is downloaded, which is what tests and benchmarks on an offline machine need.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepscaler.inference.corpus import math_corpus

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Reasoning markers are ordinary (non-special) added tokens, so decoding keeps them in the text.
THINK_TOKENS = ["<think>", "</think>"]
# Qwen2's pre-tokeniser glues a backslash to the preceding space or punctuation (" $\\" + "frac"), so BPE
# alone never makes `\\frac` one token; these commands are added tokens, matched before pre-tokenisation
# (longest match first, so `\\left` is not read as a shorter command).
LATEX_TOKENS = [
    "\\boxed", "\\frac", "\\dfrac", "\\sqrt", "\\cdot", "\\times", "\\pi", "\\left", "\\right",
    "\\leq", "\\geq", "\\neq", "\\text", "\\sum", "\\binom", "\\infty",
]

# The generation prompt stops at "assistant\n": the model itself writes "<think>".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

PRESETS: dict[str, dict[str, Any]] = {
    # ~4.3M parameters: the model the inference speed target is measured on.
    "tiny": dict(vocab=1024, hidden_size=256, intermediate_size=1056, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
    # ~26M parameters: big enough for the RL loop to learn something, small enough for a CPU.
    "small": dict(vocab=1024, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096),
    # ~146M parameters, about SmolLM2-135M's size: past the built-in engine's 100M data-parallel limit, for
    # measuring what real small models do (bench/bench_threads.py).
    "medium": dict(vocab=1024, hidden_size=1024, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=4096),
}


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-file progress bars ("Loading weights") for library-internal loads."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def train_tokenizer(vocab_size: int = 1024, corpus: list[str] | None = None):
    """Train a byte-level BPE tokenizer on the built-in math corpus; returns a transformers tokenizer.

    For a qwen2 config `AutoTokenizer` always rebuilds the tokenizer as `Qwen2Tokenizer` from the saved
    vocab and merges with Qwen2's own normaliser and pre-tokeniser, so we train with exactly that pipeline:
    what we train is then what every loader (transformers, vLLM) sees. That pipeline keeps every digit a
    separate piece and a LaTeX command such as `\\frac` one piece, which BPE then learns as one token.
    """
    import json

    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    pipeline = Qwen2Tokenizer().backend_tokenizer
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = pipeline.normalizer
    tokenizer.pre_tokenizer = pipeline.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(THINK_TOKENS) - len(LATEX_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus if corpus is not None else math_corpus(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    result = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
    result.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    result.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS + LATEX_TOKENS])
    return result


def make_tiny_model(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write a randomly initialised Qwen2 model and its tokenizer to `out_dir`; returns the folder.

    The same (preset, seed) always gives the same weights and the same tokenizer.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = dict(PRESETS[preset])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(spec.pop("vocab"))
    tokenizer.model_max_length = spec["max_position_embeddings"]
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_sliding_window=False,
        sliding_window=None,
        dtype="float32",
        architectures=["Qwen2ForCausalLM"],
        **spec,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    with quiet_transformers():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


def count_parameters(model_dir: str | Path) -> int:
    """Number of stored parameters of a saved model (a tied output head is stored, and counted, once)."""
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
                total += math.prod(handle.get_slice(name).get_shape())
    return total
