"""Generate-and-grade evaluation through any inference engine, resumable problem by problem.

An output directory holds config.json (every choice that affects the numbers), samples.jsonl (one line per
sample, appended chunk by chunk, so an interrupted run resumes where it stopped), summary.json and summary.md.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deepscaler.data.problems import load, resolve
from deepscaler.data.records import Record
from deepscaler.eval.results import SampleRecord, read_records, score_records, write_records
from deepscaler.eval.runner import EvalError, EvalSettings, finish, versions
from deepscaler.files import replaced_atomically, sha256_file, write_json_atomic
from deepscaler.prompting import conversation
from deepscaler.reward import RewardScorer


def problem_seed(seed: int, benchmark: str, problem_id: str) -> int:
    """A per-problem seed, so a problem's samples do not depend on batching or on resuming, nor on the
    folder a benchmark file was read from (only its file name counts)."""
    digest = hashlib.sha256(f"{seed}/{Path(benchmark).name}/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def messages_for(problem: Record, settings: EvalSettings) -> list[dict[str, str]]:
    try:
        return conversation(problem.problem, settings.prompt_template, settings.system_prompt)
    except (KeyError, IndexError, ValueError) as error:
        raise EvalError(f"prompt template must use {{problem}} and double any other braces ({error})") from None


def template_prefills_think(tokenizer: Any) -> bool | None:
    """Whether the chat template opens <think> itself (the model then writes only </think>)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                             add_generation_prompt=True)
    return rendered.rstrip().endswith("<think>")


