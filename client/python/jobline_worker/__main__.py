"""tools/worker: Jobline's reference worker.

Runs populate_captures_collection jobs over the capture files under
--captures_dir, leased from the server at --server, until stopped (SIGINT
or SIGTERM: the running job is finished first; a second signal abandons it
to its lease) or until --max_jobs jobs were handled.

Exit status: 0 when stopped or done; 1 when the server refuses the worker
(e.g. it has no WorkerService); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import Optional, Sequence

import grpc

from jobline_worker import populate
from jobline_worker.worker import DEFAULT_LEASE_SECONDS, Worker, WorkerError

_log = logging.getLogger("jobline_worker")


def _positive_int(text: str) -> int:
    """Parses a whole number >= 1 for argparse."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not "
                                         f"{text!r}")
    return value


def _lease_seconds(text: str) -> float:
    """Parses a lease duration (1 s to 1 h) for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1.0 <= value <= 3600.0:
        raise argparse.ArgumentTypeError(
            f"must be 1 to 3600 seconds, not {text!r}")
    return value


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="worker",
        description="Jobline's reference worker: leases "
        "populate_captures_collection jobs and runs them over the capture "
        "files under --captures_dir.")
    parser.add_argument("--server", default="localhost:50051",
                        metavar="HOST:PORT",
                        help="the Jobline server (default localhost:50051)")
    parser.add_argument("--captures_dir", required=True, metavar="DIR",
                        help="root of the capture files, e.g. "
                        "DIR/deployment-60/2025-11-12/"
                        "20251112190059-snapshot.jpg; capture paths are "
                        "stored relative to it")
    parser.add_argument("--worker_id", metavar="ID",
                        default=f"{socket.gethostname()}/pid-{os.getpid()}",
                        help="name shown in the jobs' logs (default "
                        "HOST/pid-PID)")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--once", action="store_true",
                       help="exit after one job is handled")
    limit.add_argument("--max_jobs", type=_positive_int, metavar="N",
                       help="exit after N jobs are handled (default: run "
                       "until stopped)")
    parser.add_argument("--lease_seconds", type=_lease_seconds,
                        default=DEFAULT_LEASE_SECONDS, metavar="S",
                        help="lease duration asked for; heartbeats go every "
                        "S/3 seconds (default 60)")
    parser.add_argument("--verbose", action="store_true",
                        help="log debug lines too")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.captures_dir):
        parser.error(f"--captures_dir {args.captures_dir} is not a folder")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the worker; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s worker: %(message)s",
        stream=sys.stderr)
    max_jobs = 1 if args.once else args.max_jobs
    executor = populate.PopulateCapturesExecutor(
        os.path.abspath(args.captures_dir))

    with grpc.insecure_channel(args.server) as channel:
        worker = Worker(channel, {populate.JOB_TYPE: executor},
                        args.worker_id, lease_seconds=args.lease_seconds)
        signals = 0

        def on_signal(number: int, _frame: Optional[FrameType]) -> None:
            nonlocal signals
            signals += 1
            _log.info("%s: %s", signal.Signals(number).name,
                      "finishing the running job, then stopping"
                      if signals == 1 else "stopping now")
            worker.stop(now=signals > 1)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        _log.info("%s serving %s from %s for %s", args.worker_id,
                  populate.JOB_TYPE, args.captures_dir, args.server)
        try:
            handled = worker.run(max_jobs)
        except WorkerError as error:
            _log.error("%s", error)
            return 1
    _log.info("stopped after %d job%s", handled, "" if handled == 1 else "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
