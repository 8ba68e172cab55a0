"""`deepscaler train` on bad input, in process: each problem is one line naming the key or file, exit 2, found
before any model loads; a run folder holding an earlier run is refused unless --resume or --overwrite."""

from pathlib import Path

import pytest

from deepscaler.cli import main
from tests.trainer.conftest import train_args


def _train(capsys, *args: str) -> tuple[int, str]:
    code = main(["train", *args])
    return code, capsys.readouterr().err


@pytest.fixture
def inputs(tmp_path):
    """Files that need not hold a real model: every check here comes before the model is read."""
    (tmp_path / "model").mkdir()
    for name in ("train.jsonl", "val.jsonl"):
        (tmp_path / name).write_text('{"problem": "What is 1+1?", "answer": "2"}\n')
    return tmp_path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=nan", "optim.lr: expected a finite number, got nan"),
        ("algorithm.kl_coef=.inf", "algorithm.kl_coef: expected a finite number, got inf"),
        ("stages.5.max_steps=3", "stages.5.max_steps: index 5 is past the end of the list (indices 0-0); add "
                                 "entries in order, starting at 1"),
        ("optim.mini_batches=0", "optim.mini_batches=0 must be >= 1"),
        ("checkpoint.every_steps=0", "checkpoint.every_steps=0 must be >= 1"),
        ("rollout.top_p=0", "rollout.top_p=0.0 must be in (0, 1]"),
        ("stages.0.truncation_trigger=1.5", "stages.0.truncation_trigger=1.5 must be in (0, 1] or null"),
        ('data.prompt_template="Solve {question}"', "data.prompt_template must use {problem} and double any"),
        ("data.train_files=[]", "data.train_files is empty"),
        ("seed=-1", "seed=-1 must be >= 0"),
        ("data.val_files=[aime2099]", "data.val_files.0: unknown benchmark 'aime2099'"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(inputs, capsys, override, message):
    code, error = _train(capsys, *train_args(inputs, inputs / "run", extra=[override]))
    assert code == 2 and error.count("\n") == 1 and message in error, error
    assert not (inputs / "run").exists()


def test_a_missing_train_file_is_named_with_its_key(inputs, capsys):
    (inputs / "train.jsonl").unlink()
    code, error = _train(capsys, *train_args(inputs, inputs / "run"))
    assert (code, error) == (2, f"deepscaler train: error: data.train_files.0: {inputs / 'train.jsonl'}: no such "
                                "file\n")


@pytest.mark.slow  # the --overwrite case imports the trainer (torch, transformers) before it stops
def test_a_folder_holding_a_run_is_refused_and_overwrite_keeps_other_files(inputs, capsys):
    run = inputs / "run"
    (run / "checkpoints" / "step_000002").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    (run / "notes.txt").write_text("the user's own file\n")
    code, error = _train(capsys, *train_args(inputs, run))
    assert code == 2 and error == (f"deepscaler train: error: out_dir={run} holds an earlier run: continue it with "
                                   f"--resume {run}, start afresh there with --overwrite (deletes its metrics and "
                                   "checkpoints), or choose another out_dir\n")
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'

    code, error = _train(capsys, "--resume", str(run), "--overwrite")
    assert code == 2 and "give one of them" in error
    code, error = _train(capsys, "--resume", str(run), "--out", str(inputs / "elsewhere"))
    assert code == 2 and "drop --out" in error

    # --overwrite clears the earlier run's files; the model folder is empty, so start-up stops right after.
    code, error = _train(capsys, *train_args(inputs, run), "--overwrite")
    assert code == 2 and str(inputs / "model") in error and "Traceback" not in error
    assert sorted(path.name for path in run.iterdir()) == ["notes.txt"]


def test_the_embedded_default_refuses_its_own_earlier_run(tmp_path, capsys):
    (tmp_path / "rl").mkdir()
    (tmp_path / "rl" / "metrics.jsonl").write_text('{"step": 1}\n')
    code, error = _train(capsys, "--out", str(tmp_path))
    assert (code, error) == (2, f"deepscaler train: error: {tmp_path} holds an earlier run of the embedded default: "
                                "give --overwrite to replace it, or another --out\n")
    assert Path(tmp_path / "rl" / "metrics.jsonl").is_file()


def test_a_metrics_line_torn_by_a_kill_does_not_stop_a_resume(tmp_path):
    from deepscaler.trainer.metrics import MetricsLog

    lines = [b'{"step": 1, "note": "\xc3\xa9"}\n', b'{"step": 2}\n', b'{"step": 3}\n']
    (tmp_path / "metrics.jsonl").write_bytes(b"".join(lines) + b'{"step": 4, "note": "\xc3')  # cut inside "é"
    MetricsLog(tmp_path, tensorboard=False).truncate_after(2)
    assert (tmp_path / "metrics.jsonl").read_bytes() == b"".join(lines[:2])
