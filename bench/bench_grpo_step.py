"""One GRPO step, deepscaler's Trainer against TRL's GRPOTrainer, side by side in one run.

Workload (the same on both sides): the 4.3M-parameter "tiny" Qwen2 built locally, 8 prompts x 8 samples x 64 new
tokens per step, single-digit addition problems rendered with deepscaler's prompt template and the model's chat
template, reward = deepscaler's `math_reward`. Matched settings: temperature 0.6, top-p 1, no top-k; AdamW lr 1e-6,
betas (0.9, 0.999), weight decay 0.01, constant schedule, grad-norm clip 1.0; KL coefficient beta = 0.001 with the
k3 estimator against a frozen reference model; clip epsilon 0.2 both ways; no entropy bonus; token-mean loss
(TRL's "dapo"); group std advantage normalisation; on the CPU, float32 weights with bfloat16 compute (TRL:
bf16=True, autocast; deepscaler: model.dtype=bfloat16, the precision both of its presets train in), or all float32
with `--dtype float32`; rollouts in float32 on deepscaler's side; torch's own thread count on both sides unless
`--threads N`. `--mini-batches 1` (default): one
optimizer step on all 64 responses per generation (TRL: per_device_train_batch_size=64, steps_per_generation=1,
num_iterations=1); `--mini-batches 2`: two optimizer steps of 32 per generation (TRL: per_device_train_batch_size=32,
steps_per_generation=2), and a "step" is then one generation and both its updates.

End-of-sequence is switched off on both sides (deepscaler: `ignore_eos` on every request; TRL: `min_new_tokens`),
so every response has exactly 64 tokens; the mean lengths are printed to show it (`--allow-eos` turns this off).
The first step of each side is a warm-up and is not timed. The two trainers take turns step by step (TRL waits
between its steps on a pipe), so a machine shared with other work slows both alike; CPU seconds per step are
printed too (deepscaler's include its rollout and reward worker processes), and the ratio is given of the mean
step, of the median of step pairs and of CPU time.

TRL runs in a child process with its own interpreter (`--trl-python`, default /work/trlenv/bin/python), e.g.

    python3 -m venv /work/trlenv
    /work/trlenv/bin/pip install torch==2.13.0
    /work/trlenv/bin/pip install trl 'transformers>=5.16.1,<5.20' datasets

and imports deepscaler's reward from this checkout's src/ (PYTHONPATH), so it needs no install of deepscaler.
Without that interpreter only deepscaler is measured.

    .venv/bin/python bench/bench_grpo_step.py [--steps 6] [--mini-batches 1|2] [--dtype float32|bfloat16]
        [--threads N] [--trl-python PATH | --skip-trl] [--allow-eos]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRL_PYTHON = "/work/trlenv/bin/python"
PHASES = ("generate", "score", "logprobs", "update", "sync", "other")

# The settings both trainers get; the names are this file's own.
SETTINGS = {
    "prompts": 8, "samples": 8, "new_tokens": 64, "temperature": 0.6, "top_p": 1.0, "lr": 1e-6,
    "weight_decay": 0.01, "grad_clip": 1.0, "beta": 0.001, "clip": 0.2, "seed": 0, "dtype": "bfloat16",
}


# -- inputs -------------------------------------------------------------------------------------------------
def make_inputs(root: Path, count: int = 64) -> dict[str, Path]:
    """The tiny model, deepscaler's training file and the same problems as TRL's conversational data set."""
    from deepscaler.inference import make_tiny_model
    from deepscaler.prompting import user_turn

    rng = random.Random(0)
    rows = []
    for index in range(count):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"id": index, "problem": f"What is {a}+{b}?", "answer": str(a + b)})
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    trl_rows = [{"prompt": [{"role": "user", "content": user_turn(row["problem"])}],
                 "answer": row["answer"]} for row in rows]
    trl_data = root / "trl_train.jsonl"
    trl_data.write_text("".join(json.dumps(row) + "\n" for row in trl_rows))
    model = make_tiny_model(root / "model", preset="tiny", seed=0)
    return {"model": model, "train": train, "trl_data": trl_data}


# -- deepscaler ---------------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """CPU seconds of this process and of its live deepscaler workers (rollout engine, reward scorer),
    all threads: a step's work done in a worker counts as the step's."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            mine = int(fields[1]) == os.getpid() and b"-m\0deepscaler." in (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if mine:
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime, in clock ticks
    return total


def force_full_length(llm) -> None:
    """Make every request of this LLM ignore end-of-sequence, so each response runs to max_tokens."""
    original = llm.generate

    def generate(inputs, params=None, *args, **kwargs):
        if isinstance(params, list):
            params = [dataclasses.replace(p, ignore_eos=True) for p in params]
        elif params is not None:
            params = dataclasses.replace(params, ignore_eos=True)
        return original(inputs, params, *args, **kwargs)

    llm.generate = generate


