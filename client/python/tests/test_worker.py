"""Tests of the generic worker library against the fake server."""

from __future__ import annotations

import threading
import time
import unittest

import grpc

from fake_jobline import FakeJobline
from jobline.v2 import jobs_pb2
from jobline_worker.worker import (CANCELLED_ERROR, FAILURE, STARTED,
                                   SUCCESS, JobContext, JobFailed, Outcome,
                                   Worker, WorkerError, log_line,
                                   stage_update)

JOB_TYPE = "data_storage_sync"

# Bound of any wait in these tests, so that a bug fails instead of hanging.
_PATIENCE_SECONDS = 5.0


def _job(job_id: int = 7, job_type: str = JOB_TYPE) -> jobs_pb2.Job:
    return jobs_pb2.Job(id=job_id, name=f"job {job_id}",
                        status=jobs_pb2.PENDING,
                        job_type=jobs_pb2.JobType(key=job_type))


def _wait_for_stop(ctx: JobContext) -> Outcome:
    """An executor that works (checking) until it is told to stop."""
    give_up = time.monotonic() + _PATIENCE_SECONDS
    while time.monotonic() < give_up:
        ctx.check()
        time.sleep(0.01)
    raise AssertionError("the executor was never stopped")


class WorkerTest(unittest.TestCase):

    def setUp(self) -> None:
        self.fake = FakeJobline().__enter__()
        self.addCleanup(self.fake.__exit__)
        self.channel = grpc.insecure_channel(self.fake.address)
        self.addCleanup(self.channel.close)

    def worker(self, executor, lease_seconds: float = 60.0) -> Worker:
        return Worker(self.channel, {JOB_TYPE: executor}, "test/1",
                      lease_seconds=lease_seconds, wait_seconds=1.0)

    def finish_request(self):
        (request,) = self.fake.requests("FinishJob")
        return request

    def test_success_sends_the_outcome(self) -> None:
        def executor(ctx: JobContext) -> Outcome:
            self.assertEqual(ctx.job.status, jobs_pb2.STARTED)
            ctx.report(stages=[stage_update("Count", status=STARTED,
                                            progress=0.5)],
                       logs=[log_line("counting")])
            return Outcome(result={"files": 3},
                           stages=[stage_update("Count", status=SUCCESS,
                                                progress=1.0,
                                                params={"Files": 3})],
                           logs=[log_line("counted")])

        self.fake.add_job(_job())
        self.assertEqual(self.worker(executor).run(max_jobs=1), 1)

        self.assertEqual(self.fake.methods(),
                         ["LeaseJobs", "ReportProgress", "FinishJob"])
        (lease_request,) = self.fake.requests("LeaseJobs")
        self.assertEqual(list(lease_request.job_types), [JOB_TYPE])
        self.assertEqual(lease_request.worker_id, "test/1")
        self.assertEqual(lease_request.max_jobs, 1)
        self.assertEqual(lease_request.lease_duration.seconds, 60)
        (report,) = self.fake.requests("ReportProgress")
        self.assertEqual(report.lease_duration.seconds, 60)
        finish = self.finish_request()
        self.assertEqual(finish.lease_id, "lease-1")
        self.assertEqual(finish.job_id, 7)
        self.assertEqual(finish.status, SUCCESS)
        self.assertEqual(finish.result.struct_value.fields["files"]
                         .number_value, 3)
        self.assertEqual(finish.stages[0].progress, 1.0)
        self.assertEqual(finish.stages[0].params[0].name, "Files")
        self.assertEqual(self.fake.logs(7), ["counting", "counted"])

    def test_no_result_leaves_it_unset(self) -> None:
        self.fake.add_job(_job())
        self.worker(lambda ctx: Outcome()).run(max_jobs=1)
        self.assertFalse(self.finish_request().HasField("result"))

    def test_heartbeats_renew_the_lease_during_long_work(self) -> None:
        def executor(ctx: JobContext) -> Outcome:
            time.sleep(0.5)
            return Outcome()

        self.fake.add_job(_job())
        self.worker(executor, lease_seconds=0.3).run(max_jobs=1)
        beats = self.fake.requests("Heartbeat")
        self.assertGreaterEqual(len(beats), 2)
        for beat in beats:
            self.assertEqual((beat.lease_id, beat.job_id), ("lease-1", 7))
            self.assertEqual(beat.lease_duration.ToMilliseconds(), 300)
        self.assertEqual(self.finish_request().status, SUCCESS)

    def test_reports_postpone_heartbeats(self) -> None:
        def executor(ctx: JobContext) -> Outcome:
            for _ in range(10):
                ctx.log("step")
                time.sleep(0.03)
            return Outcome()

        self.fake.add_job(_job())
        self.worker(executor, lease_seconds=0.3).run(max_jobs=1)
        self.assertEqual(self.fake.requests("Heartbeat"), [])

    def test_cancel_seen_by_a_heartbeat_finishes_the_job(self) -> None:
        self.fake.cancel.add(7)
        self.fake.add_job(_job())
        self.worker(_wait_for_stop, lease_seconds=0.3).run(max_jobs=1)
        finish = self.finish_request()
        self.assertEqual(finish.status, FAILURE)
        self.assertEqual(finish.error, CANCELLED_ERROR)

    def test_cancel_seen_by_a_report_stops_the_executor(self) -> None:
        reached = []

        def executor(ctx: JobContext) -> Outcome:
            ctx.log("first")
            reached.append("after the report")
            return Outcome()

        self.fake.cancel.add(7)
        self.fake.add_job(_job())
        self.worker(executor).run(max_jobs=1)
        self.assertEqual(reached, [])
        self.assertEqual(self.fake.logs(7), ["first"])
        self.assertEqual(self.finish_request().error, CANCELLED_ERROR)

    def test_a_lost_lease_is_left_without_finish(self) -> None:
        def executor(ctx: JobContext) -> Outcome:
            ctx.log("too late")
            raise AssertionError("the report should have raised")

        self.fake.lost.add(7)
        self.fake.add_job(_job())
        self.assertEqual(self.worker(executor).run(max_jobs=1), 1)
        self.assertEqual(self.fake.requests("FinishJob"), [])

    def test_a_lease_lost_under_a_heartbeat_stops_the_executor(self) -> None:
        self.fake.lost.add(7)
        self.fake.add_job(_job())
        self.worker(_wait_for_stop, lease_seconds=0.3).run(max_jobs=1)
        self.assertEqual(len(self.fake.requests("Heartbeat")), 1)
        self.assertEqual(self.fake.requests("FinishJob"), [])

    def test_job_failed_finishes_with_failure(self) -> None:
        def executor(ctx: JobContext) -> Outcome:
            raise JobFailed("no such folder",
                            stages=[stage_update(key="count",
                                                 status=FAILURE)],
                            logs=[log_line("giving up", "WARNING")])

        self.fake.add_job(_job())
        self.worker(executor).run(max_jobs=1)
        finish = self.finish_request()
        self.assertEqual(finish.status, FAILURE)
        self.assertEqual(finish.error, "no such folder")
        self.assertEqual(finish.stages[0].key, "count")
        self.assertEqual(finish.logs[0].level, "WARNING")

    def test_an_exception_finishes_with_failure(self) -> None:
        def executor(ctx: JobContext) -> Outcome:
            raise RuntimeError("boom")

        self.fake.add_job(_job())
        with self.assertLogs("jobline_worker", "ERROR"):
            self.worker(executor).run(max_jobs=1)
        self.assertEqual(self.finish_request().error, "RuntimeError: boom")

    def test_a_refused_success_is_sent_again_as_failure(self) -> None:
        self.fake.refuse_success = True
        self.fake.add_job(_job())
        with self.assertLogs("jobline_worker", "ERROR"):
            self.worker(lambda ctx: Outcome()).run(max_jobs=1)
        first, second = self.fake.requests("FinishJob")
        self.assertEqual(first.status, SUCCESS)
        self.assertEqual(second.status, FAILURE)
        self.assertIn("the server refused the job's result", second.error)
        self.assertIn("progress 1", second.error)

    def test_runs_jobs_one_after_another(self) -> None:
        for job_id in (1, 2, 3):
            self.fake.add_job(_job(job_id))
        self.assertEqual(self.worker(lambda ctx: Outcome()).run(max_jobs=2),
                         2)
        self.assertEqual([r.job_id for r in self.fake.requests("FinishJob")],
                         [1, 2])
        self.assertEqual([j.id for j in self.fake.queue], [3])

    def test_stop_ends_a_waiting_lease_call(self) -> None:
        worker = Worker(self.channel, {JOB_TYPE: _wait_for_stop}, "test/1",
                        wait_seconds=30.0)
        threading.Timer(0.2, worker.stop).start()
        began = time.monotonic()
        self.assertEqual(worker.run(), 0)
        self.assertLess(time.monotonic() - began, 2.0)

    def test_stop_now_abandons_the_running_job(self) -> None:
        worker = self.worker(_wait_for_stop)
        self.fake.add_job(_job())
        threading.Timer(0.3, worker.stop, kwargs={"now": True}).start()
        with self.assertLogs("jobline_worker", "WARNING"):
            self.assertEqual(worker.run(), 1)
        self.assertEqual(self.fake.requests("FinishJob"), [])


class WorkerWithoutServerTest(unittest.TestCase):

    def test_a_server_without_worker_service_is_fatal(self) -> None:
        with FakeJobline(with_worker_service=False) as fake, \
                grpc.insecure_channel(fake.address) as channel:
            worker = Worker(channel, {JOB_TYPE: _wait_for_stop}, "test/1")
            with self.assertRaisesRegex(WorkerError, "UNIMPLEMENTED"):
                worker.run()

    def test_an_unreachable_server_is_retried_until_stop(self) -> None:
        with FakeJobline() as fake:
            address = fake.address  # A port nobody listens on after exit.
        with grpc.insecure_channel(address) as channel:
            worker = Worker(channel, {JOB_TYPE: _wait_for_stop}, "test/1")
            threading.Timer(0.5, worker.stop).start()
            with self.assertLogs("jobline_worker", "WARNING") as logs:
                self.assertEqual(worker.run(), 0)
        self.assertIn("retrying", logs.output[0])

    def test_a_worker_needs_an_executor(self) -> None:
        with self.assertRaises(ValueError):
            Worker(grpc.insecure_channel("localhost:1"), {}, "test/1")


if __name__ == "__main__":
    unittest.main()
