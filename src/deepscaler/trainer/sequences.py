"""Rollout sequences as training data: micro-batches under a token budget, the forward routes that turn them into
response log-probs (packed rows, padded rows, shared prompts), and collating into padded per-response tensors."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch

from deepscaler.algorithms import lm_head_logprobs
from deepscaler.algorithms.partition import budget_micro_batches
from deepscaler.inference.architectures import SUPPORTED_MODEL_TYPES
from deepscaler.trainer.distributed import compute_device, is_sharded, unwrap
from deepscaler.trainer.lean_forward import LeanForward


@dataclass
class Sample:
    """One sampled response and everything the update needs about it."""

    prompt: list[int]
    response: list[int]
    group: int  # index of its prompt in the step's batch; the samples of a prompt form a group
    reward: float = 0.0
    advantage: float = 0.0
    truncated: bool = False
    rollout_logp: torch.Tensor | None = None  # from the inference engine
    old_logp: torch.Tensor | None = None  # from the trainer's weights before this step's updates
    ref_logp: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.response)


def pack(samples: Seq[Sample], token_budget: int) -> list[list[int]]:
    """Indices of samples grouped so each micro-batch's padded size (rows × longest) fits the budget: the
    micro-batches of the padded route (`packed=False`), kept as the baseline packing is measured against.

    Samples are taken longest first so that sequences of similar length share a micro-batch and little
    compute goes to padding; a sample longer than the budget gets a micro-batch of its own.
    """
    order = sorted(range(len(samples)), key=lambda i: -samples[i].length)
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * samples[batches[-1][0]].length <= token_budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def shared_prompt_size(samples: Seq[Sample]) -> int:
    """Padded tokens the shared-prompt forward computes for these samples: (distinct prompts × longest prompt)
    + (rows × longest response)."""
    prompts = {tuple(s.prompt) for s in samples}
    return len(prompts) * max(len(p) for p in prompts) + len(samples) * max(len(s.response) for s in samples)


def pack_by_prompt(samples: Seq[Sample], token_budget: int) -> list[list[int]]:
    """Like `pack`, for the shared-prompt forward: indices grouped so each micro-batch's `shared_prompt_size`
    fits the budget, keeping the samples of a prompt together (its forward is then paid once).

    Prompts are taken longest sample first; one whose samples do not fit the current micro-batch starts the next,
    and one too big for any micro-batch is split over several (paying its prompt once in each)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(tuple(sample.prompt), []).append(index)
    ordered = sorted(groups.values(), key=lambda g: -max(samples[i].length for i in g))

    def fits(indices: list[int]) -> bool:
        return shared_prompt_size([samples[i] for i in indices]) <= token_budget

    batches: list[list[int]] = []
    for group in ordered:
        group = sorted(group, key=lambda i: -len(samples[i].response))
        if batches and fits(batches[-1] + group):
            batches[-1] += group
        elif fits(group):
            batches.append(group)
        else:
            batches.append([])
            for index in group:
                if batches[-1] and not fits(batches[-1] + [index]):
                    batches.append([])
                batches[-1].append(index)
    return batches


