"""An in-process fake of Jobline's WorkerService and CatalogService.

It follows the contract of jobline/v2/worker.proto closely enough to test
a worker: leases of queued jobs, heartbeats and reports that renew and may
answer cancel_requested, FAILED_PRECONDITION for a lost lease, and
SetCollectionCaptures recording the members. It records every call. It
does not keep a job's stages or status; tests read the calls instead.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, Dict, List, Optional, Set, Tuple

import grpc
from google.protobuf import duration_pb2
from google.protobuf import timestamp_pb2

from jobline.v2 import catalog_pb2
from jobline.v2 import catalog_pb2_grpc
from jobline.v2 import jobs_pb2
from jobline.v2 import worker_pb2
from jobline.v2 import worker_pb2_grpc


class FakeJobline:
    """A gRPC server on a free local port; use as a context manager.

    Tests set the public sets and flags before or while a worker runs;
    every field is guarded by `lock`.
    """

    def __init__(self, with_worker_service: bool = True) -> None:
        self.lock = threading.Condition()
        self.queue: List[jobs_pb2.Job] = []
        # (method name, request) of every call, in arrival order.
        self.calls: List[Tuple[str, Any]] = []
        # Job ids whose heartbeats and reports answer cancel_requested.
        self.cancel: Set[int] = set()
        # Job ids whose lease calls answer FAILED_PRECONDITION.
        self.lost: Set[int] = set()
        # FinishJob with SUCCESS answers INVALID_ARGUMENT.
        self.refuse_success = False
        # SetCollectionCaptures answers this code, when set.
        self.catalog_error: Optional[grpc.StatusCode] = None
        # SetCollectionCaptures answers UNAVAILABLE this many times first.
        self.catalog_unavailable: int = 0
        self.members: Dict[int, List[jobs_pb2.Capture]] = {}
        self._leases = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        if with_worker_service:
            worker_pb2_grpc.add_WorkerServiceServicer_to_server(
                _WorkerServicer(self), self._server)
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
            _CatalogServicer(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"

    def __enter__(self) -> "FakeJobline":
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None)

    def add_job(self, job: jobs_pb2.Job) -> None:
        """Queues `job` for leasing."""
        with self.lock:
            self.queue.append(job)
            self.lock.notify_all()

    def requests(self, method: str) -> List[Any]:
        """The requests of the calls of `method` so far."""
        with self.lock:
            return [request for name, request in self.calls
                    if name == method]

    def methods(self) -> List[str]:
        """The methods called so far, in order, repeats collapsed."""
        with self.lock:
            names = [name for name, _ in self.calls]
        return [name for i, name in enumerate(names)
                if i == 0 or names[i - 1] != name]

    def logs(self, job_id: int) -> List[str]:
        """Messages of the log lines reported for `job_id`, in order."""
        lines: List[str] = []
        with self.lock:
            for name, request in self.calls:
                if name in ("ReportProgress", "FinishJob") and \
                        request.job_id == job_id:
                    lines.extend(line.message for line in request.logs)
        return lines

    # ---- Used by the servicers, with the lock held ----

    def record(self, method: str, request: Any) -> None:
        copy = type(request)()
        copy.CopyFrom(request)
        self.calls.append((method, copy))

    def next_lease_id(self) -> str:
        self._leases += 1
        return f"lease-{self._leases}"


def _expires(duration: duration_pb2.Duration) -> timestamp_pb2.Timestamp:
    """When a lease of `duration` (default 60 s) taken now runs out."""
    seconds = duration.ToNanoseconds() / 1e9 or 60.0
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int((time.time() + seconds) * 1e9))
    return stamp


class _WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):

    def __init__(self, fake: FakeJobline) -> None:
        self._fake = fake

    def LeaseJobs(self, request, context):
        fake = self._fake
        deadline = time.monotonic() + request.wait.ToNanoseconds() / 1e9
        with fake.lock:
            fake.record("LeaseJobs", request)
            while True:
                ready = [job for job in fake.queue
                         if job.job_type.key in request.job_types]
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or not context.is_active():
                    break
                fake.lock.wait(min(remaining, 0.1))
            response = worker_pb2.LeaseJobsResponse()
            for job in ready[:request.max_jobs]:
                fake.queue.remove(job)
                lease = response.leases.add(
                    lease_id=fake.next_lease_id(), attempt=1,
                    expires_at=_expires(request.lease_duration))
                lease.job.CopyFrom(job)
                lease.job.status = jobs_pb2.STARTED
            return response

    def _renew(self, method, request, context, response_type):
        fake = self._fake
        with fake.lock:
            fake.record(method, request)
            if request.job_id in fake.lost:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"the lease of job {request.job_id} expired")
            return response_type(
                expires_at=_expires(request.lease_duration),
                cancel_requested=request.job_id in fake.cancel)

    def Heartbeat(self, request, context):
        return self._renew("Heartbeat", request, context,
                           worker_pb2.HeartbeatResponse)

    def ReportProgress(self, request, context):
        return self._renew("ReportProgress", request, context,
                           worker_pb2.ReportProgressResponse)

    def FinishJob(self, request, context):
        fake = self._fake
        with fake.lock:
            fake.record("FinishJob", request)
            if request.job_id in fake.lost:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"the lease of job {request.job_id} expired")
            if request.status == jobs_pb2.SUCCESS and fake.refuse_success:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "stages: every stage must be at progress 1")
            status = jobs_pb2.REVOKED if request.job_id in fake.cancel \
                else request.status
            fake.lost.add(request.job_id)  # The lease ends with the job.
            return worker_pb2.FinishJobResponse(
                job=jobs_pb2.Job(id=request.job_id, status=status))


class _CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):

    def __init__(self, fake: FakeJobline) -> None:
        self._fake = fake

    def SetCollectionCaptures(self, request, context):
        fake = self._fake
        with fake.lock:
            fake.record("SetCollectionCaptures", request)
            if fake.catalog_unavailable > 0:
                fake.catalog_unavailable -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            if fake.catalog_error is not None:
                context.abort(fake.catalog_error, "refused by the fake")
            fake.members[request.collection_id] = list(request.captures)
            return catalog_pb2.SetCollectionCapturesResponse(
                capture_count=len(request.captures))
