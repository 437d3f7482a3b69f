"""The executor of populate_captures_collection jobs.

A populate job names a capture collection, whose sampling method and
keyword arguments say which captures it holds (see
:mod:`jobline_worker.sampling`). The executor samples the capture files of
a folder with that method and makes the chosen files the collection's
members with CatalogService.SetCollectionCaptures: each becomes a capture
with id 0 (matched by path, or created), its path relative to the folder,
the time in its file name and no deployment.

It logs what Antenna logs for the same job, in the same order, and keeps
one stage, "Populate captures collection", with the parameter "Captures
added" (the collection's member count once saved).
"""

from __future__ import annotations

import random
import time
from typing import Optional, Sequence

import grpc
from google.protobuf import json_format
from google.protobuf import timestamp_pb2

from jobline.v2 import catalog_pb2
from jobline.v2 import catalog_pb2_grpc
from jobline.v2 import jobs_pb2
from jobline.v2 import worker_pb2
from jobline_worker import capture_files
from jobline_worker import sampling
from jobline_worker.worker import (FAILURE, STARTED, SUCCESS, JobContext,
                                   JobFailed, Outcome, log_line,
                                   stage_update)

JOB_TYPE = "populate_captures_collection"
STAGE_NAME = "Populate captures collection"
STAGE_KEY = "populate_captures_collection"
PARAM_CAPTURES_ADDED = "Captures added"

# Tries of SetCollectionCaptures while the server answers UNAVAILABLE, and
# the first pause between them (doubled each time: 0.5 + 1 + 2 + 4 s).
_SAVE_TRIES = 5
_SAVE_RETRY_PAUSE_SECONDS = 0.5

# Progress reported once the work has begun.
_STARTED_PROGRESS = 0.1


class PopulateCapturesExecutor:
    """Runs populate_captures_collection jobs over the capture files under
    one folder. Holds no state between jobs; one instance may serve every
    job of a worker."""

    def __init__(self, captures_dir: str,
                 rng: Optional[random.Random] = None,
                 call_timeout: float = 60.0) -> None:
        """`captures_dir` is the root of the capture tree; `rng` draws the
        random samples (default: seeded by the system); `call_timeout`
        bounds the SetCollectionCaptures call."""
        self._captures_dir = captures_dir
        self._rng = rng or random.Random()
        self._call_timeout = call_timeout

    def __call__(self, ctx: JobContext) -> Outcome:
        """Populates the job's collection. Raises JobFailed when the job has
        no collection, its method or parameters cannot be used, the folder
        cannot be read or the server refuses the captures."""
        job = ctx.job
        if not job.HasField("source_image_collection") or \
                job.source_image_collection.id == 0:
            raise JobFailed(f"job {job.id} has no capture collection")
        collection = job.source_image_collection
        label = f"#{collection.id} {collection.name}"
        failed_stage = stage_update(key=STAGE_KEY, status=FAILURE)

        # Begin the stage.
        ctx.report(
            stages=[stage_update(STAGE_NAME, key=STAGE_KEY, status=STARTED,
                                 progress=_STARTED_PROGRESS)],
            logs=[log_line(f"Populating source image collection {label}")])

        # Check the method and its parameters.
        try:
            plan = sampling.plan(collection.method,
                                 json_format.MessageToDict(collection.kwargs))
        except sampling.SamplingError as error:
            raise JobFailed(str(error), stages=[failed_stage]) from error
        ctx.report(logs=[
            log_line(f"Sampling using method '{plan.function_name}' with "
                     f"params: {plan.params}"),
            log_line(f"Sampling and saving captures to {label}"),
        ])

        # Sample the files and save them as the collection's members.
        try:
            files = capture_files.scan_tree(self._captures_dir)
        except OSError as error:
            raise JobFailed(f"cannot read the capture files: {error}",
                            stages=[failed_stage]) from error
        chosen = sampling.sample(plan, files, self._rng)
        ctx.check()
        count = self._save(ctx, collection.id, chosen, label, failed_stage)
        ctx.report(logs=[
            log_line(f"Done sampling and saving captures to {label}"),
            log_line(f"Finished populating source image collection {label}"),
        ])

        return Outcome(
            stages=[stage_update(STAGE_NAME, key=STAGE_KEY, status=SUCCESS,
                                 progress=1.0,
                                 params={PARAM_CAPTURES_ADDED: count})],
            logs=[log_line(f"Added {count} captures to source image "
                           f"collection {label}")])

    def _save(self, ctx: JobContext, collection_id: int,
              chosen: Sequence[capture_files.CaptureFile], label: str,
              failed_stage: worker_pb2.StageUpdate) -> int:
        """Makes `chosen` the members of the collection and returns its
        member count. Raises JobFailed if the call fails."""
        request = catalog_pb2.SetCollectionCapturesRequest(
            collection_id=collection_id,
            captures=[_capture(capture) for capture in chosen])
        stub = catalog_pb2_grpc.CatalogServiceStub(ctx.channel)
        # The call replaces the members, so repeating it is safe: a server
        # that is briefly away (a restart) gets a few more tries.
        pause = _SAVE_RETRY_PAUSE_SECONDS
        for attempt in range(1, _SAVE_TRIES + 1):
            try:
                response = stub.SetCollectionCaptures(
                    request, timeout=self._call_timeout)
                return response.capture_count
            except grpc.RpcError as error:
                if (error.code() == grpc.StatusCode.UNAVAILABLE
                        and attempt < _SAVE_TRIES):
                    time.sleep(pause)
                    pause *= 2
                    continue
                raise JobFailed(
                    f"cannot save the captures to {label}: "
                    f"{error.code().name}: {error.details()}",
                    stages=[failed_stage]) from error
        raise AssertionError("unreachable")


def _capture(capture: capture_files.CaptureFile) -> jobs_pb2.Capture:
    """The Capture record of a file: new (id 0), matched by its path."""
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(capture.timestamp)
    return jobs_pb2.Capture(id=0, path=capture.path, timestamp=timestamp,
                            deployment_id=0)
