"""Training data: read problem sets of any layout, curate them, write them for deepscaler or verl.

    >>> from deepscaler.data import Settings, prepare
    >>> report = prepare(["../shared/data/train"], "train.parquet", Settings(seed=0))  # doctest: +SKIP

Modules: `sources` (reading inputs as row streams), `records` (rows -> `Record`), `answers` (extraction and
gradability), `text` (normal forms and tokens), `dedup`, `decontaminate`, `formats` (writers, verl layout),
`spool` (shuffling on disk), `report` and `prepare` (the pipeline).
"""

from deepscaler.data.decontaminate import DecontaminationError, Decontaminator
from deepscaler.data.dedup import ExactDuplicates, NearDuplicates
from deepscaler.data.formats import LAYOUTS, Writer, read_records, to_row, to_verl
from deepscaler.data.prepare import Settings, prepare
from deepscaler.data.problems import ProblemFileError, load, resolve
from deepscaler.data.records import BadRow, Record, to_record
from deepscaler.data.report import Report
from deepscaler.data.sources import SourceError, SourceUnavailable

__all__ = [
    "LAYOUTS",
    "BadRow",
    "DecontaminationError",
    "Decontaminator",
    "ExactDuplicates",
    "NearDuplicates",
    "ProblemFileError",
    "Record",
    "Report",
    "Settings",
    "SourceError",
    "SourceUnavailable",
    "Writer",
    "load",
    "prepare",
    "read_records",
    "resolve",
    "to_record",
    "to_row",
    "to_verl",
]
