"""A model's shape without its weights: what the memory planner needs to know about a decoder.

Read from a local folder's config.json, from the Hugging Face cache when a hub id's config.json is there, or from a
small table of known hub models (this project's recipe model, so `deepscaler plan` answers offline and before any
download).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class UnknownArchitecture(LookupError):
    """A model whose config.json is neither local, cached, nor in the known table."""


@dataclass(frozen=True)
class ModelDims:
    """The widths of a Qwen2/Qwen3/Llama/Mistral-style decoder."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool  # the LM head shares the input embedding's weight
    attention_bias: bool  # q/k/v projections carry biases (Qwen2)
    qk_norm: bool = False  # per-head RMSNorm on q and k (Qwen3)
    model_type: str = "qwen2"  # the Hugging Face family, to build the model at these widths (planner/check.py)

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_matrices(self) -> int:
        """Weight-matrix entries of one decoder layer: q, k, v, o and the gated MLP's gate, up and down."""
        return self.hidden * (self.q_width + 2 * self.kv_width) + self.q_width * self.hidden \
            + 3 * self.hidden * self.intermediate

    def layer_parameters(self) -> int:
        """All parameters of one decoder layer: its matrices, q/k/v biases, two RMSNorms (and Qwen3's q/k norms)."""
        biases = self.q_width + 2 * self.kv_width if self.attention_bias else 0
        norms = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        return self.layer_matrices() + biases + norms

    def outer_parameters(self) -> int:
        """Parameters outside the layers: the embedding, the LM head unless tied, the final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def parameters(self, layers: int | None = None) -> int:
        return self.outer_parameters() + (self.layers if layers is None else layers) * self.layer_parameters()


# Hub ids whose config.json is known here. DeepSeek-R1-Distill-Qwen-1.5B is Qwen2.5-Math-1.5B's shape with an
# untied head (1,777,088,000 parameters, the "1.78B" the hub reports); DeepScaleR-1.5B-Preview is that model trained.
_QWEN2_1_5B = ModelDims(vocab=151936, hidden=1536, intermediate=8960, layers=28, heads=12, kv_heads=2, head_dim=128,
                        tied=False, attention_bias=True)
KNOWN: dict[str, ModelDims] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": _QWEN2_1_5B,
    "agentica-org/DeepScaleR-1.5B-Preview": _QWEN2_1_5B,
}


def dims_from_config(config: dict) -> ModelDims:
    """A Hugging Face config.json's decoder widths."""
    if config.get("model_type") not in ("qwen2", "qwen3", "llama", "mistral"):
        raise UnknownArchitecture(f"model_type {config.get('model_type')!r} is not a decoder the trainer supports")
    heads = config["num_attention_heads"]
    return ModelDims(
        vocab=config["vocab_size"], hidden=config["hidden_size"], intermediate=config["intermediate_size"],
        layers=config["num_hidden_layers"], heads=heads, kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        tied=bool(config.get("tie_word_embeddings", False)),
        attention_bias=config["model_type"] == "qwen2" or bool(config.get("attention_bias", False)),
        qk_norm=config["model_type"] == "qwen3", model_type=config["model_type"],
    )


def model_dims(path: str, revision: str | None = None) -> ModelDims:
    """The widths of model `path`: a local folder, a hub id with config.json in the cache, or a known hub id."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        file = folder / "config.json"
        if not file.is_file():
            raise UnknownArchitecture(f"{path}: no config.json in this folder")
        return dims_from_config(json.loads(file.read_text(encoding="utf-8")))
    cached = _cached_config(path, revision)
    if cached is not None:
        return dims_from_config(json.loads(Path(cached).read_text(encoding="utf-8")))
    if path in KNOWN:
        return KNOWN[path]
    raise UnknownArchitecture(f"model.path={path}: no local folder, no config.json in the Hugging Face cache, and "
                              f"not a known model ({', '.join(KNOWN)})")


def _cached_config(repo_id: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except HFValidationError:  # not of the form of a hub id
        return None
    return found if isinstance(found, str) else None
