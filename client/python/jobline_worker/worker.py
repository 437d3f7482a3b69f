"""A small library for writing Jobline workers in Python.

A worker leases PENDING jobs of the types it can run from Jobline's
WorkerService (jobline/v2/worker.proto), runs each with an *executor*, and
finishes it. The library does the protocol; an executor only does the work:

    def count_files(ctx: JobContext) -> Outcome:
        ctx.report(stages=[stage_update("Count", progress=0.1)])
        ...
        ctx.check()            # stop here if the job was cancelled
        return Outcome(stages=[stage_update("Count", status=SUCCESS,
                                            progress=1.0)])

    with grpc.insecure_channel("localhost:50051") as channel:
        Worker(channel, {"data_storage_sync": count_files}, "host/1").run()

What the library guarantees:

* One job at a time. While its executor runs, a heartbeat thread renews
  the lease every third of the lease duration, counted from the last
  renewal (every report renews it too); each renewal asks for the full
  duration again.
* Cancel: when a heartbeat or report answers cancel_requested, the next
  ``ctx.report()``/``ctx.log()``/``ctx.check()`` raises JobCancelled; the
  library then calls FinishJob with FAILURE (the server records REVOKED).
* Lease lost: FAILED_PRECONDITION (or NOT_FOUND) from any call about the
  job means the server no longer lets this worker change it. Calls raise
  LeaseLost, and the library moves on without FinishJob.
* Errors of the executor: JobFailed(error) finishes the job with FAILURE and
  that error; any other exception does too, with the exception as the
  error. A SUCCESS the server refuses with INVALID_ARGUMENT (a stage not at
  1.0, a bad parameter) is sent again as FAILURE naming the refusal, so the
  job never waits for its lease to run out.
* UNAVAILABLE is retried: LeaseJobs with a growing pause, the calls about
  a job a few times within its lease.

Thread safety: Worker.stop() may be called from any thread (or a signal
handler); everything else of a Worker runs on the thread that called
run(). A JobContext is shared by the executor and the heartbeat thread and
is safe for that.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence

import grpc
from google.protobuf import duration_pb2
from google.protobuf import json_format
from google.protobuf import struct_pb2

from jobline.v2 import jobs_pb2
from jobline.v2 import worker_pb2
from jobline.v2 import worker_pb2_grpc

_log = logging.getLogger("jobline_worker")

STARTED = jobs_pb2.STARTED
SUCCESS = jobs_pb2.SUCCESS
FAILURE = jobs_pb2.FAILURE

DEFAULT_LEASE_SECONDS = 60.0
# How long one LeaseJobs call waits for a job (the server's maximum).
DEFAULT_WAIT_SECONDS = 30.0
# Deadline of each call about a leased job.
DEFAULT_CALL_TIMEOUT_SECONDS = 10.0

# The error FinishJob carries for a job stopped at a cancel request.
CANCELLED_ERROR = "cancelled: the worker stopped at the cancel request"

# Tries of a call about a leased job that answers UNAVAILABLE, and the
# pause before the first retry (doubled each time).
_CALL_TRIES = 4
_CALL_RETRY_PAUSE_SECONDS = 0.5

# Pauses between LeaseJobs calls that failed with a transient code.
_LEASE_RETRY_FIRST_SECONDS = 1.0
_LEASE_RETRY_MAX_SECONDS = 30.0
_TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.RESOURCE_EXHAUSTED)

# Codes that mean the lease is gone: the worker must not touch the job.
_LOST_CODES = (grpc.StatusCode.FAILED_PRECONDITION,
               grpc.StatusCode.NOT_FOUND)

# Any JSON value: None, bool, int, float, str, list or dict.
JsonValue = Any


class WorkerError(Exception):
    """The worker cannot go on (e.g. the server has no WorkerService or
    refuses the worker's job types)."""


class LeaseLost(Exception):
    """The server no longer holds the job for this worker: the lease ran
    out, another worker holds it, or the job is final or gone. Nothing more
    may be reported; the library does not call FinishJob."""


class JobCancelled(Exception):
    """A client cancelled the job. Raised by JobContext after a heartbeat or
    report answered cancel_requested; the library then finishes the job."""


class WorkerStopping(Exception):
    """The worker was told to stop at once. The job is left to its lease,
    which runs out and puts it back to PENDING."""


class JobFailed(Exception):
    """Raised by an executor to finish its job with FAILURE.

    `error` is the reason shown in the job's log; `stages` and `logs` are
    applied before the status, and `result` is stored as the job's result.
    """

    def __init__(self, error: str,
                 stages: Sequence[worker_pb2.StageUpdate] = (),
                 logs: Sequence[worker_pb2.WorkerLogLine] = (),
                 result: JsonValue = None) -> None:
        super().__init__(error)
        self.error = error
        self.stages = list(stages)
        self.logs = list(logs)
        self.result = result


@dataclasses.dataclass
class Outcome:
    """What a successful executor returns; FinishJob sends it with SUCCESS.

    Every stage of the job must be at progress 1.0 once `stages` are
    applied, or the server refuses the SUCCESS.
    """

    # Stored as the job's result; None leaves it unset (rendered null).
    result: JsonValue = None
    stages: Sequence[worker_pb2.StageUpdate] = ()
    logs: Sequence[worker_pb2.WorkerLogLine] = ()


def json_value(value: JsonValue) -> struct_pb2.Value:
    """`value` (any JSON value) as a google.protobuf.Value."""
    return json_format.ParseDict(value, struct_pb2.Value())


def stage_update(name: str = "", key: str = "",
                 status: Optional[int] = None,
                 progress: Optional[float] = None,
                 params: Optional[Mapping[str, JsonValue]] = None
                 ) -> worker_pb2.StageUpdate:
    """A StageUpdate. With `name` the server creates the stage when missing
    (its key is the slug of the name unless `key` is given); with only
    `key` the stage must exist. `status` is STARTED, SUCCESS or FAILURE,
    None keeps it; `progress` is 0..1, None keeps it; `params` maps a
    parameter's display name to its new value."""
    update = worker_pb2.StageUpdate(key=key, name=name)
    if status is not None:
        update.status = status
    if progress is not None:
        update.progress = progress
    for param_name, value in (params or {}).items():
        update.params.add(name=param_name, value=json_value(value))
    return update


def log_line(message: str, level: str = "INFO") -> worker_pb2.WorkerLogLine:
    """A log line; `level` is DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    return worker_pb2.WorkerLogLine(level=level, message=message)


class JobContext:
    """The one leased job an executor runs, and the way to report on it.

    Every method that calls the server may raise LeaseLost (stop at once,
    report nothing more), JobCancelled (the report was applied, but the job
    was cancelled: stop and return or re-raise) or grpc.RpcError for any
    other failure of the call.
    """

    def __init__(self, stub: worker_pb2_grpc.WorkerServiceStub,
                 channel: grpc.Channel, lease: worker_pb2.Lease,
                 stopping: threading.Event,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT_SECONDS) -> None:
        """`stopping` is set when the worker must stop at once; every
        renewal asks for `lease_seconds` more; `channel` is offered to
        executors for the other services (CatalogService)."""
        self._stub = stub
        self._stopping = stopping
        self._lease_duration = _duration(lease_seconds)
        self._call_timeout = call_timeout
        self.channel = channel
        self.lease_id: str = lease.lease_id
        self.attempt: int = lease.attempt
        # The job as leased (status STARTED), with its reference records.
        self.job: jobs_pb2.Job = lease.job
        self._cancel_requested = threading.Event()
        self._lease_lost = threading.Event()
        self._lock = threading.Lock()
        self._renewed_at = time.monotonic()  # Guarded by _lock.
        self._expires_at = lease.expires_at.ToDatetime(  # Guarded by _lock.
            tzinfo=datetime.timezone.utc)

    @property
    def job_id(self) -> int:
        """The leased job's id."""
        return self.job.id

    @property
    def cancel_requested(self) -> bool:
        """Whether the server has answered cancel_requested."""
        return self._cancel_requested.is_set()

    @property
    def lease_lost(self) -> bool:
        """Whether a call answered that the lease is gone."""
        return self._lease_lost.is_set()

    @property
    def expires_at(self) -> datetime.datetime:
        """When the lease runs out unless renewed (server time, UTC)."""
        with self._lock:
            return self._expires_at

    def seconds_since_renewal(self) -> float:
        """Seconds since the last call that renewed the lease (or since the
        lease was granted)."""
        with self._lock:
            return time.monotonic() - self._renewed_at

    def check(self) -> None:
        """Returns if the executor may go on; otherwise raises LeaseLost,
        JobCancelled or WorkerStopping. Call it between steps of long work.
        """
        if self._lease_lost.is_set():
            raise LeaseLost(f"the lease of job {self.job_id} is lost")
        if self._cancel_requested.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if self._stopping.is_set():
            raise WorkerStopping("the worker is stopping")

    def report(self, stages: Sequence[worker_pb2.StageUpdate] = (),
               logs: Sequence[worker_pb2.WorkerLogLine] = ()) -> None:
        """Sends stage updates and log lines (applied in order, together)
        and renews the lease; then raises as check() does."""
        self.check()
        request = worker_pb2.ReportProgressRequest(
            lease_id=self.lease_id, job_id=self.job_id, stages=stages,
            logs=logs, lease_duration=self._lease_duration)
        self._renew(self._call(self._stub.ReportProgress, request))
        self.check()

    def log(self, message: str, level: str = "INFO") -> None:
        """Sends one log line; see report()."""
        self.report(logs=[log_line(message, level)])

    def heartbeat(self) -> None:
        """Renews the lease and records a cancel request. Does not retry
        and does not raise JobCancelled; raises LeaseLost or
        grpc.RpcError."""
        request = worker_pb2.HeartbeatRequest(
            lease_id=self.lease_id, job_id=self.job_id,
            lease_duration=self._lease_duration)
        self._renew(self._call(self._stub.Heartbeat, request, tries=1))

    def finish(self, request: worker_pb2.FinishJobRequest
               ) -> worker_pb2.FinishJobResponse:
        """Sends FinishJob (lease_id and job_id are filled in). Raises
        LeaseLost or grpc.RpcError. After a retried call a LeaseLost may
        mean that the first try did finish the job."""
        request.lease_id = self.lease_id
        request.job_id = self.job_id
        return self._call(self._stub.FinishJob, request)

    def _renew(self, response: Any) -> None:
        """Records a Heartbeat or ReportProgress answer."""
        with self._lock:
            self._renewed_at = time.monotonic()
            self._expires_at = response.expires_at.ToDatetime(
                tzinfo=datetime.timezone.utc)
        if response.cancel_requested and not self.cancel_requested:
            _log.info("job %d: the server asked to cancel", self.job_id)
            self._cancel_requested.set()

    def _call(self, method: Callable[..., Any], request: Any,
              tries: int = _CALL_TRIES) -> Any:
        """Calls `method`, retrying UNAVAILABLE up to `tries` times in all;
        maps the codes of a lost lease to LeaseLost."""
        pause = _CALL_RETRY_PAUSE_SECONDS
        for attempt in range(1, tries + 1):
            try:
                return method(request, timeout=self._call_timeout)
            except grpc.RpcError as error:
                code = error.code()
                if code in _LOST_CODES:
                    self._lease_lost.set()
                    raise LeaseLost(f"{code.name}: {error.details()}") \
                        from error
                if code != grpc.StatusCode.UNAVAILABLE or attempt == tries:
                    raise
                _log.warning("job %d: server unavailable (%s); retrying in "
                             "%.1f s", self.job_id, error.details(), pause)
                time.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")


class _LeaseKeeper(threading.Thread):
    """Sends heartbeats for one job until stop(), whenever `interval`
    seconds have passed since the lease was last renewed."""

    def __init__(self, ctx: JobContext, interval: float) -> None:
        super().__init__(name=f"lease-keeper-{ctx.job_id}", daemon=True)
        self._ctx = ctx
        self._interval = interval
        self._done = threading.Event()

    def stop(self) -> None:
        """Ends the thread (join() to wait for it)."""
        self._done.set()

    def run(self) -> None:
        retry_pause = max(self._interval / 4, 0.05)
        while not self._done.is_set():
            due_in = self._interval - self._ctx.seconds_since_renewal()
            if due_in > 0:
                self._done.wait(due_in)
                continue
            try:
                self._ctx.heartbeat()
            except LeaseLost as lost:
                _log.warning("job %d: heartbeat: %s", self._ctx.job_id, lost)
                return
            except grpc.RpcError as error:
                _log.warning("job %d: heartbeat failed (%s: %s); retrying",
                             self._ctx.job_id, error.code().name,
                             error.details())
                self._done.wait(retry_pause)


# An executor runs one job: it returns an Outcome for SUCCESS, or raises
# JobFailed (or anything else) for FAILURE.
Executor = Callable[[JobContext], Outcome]


class Worker:
    """Leases jobs of the executors' types, runs them one at a time and
    finishes them."""

    def __init__(self, channel: grpc.Channel,
                 executors: Mapping[str, Executor], worker_id: str,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 wait_seconds: float = DEFAULT_WAIT_SECONDS,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT_SECONDS) -> None:
        """`executors` maps job type keys to executors (at least one);
        `worker_id` is shown in the jobs' logs. The heartbeat interval is a
        third of `lease_seconds`. `channel` is not owned: close it after
        run() returns."""
        if not executors:
            raise ValueError("a worker needs at least one executor")
        self._channel = channel
        self._stub = worker_pb2_grpc.WorkerServiceStub(channel)
        self._executors = dict(executors)
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._call_timeout = call_timeout
        self._stop_leasing = threading.Event()
        self._stop_now = threading.Event()

    def stop(self, now: bool = False) -> None:
        """Leases no more jobs: run() returns once the running job (if any)
        is finished. With `now` the running job is also abandoned at its
        executor's next check or report, and left to its lease."""
        self._stop_leasing.set()
        if now:
            self._stop_now.set()

    def run(self, max_jobs: Optional[int] = None) -> int:
        """Leases and runs jobs until stop() or until `max_jobs` jobs were
        handled (None: no limit), and returns how many were handled (run to
        an end, whether finished, failed, cancelled or lost). Raises
        WorkerError when the server refuses LeaseJobs for a reason retrying
        cannot mend."""
        handled = 0
        pause = _LEASE_RETRY_FIRST_SECONDS
        while not self._stop_leasing.is_set() and (max_jobs is None
                                                   or handled < max_jobs):
            try:
                leases = self._lease_jobs()
            except grpc.RpcError as error:
                if error.code() not in _TRANSIENT_CODES:
                    raise WorkerError(
                        f"LeaseJobs failed: {error.code().name}: "
                        f"{error.details()}") from error
                _log.warning("LeaseJobs failed (%s: %s); retrying in %.0f s",
                             error.code().name, error.details(), pause)
                self._stop_leasing.wait(pause)
                pause = min(pause * 2, _LEASE_RETRY_MAX_SECONDS)
                continue
            pause = _LEASE_RETRY_FIRST_SECONDS
            for lease in leases:
                self._run_job(lease)
                handled += 1
        return handled

    def _lease_jobs(self) -> List[worker_pb2.Lease]:
        """One LeaseJobs call for one job, waiting for a job up to the wait
        time; returns early with no lease when stop() is called."""
        request = worker_pb2.LeaseJobsRequest(
            worker_id=self._worker_id, job_types=sorted(self._executors),
            max_jobs=1, lease_duration=_duration(self._lease_seconds),
            wait=_duration(self._wait_seconds))
        future = self._stub.LeaseJobs.future(
            request, timeout=self._wait_seconds + self._call_timeout)
        while True:
            try:
                return list(future.result(timeout=0.2).leases)
            except grpc.FutureTimeoutError:
                if self._stop_leasing.is_set():
                    # A job leased in this very moment returns to PENDING
                    # when its lease runs out.
                    future.cancel()
            except grpc.FutureCancelledError:
                return []

    def _run_job(self, lease: worker_pb2.Lease) -> None:
        """Runs one leased job to its end, heartbeating meanwhile."""
        ctx = JobContext(self._stub, self._channel, lease, self._stop_now,
                         self._lease_seconds, self._call_timeout)
        job = ctx.job
        _log.info("leased job %d \"%s\" (%s, attempt %d)", job.id, job.name,
                  job.job_type.key, ctx.attempt)
        keeper = _LeaseKeeper(ctx, self._lease_seconds / 3)
        keeper.start()
        try:
            request = self._execute(ctx)
        finally:
            # No heartbeat may cross FinishJob; the lease was renewed at
            # most a third of its length ago, ample for FinishJob's retries.
            keeper.stop()
            keeper.join()
        if request is not None:
            self._finish(ctx, request)

    def _execute(self, ctx: JobContext
                 ) -> Optional[worker_pb2.FinishJobRequest]:
        """Runs the executor of the job's type; returns the FinishJob to
        send, or None when the job must be left alone."""
        job_id = ctx.job_id
        executor = self._executors.get(ctx.job.job_type.key)
        if executor is None:
            return _finish_request(
                FAILURE, error=f"this worker cannot run job type "
                f"'{ctx.job.job_type.key}'")
        try:
            outcome = executor(ctx)
        except JobCancelled:
            _log.info("job %d: stopped at the cancel request", job_id)
            return _finish_request(FAILURE, error=CANCELLED_ERROR)
        except LeaseLost as lost:
            _log.warning("job %d: leaving the job: %s", job_id, lost)
            return None
        except WorkerStopping:
            _log.warning("job %d: abandoned because the worker is stopping; "
                         "it returns to PENDING when its lease runs out",
                         job_id)
            return None
        except JobFailed as failed:
            _log.info("job %d failed: %s", job_id, failed.error)
            return _finish_request(FAILURE, failed.result, failed.error,
                                   failed.stages, failed.logs)
        except grpc.RpcError as error:
            _log.exception("job %d: a call failed", job_id)
            return _finish_request(
                FAILURE, error=f"{error.code().name}: {error.details()}")
        except Exception as error:  # pylint: disable=broad-except
            # Whatever the executor did wrong, the job must not hang.
            _log.exception("job %d: the executor raised", job_id)
            return _finish_request(
                FAILURE, error=f"{type(error).__name__}: {error}")
        return _finish_request(SUCCESS, outcome.result, "", outcome.stages,
                               outcome.logs)

    def _finish(self, ctx: JobContext,
                request: worker_pb2.FinishJobRequest) -> None:
        """Sends FinishJob; a refused SUCCESS is sent again as FAILURE."""
        try:
            response = ctx.finish(request)
        except LeaseLost as lost:
            _log.warning("job %d: FinishJob found the lease gone or the job "
                         "final (%s)", ctx.job_id, lost)
            return
        except grpc.RpcError as error:
            refused = error.code() == grpc.StatusCode.INVALID_ARGUMENT
            if not refused or request.status != SUCCESS:
                _log.error("job %d: FinishJob failed (%s: %s); the job "
                           "returns to PENDING when its lease runs out",
                           ctx.job_id, error.code().name, error.details())
                return
            _log.error("job %d: the server refused SUCCESS (%s); finishing "
                       "with FAILURE", ctx.job_id, error.details())
            self._finish(ctx, _finish_request(
                FAILURE, error="the server refused the job's result: "
                f"{error.details()}"))
            return
        _log.info("job %d finished: %s", ctx.job_id,
                  jobs_pb2.JobStatus.Name(response.job.status))


def _finish_request(status: int, result: JsonValue = None, error: str = "",
                    stages: Sequence[worker_pb2.StageUpdate] = (),
                    logs: Sequence[worker_pb2.WorkerLogLine] = ()
                    ) -> worker_pb2.FinishJobRequest:
    """A FinishJobRequest without lease_id and job_id."""
    request = worker_pb2.FinishJobRequest(status=status, error=error,
                                          stages=stages, logs=logs)
    if result is not None:
        request.result.CopyFrom(json_value(result))
    return request


def _duration(seconds: float) -> duration_pb2.Duration:
    """`seconds` as a google.protobuf.Duration."""
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration
