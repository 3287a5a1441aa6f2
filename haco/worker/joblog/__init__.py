"""One attempt's output on the worker: the file format, its writer and reader, and retention.

Stdlib only, so a per-attempt runner process can import it without the rest of haco. format.py
describes the files.
"""

from haco.worker.joblog.format import BOTH, BYTES_MAX_DEFAULT, STREAMS, attempt_dir
from haco.worker.joblog.progress import Progress, parse_progress
from haco.worker.joblog.reader import AttemptLogReader, Chunk, LogPage, LogState, read_progress
from haco.worker.joblog.retention import BUDGET_BYTES_DEFAULT, KEEP_S_DEFAULT, SweepResult, sweep
from haco.worker.joblog.writer import TAIL_BYTES_DEFAULT, AttemptLogWriter

__all__ = ["BOTH", "BUDGET_BYTES_DEFAULT", "BYTES_MAX_DEFAULT", "KEEP_S_DEFAULT", "STREAMS", "TAIL_BYTES_DEFAULT",
           "AttemptLogReader", "AttemptLogWriter", "Chunk", "LogPage", "LogState", "Progress", "SweepResult",
           "attempt_dir", "parse_progress", "read_progress", "sweep"]
