"""Hub ids resolve through huggingface_hub: the tiny model, cached as the hub client caches it, used offline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepscaler.inference import LLM, SamplingParams
from deepscaler.inference.hub import ModelNotFoundError, add_to_hub_cache, commit_of, resolve_model

REPO = "tiny-org/tiny-math"
MAIN = hashlib.sha1(b"the main branch").hexdigest()  # commit hashes, as the hub names snapshots
OLD = hashlib.sha1(b"an older commit").hexdigest()
DATA_DIR = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks")


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """An HF_HOME whose cache holds REPO at two commits, laid out as the hub client lays it out: files stored
    once under blobs/, each snapshots/COMMIT/ a folder of links to them, refs/main naming the main commit."""
    home = tmp_path_factory.mktemp("hf-home")
    add_to_hub_cache(tiny_model_dir, REPO, home / "hub", OLD, branch=None)
    add_to_hub_cache(tiny_model_dir, REPO, home / "hub", MAIN)
    return home


def test_the_cache_holds_each_file_once_hard_linked_to_the_folder(hf_home: Path, tiny_model_dir: Path) -> None:
    repo = hf_home / "hub" / f"models--{REPO.replace('/', '--')}"
    assert [(p.name, p.read_text()) for p in (repo / "refs").iterdir()] == [("main", MAIN)]
    files = sorted(p for p in tiny_model_dir.iterdir())
    assert len(list((repo / "blobs").iterdir())) == len(files) >= 4
    for file in files:
        for commit in (MAIN, OLD):
            link = snapshot(hf_home, commit) / file.name
            assert link.is_symlink() and not os.readlink(link).startswith("/")
            assert link.read_bytes() == file.read_bytes()
            assert os.stat(link).st_ino == os.stat(file).st_ino  # a hard link: the weights are not stored twice
            assert link.resolve().name == hashlib.sha256(file.read_bytes()).hexdigest()


def test_a_folder_of_ones_own_gets_a_commit_from_its_contents(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"weights")
    first = commit_of(tmp_path / "a")
    assert len(first) == 40 and int(first, 16) >= 0
    (tmp_path / "a" / "model.safetensors").write_bytes(b"other weights")
    assert commit_of(tmp_path / "a") != first
    (tmp_path / "a" / "model.safetensors").write_bytes(b"weights")
    assert commit_of(tmp_path / "a") == first
    home = tmp_path / "hub"
    assert add_to_hub_cache(tmp_path / "a", "me/mine", home) == home / "models--me--mine" / "snapshots" / first
    with pytest.raises(ValueError, match="not a hub id of the form org/name"):
        add_to_hub_cache(tmp_path / "a", "mine", home)


def snapshot(home: Path, commit: str) -> Path:
    return home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit


@pytest.fixture
def offline(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline with hf_home's cache: in subprocesses through the environment, in this process through
    huggingface_hub's constants (read once, when it was imported)."""
    from huggingface_hub import constants

    use_cache(hf_home, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hf_home


def use_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepscaler.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_a_hub_id_loads_the_cached_snapshot_like_its_folder(offline: Path, tiny_model_dir: Path) -> None:
    greedy = SamplingParams(temperature=0, max_tokens=8)
    with LLM(model=REPO, engine="builtin") as by_id, LLM(model=tiny_model_dir, engine="builtin") as by_folder:
        assert by_id.model_path == snapshot(offline, MAIN)
        from_id = by_id.generate("What is 2 + 3?", greedy, use_tqdm=False)[0].outputs[0].token_ids
        from_folder = by_folder.generate("What is 2 + 3?", greedy, use_tqdm=False)[0].outputs[0].token_ids
    assert list(from_id) == list(from_folder) and len(from_id) == 8


def test_a_revision_picks_its_snapshot(offline: Path) -> None:
    assert resolve_model(REPO) == resolve_model(REPO, "main") == snapshot(offline, MAIN)
    assert resolve_model(REPO, OLD) == snapshot(offline, OLD)
    with pytest.raises(ModelNotFoundError, match=r"at revision 'v9' is neither a local folder .*offline"):
        resolve_model(REPO, "v9")


def test_local_folders_keep_their_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert resolve_model(tiny_model_dir) == tiny_model_dir
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="model folder not found"):
        resolve_model(tmp_path / "missing")  # an absolute path cannot be a hub id: no hub look-up
    with pytest.raises(ModelNotFoundError, match="a revision applies to hub ids"):
        resolve_model(tiny_model_dir, OLD)


def test_an_unreachable_hub_falls_back_to_the_cache(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    use_cache(hf_home, monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing answers
    assert resolve_model(REPO) == snapshot(hf_home, MAIN)
    with pytest.raises(ModelNotFoundError, match=r"in its cache at .*hub \(the hub could not be reached\)"):
        resolve_model("tiny-org/absent")


@pytest.mark.parametrize("command", [
    ["generate", "--prompt", "x"],
    ["eval", "--benchmarks", "aime2024", "--data-dir", DATA_DIR],
    ["chat"],
])
def test_an_unknown_id_is_one_line_naming_both_places(offline: Path, command: list[str]) -> None:
    run = cli(command[0], "--model", "nobody/nothing", *command[1:])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"deepscaler {command[0]}: error: model 'nobody/nothing' is neither a local folder nor found on the Hugging "
        f"Face hub or in its cache at {offline / 'hub'} (offline: HF_HUB_OFFLINE is set)")


def test_train_with_an_unknown_id_is_one_line(offline: Path, tmp_path: Path) -> None:
    problems = tmp_path / "train.jsonl"
    problems.write_text('{"problem": "1+1?", "answer": "2"}\n')
    run = cli("train", "model.path=nobody/nothing", f"data.train_files=[{problems}]", f"out_dir={tmp_path / 'run'}")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "neither a local folder nor found" in run.stderr


def test_eval_of_a_hub_id_records_it_with_its_commit(offline: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run = cli("eval", "--model", REPO, "--revision", OLD, "--engine", "builtin", "--benchmarks", "aime2024",
              "--data-dir", DATA_DIR, "--limit", "2", "--n", "1", "--max-tokens", "4", "--workers", "1",
              "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "summary.json").read_text())["problems"] == 2
    recorded = json.loads((out / "config.json").read_text())["model"]
    assert recorded == {"name": "tiny-math", "path": REPO, "engine": "builtin",
                        "folder": str(snapshot(offline, OLD)), "revision": OLD, "commit": OLD}


def test_the_trainer_resolves_a_hub_id(offline: Path, tmp_path: Path) -> None:
    from deepscaler.config import load_config
    from deepscaler.trainer.config import TrainConfig
    from deepscaler.trainer.loop import Trainer

    problems = tmp_path / "train.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                                for i in range(4)))
    config = load_config(TrainConfig, overrides=[
        f"model.path={REPO}", f"model.revision={OLD}", f"data.train_files=[{problems}]", f"out_dir={tmp_path / 'run'}",
        "tensorboard=false", "algorithm.kl_coef=0", "rollout.data_parallel=1",
    ])
    trainer = Trainer(config)
    try:
        assert trainer.llm.model_path == snapshot(offline, OLD)
        assert os.path.samefile(trainer.tokenizer.name_or_path, snapshot(offline, OLD))
    finally:
        trainer.close()