def template_default_system_prompt(tokenizer: Any) -> str | None:
    """The system prompt the chat template adds to a conversation that has none (SmolLM2's and Qwen2.5's
    templates do), or None. Found by rendering a conversation with a marker as its system message and one
    without: where the marker stood, the second holds the template's own text."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    marker = "\x1edeepscaler system prompt\x1e"
    user = [{"role": "user", "content": "x"}]
    try:
        bare = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        marked = tokenizer.apply_chat_template([{"role": "system", "content": marker}, *user], tokenize=False,
                                               add_generation_prompt=True)
    except Exception:  # a template that refuses system messages has no default one either
        return None
    if marker not in marked:
        return None
    before, after = marked.split(marker, 1)
    if len(bare) > len(before) + len(after) and bare.startswith(before) and bare.endswith(after):
        return bare[len(before) : len(bare) - len(after)]
    return None


def run_eval(llm: Any, settings: EvalSettings, out_dir: Path, model: dict[str, Any], workers: int = 2,
             show: bool = True) -> dict:
    """Evaluate `llm` (anything with deepscaler's LLM.generate/chat) on settings.benchmarks into out_dir;
    `show` prints the results table at the end."""
    suites = {name: load(name, settings.data_dir, settings.limit) for name in settings.benchmarks}
    tokenizer = llm.get_tokenizer() if hasattr(llm, "get_tokenizer") else None
    config = {
        "model": model,
        "settings": asdict(settings),
        "chat_template_prefills_think": template_prefills_think(tokenizer) if settings.chat_template else None,
        # What the model was told when settings.system_prompt is None: a template may add its own.
        "chat_template_default_system_prompt": (template_default_system_prompt(tokenizer)
                                                if settings.chat_template else None),
        "benchmark_files": benchmark_files(settings),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    # Chunks partition the whole problem list, and an unfinished chunk is redone whole: a chunk's samples
    # then come from the same batch as in an uninterrupted run, so resuming gives the same tokens.
    items = [(name, p) for name, problems in suites.items() for p in problems]
    size = settings.problems_per_chunk
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    records = _resume(out_dir, config, settings.n, chunks)
    done = {(r.benchmark, r.problem_id) for r in records}
    todo = [chunk for chunk in chunks if (chunk[0][0], chunk[0][1].id) not in done]
    write_json_atomic(out_dir / "config.json", {**config, "versions": versions(),
                                                "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    from rich.progress import Progress

    with RewardScorer(workers=workers, timeout=settings.grader_timeout, think=settings.think) as scorer, \
            Progress(transient=True) as progress:
        task = progress.add_task("evaluating", total=len(items), completed=len(done))
        for chunk in todo:
            new = sample_and_grade(llm, chunk, settings, scorer)
            write_records(out_dir / "samples.jsonl", new)
            records.extend(new)
            progress.advance(task, len(chunk))
    return finish(out_dir, records, config, title=f"{model.get('name', 'model')}", show=show)


def sample_and_grade(
    llm: Any, items: list[tuple[str, Record]], settings: EvalSettings, scorer: RewardScorer
) -> list[SampleRecord]:
    """settings.n graded samples for each (benchmark, problem): the step shared by evaluation runs and
    by validation during training."""
    from deepscaler.inference import SamplingParams

    params = [SamplingParams(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                             max_tokens=settings.max_tokens, n=settings.n,
                             seed=problem_seed(settings.seed, name, p.id)) for name, p in items]
    if settings.chat_template:
        outputs = llm.chat([messages_for(p, settings) for _, p in items], params, use_tqdm=False)
    else:
        outputs = llm.generate([messages_for(p, settings)[-1]["content"] for _, p in items], params, use_tqdm=False)
    records = [
        SampleRecord(name, p.id, c.index, c.text, p.answers, length=len(c.token_ids), finish_reason=c.finish_reason)
        for (name, p), output in zip(items, outputs) for c in output.outputs
    ]
    score_records(records, scorer)
    return records


def benchmark_files(settings: EvalSettings) -> dict[str, dict[str, str]]:
    """Each benchmark's file and the SHA-256 of its bytes: a changed file is a changed evaluation."""
    paths = {name: resolve(name, settings.data_dir) for name in settings.benchmarks}
    return {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in paths.items()}


def check_resumable(out_dir: Path, config: dict[str, Any], model_known: bool = True) -> None:
    """Refuse, naming every setting that differs, to add samples to a folder holding those of another run.

    `config` holds what is known so far of "model", "settings" and "benchmark_files" (so this can run before a
    model loads); with `model_known` False only the model fields it gives are compared (a hub commit is known
    only once the model is resolved, and run_eval checks again then)."""
    previous = out_dir / "config.json"
    if not (out_dir / "samples.jsonl").exists():
        return
    if not previous.is_file():  # run_eval writes it before any sample: without it, whose samples are these?
        raise EvalError(f"{out_dir} holds samples.jsonl but no config.json, so not what made them: use another --out")
    try:
        old = json.loads(previous.read_bytes().decode("utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        raise EvalError(f"{previous}: not readable ({error}); use another --out") from None
    old_model = _identity(old.get("model") if isinstance(old.get("model"), dict) else {})
    new_model = _identity(config.get("model") or {})
    if not model_known:
        old_model = {key: value for key, value in old_model.items() if key in new_model}
    changed = _differences(old_model, new_model, "model") + _differences(old.get("settings"), config["settings"], "")
    old_files = old.get("benchmark_files") if isinstance(old.get("benchmark_files"), dict) else {}
    common = [name for name in config["benchmark_files"] if name in old_files]  # added ones show in benchmarks
    changed += _differences({name: old_files[name] for name in common},
                            {name: config["benchmark_files"][name] for name in common}, "benchmark_files")
    if changed:
        raise EvalError(f"{out_dir} holds a run with other settings (earlier -> now): {'; '.join(changed)}. "
                        "Give the same ones to resume, or another --out")


def _differences(old: Any, new: Any, where: str) -> list[str]:
    """`key: old -> new` for each leaf that differs between two JSON trees; dict keys as dotted paths."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(new) + [key for key in old if key not in new]
        return [line for key in keys
                for line in _differences(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))]
    return [] if old == new else [f"{where}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 50 else text[:47] + "..."


def _resume(out_dir: Path, config: dict, n: int, chunks: list[list[tuple[str, Record]]]) -> list[SampleRecord]:
    """Samples already written for whole chunks, when out_dir holds a run with the same configuration."""
    samples = out_dir / "samples.jsonl"
    if not samples.exists():
        return []
    check_resumable(out_dir, config)
    records = read_records(samples)
    per_problem: dict[tuple[str, str], int] = {}
    for record in records:
        key = (record.benchmark, record.problem_id)
        per_problem[key] = per_problem.get(key, 0) + 1
    finished = {(name, p.id) for chunk in chunks
                if all(per_problem.get((name, p.id)) == n for name, p in chunk) for name, p in chunk}
    kept = [r for r in records if (r.benchmark, r.problem_id) in finished]
    with replaced_atomically(samples) as temporary:
        write_records(temporary, kept)  # drops a torn last line and half-written chunks
    return kept


def _identity(model: dict[str, Any]) -> dict[str, Any]:
    """What identifies a model across runs: not the folder it was loaded from, which for a hub id is a cache
    path that may differ between machines or HF_HOME settings (its id, revision and commit do not)."""
    return {key: value for key, value in model.items() if key != "folder"}
