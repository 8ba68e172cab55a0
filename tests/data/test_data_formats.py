import json

import pyarrow.parquet as pq
import pytest

from deepscaler.data import LAYOUTS, BadRow, Record, Writer, read_records, to_record
from deepscaler.data.problems import load
from deepscaler.data.sources import SourceError, Unparsable, open_rows
from deepscaler.prompting import INSTRUCTION

RECORDS = [
    Record("aime-1983-1", "Let $x$, $y$ and $z$ all exceed $1$. Find $\\log_z w$.", ["60"], "aime",
           solution="Converting ... so $\\log_z w = \\boxed{60}$.", difficulty=4.0),
    Record("m-2", "Solve $x^2 = 9$. Enter all solutions, separated by commas.", ["3, -3", "-3, 3"], "math"),
    Record("m-3", "Évaluer $\\dfrac{1}{2} + \\dfrac{1}{3}$ — en fraction.", ["\\frac{5}{6}"], "math",
           solution=None, difficulty=2.0),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_records_survive_a_round_trip(tmp_path, layout, suffix):
    path = tmp_path / f"train{suffix}"
    with Writer(path, layout) as writer:
        for record in RECORDS:
            writer.write(record)
    assert writer.count == 3 and not (tmp_path / f"train{suffix}.part").exists()
    assert list(read_records(path)) == RECORDS


def test_verl_layout_is_verls_deepscaler_recipe(tmp_path):
    path = tmp_path / "train.parquet"
    with Writer(path, "verl", split="test") as writer:
        for record in RECORDS:
            writer.write(record)
    rows = pq.read_table(path).to_pylist()
    assert pq.read_table(path).column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    first = rows[0]
    assert first["data_source"] == "aime" and first["ability"] == "math"
    assert first["prompt"] == [{"role": "user", "content": RECORDS[0].problem + INSTRUCTION}]
    assert first["prompt"][0]["content"].endswith("output the final answer within \\boxed{}.")
    assert first["reward_model"] == {"style": "rule", "ground_truth": "60"}
    assert [row["extra_info"]["index"] for row in rows] == [0, 1, 2]
    assert rows[1]["extra_info"]["split"] == "test" and rows[1]["extra_info"]["answers"] == ["3, -3", "-3, 3"]


def test_a_verl_file_made_elsewhere_is_read(tmp_path):
    # verl's own preprocessing writes no answers list, id or solution: the rest is taken from its columns.
    row = {"data_source": "", "prompt": [{"role": "user", "content": "What is $2+2$?" + INSTRUCTION}],
           "ability": "math", "reward_model": {"style": "rule", "ground_truth": 4}, "extra_info": {"index": 7}}
    record = to_record(row, "deepscaler_train", 0)
    assert record == Record("deepscaler_train-7", "What is $2+2$?", ["4"], "deepscaler_train")


def test_our_output_is_what_the_trainer_loads(tmp_path):
    path = tmp_path / "train.jsonl"
    with Writer(path) as writer:
        for record in RECORDS:
            writer.write(record)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[1]["answer"] == "3, -3" and rows[1]["answers"] == ["3, -3", "-3, 3"]
    problems = load(str(path))
    assert [p.problem for p in problems] == [r.problem for r in RECORDS]
    assert [p.answers for p in problems] == [["60"], ["3, -3", "-3, 3"], ["\\frac{5}{6}"]]  # every alternative
    assert problems[0].difficulty == 4.0


def test_an_empty_output_is_a_valid_file(tmp_path):
    for layout in LAYOUTS:
        path = tmp_path / f"{layout}.parquet"
        Writer(path, layout).close()
        assert list(read_records(path)) == []
    Writer(tmp_path / "empty.json").close()
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "train.parquet"
    with pytest.raises(RuntimeError), Writer(path) as writer:
        writer.write(RECORDS[0])
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_json_arrays_are_streamed_across_chunk_boundaries(tmp_path):
    # 2.4 MB: more than two of the reader's 1 MiB chunks, so elements straddle the boundaries.
    rows = [{"problem": f"Problem {i}: " + "x" * (800 + i % 97), "answer": i} for i in range(2800)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows, indent=1))
    read = list(open_rows(str(path)))
    assert [number for number, _ in read] == list(range(1, 2801))  # as a person counts
    assert [row for _, row in read] == rows


def test_a_truncated_json_array_yields_its_rows_then_fails(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[{"problem": "a", "answer": 1}, {"problem": "b", "answer": 2}, {"problem": "c", "ans')
    rows = []
    with pytest.raises(SourceError, match="invalid JSON in row 3: the rows after it cannot be found"):
        for number, row in open_rows(str(path)):
            rows.append((number, row if isinstance(row, Unparsable) else row["problem"]))
    assert rows == [(1, "a"), (2, "b"), (3, Unparsable("not valid JSON (Unterminated string starting at)"))]


def test_bad_rows_name_their_file_and_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "fine", "answer": "1"}\n{"problem": "odd", "answer": {"value": 1}}\n')
    with pytest.raises(BadRow, match=r"bad.jsonl: row 2: `answer` has an unexpected type \(dict"):
        list(read_records(path))


def test_hugging_face_inputs_are_named_and_fail_in_one_line_offline(monkeypatch):
    from deepscaler.data.sources import SourceUnavailable, expand, label

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # where `datasets` is installed: fail at once, not after time-outs
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert expand(["hf:agentica-org/DeepScaleR-Preview-Dataset"]) == ["hf:agentica-org/DeepScaleR-Preview-Dataset"]
    assert label("hf:agentica-org/DeepScaleR-Preview-Dataset:train") == "agentica-org/DeepScaleR-Preview-Dataset"
    with pytest.raises(SourceUnavailable, match=r"expected hf:owner/name\[:split\]"):
        open_rows("hf:")
    with pytest.raises(SourceUnavailable) as raised:  # no `datasets` here, or no network: either is one line
        open_rows("hf:agentica-org/DeepScaleR-Preview-Dataset:train")
    assert "\n" not in str(raised.value) and str(raised.value).startswith("hf:agentica-org/")