def run_deepscaler(inputs: dict[str, Path], root: Path, steps: int, mini_batches: int, allow_eos: bool,
                   after_step=None) -> dict:
    """`steps` deepscaler steps; `after_step()` runs after each one (outside the timing)."""
    from deepscaler.config import load_config
    from deepscaler.trainer.config import TrainConfig
    from deepscaler.trainer.loop import Trainer

    s = SETTINGS
    overrides = [
        f"model.path={inputs['model']}", f"model.dtype={s['dtype']}", f"data.train_files=[{inputs['train']}]",
        f"out_dir={root / 'deepscaler_run'}", "tensorboard=false", "validation.every_steps=0", f"seed={s['seed']}",
        f"stages.0.prompts_per_step={s['prompts']}", f"stages.0.samples_per_prompt={s['samples']}",
        f"stages.0.max_response_tokens={s['new_tokens']}", "stages.0.max_steps=1000",
        f"rollout.temperature={s['temperature']}", f"rollout.top_p={s['top_p']}", "rollout.top_k=-1",
        f"optim.lr={s['lr']}", f"optim.weight_decay={s['weight_decay']}", f"optim.grad_clip={s['grad_clip']}",
        "optim.beta1=0.9", "optim.beta2=0.999", "optim.warmup_steps=0", "optim.epochs=1",
        f"optim.mini_batches={mini_batches}",
        f"algorithm.kl_coef={s['beta']}", "algorithm.kl_kind=k3", "algorithm.entropy_coef=0",
        f"algorithm.clip_low={s['clip']}", f"algorithm.clip_high={s['clip']}", "algorithm.loss_agg=token-mean",
        "algorithm.adv_norm=std",
    ]
    config = load_config(TrainConfig, None, overrides)
    trainer = Trainer(config)
    if not allow_eos:
        force_full_length(trainer.llm)
    stage = config.stages[0]
    records = []
    try:
        for _ in range(steps):
            start, cpu = time.perf_counter(), cpu_seconds()
            metrics = trainer.step(stage)
            wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            split = {name: float(metrics.get(f"time/{name}", 0.0)) for name in PHASES[:-1]}
            split["other"] = wall - sum(split.values())
            records.append({"seconds": wall, "cpu": cpu, "split": split,
                            "length": float(metrics["response_length/mean"]), "reward": float(metrics["reward/mean"])})
            if after_step is not None:
                after_step()
    finally:
        trainer.close()
    return {"records": records, "prompt_length": _mean_prompt_length(trainer)}


def _mean_prompt_length(trainer) -> float:
    prompts = trainer.sampler.prompts
    return sum(len(p.token_ids) for p in prompts) / len(prompts)


