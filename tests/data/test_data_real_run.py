"""The pipeline on the shared training data (AIME 1983-2023 and MATH train) against the five standard benchmarks.

On the lead machine (2 cores): 8,449 rows in, 8,028 out in about 5 s, peak memory about 220 MB. The drops per
step are recorded in the asserts below; bounds rather than exact counts where a verifier change may move them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepscaler.data import read_records

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not found beside the repository")
def test_the_shared_training_set_is_curated(tmp_path):
    # The command in a process of its own: its report's peak memory is then the run's, not this test process's.
    out = tmp_path / "train.parquet"
    run = subprocess.run([sys.executable, "-m", "deepscaler.cli", "data", "prepare", str(SHARED / "train"),
                          "--out", str(out), "--data-dir", str(SHARED / "benchmarks"), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "train.report.json").read_text())
    steps = {step["step"]: step for step in report["steps"]}
    dropped = {name: step["dropped"] for name, step in steps.items()}
    assert [item["rows"] for item in report["inputs"]] == [975, 7474]
    assert report["rows_read"] == 8449 and dropped["read"] == 0
    assert dropped["answer"] == 4  # two null answers and two empty ones in MATH train
    assert 1 <= dropped["gradable"] <= 10  # clock times such as "4\!:\!51\!:\!06 p.m."
    assert 250 <= dropped["exact_dedup"] <= 350  # MATH train repeats many AIME problems
    assert 40 <= dropped["decontaminate"] <= 90  # MATH-500 holds AIME problems; its siblings in MATH train
    assert 30 <= dropped["near_dedup"] <= 80
    assert report["rows_written"] == report["rows_read"] - sum(dropped.values()) == report["output"]["rows"]
    assert report["seconds"] < 60 and report["peak_memory_mb"] < 1024

    examples = {name: {(Path(e["file"]).name, e["row"]) for e in step["examples"]} for name, step in steps.items()}
    assert ("aime_1983_2023.json", 2) in examples["decontaminate"]  # "Let f(x)=|x-p|+|x-15|+|x-p-15|" is MATH-500's
    assert ("math_train.json", 1613) in examples["exact_dedup"]  # the AIME 1991 page-numbering problem, again

    records = list(read_records(out))
    assert len(records) == report["rows_written"] and len({r.id for r in records}) == len(records)
    aime_2024 = {p["problem"] for p in json.loads((SHARED / "benchmarks" / "aime2024.json").read_text())}
    assert not aime_2024 & {r.problem for r in records}
    print(json.dumps({"rows_in_out": {name: (step["rows_in"], step["rows_out"]) for name, step in steps.items()},
                      "seconds": report["seconds"], "peak_memory_mb": report["peak_memory_mb"]}))
