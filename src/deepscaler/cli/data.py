"""`deepscaler data`: training data. `prepare` curates problem sets into one file; `convert` changes layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepscaler.cli import UsageError
from deepscaler.prompting import DEFAULT_BENCHMARKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    prepare = sub.add_parser("prepare", help="read, clean, deduplicate and decontaminate problems into one file",
                             description="Curate problem sets into one training file, with a report of every step.")
    prepare.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="JSON, JSONL or Parquet files, directories of them, or hf:owner/name[:split]")
    prepare.add_argument("--out", type=Path, required=True, help="output file: .parquet, .jsonl or .json")
    prepare.add_argument("--format", choices=("deepscaler", "verl"), default="deepscaler",
                         help="layout of the output (default: deepscaler, read by `deepscaler train`)")
    prepare.add_argument("--report", type=Path, metavar="DIR",
                         help="where <name>.report.md and .report.json go (default: beside the output)")
    prepare.add_argument("--decontaminate", default=None, metavar="LIST",
                         help="comma-separated benchmark names or files to remove overlaps with, or 'none' "
                              f"(default: {','.join(DEFAULT_BENCHMARKS)})")
    prepare.add_argument("--data-dir", help="where benchmark names are looked up (see `deepscaler eval`)")
    prepare.add_argument("--ngram", type=int, default=8, help="token n-gram size for decontamination (default 8)")
    prepare.add_argument("--overlap", type=float, default=0.5,
                         help="share of n-grams shared with one benchmark problem that marks a row (default 0.5)")
    prepare.add_argument("--near-threshold", type=float, default=0.9,
                         help="MinHash Jaccard similarity that makes a near duplicate (default 0.9; at most "
                              "about 0.95 with 128 permutations)")
    prepare.add_argument("--no-near-dedup", action="store_true", help="skip near-duplicate removal")
    prepare.add_argument("--near-any-answer", action="store_true",
                         help="drop near duplicates even when their answers differ (default: keep such variants)")
    prepare.add_argument("--shingle", type=int, default=3, help="tokens per shingle for near duplicates (default 3)")
    prepare.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the MinHash permutations and --shuffle")
    prepare.add_argument("--shuffle", action="store_true", help="write the rows in a seeded random order")
    prepare.add_argument("--split", default="train", help="split name written to verl's extra_info (default train)")
    prepare.add_argument("--examples", type=int, default=5, help="dropped rows shown per step in the report")
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")
    convert = sub.add_parser("convert", help="rewrite a training file in another layout or format, rows unchanged",
                             description="Rewrite a training file (either layout) as .parquet/.jsonl/.json.")
    convert.add_argument("input", help="a .parquet, .jsonl or .json training file (deepscaler or verl layout)")
    convert.add_argument("--out", type=Path, required=True, help="output file: .parquet, .jsonl or .json")
    convert.add_argument("--format", choices=("deepscaler", "verl"), default="deepscaler", help="output layout")
    convert.add_argument("--split", default="train", help="split name written to verl's extra_info (default train)")


def run(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        return _prepare(args)
    if args.action == "convert":
        return _convert(args)
    raise UsageError("give an action: prepare or convert (see deepscaler data --help)")


def _check_output(path: Path) -> None:
    from deepscaler.data.sources import SUFFIXES

    if path.suffix not in SUFFIXES:
        raise UsageError(f"{path}: output must end in {', '.join(SUFFIXES)}")
    if path.is_dir():
        raise UsageError(f"--out {path}: is a folder, give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {path}: cannot create folder {error.filename} ({error.strerror or error})") from None


def _prepare(args: argparse.Namespace) -> int:
    from deepscaler.data import DecontaminationError, Settings, SourceUnavailable, prepare

    _check_output(args.out)
    if args.report is not None and args.report.exists() and not args.report.is_dir():
        raise UsageError(f"--report {args.report}: not a folder")
    if args.decontaminate is None:
        benchmarks = DEFAULT_BENCHMARKS
    elif args.decontaminate.strip().lower() == "none":
        benchmarks = ()
    else:
        benchmarks = tuple(name.strip() for name in args.decontaminate.split(",") if name.strip())
    try:
        settings = Settings(
            decontaminate=benchmarks, data_dir=args.data_dir, ngram=args.ngram, overlap=args.overlap,
            near_threshold=None if args.no_near_dedup else args.near_threshold,
            near_same_answer=not args.near_any_answer, shingle=args.shingle, num_perm=args.num_perm,
            seed=args.seed, shuffle=args.shuffle, layout=args.format, split=args.split, examples=args.examples,
            progress=not args.quiet,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        report = prepare(args.inputs, args.out, settings, args.report)
    except (SourceUnavailable, DecontaminationError) as error:
        raise UsageError(str(error)) from None
    except OSError as error:  # inputs' read faults are counted inside; this is the output or report failing
        raise UsageError(f"{error.filename or args.out}: cannot write ({error.strerror or error})") from None
    for step in report.to_dict()["steps"]:
        print(f"{step['step']:>14}: {step['rows_in']:>8} in  {step['dropped']:>7} dropped  {step['rows_out']:>8} out")
    stem = args.out.name[: -len(args.out.suffix)]
    where = args.report if args.report is not None else args.out.parent
    dropped = report.rows_read - report.rows_written
    print(f"{report.rows_written} of {report.rows_read} rows written to {args.out} ({dropped} dropped) "
          f"in {report.seconds:.1f} s; "
          f"report: {where / (stem + '.report.md')}")
    unread = [item for item in report.inputs if item["error"]]
    for item in unread:
        print(f"warning: {item['input']}: {item['error']}", file=sys.stderr)
    return 1 if unread else 0  # the output holds what could be read; a script should still notice the rest


def _convert(args: argparse.Namespace) -> int:
    from deepscaler.data import BadRow, SourceError, Writer, to_record
    from deepscaler.data.sources import Unparsable, expand, label, open_rows

    _check_output(args.out)
    try:
        (spec,) = expand([args.input])
    except SourceError as error:
        raise UsageError(str(error)) from None
    except ValueError:
        raise UsageError(f"{args.input}: give one file, not a directory of several") from None
    bad, fault = 0, None
    with Writer(args.out, args.format, args.split) as writer:
        try:
            for number, row in open_rows(spec):
                try:
                    if isinstance(row, Unparsable):
                        raise BadRow(row.reason)
                    writer.write(to_record(row, label(spec), number - 1))
                except BadRow as error:
                    bad += 1
                    print(f"skipped {spec} row {number}: {error}", file=sys.stderr)
        except SourceError as error:  # the rows before the fault are kept, as `prepare` keeps them
            if not writer.count and not bad:
                raise UsageError(f"{spec}: {error}") from None  # nothing could be read: no output at all
            fault = error
    print(f"{writer.count} rows written to {args.out}" + (f"; {bad} bad rows skipped" if bad else ""))
    if fault is not None:
        print(f"warning: {spec}: {fault}", file=sys.stderr)
    return 1 if bad or fault else 0