# -- TRL (runs in the child process, under TRL's interpreter) ---------------------------------------------
def trl_worker(spec_path: str, reply_fd: int) -> None:
    """Train with GRPOTrainer, one step per "go" line on stdin; "ready" on `reply_fd` before each step and at
    the end, so the parent can interleave these steps with deepscaler's (both then see the same machine load)."""
    spec = json.loads(Path(spec_path).read_text())
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from deepscaler.reward import math_reward

    s, mini_batches = spec["settings"], spec["mini_batches"]
    rows = [json.loads(line) for line in Path(spec["trl_data"]).read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])

    def reward(prompts, completions, answer, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [math_reward(text, gold) for text, gold in zip(texts, answer)]

    batch = s["prompts"] * s["samples"]
    args = GRPOConfig(
        output_dir=str(Path(spec["out_dir"])), use_cpu=True, bf16=s["dtype"] == "bfloat16", fp16=False, seed=s["seed"],
        max_steps=spec["steps"] * mini_batches, logging_steps=1, report_to="none", save_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0,
        per_device_train_batch_size=batch // mini_batches, gradient_accumulation_steps=1,
        steps_per_generation=mini_batches, num_iterations=1, num_generations=s["samples"],
        max_completion_length=s["new_tokens"], temperature=s["temperature"], top_p=s["top_p"], top_k=0,
        generation_kwargs=None if spec["allow_eos"] else {"min_new_tokens": s["new_tokens"]},
        learning_rate=s["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=s["weight_decay"],
        adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=s["grad_clip"],
        beta=s["beta"], epsilon=s["clip"], loss_type="dapo", scale_rewards="group", entropy_coef=0.0,
        model_init_kwargs={"dtype": "float32"},
    )
    reply = os.fdopen(reply_fd, "w", buffering=1)
    phases: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    logged_by_step: dict[int, dict] = {}
    steps: list[dict] = []  # wall and CPU seconds of each step (one generation and its optimizer steps)

    class Clock(TrainerCallback):
        started: tuple[float, float] | None = None

        def _turn(self) -> None:
            if self.started is not None:  # the step that just ended, logging and next batch included
                steps.append({"seconds": time.perf_counter() - self.started[0],
                              "cpu": time.process_time() - self.started[1]})
            reply.write("ready\n")
            sys.stdin.readline()
            self.started = (time.perf_counter(), time.process_time())

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step % mini_batches == 0:
                self._turn()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logged_by_step.setdefault(state.global_step, {}).update(logs or {})

        def on_train_end(self, args, state, control, **kwargs):
            steps.append({"seconds": time.perf_counter() - self.started[0],
                          "cpu": time.process_time() - self.started[1]})

    trainer = GRPOTrainer(model=str(spec["model"]), reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Clock()])

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:  # keyed by the GRPO step being run (global_step counts finished optimizer steps)
                phases[name][trainer.state.global_step // mini_batches] += time.perf_counter() - start

        return wrapper

    trainer._generate_and_score_completions = timed("prepare", trainer._generate_and_score_completions)
    trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)
    trainer._calculate_rewards = timed("score", trainer._calculate_rewards)
    trainer.train()

    records = []
    for index, step in enumerate(steps):
        generate, score, prepare = (phases[name][index] for name in ("generate", "score", "prepare"))
        split = {"generate": generate, "score": score, "logprobs": prepare - generate - score,
                 "update": step["seconds"] - prepare, "sync": 0.0, "other": 0.0}
        logged = logged_by_step.get(index * mini_batches + 1, {})
        records.append({**step, "split": split, "length": float(logged.get("completions/mean_length", "nan")),
                        "reward": float(logged.get("reward", "nan"))})
    prompts = [tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
               for row in rows]
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in prompts]
    import trl

    result = {"records": records, "prompt_length": sum(lengths) / len(lengths), "version": trl.__version__}
    Path(spec["result"]).write_text(json.dumps(result))
    reply.write("ready\n")


class TrlSide:
    """The TRL child process, driven one step at a time."""

    def __init__(self, python: str, inputs: dict[str, Path], root: Path, steps: int, mini_batches: int,
                 allow_eos: bool, torch_threads: int | None = None) -> None:
        self.spec = {"settings": SETTINGS, "model": str(inputs["model"]), "trl_data": str(inputs["trl_data"]),
                     "out_dir": str(root / "trl_run"), "result": str(root / "trl_result.json"), "steps": steps,
                     "mini_batches": mini_batches, "allow_eos": allow_eos}
        spec_path = root / "trl_spec.json"
        spec_path.write_text(json.dumps(self.spec))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        threads = ["--threads", str(torch_threads)] if torch_threads else []
        self.log = root / "trl.log"
        read_end, write_end = os.pipe()
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [python, str(Path(__file__).resolve()), "--trl-worker", str(spec_path), "--reply-fd", str(write_end),
                 *threads],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env, pass_fds=(write_end,),
                text=True)
        os.close(write_end)
        self.replies = os.fdopen(read_end)
        self.alive = self._wait()

    def _wait(self) -> bool:
        if self.replies.readline():
            return True
        self.process.wait()
        tail = "\n".join(self.log.read_text().splitlines()[-30:])
        print(f"TRL run failed (exit {self.process.returncode}); last lines of its output:\n{tail}")
        return False

    def step(self) -> None:
        if self.alive:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
            self.alive = self._wait()

    def result(self) -> dict | None:
        if self.process.stdin:
            self.process.stdin.close()
        code = self.process.wait()
        path = Path(self.spec["result"])
        if not self.alive or code != 0 or not path.exists():
            return None
        return json.loads(path.read_text())


# -- report -------------------------------------------------------------------------------------------------
def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def summarize(result: dict) -> dict:
    warm = result["records"][1:]
    seconds = [r["seconds"] for r in warm]
    return {
        "steps": len(warm), "mean": statistics.fmean(seconds), "median": statistics.median(seconds),
        "min": min(seconds), "cpu": statistics.fmean(r["cpu"] for r in warm),
        "split": {name: statistics.fmean(r["split"][name] for r in warm) for name in PHASES},
        "length": statistics.fmean(r["length"] for r in warm), "reward": statistics.fmean(r["reward"] for r in warm),
        "first": result["records"][0]["seconds"], "prompt_length": result["prompt_length"],
    }