def collate_responses(samples: Seq[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded per-response tensors: column j of a row is response token j, so `response_ids`, `mask` and
    the per-token arrays line up with the log-probs of `response_logprobs`."""
    width = max(1, max(len(s.response) for s in samples))
    rows = len(samples)
    response_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.float32)
    aligned = {name: torch.zeros((rows, width)) for name in ("rollout_logp", "old_logp", "ref_logp")}
    for row, sample in enumerate(samples):
        length = len(sample.response)
        response_ids[row, :length] = torch.tensor(sample.response, dtype=torch.long)
        mask[row, :length] = 1.0
        for name, tensor in aligned.items():
            values = getattr(sample, name)
            if values is not None:
                tensor[row, :length] = values
    batch = {"response_ids": response_ids, "mask": mask,
             "advantages": torch.tensor([s.advantage for s in samples], dtype=torch.float32)}
    batch.update(aligned)
    return batch


def can_share_prompts(model: torch.nn.Module) -> bool:
    """Whether `response_logprobs(..., share_prompts=True)` is exact and safe for this model.

    Not under DDP or FSDP (the shared route makes two forward calls per micro-batch, and those wrappers
    expect one forward per backward, or the same forwards on every rank); not with gradient checkpointing
    (Hugging Face drops the cache inside checkpointed layers; the lean forward, which checkpoints too, keeps
    the same rule); not with sliding-window layers (the explicit mask built here would override their window)."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, (torch.nn.parallel.DistributedDataParallel, FSDPModule)):
        return False
    if getattr(model, "is_gradient_checkpointing", False):
        return False
    config = getattr(model, "config", None)
    return config is not None and "sliding_attention" not in (getattr(config, "layer_types", None) or [])


def prompts_repeat(samples: Seq[Sample]) -> bool:
    """Whether some prompt is shared by several samples (else the shared-prompt route only adds a forward)."""
    return len({tuple(s.prompt) for s in samples}) < len(samples)


def plan_micro_batches(model: torch.nn.Module, samples: Seq[Sample], token_budget: int,
                       allow_sharing: bool = True, lockstep: bool = False) -> tuple[bool, list[list[int]]]:
    """Whether the forward shares each prompt among its samples, and the micro-batches (indices of samples) for
    that route.

    The default route packs each micro-batch into one row of at most `token_budget` real tokens, balanced
    (algorithms/partition.py). The shared-prompt route is taken instead where the model allows it
    (`can_share_prompts`) and it computes fewer tokens: its prompts once per micro-batch and its responses padded
    to the longest (`shared_prompt_size`, also what its budget counts), against every sequence's real tokens.

    lockstep: every rank gets as many micro-batches as the rank that needs the most (a collective), its samples
    balanced over all of them; a rank with fewer samples than that gets fewer (the caller runs empty passes)."""
    lengths = [s.length for s in samples]
    packed = budget_micro_batches(lengths, token_budget)
    if allow_sharing and not lockstep and can_share_prompts(model) and prompts_repeat(samples):
        shared = pack_by_prompt(samples, token_budget)
        if sum(shared_prompt_size([samples[i] for i in batch]) for batch in shared) < sum(lengths):
            return True, shared
    if lockstep:
        from deepscaler.trainer import distributed as dist

        count = dist.all_reduce_max(len(packed))
        if count > len(packed):
            packed = budget_micro_batches(lengths, token_budget, count)
    return False, packed


def response_logprobs(model: torch.nn.Module, samples: Seq[Sample], pad_id: int, temperature: float,
                      compute_dtype: str = "float32", share_prompts: bool = False, lean: bool = True,
                      entropy: bool = False, packed: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float32 log-probs (rows, longest response) on the model's device: [i, j] is that of response token j of
    sample i under softmax(logits / temperature), 0 past a response's end; with entropy, also the entropy of each
    of those distributions (else None). The logits are never held: the final hidden states of the response tokens
    go through the LM head a block of the vocabulary at a time (`lm_head_logprobs`). bfloat16 compute keeps the
    parameters (and the optimizer's view of them) float32.

    packed (the default route): all sequences end to end in one row, positions restarting at 0 for each and
    attention kept within each (`_packed_hidden`); else right-padded rows (the same numbers up to float rounding).
    share_prompts: run each distinct prompt once and let its samples' responses attend to its keys and values
    (see `can_share_prompts`); the same numbers as the plain route up to float rounding, with the prompt's
    share of the forward and backward done once per group instead of once per sample.
    lean: use the trainer's own forward (lean_forward.py) where it supports the model, else Hugging Face's."""
    forward = model_forward(model, compute_dtype, lean)
    width = max(1, max(len(s.response) for s in samples))
    lengths = torch.tensor([len(s.response) for s in samples], device=forward.device)
    mask = torch.arange(width, device=forward.device) < lengths[:, None]
    if share_prompts or not packed:
        route = _shared_prompt_hidden if share_prompts else _full_sequence_hidden
        hidden = route(forward, samples, pad_id, width)[mask]
    else:
        hidden = _packed_hidden(forward, samples)
    tokens = torch.tensor([t for s in samples for t in s.response], dtype=torch.long, device=forward.device)
    logp, entropies = lm_head_logprobs(hidden, forward.head, tokens, temperature, entropy=entropy,
                                       compute_dtype=forward.dtype)
    return _spread(mask, logp), None if entropies is None else _spread(mask, entropies)


def _spread(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """One value per true entry of mask (in row-major order) laid out in mask's shape, zeros elsewhere."""
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


def model_forward(model: torch.nn.Module, compute_dtype: str = "float32",
                  lean: bool = True) -> LeanForward | HFForward:
    """The trainer's own forward (lean_forward.py) where asked for and supported by the model, else Hugging Face's."""
    return (LeanForward(model, compute_dtype) if lean and LeanForward.supports(model)
            else HFForward(model, compute_dtype))


class HFForward:
    """A model's own forward (DDP and FSDP wrappers included), under autocast for bfloat16, stopped before the LM
    head; called like `LeanForward`. For the families whose logits are the LM head applied to the decoder's
    output (the lean forward's, trainer/lean_forward.py), whatever the model's settings."""

    def __init__(self, model: torch.nn.Module, compute_dtype: str = "float32") -> None:
        model_type = getattr(getattr(unwrap(model), "config", None), "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"the trainer supports {', '.join(SUPPORTED_MODEL_TYPES)} models, not {model_type!r}")
        self.model, self.dtype = model, torch.bfloat16 if compute_dtype == "bfloat16" else torch.float32
        self.device = compute_device(model)

    @property
    def head(self) -> torch.Tensor:
        """The LM head's weight, read after the forward: FSDP's root module keeps its parameters gathered from its
        forward to its backward, so under FSDP too this is the whole weight, and its gradient is reduced as usual."""
        return unwrap(self.model).get_output_embeddings().weight

    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, prefix: list | None = None, keep_cache: bool = False,
                 columns: torch.Tensor | None = None, last_only: bool = False,
                 lengths: Seq[int] | None = None) -> tuple[torch.Tensor, list | None]:
        """lengths (a packed row) is not passed on: with no attention mask and no cache, transformers finds the
        sequences of a packed row from position_ids restarting at 0 (find_packed_sequence_indices) and keeps
        attention within each: flash_attention_2 through its varlen kernel, sdpa and eager through a dense
        block-diagonal mask, O(T²) memory in the row's length T."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=prefix) if prefix is not None else None
        # The model's own forward runs (so DDP's and FSDP's hooks do) and keeps no logits; the decoder's output,
        # the final hidden state, is taken by a hook for the time of the call.
        captured: list[torch.Tensor] = []
        decoder = unwrap(self.model).get_decoder()
        hook = decoder.register_forward_hook(lambda module, args, out: captured.append(out.last_hidden_state))
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
                out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                                 past_key_values=cache, use_cache=keep_cache or cache is not None,
                                 logits_to_keep=torch.empty(0, dtype=torch.long, device=self.device))
        finally:
            hook.remove()
        hidden = captured[0]
        if last_only:
            hidden = hidden[:, -1:]
        elif columns is not None:
            hidden = hidden.gather(1, columns[:, :, None].expand(-1, -1, hidden.shape[-1]))
        kept = [(layer.keys, layer.values) for layer in out.past_key_values.layers] if keep_cache else None
        return hidden, kept


def _packed_hidden(forward: HFForward | LeanForward, samples: Seq[Sample]) -> torch.Tensor:
    """One forward over every prompt + response end to end in a single row (no padding), each sequence's positions
    from 0 and its attention within itself; the hidden states that predict the response tokens, (tokens, hidden),
    sample after sample."""
    device = forward.device
    lengths = [s.length for s in samples]
    ids = torch.tensor([t for s in samples for t in s.prompt + s.response], dtype=torch.long, device=device)
    positions = torch.cat([torch.arange(n, device=device) for n in lengths])
    # Response token j of a sample is predicted at position len(prompt) - 1 + j of its sequence.
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    columns = torch.cat([torch.arange(len(s.response), device=device) + start + len(s.prompt) - 1
                         for s, start in zip(samples, starts)])
    return forward(ids[None], positions[None], columns=columns[None], lengths=lengths)[0][0]


def _full_sequence_hidden(forward: HFForward | LeanForward, samples: Seq[Sample], pad_id: int,
                          width: int) -> torch.Tensor:
    """One forward over each whole prompt + response, right-padded, keeping the response columns."""
    device = forward.device
    length = max(s.length for s in samples)
    input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    for row, sample in enumerate(samples):
        input_ids[row, : sample.length] = torch.tensor(sample.prompt + sample.response, dtype=torch.long)
    # Response token j of a sample is predicted at position len(prompt) - 1 + j.
    starts = torch.tensor([len(s.prompt) - 1 for s in samples], device=device)
    columns = (starts[:, None] + torch.arange(width, device=device)).clamp(max=length - 1)
    # Padding is on the right and attention is causal, so no real token attends to padding: without a
    # mask, attention runs the faster plain-causal kernel (padded positions are masked out of the loss).
    return forward(input_ids.to(device), columns=columns)[0]


def prompt_layout(samples: Seq[Sample]) -> tuple[list[list[int]], list[int]]:
    """The distinct prompts (in order of first appearance) and, per sample, the index of its prompt."""
    index: dict[tuple[int, ...], int] = {}
    owner = [index.setdefault(tuple(s.prompt), len(index)) for s in samples]
    return [list(p) for p in index], owner


def left_padded_causal_mask(pads: torch.Tensor, length: int) -> torch.Tensor:
    """(rows, 1, length, length) boolean mask for left-padded rows: causal, and the first `pads[row]` keys
    hidden. A padding query still sees itself, so no softmax row is empty (an empty row would give NaN, and
    0 · NaN in the next matmul would reach the real tokens)."""
    positions = torch.arange(length, device=pads.device)
    causal = positions[None, :] <= positions[:, None]
    real_key = positions[None, :] >= pads[:, None]
    diagonal = torch.eye(length, dtype=torch.bool, device=pads.device)
    return (causal[None] & (real_key[:, None, :] | diagonal[None]))[:, None]


def prefix_causal_mask(prefix_pads: torch.Tensor, prefix_length: int, length: int) -> torch.Tensor:
    """(rows, 1, length, prefix_length + length) boolean mask for queries that follow a left-padded prefix held
    in the cache: every real prefix key is visible, then causal attention among the queries."""
    keys = torch.arange(prefix_length, device=prefix_pads.device)
    prefix = (keys[None, :] >= prefix_pads[:, None])[:, None, :].expand(-1, length, -1)
    positions = torch.arange(length, device=prefix_pads.device)
    causal = (positions[None, :] <= positions[:, None])[None].expand(len(prefix_pads), -1, -1)
    return torch.cat([prefix, causal], dim=-1)[:, None]


def _shared_prompt_hidden(forward: HFForward | LeanForward, samples: Seq[Sample], pad_id: int,
                          width: int) -> torch.Tensor:
    """Two forwards: the distinct prompts (left-padded, so each ends in the last column and its last hidden
    state predicts the first response token), then all responses against their prompt's cached keys and values,
    copied per sample with index_select (whose backward sums the samples' gradients into the one prompt)."""
    device = forward.device
    prompts, owner = prompt_layout(samples)
    prompt_length = max(len(p) for p in prompts)
    pads = torch.tensor([prompt_length - len(p) for p in prompts], device=device)
    prompt_ids = torch.full((len(prompts), prompt_length), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        prompt_ids[row, prompt_length - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
    positions = (torch.arange(prompt_length, device=device)[None, :] - pads[:, None]).clamp(min=0)
    # Equal lengths need no mask: attention then takes the plain-causal kernel.
    mask = left_padded_causal_mask(pads, prompt_length) if bool(pads.any()) else None
    last, cache = forward(prompt_ids.to(device), positions, mask, keep_cache=True, last_only=True)
    owners = torch.tensor(owner, device=device)
    first = last[:, -1].index_select(0, owners)[:, None]
    if width == 1:
        return first
    # The last response token predicts nothing, so the second forward stops one short of the longest response.
    response_ids = torch.full((len(samples), width - 1), pad_id, dtype=torch.long)
    for row, sample in enumerate(samples):
        fed = sample.response[:-1]
        response_ids[row, : len(fed)] = torch.tensor(fed, dtype=torch.long)
    starts = torch.tensor([len(s.prompt) for s in samples], device=device)
    positions = starts[:, None] + torch.arange(width - 1, device=device)
    mask = prefix_causal_mask(pads.index_select(0, owners), prompt_length, width - 1)
    prefix = [(keys.index_select(0, owners), values.index_select(0, owners)) for keys, values in cache]
    rest = forward(response_ids.to(device), positions, mask, prefix=prefix)[0]
    return torch.cat([first, rest], dim=1)


@torch.no_grad()
def fill_logprobs(model: torch.nn.Module, samples: Seq[Sample], attribute: str, temperature: float,
                  token_budget: int, pad_id: int, compute_dtype: str = "float32", lockstep: bool = False,
                  lean: bool = True) -> None:
    """Set `sample.<attribute>` (one value per response token) for every sample, micro-batch by micro-batch
    (`lean` as in `response_logprobs`).

    lockstep: every rank runs as many forward passes as the rank with the most micro-batches (an FSDP
    model gathers its parameters in each forward, a collective), its samples balanced over them, padding with
    one-token passes where it has fewer samples than passes."""
    was_training = model.training
    model.eval()
    share, batches = plan_micro_batches(model, samples, token_budget, lockstep=lockstep)
    if lockstep:
        from deepscaler.trainer import distributed as dist

        device = compute_device(model)
        for _ in range(dist.all_reduce_max(len(batches)) - len(batches)):
            model(input_ids=torch.full((1, 1), pad_id, dtype=torch.long, device=device), use_cache=False)
    for indices in batches:
        chunk = [samples[i] for i in indices]
        logp = response_logprobs(model, chunk, pad_id, temperature, compute_dtype, share_prompts=share,
                                 lean=lean)[0].cpu()
        for row, sample in enumerate(chunk):
            setattr(sample, attribute, logp[row, : len(sample.response)].clone())
    if is_sharded(model):  # FSDP keeps the root's parameters gathered after a forward without gradients
        model.reshard()
    model.train(was_training)
