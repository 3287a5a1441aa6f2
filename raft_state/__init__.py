"""haco's replicated state machine: pure, deterministic, no I/O but the snapshot codec."""

from .codec import DecodeError, canonical, decode, encode
from .commands import (CODE_VERSION, AssignJobs, Assignment, CancelJob, Command, CompleteAttempt, DeregisterWorker,
                       DrainWorker, FailAttempt, MarkWorkerLost, NewJob, PruneJobs, RegisterWorker, RevokeToken,
                       SetClusterVersion, SetPaused, StartAttempt, SubmitJobs, Tick, TimeoutAttempt)
from .outcomes import Accepted, Outcome, Rejected, RejectCode, outcome_from_wire, outcome_to_wire
from .records import (Attempt, AttemptOutcome, Job, JobId, JobSpec, JobStatus, KeyRecord, Worker, WorkerId,
                      WorkerStatus)
from .state import State
from .validate import SpecError, parse_job

__all__ = [
    "CODE_VERSION", "Accepted", "AssignJobs", "Assignment", "Attempt", "AttemptOutcome", "CancelJob", "Command",
    "CompleteAttempt", "DecodeError", "DeregisterWorker", "DrainWorker", "FailAttempt", "Job", "JobId", "JobSpec",
    "JobStatus", "KeyRecord", "MarkWorkerLost", "NewJob", "Outcome", "PruneJobs", "RegisterWorker", "Rejected",
    "RejectCode", "RevokeToken", "SetClusterVersion", "SetPaused", "SpecError", "StartAttempt", "State", "SubmitJobs",
    "Tick", "TimeoutAttempt", "Worker", "WorkerId", "WorkerStatus", "canonical", "decode", "encode",
    "outcome_from_wire", "outcome_to_wire", "parse_job",
]
