"""The GRPO training loop. Each step, top to bottom: draw prompts, sample groups, score, compute advantages,
update the policy, push the new weights to the rollout engine, log. Stages lengthen the response budget."""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from deepscaler import config as config_io
from deepscaler.algorithms import group_advantages, overlong_penalty
from deepscaler.data.problems import load
from deepscaler.data.records import Record
from deepscaler.eval.generate import sample_and_grade
from deepscaler.eval.results import SampleRecord, summarize
from deepscaler.eval.runner import EvalSettings
from deepscaler.inference.hub import resolve_model
from deepscaler.reward import RewardScorer
from deepscaler.trainer import distributed as dist
from deepscaler.trainer.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from deepscaler.trainer.config import StageConfig, TrainConfig
from deepscaler.trainer.data import PromptSampler, render_prompts
from deepscaler.trainer.metrics import MetricsLog
from deepscaler.trainer.rollout import engine_options, generate_groups, informative_groups, score
from deepscaler.trainer.sequences import fill_logprobs
from deepscaler.trainer.stages import awaits_plateau, stage_should_end
from deepscaler.trainer.startup import check_prompts_split, check_run_folder
from deepscaler.trainer.update import update_policy


class TrainingAborted(RuntimeError):
    """Too many consecutive non-finite updates; the last checkpoint is kept."""


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, progress: Any = None,
                 on_stage_end: Any = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # per-file bars on every load and checkpoint are noise here
        dist.init_from_env(timedelta(minutes=config.distributed.timeout_minutes))
        self.config, self.run_dir, self.progress = config, Path(config.out_dir), progress
        check_prompts_split(config, dist.world_size())
        check_run_folder(self.run_dir)
        # Which checkpoint to resume from is settled before any model loads (CheckpointError: one line, exit 2).
        resume_from = self._find_resume_point() if resume else None
        self.on_stage_end = on_stage_end  # called as on_stage_end(trainer, stage) when a stage ends
        torch.manual_seed(config.seed)
        with dist.main_rank_first():  # rank 0 downloads a hub model into the cache, where the other ranks find it
            model_dir = resolve_model(config.model.path, config.model.revision)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Parameters stay float32 (the optimizer's master copy); model.dtype=bfloat16 computes under autocast, and
        # under FSDP gathers each layer as bfloat16 (its gradients reduced in float32).
        policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if config.model.gradient_checkpointing:
            policy.gradient_checkpointing_enable()
        self.reference = self._new_reference(policy) if config.algorithm.kl_coef else None
        bf16 = config.model.dtype == "bfloat16"
        self.policy = dist.wrap(policy.to(dist.device()).train(), config.distributed.strategy, mixed_precision=bf16)
        self.optimizer = self._new_optimizer()
        self.sampler, self.validation = self._load_data()
        self.llm = self._start_rollout_engine(model_dir)
        self.scorer = RewardScorer(workers=2).start()  # so no training step pays their start-up
        self.log = (MetricsLog(self.run_dir, config.tensorboard, config.wandb_project, dataclasses.asdict(config))
                    if dist.is_main() else None)
        self.state: dict[str, Any] = {"step": 0, "stage": 0, "steps_in_stage": 0, "truncation": [],
                                      "validation": [], "bad_streak": 0, "stage_starts": [0],
                                      "solve_none_streak": 0, "optimizer_steps": 0, "reference_changed": False}
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_io.save_config(config, self.run_dir / "config.yaml")
        if resume_from is not None:
            self._resume(resume_from)

    # -- set-up ---------------------------------------------------------------------------------------
    def _new_reference(self, policy: torch.nn.Module) -> torch.nn.Module:
        """The frozen reference policy: a copy of the policy's starting weights in the compute dtype (it only runs
        forward), made on the host. Under FSDP it is sharded like the policy, and with
        distributed.reference_offload its shards stay in host memory; otherwise a plain module on this device."""
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        if self.config.model.dtype == "bfloat16":
            # Parameters only: buffers such as the rotary inverse frequencies keep float32 (rounded to bfloat16 they
            # would shift the angle at position 24,000 by tens of radians).
            for param in reference.parameters():
                param.data = param.data.to(torch.bfloat16)
        if self.config.distributed.strategy == "fsdp" and dist.world_size() > 1:
            return dist.shard_frozen(reference, offload=self.config.distributed.reference_offload)
        return reference.to(dist.device())

    def _new_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        params = list(self.policy.parameters())
        # The fused kernel is several times faster on small models; FSDP's sharded parameters need foreach.
        fused = not any(isinstance(p.data, DTensor) for p in params)
        return torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay,
                                 fused=fused)

    def _start_rollout_engine(self, model_dir: str) -> Any:
        """The rollout engine, an `LLM` (a subclass may start another kind: bench/gpu_smoke.py does)."""
        from deepscaler.inference import LLM

        return LLM(model=model_dir, engine=self.config.rollout.engine, seed=self.config.seed,
                   **engine_options(self.config, dist.world_size()))

    def _load_data(self) -> tuple[PromptSampler, list[Record]]:
        data = self.config.data
        problems: list[Record] = []
        for index, path in enumerate(data.train_files):
            problems += [dataclasses.replace(p, id=f"{index}:{p.id}") for p in load(path)]
        prompts, dropped = render_prompts(problems, self.tokenizer, data.prompt_template, data.system_prompt,
                                          data.max_prompt_tokens)
        if not prompts:
            raise config_io.ConfigError("data.train_files: no problems in the files" if not dropped else
                                        f"data.train_files: no problem fits data.max_prompt_tokens="
                                        f"{data.max_prompt_tokens} ({dropped} longer, in tokens of the chat template)")
        if dropped and dist.is_main():
            print(f"dropped {dropped} prompts longer than data.max_prompt_tokens={data.max_prompt_tokens}")
        validation = [p for path in data.val_files for p in load(path)]
        return PromptSampler(prompts, self.config.seed, data.shuffle), validation

    def _find_resume_point(self) -> Path:
        """The newest intact checkpoint; each damaged or incomplete one passed over is a one-line warning."""
        folder, passed_over = find_checkpoint(self.run_dir)
        if passed_over and dist.is_main():
            sys.stderr.write("".join(f"warning: {line}\n" for line in passed_over) + f"resuming from {folder}\n")
        return folder

    def _resume(self, folder: Path) -> None:
        self.state = load_checkpoint(folder, self.policy, self.optimizer, self.reference)
        # Checkpoints written before this key always carried the reference: keep carrying it when one did.
        self.state.setdefault("reference_changed", (folder / "reference").is_dir())
        if self.state["reference_changed"] and self.reference is not None and not (folder / "reference").is_dir():
            raise CheckpointError(f"{folder}: the run had reset its reference model, but the checkpoint holds no "
                                  "reference/ to restore it from")
        self.sampler.load_state(self.state["sampler"])
        self._sync_weights()
        if self.log is not None:
            self.log.truncate_after(self.state["step"])

    # -- the run --------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        stages = self.config.stages
        while self.state["stage"] < len(stages):
            stage = stages[self.state["stage"]]
            metrics = self.step(stage)
            validated = self._validation_due(stage)
            if validated:
                metrics.update(self.validate(stage))
            reason = stage_should_end(stage, self.state["steps_in_stage"], self.state["truncation"],
                                      self.state["validation"])
            if reason and not validated and self.validation and self.config.validation.at_stage_end:
                metrics.update(self.validate(stage))  # the stage's final weights, measured before the next stage
            metrics["stage/ended"] = bool(reason)
            self._watch_solve_none(metrics)
            if self.log is not None:
                self.log.log(metrics)
            if reason:
                self._next_stage(reason)
            if self.state["step"] % self.config.checkpoint.every_steps == 0 or reason:
                self.checkpoint()
        return self.state

    def step(self, stage: StageConfig) -> dict[str, Any]:
        """One GRPO step; returns its metrics."""
        config, times = self.config, {}
        step = self.state["step"] + 1
        start = time.perf_counter()

        # 1-3. Prompts (every rank draws the same global batch and takes its block), a group of responses
        # per prompt, scored by the verifier.
        samples, score_stats = self._collect_rollouts(stage, step, times)
        # A colocated vLLM engine frees its GPU memory for the log-prob and update passes: level 2 drops the
        # weights too, since _sync_weights sends all of them (engines without sleep mode ignore this).
        self.llm.sleep(level=2)
        num_groups = stage.prompts_per_step
        accuracy = [s.reward for s in samples]
        if config.algorithm.overlong_cache:
            lengths = torch.tensor([len(s.response) for s in samples], dtype=torch.float32)
            penalty, _ = overlong_penalty(lengths, stage.max_response_tokens, config.algorithm.overlong_cache,
                                          factor=config.algorithm.overlong_factor)
            for sample, value in zip(samples, penalty.tolist()):
                sample.reward += value

        # 4. Advantages within each group.
        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
        advantages, adv_metrics = group_advantages(rewards, stage.samples_per_prompt, eps=config.algorithm.adv_eps,
                                                   norm=config.algorithm.adv_norm)
        for sample, advantage in zip(samples, advantages.tolist()):
            sample.advantage = advantage

        # 5. Log-probs of the sampled tokens under the current (old) and reference weights.
        mark = time.perf_counter()
        temperature = config.rollout.temperature
        budget = config.optim.micro_batch_tokens
        dtype = config.model.dtype
        # With one optimizer step per training step the old policy is the current one: its log-probs come
        # free with the update's own forward (as TRL does), and a separate pass is skipped.
        single_update = config.optim.mini_batches * config.optim.epochs == 1 and not config.algorithm.is_correction
        if not single_update:
            fill_logprobs(dist.unwrap(self.policy), samples, "old_logp", temperature, budget, self.pad_id, dtype,
                          lockstep=dist.is_sharded(self.policy), lean=config.model.lean_forward)
        if self.reference is not None:
            fill_logprobs(self.reference, samples, "ref_logp", temperature, budget, self.pad_id, dtype,
                          lockstep=dist.is_sharded(self.reference), lean=config.model.lean_forward)
        times["logprobs"] = time.perf_counter() - mark

        # 6. Policy update; 7. push the new weights to the rollout engine.
        mark = time.perf_counter()
        # The learning rate is a function of the optimizer steps so far (trainer_state.json keeps the count).
        update = update_policy(self.policy, self.optimizer, samples, num_groups, config,
                               stage.max_response_tokens, self.pad_id, temperature, seed=config.seed * 7919 + step,
                               optimizer_step=self.state.get("optimizer_steps", 0))
        self.state["optimizer_steps"] = self.state.get("optimizer_steps", 0) + int(update.pop("optimizer_steps"))
        times["update"] = time.perf_counter() - mark
        mark = time.perf_counter()
        self._sync_weights()
        times["sync"] = time.perf_counter() - mark
        self._check_finite(update)

        # 8. Metrics, summed over ranks where they are counts.
        lengths = [len(s.response) for s in samples]
        truncated = [float(s.truncated) for s in samples]
        gap, gap_tokens = update.pop("logprob_gap_sum", 0.0), update.pop("logprob_gap_tokens_sum", 0.0)
        if not single_update:  # the separate old-log-prob pass covered every sample
            gap, gap_tokens = _logprob_gap_sum(samples), sum(lengths)
        totals = dist.all_reduce_sum({
            "n": len(samples), "correct": sum(accuracy), "reward": sum(s.reward for s in samples),
            "length": sum(lengths), "truncated": sum(truncated), "gap": gap, "gap_tokens": gap_tokens,
            "tokens": sum(lengths) + sum(len(s.prompt) for s in samples),
        })
        n = max(totals["n"], 1)
        elapsed = time.perf_counter() - start
        self.state.update(step=step, steps_in_stage=self.state["steps_in_stage"] + 1, sampler=self.sampler.state())
        self.state["truncation"].append(totals["truncated"] / n)
        metrics = {
            "step": step, "stage": self.state["stage"], "stage/name": stage.name, "world_size": dist.world_size(),
            "stage/max_response_tokens": stage.max_response_tokens,
            "reward/mean": totals["reward"] / n, "accuracy": totals["correct"] / n,
            "response_length/mean": totals["length"] / n,
            "response_length/max": max(dist.all_gather_objects(max(lengths, default=0))),
            "truncation_ratio": totals["truncated"] / n,
            "groups/solve_none": adv_metrics.get("groups/solve_none", 0.0),
            "groups/solve_all": adv_metrics.get("groups/solve_all", 0.0),
            "tokens_per_second": totals["tokens"] / elapsed, "time/step": elapsed,
            **{f"time/{k}": v for k, v in times.items()}, **score_stats,
            **{f"actor/{k}": v for k, v in update.items()},
        }
        if totals["gap_tokens"]:  # not measured when the update left every sample out (all advantages 0)
            metrics["rollout/logprob_gap"] = totals["gap"] / totals["gap_tokens"]
        if self.progress is not None:
            self.progress(metrics)
        return metrics

    # -- pieces of a step -----------------------------------------------------------------------------
    def _collect_rollouts(self, stage: StageConfig, step: int, times: dict[str, float]) -> tuple[list, dict]:
        """This rank's scored samples; with dynamic sampling, only informative groups, refilled from more
        prompts for up to algorithm.max_sampling_rounds rounds."""
        per_rank = stage.prompts_per_step // dist.world_size()
        first = dist.rank() * per_rank
        # The ranks of one tensor-parallel vLLM engine must give it the same requests: each generates all their
        # blocks (every rank draws the same global batch) and keeps its own.
        shared = self.config.rollout.tensor_parallel_size
        engine_first = first - dist.rank() % shared * per_rank
        own = slice((first - engine_first) * stage.samples_per_prompt,
                    (first - engine_first + per_rank) * stage.samples_per_prompt)
        kept: list = []
        stats: dict[str, float] = {"score/timeouts": 0.0, "score/no_answer": 0.0, "sampling/rounds": 0.0}
        rounds = self.config.algorithm.max_sampling_rounds if self.config.algorithm.dynamic_sampling else 1
        for round_ in range(rounds):
            prompts = self.sampler.draw(stage.prompts_per_step)[engine_first : engine_first + shared * per_rank]
            mark = time.perf_counter()
            samples, texts, golds = generate_groups(self.llm, prompts, engine_first, stage, self.config.rollout,
                                                    self.config.seed, step, round_)
            samples, texts, golds = samples[own], texts[own], golds[own]
            times["generate"] = times.get("generate", 0.0) + time.perf_counter() - mark
            mark = time.perf_counter()
            for key, value in score(samples, texts, golds, self.scorer).items():
                stats[key] += value
            times["score"] = times.get("score", 0.0) + time.perf_counter() - mark
            stats["sampling/rounds"] += 1
            stats["sampling/accuracy"] = sum(s.reward for s in samples) / max(len(samples), 1)
            if not self.config.algorithm.dynamic_sampling:
                return samples, stats
            kept += informative_groups(samples)
            if len(kept) >= per_rank:
                break
        kept = kept[:per_rank]
        stats["sampling/kept_groups"] = float(len(kept))
        for index, group in enumerate(kept):  # renumber: group ids are positions in the global batch
            for sample in group:
                sample.group = first + index
        return [sample for group in kept for sample in group], stats

    def _sync_weights(self) -> None:
        """Stream the policy's weights into the rollout engine one parameter at a time (FSDP: each gathered as it
        goes), into a sleeping engine's woken weight memory before its KV cache takes its memory back."""
        self.llm.wake_up(["weights"])
        self.llm.update_weights(dist.full_parameters(self.policy, self.llm.engine.dtype))
        self.llm.wake_up(["kv_cache"])

    def _check_finite(self, update: dict[str, float]) -> None:
        if update.get("bad_steps", 0) == 0:
            self.state["bad_streak"] = 0
            return
        self.state["bad_streak"] += 1
        print(f"warning: step {self.state['step'] + 1} had a non-finite loss or gradient norm; update skipped")
        if self.state["bad_streak"] >= self.config.optim.max_bad_steps:
            raise TrainingAborted(f"{self.state['bad_streak']} steps in a row with non-finite updates; "
                                  f"the last checkpoint in {self.run_dir / 'checkpoints'} is intact")

    def _validation_due(self, stage: StageConfig) -> bool:
        """Periodic validation; with every_steps=0, whenever the stage's plateau rule needs a fresh pass@1."""
        every = self.config.validation.every_steps
        if not self.validation:
            return False
        if every == 0:
            return awaits_plateau(stage, self.state["truncation"])
        return self.state["step"] % every == 0

    def _watch_solve_none(self, metrics: dict[str, Any]) -> None:
        """Count consecutive steps where every group is solve-none; warn once when the streak reaches
        solve_none_warn_steps (no reward anywhere: the policy moves on KL and entropy alone)."""
        streak = self.state.get("solve_none_streak", 0) + 1 if metrics["groups/solve_none"] >= 1.0 else 0
        self.state["solve_none_streak"] = streak
        metrics["groups/solve_none_streak"] = streak
        if streak == self.config.solve_none_warn_steps:
            warning = (f"warning: no response earned a reward for {streak} steps in a row (every group solve-none): "
                       "the model may never box an answer; check the prompt template, the budget, or warm it up")
            metrics["warning"] = warning
            if dist.is_main():
                print(warning)

    def validate(self, stage: StageConfig, label: str = "val") -> dict[str, float]:
        """pass@1 and pass@k on the held-out problems, through the evaluation code; all ranks get the result.

        Each rollout engine (one rank's, or tensor_parallel_size ranks') samples and grades its share of the
        problems. A problem's samples are seeded by the problem alone, so the merged records, and the metrics, are
        those of one rank validating everything."""
        v = self.config.validation
        settings = EvalSettings(n=v.samples_per_problem, temperature=v.temperature, top_p=v.top_p,
                                max_tokens=stage.max_response_tokens, seed=self.config.seed,
                                prompt_template=self.config.data.prompt_template,
                                system_prompt=self.config.data.system_prompt)
        problems = self.validation[: v.max_problems] if v.max_problems else self.validation
        # Shares go to engines: the ranks of one tensor-parallel vLLM engine generate together, the same share.
        per_engine = self.config.rollout.tensor_parallel_size
        share = dist.deal(problems, dist.world_size() // per_engine)[dist.rank() // per_engine]
        records = sample_and_grade(self.llm, [("val", p) for p in share], settings, self.scorer) if share else []
        shares = dist.all_gather_objects(_per_problem(records, v.samples_per_problem))[::per_engine]
        summary = summarize(record for problem in dist.undeal(shares) for record in problem)
        result = {f"{label}/{k}": float(summary[k]) for k in summary
                  if k.startswith(("pass@", "maj@")) or k in ("truncation_rate", "mean_length")}
        if label == "val":
            self.state["validation"].append(result["val/pass@1"])
        return result

    def _next_stage(self, reason: str) -> None:
        config = self.config
        ended = config.stages[self.state["stage"]]
        if dist.is_main():
            print(f"stage {ended.name} ended at step {self.state['step']}: {reason}")
        if self.on_stage_end is not None:
            self.on_stage_end(self, ended)
        self.state.update(stage=self.state["stage"] + 1, steps_in_stage=0, truncation=[], validation=[])
        self.state["stage_starts"].append(self.state["step"])
        if self.state["stage"] >= len(config.stages):
            return
        stage = config.stages[self.state["stage"]]
        if stage.reset_reference and self.reference is not None:
            dist.copy_weights(self.policy, self.reference)
            self.state["reference_changed"] = True
        if stage.reset_optimizer:
            self.optimizer = self._new_optimizer()
            self.state["optimizer_steps"] = 0  # fresh moments: warm up again

    def checkpoint(self) -> Path:
        """Write a checkpoint of the run so far (a collective: every rank writes its shards). The reference goes in
        only once a stage has reset it: until then it is the starting model, which resume loads from model.path
        anyway (a model-sized saving in every checkpoint)."""
        reference = self.reference if self.state["reference_changed"] else None
        return save_checkpoint(self.run_dir, self.state["step"], self.policy, self.tokenizer, self.optimizer,
                               self.state, reference, self.config.checkpoint.keep_last)

    def close(self) -> None:
        self.scorer.close()
        self.llm.close()
        if self.log is not None:
            self.log.close()


def _per_problem(records: list[SampleRecord], n: int) -> list[list[SampleRecord]]:
    """sample_and_grade's records (n per problem, problem after problem) as one list per problem, ready for
    the gather; without the responses' text, which the metrics do not read and which at long budgets would
    make the gather heavy."""
    light = [dataclasses.replace(record, response="") for record in records]
    return [light[start : start + n] for start in range(0, len(light), n)]


def _logprob_gap_sum(samples: list) -> float:
    """Sum over sampled tokens of |engine log-prob − trainer log-prob| (divided by the token count, the
    per-token gap: how far the rollout engine's numbers are from the policy being trained)."""
    return sum(float((s.rollout_logp - s.old_logp).abs().sum()) for s in samples
               if s.rollout_logp is not None and s.old_logp is not None)
