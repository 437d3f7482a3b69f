"""Jobline's reference worker.

:mod:`jobline_worker.worker`
    a small generic library for workers of Jobline's WorkerService: the
    lease loop, heartbeats, cancel, reports and the finish.
:mod:`jobline_worker.populate`
    the executor of populate_captures_collection jobs.
:mod:`jobline_worker.sampling`, :mod:`jobline_worker.capture_files`
    the sampling methods, and capture files on disk.
:mod:`jobline_worker.make_captures`
    tools/make-captures, a generator of capture trees for demos.

``python3 -m jobline_worker --help`` (or ``tools/worker --help``) runs the
worker. The generated protos (bazel-bin/protos) must be on the path.
"""
