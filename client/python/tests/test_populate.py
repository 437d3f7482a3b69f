"""Tests of the populate_captures_collection executor, run by a Worker
against the fake server over a generated capture tree."""

from __future__ import annotations

import datetime
import os
import random
import shutil
import tempfile
import unittest
from typing import Optional

import grpc
from google.protobuf import json_format
from google.protobuf import struct_pb2

from fake_jobline import FakeJobline
from jobline.v2 import jobs_pb2
from jobline_worker import make_captures
from jobline_worker.capture_files import parse_capture_path
from jobline_worker.populate import JOB_TYPE, PopulateCapturesExecutor
from jobline_worker.worker import FAILURE, STARTED, SUCCESS, Worker

# The seed job's log lines written by the executor, oldest first.
SEED_LINES = [
    "Populating source image collection #111 Random 1000",
    "Sampling using method 'sample_random' with params: {'size': 1000, "
    "'event_ids': None, 'deployment_ids': None}",
    "Sampling and saving captures to #111 Random 1000",
    "Done sampling and saving captures to #111 Random 1000",
    "Finished populating source image collection #111 Random 1000",
    "Added 1000 captures to source image collection #111 Random 1000",
]


def _populate_job(method: Optional[str] = "random",
                  kwargs: Optional[dict] = None) -> jobs_pb2.Job:
    """The seed's job as leased; method None leaves out the collection."""
    job = jobs_pb2.Job(id=1256, name="Populate captures for collection 111",
                       status=jobs_pb2.PENDING,
                       job_type=jobs_pb2.JobType(key=JOB_TYPE))
    if method is not None:
        collection = job.source_image_collection
        collection.id = 111
        collection.name = "Random 1000"
        collection.method = method
        json_format.ParseDict({"size": 1000} if kwargs is None else kwargs,
                              collection.kwargs)
    return job


class PopulateTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp()
        make_captures.write_tree(cls.root, make_captures.night_captures(
            5000, [60, 61], 5, datetime.date(2025, 11, 8), 1))

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.root)

    def setUp(self) -> None:
        self.fake = FakeJobline().__enter__()
        self.addCleanup(self.fake.__exit__)
        self.channel = grpc.insecure_channel(self.fake.address)
        self.addCleanup(self.channel.close)

    def run_job(self, job: jobs_pb2.Job, root: Optional[str] = None):
        """Runs `job` with the executor; returns the FinishJob request."""
        executor = PopulateCapturesExecutor(root or self.root,
                                            random.Random(5))
        worker = Worker(self.channel, {JOB_TYPE: executor}, "test/1",
                        wait_seconds=1.0)
        self.fake.add_job(job)
        self.assertEqual(worker.run(max_jobs=1), 1)
        (finish,) = self.fake.requests("FinishJob")
        return finish

    def members(self):
        return self.fake.members[111]

    def test_the_seed_job(self) -> None:
        finish = self.run_job(_populate_job())

        self.assertEqual(self.fake.logs(1256), SEED_LINES)
        first_report = self.fake.requests("ReportProgress")[0]
        (started,) = first_report.stages
        self.assertEqual(started.name, "Populate captures collection")
        self.assertEqual(started.key, "populate_captures_collection")
        self.assertEqual(started.status, STARTED)
        self.assertAlmostEqual(started.progress, 0.1)

        self.assertEqual(finish.status, SUCCESS)
        self.assertFalse(finish.HasField("result"))
        (done,) = finish.stages
        self.assertEqual((done.key, done.status, done.progress),
                         ("populate_captures_collection", SUCCESS, 1.0))
        (param,) = done.params
        self.assertEqual(param.name, "Captures added")
        self.assertEqual(param.value, struct_pb2.Value(number_value=1000))

    def test_captures_are_new_files_relative_to_the_root(self) -> None:
        self.run_job(_populate_job())
        members = self.members()
        self.assertEqual(len(members), 1000)
        self.assertEqual(len({c.path for c in members}), 1000)
        for capture in members:
            self.assertEqual((capture.id, capture.deployment_id), (0, 0))
            self.assertFalse(os.path.isabs(capture.path))
            self.assertTrue(os.path.isfile(
                os.path.join(self.root, capture.path)))
            self.assertEqual(
                capture.timestamp.ToDatetime(tzinfo=datetime.timezone.utc),
                parse_capture_path(capture.path).timestamp)

    def test_full_takes_every_file(self) -> None:
        finish = self.run_job(_populate_job("full", {}))
        self.assertEqual(len(self.members()), 5000)
        self.assertEqual(finish.logs[0].message,
                         "Added 5000 captures to source image collection "
                         "#111 Random 1000")
        self.assertIn("Sampling using method 'sample_full' with params: "
                      "{'event_ids': None, 'deployment_ids': None}",
                      self.fake.logs(1256))

    def test_interval_keeps_captures_minutes_apart(self) -> None:
        self.run_job(_populate_job("interval", {"minute_interval": 30}))
        members = self.members()
        # Two deployments, five nights of ten hours: 20 a night each.
        self.assertEqual(len(members), 2 * 5 * 20)

    def test_random_with_fewer_files_takes_them_all(self) -> None:
        small = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, small)
        make_captures.write_tree(small, make_captures.night_captures(
            30, [60], 1, datetime.date(2025, 11, 8), 1))
        finish = self.run_job(_populate_job(), root=small)
        self.assertEqual(finish.status, SUCCESS)
        self.assertEqual(len(self.members()), 30)

    def test_a_job_without_collection_fails(self) -> None:
        finish = self.run_job(_populate_job(method=None))
        self.assertEqual(finish.status, FAILURE)
        self.assertEqual(finish.error, "job 1256 has no capture collection")
        self.assertEqual(self.fake.requests("SetCollectionCaptures"), [])

    def test_an_unsupported_method_fails_the_stage(self) -> None:
        finish = self.run_job(_populate_job("starred", {}))
        self.assertEqual(finish.status, FAILURE)
        self.assertEqual(
            finish.error, "sampling method 'starred' is not supported by "
            "this worker (supported: full, interval, random)")
        (stage,) = finish.stages
        self.assertEqual((stage.key, stage.status),
                         ("populate_captures_collection", FAILURE))
        self.assertEqual(self.fake.logs(1256), SEED_LINES[:1])
        self.assertEqual(self.fake.requests("SetCollectionCaptures"), [])

    def test_a_save_during_a_server_restart_is_tried_again(self) -> None:
        self.fake.catalog_unavailable = 2
        finish = self.run_job(_populate_job())
        self.assertEqual(finish.status, SUCCESS)
        self.assertEqual(len(self.fake.requests("SetCollectionCaptures")), 3)
        self.assertEqual(len(self.members()), 1000)

    def test_a_refused_save_fails_the_job(self) -> None:
        self.fake.catalog_error = grpc.StatusCode.NOT_FOUND
        finish = self.run_job(_populate_job())
        self.assertEqual(finish.status, FAILURE)
        self.assertEqual(finish.error,
                         "cannot save the captures to #111 Random 1000: "
                         "NOT_FOUND: refused by the fake")

    def test_a_missing_folder_fails_the_job(self) -> None:
        finish = self.run_job(_populate_job(),
                              root=os.path.join(self.root, "missing"))
        self.assertEqual(finish.status, FAILURE)
        self.assertRegex(finish.error, "^cannot read the capture files: ")

    def test_a_cancel_stops_before_saving(self) -> None:
        self.fake.cancel.add(1256)
        finish = self.run_job(_populate_job())
        self.assertEqual(finish.status, FAILURE)
        self.assertEqual(self.fake.requests("SetCollectionCaptures"), [])


if __name__ == "__main__":
    unittest.main()