def report(ours: dict, theirs: dict | None, mini_batches: int, trl_version: str | None,
           pairs: list[tuple[dict, dict]]) -> float | None:
    """Print the table; returns the ratio TRL / deepscaler of the mean warm step (None without TRL)."""
    s = SETTINGS
    print(f"\nGRPO step on the tiny model: {s['prompts']} prompts x {s['samples']} samples x {s['new_tokens']} new "
          f"tokens, {mini_batches} optimizer step(s) per generation, beta={s['beta']}, T={s['temperature']}, "
          f"{s['dtype']}, {torch_threads()} torch threads")
    columns = [("deepscaler", ours)] + ([(f"TRL {trl_version}", theirs)] if theirs else [])
    print(f"{'':30}" + "".join(f"{name:>14}" for name, _ in columns))
    rows = [
        ("s / warm step (mean)", "mean", "{:.3f}"), ("s / warm step (median)", "median", "{:.3f}"),
        ("s / warm step (min)", "min", "{:.3f}"), ("CPU s / warm step (+ workers)", "cpu", "{:.3f}"),
        ("first step (untimed), s", "first", "{:.3f}"), ("warm steps timed", "steps", "{:d}"),
        ("mean response tokens", "length", "{:.1f}"), ("mean prompt tokens", "prompt_length", "{:.1f}"),
        ("mean reward", "reward", "{:.3f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:30}" + "".join(f"{fmt.format(summary[key]):>14}" for _, summary in columns))
    print("time split, s per warm step:")
    for name in PHASES:
        print(f"  {name:28}" + "".join(f"{summary['split'][name]:>14.3f}" for _, summary in columns))
    if theirs is None:
        return None
    ratio = theirs["mean"] / ours["mean"]
    paired = statistics.median(b["seconds"] / a["seconds"] for a, b in pairs)
    print(f"ratio TRL / deepscaler: {ratio:.2f}x of the mean warm step, {paired:.2f}x median of step pairs, "
          f"{theirs['cpu'] / ours['cpu']:.2f}x of CPU time  ({'meets' if ratio >= 2 else 'MISSES'} the 2x target)")
    print("(steps alternate between the two trainers, so both see the same machine load; TRL's 'logprobs' is the "
          "rest of _generate_and_score_completions (reference log-probs, padding, advantages), its 'update' the "
          "rest of the step; it needs no weight sync)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per side, the first one untimed (default 6)")
    parser.add_argument("--mini-batches", type=int, default=1, choices=(1, 2),
                        help="optimizer steps per generation on both sides (default 1)")
    parser.add_argument("--trl-python", default=DEFAULT_TRL_PYTHON, help="interpreter with trl installed")
    parser.add_argument("--skip-trl", action="store_true", help="measure deepscaler only")
    parser.add_argument("--allow-eos", action="store_true", help="let responses end at end-of-sequence")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16",
                        help="training compute dtype on both sides (bfloat16, the default: mixed precision with "
                             "float32 weights, as deepscaler's presets train)")
    parser.add_argument("--threads", type=int, help="torch threads on both sides (default: torch's own choice)")
    parser.add_argument("--trl-worker", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--reply-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.trl_worker:
        trl_worker(args.trl_worker, args.reply_fd)
        return 0
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is not timed)")
    SETTINGS["dtype"] = args.dtype
    with tempfile.TemporaryDirectory(prefix="bench_grpo_") as folder:
        root = Path(folder)
        inputs = make_inputs(root)
        trl = None
        if args.skip_trl:
            pass
        elif not Path(args.trl_python).exists():
            print(f"TRL skipped: no interpreter at {args.trl_python} (make a venv with trl in it, see this file's "
                  "docstring, or pass --trl-python PATH)")
        else:
            print(f"TRL ({args.trl_python}): setting up ...", flush=True)
            trl = TrlSide(args.trl_python, inputs, root, args.steps, args.mini_batches, args.allow_eos, args.threads)
            if not trl.alive:
                trl.result()
                trl = None
        print(f"{args.steps} steps each{', interleaved with TRL' if trl else ''} ...", flush=True)
        ours = run_deepscaler(inputs, root, args.steps, args.mini_batches, args.allow_eos,
                              after_step=trl.step if trl else None)
        raw = trl.result() if trl else None
        theirs = summarize(raw) if raw else None
        pairs = list(zip(ours["records"][1:], raw["records"][1:])) if raw else []
        report(summarize(ours), theirs, args.mini_batches, raw.get("version") if raw else None, pairs)
        load = os.getloadavg()[1]
        if load > 0.75 * (os.cpu_count() or 1):
            print(f"note: load average {load:.1f} on {os.cpu_count()} cores over the last 5 minutes: other work shared "
                  "the CPU, so times are inflated (with several torch threads, unevenly: try --threads 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
