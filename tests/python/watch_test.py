"""JobService.WatchProgress read by a Python client (grpcio).

Starts a job_server on a new database and a free port, with a short delay
step, creates an "unknown" job with a delay of 3 (the server's runner does
all of its work: three steps of the Delay stage, then FAILURE, as no work
of its own exists for the type), watches it with the generated stub while
it runs, and checks every message of the stream: the snapshot, then one
message per change with its status changes and log lines, and OK after
the final status. Then resumes and re-opens the finished job's stream.

    watch_test.py RUNFILES_ROOT

The root holds server/job_server, tools/demo-catalog.json and the Python
protos under protos/ (on PYTHONPATH). Writes a JUnit XML report to
$XML_OUTPUT_FILE (one testcase per test) when set, as `bazel test` sets it.
Run with /usr/bin/python3 (Debian's python3-grpcio).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple

import grpc
from jobline.v2 import jobs_pb2
from jobline.v2 import jobs_pb2_grpc

ROOT = ""  # The runfiles root, set by main().

# How often the Delay stage advances: long enough for the watcher to keep
# up (one message per change), short enough for a quick test. The server
# has one runner thread, so a job enqueued while another one runs starts
# only when that one ends, and no two changes of the watched job come
# closer than one step.
DELAY_STEP_MS = 250
# Seconds any call or the whole stream may take before the test gives up.
CALL_TIMEOUT = 10
STREAM_TIMEOUT = 60

PROJECT_ID = 16  # In tools/demo-catalog.json.
JOB_NAME = "Watched from Python"

# Moods the runner writes into the Delay stage: before, during, after.
SLEEPING = "\U0001F634"
DIZZY = "\U0001F635\u200D\U0001F4AB"
PARTY = "\U0001F973"

# "[YYYY-MM-DD HH:MM:SS] LEVEL message", the format of every log line.
LOG_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (DEBUG|INFO|WARNING|ERROR|CRITICAL)"
    r" (.*)$")

Status = jobs_pb2.JobStatus


def _expected_logs(job_id: int) -> List[Tuple[int, str, str]]:
    """(sequence, level, message) of every line the run appends."""
    return [
        (3, "INFO", f'Running job #{job_id} "{JOB_NAME}" (PENDING)'),
        (3, "INFO", f"Changing status of job {job_id} from PENDING to STARTED"),
        (4, "INFO", f"Delaying job #{job_id}: 1 of 3 seconds"),
        (5, "INFO", f"Delaying job #{job_id}: 2 of 3 seconds"),
        (6, "ERROR", 'Job type "unknown" has no work to run'),
        (6, "INFO", f"Changing status of job {job_id} from STARTED to FAILURE"),
        (6, "INFO", f'Finished job #{job_id} "{JOB_NAME}" (FAILURE)'),
    ]


def _split_line(text: str) -> Tuple[str, str]:
    """(level, message) of a log line; AssertionError if it is malformed."""
    match = LOG_LINE.match(text)
    if match is None:
        raise AssertionError(f"malformed log line {text!r}")
    return match.group(1), match.group(2)


def _lines(message: jobs_pb2.WatchProgressResponse) -> List[Tuple[int, str,
                                                                  str]]:
    """(sequence, level, message) of a stream message's log lines."""
    lines = []
    for line in message.logs:
        level, text = _split_line(line.text)
        if level != line.level:
            raise AssertionError(f"level {line.level} but line {line.text!r}")
        lines.append((line.sequence, level, text))
    return lines


def _param_value(value) -> object:
    """The Python value of a google.protobuf.Value holding a number or a
    string."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    raise AssertionError(f"unexpected param value kind {kind}")


class Server:
    """A job_server child process on a temporary database and free port."""

    def __init__(self) -> None:
        tmp_root = os.environ.get("TEST_TMPDIR") or tempfile.gettempdir()
        self.work = tempfile.mkdtemp(prefix="watch-test.", dir=tmp_root)
        self._out = open(os.path.join(self.work, "server.out"), "w+b")
        self._err = open(os.path.join(self.work, "server.err"), "w+b")
        self.process = subprocess.Popen(
            [os.path.join(ROOT, "server", "job_server"),
             "--db=" + os.path.join(self.work, "jobline.db"),
             "--host=127.0.0.1", "--grpc_port=0", "--http_port=0",
             f"--delay_step_ms={DELAY_STEP_MS}", "--runner_threads=1",
             "--seed_catalog=" + os.path.join(ROOT, "tools",
                                              "demo-catalog.json")],
            stdout=self._out, stderr=self._err)
        self.address = self._wait_for_address()

    def _wait_for_address(self) -> str:
        """The address from "jobline: serving gRPC on ADDR", within 30 s."""
        pattern = re.compile(rb"^jobline: serving gRPC on (\S+)", re.M)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._out.seek(0)
            match = pattern.search(self._out.read())
            if match:
                return match.group(1).decode()
            if self.process.poll() is not None:
                raise RuntimeError("job_server exited at start:\n"
                                   + self.log_tail())
            time.sleep(0.05)
        raise RuntimeError("job_server did not serve within 30 s")

    def log_tail(self) -> str:
        """The last 20 lines of the server's standard error."""
        with open(os.path.join(self.work, "server.err"), "rb") as f:
            return b"".join(f.readlines()[-20:]).decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        self._err.close()


_server: Optional[Server] = None
_channel: Optional[grpc.Channel] = None


def setUpModule() -> None:
    global _server, _channel
    _server = Server()
    _channel = grpc.insecure_channel(_server.address)


def tearDownModule() -> None:
    if _channel is not None:
        _channel.close()
    if _server is not None:
        _server.stop()


def _stub() -> jobs_pb2_grpc.JobServiceStub:
    return jobs_pb2_grpc.JobServiceStub(_channel)


def _occupy_the_runner() -> None:
    """Starts a job that holds the only runner thread for four steps, and
    returns once it runs."""
    stub = _stub()
    blocker = stub.CreateJob(jobs_pb2.CreateJobRequest(
        job=jobs_pb2.JobInput(name="Keeps the runner busy", delay=4,
                              project_id=PROJECT_ID, job_type_key="unknown"),
        start_now=True), timeout=CALL_TIMEOUT)
    stream = stub.WatchProgress(
        jobs_pb2.WatchProgressRequest(job_id=blocker.id),
        timeout=STREAM_TIMEOUT)
    for message in stream:
        if message.job.status == Status.STARTED:
            stream.cancel()
            return
    raise AssertionError(f"job {blocker.id} ended without running")


def _watch(request: jobs_pb2.WatchProgressRequest
           ) -> Tuple[List[jobs_pb2.WatchProgressResponse], grpc.StatusCode,
                      str]:
    """Every message of a stream, its status code and its details."""
    stream = _stub().WatchProgress(request, timeout=STREAM_TIMEOUT)
    messages = []
    try:
        for message in stream:
            messages.append(message)
    except grpc.RpcError:
        pass
    return messages, stream.code(), stream.details() or ""


class WatchARunTest(unittest.TestCase):
    """One run watched from CREATED to FAILURE; each test checks one side
    of the same stream."""

    maxDiff = None
    job_id = 0
    messages: List[jobs_pb2.WatchProgressResponse] = []
    code = grpc.StatusCode.UNKNOWN

    @classmethod
    def setUpClass(cls) -> None:
        stub = _stub()
        job = stub.CreateJob(jobs_pb2.CreateJobRequest(
            job=jobs_pb2.JobInput(name=JOB_NAME, delay=3,
                                  project_id=PROJECT_ID,
                                  job_type_key="unknown")),
            timeout=CALL_TIMEOUT)
        cls.job_id = job.id

        # The job is enqueued only once the snapshot has arrived, so the
        # stream sees every status from CREATED on, and while the runner is
        # busy, so it starts a step or more after PENDING.
        _occupy_the_runner()
        stream = stub.WatchProgress(
            jobs_pb2.WatchProgressRequest(job_id=job.id),
            timeout=STREAM_TIMEOUT)
        messages = []
        for message in stream:
            messages.append(message)
            if len(messages) == 1:
                stub.RunJob(jobs_pb2.RunJobRequest(id=job.id),
                            timeout=CALL_TIMEOUT)
        cls.messages = messages
        cls.code = stream.code()

    def test_first_message_is_a_snapshot_of_the_created_job(self) -> None:
        first = self.messages[0]
        self.assertTrue(first.snapshot)
        self.assertEqual(first.sequence, 1)
        self.assertEqual(first.job.id, self.job_id)
        self.assertEqual(first.job.name, JOB_NAME)
        self.assertEqual(first.job.status, Status.CREATED)
        self.assertEqual(first.job.job_type.key, "unknown")
        self.assertEqual(first.job.delay, 3)
        self.assertEqual(list(first.job.logs.stdout), [])
        self.assertEqual(list(first.status_changes), [])
        self.assertEqual(list(first.logs), [])
        self.assertEqual([m.snapshot for m in self.messages[1:]],
                         [False] * 5)

    def test_one_message_per_change_sequences_up_by_one(self) -> None:
        self.assertEqual([m.sequence for m in self.messages],
                         [1, 2, 3, 4, 5, 6])
        for message in self.messages:
            with self.subTest(sequence=message.sequence):
                self.assertEqual(message.job.sequence, message.sequence)
                self.assertEqual(
                    {c.sequence for c in message.status_changes}
                    | {line.sequence for line in message.logs},
                    set() if message.snapshot else {message.sequence})

    def test_status_changes_in_order(self) -> None:
        self.assertEqual([m.job.status for m in self.messages],
                         [Status.CREATED, Status.PENDING, Status.STARTED,
                          Status.STARTED, Status.STARTED, Status.FAILURE])
        self.assertEqual(
            [(c.sequence, c.status)
             for m in self.messages for c in m.status_changes],
            [(2, Status.PENDING), (3, Status.STARTED), (6, Status.FAILURE)])
        for message in self.messages:
            for change in message.status_changes:
                self.assertEqual(change.changed_at, message.job.updated_at)

    def test_delay_stage_steps(self) -> None:
        stages = []
        for message in self.messages:
            (stage,) = message.job.progress.stages
            self.assertEqual((stage.key, stage.name), ("delay", "Delay"))
            params = [(p.name, p.key, p.category, _param_value(p.value))
                      for p in stage.params]
            stages.append((stage.status, stage.progress, stage.status_label,
                           params))

        def params(mood: str) -> list:
            return [("Delay", "delay", "default", 3.0),
                    ("Mood", "mood", "default", mood)]

        self.assertEqual(stages, [
            (Status.CREATED, 0.0, "Waiting to start", params(SLEEPING)),
            (Status.CREATED, 0.0, "Waiting to start", params(SLEEPING)),
            (Status.CREATED, 0.0, "Waiting to start", params(SLEEPING)),
            (Status.STARTED, 1 / 3, "33% complete", params(DIZZY)),
            (Status.STARTED, 2 / 3, "66% complete", params(DIZZY)),
            (Status.SUCCESS, 1.0, "100% complete", params(PARTY)),
        ])

    def test_summary_follows_status_and_stage(self) -> None:
        summaries = [(m.job.progress.summary.status,
                      m.job.progress.summary.progress,
                      m.job.progress.summary.status_label)
                     for m in self.messages]
        self.assertEqual(summaries, [
            (Status.CREATED, 0.0, "Waiting to start"),
            (Status.PENDING, 0.0, "Waiting to start"),
            (Status.STARTED, 0.0, "0% complete"),
            (Status.STARTED, 1 / 3, "33% complete"),
            (Status.STARTED, 2 / 3, "66% complete"),
            (Status.FAILURE, 1.0, "FAILURE"),
        ])

    def test_log_lines_in_order(self) -> None:
        self.assertEqual([line for m in self.messages for line in _lines(m)],
                         _expected_logs(self.job_id))
        # Documents after the snapshot carry no lines of their own.
        for message in self.messages[1:]:
            self.assertEqual(list(message.job.logs.stdout), [])

    def test_ends_ok_after_the_final_status(self) -> None:
        self.assertEqual(self.code, grpc.StatusCode.OK)
        last = self.messages[-1].job
        self.assertEqual(last.status, Status.FAILURE)
        self.assertTrue(last.HasField("started_at"))
        self.assertTrue(last.HasField("finished_at"))
        self.assertEqual(last.finished_at.ToNanoseconds()
                         - last.started_at.ToNanoseconds(),
                         last.duration.ToNanoseconds())
        # Not before: started_at appears with STARTED, finished_at last.
        self.assertEqual([m.job.HasField("started_at") for m in self.messages],
                         [False, False, True, True, True, True])
        self.assertEqual(
            [m.job.HasField("finished_at") for m in self.messages],
            [False, False, False, False, False, True])

    def test_resume_gives_exactly_what_was_missed(self) -> None:
        messages, code, _ = _watch(jobs_pb2.WatchProgressRequest(
            job_id=self.job_id, after_sequence=3))
        self.assertEqual(code, grpc.StatusCode.OK)
        self.assertEqual(len(messages), 1)
        (resumed,) = messages
        self.assertFalse(resumed.snapshot)
        self.assertEqual(resumed.sequence, 6)
        self.assertEqual(resumed.job.status, Status.FAILURE)
        self.assertEqual([(c.sequence, c.status)
                          for c in resumed.status_changes],
                         [(6, Status.FAILURE)])
        self.assertEqual(_lines(resumed), _expected_logs(self.job_id)[2:])

    def test_finished_job_gives_one_snapshot(self) -> None:
        messages, code, _ = _watch(jobs_pb2.WatchProgressRequest(
            job_id=self.job_id, logs_limit=3))
        self.assertEqual(code, grpc.StatusCode.OK)
        self.assertEqual(len(messages), 1)
        (snapshot,) = messages
        self.assertTrue(snapshot.snapshot)
        self.assertEqual(snapshot.sequence, 6)
        self.assertEqual(snapshot.job.status, Status.FAILURE)
        # The newest three lines, newest first.
        newest = [_split_line(text) for text in snapshot.job.logs.stdout]
        self.assertEqual(newest, [(level, text) for _, level, text in
                                  reversed(_expected_logs(self.job_id)[4:])])
        self.assertEqual(list(snapshot.job.logs.stderr),
                         ['Job type "unknown" has no work to run'])


class WatchErrorsTest(unittest.TestCase):
    """Requests the service refuses, with the gRPC code and message."""

    def test_unknown_job_is_not_found(self) -> None:
        messages, code, details = _watch(
            jobs_pb2.WatchProgressRequest(job_id=987654))
        self.assertEqual(messages, [])
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(details, "job 987654 not found")

    def test_bad_logs_limit_names_the_field(self) -> None:
        job = _stub().CreateJob(jobs_pb2.CreateJobRequest(
            job=jobs_pb2.JobInput(name="Never watched",
                                  project_id=PROJECT_ID)),
            timeout=CALL_TIMEOUT)
        messages, code, details = _watch(
            jobs_pb2.WatchProgressRequest(job_id=job.id, logs_limit=5001))
        self.assertEqual(messages, [])
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(details,
                         "logs_limit: Ensure this value is between 1 and "
                         "5000.")


class _Recorder(unittest.TextTestResult):
    """Keeps (test id, seconds, outcome, detail) for the XML report."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: List[Tuple[str, float, str, str]] = []
        self._began = time.monotonic()

    def startTest(self, test) -> None:
        self._began = time.monotonic()
        super().startTest(test)

    def _keep(self, test, outcome: str, detail: str = "") -> None:
        self.records.append(
            (test.id(), time.monotonic() - self._began, outcome, detail))

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self._keep(test, "passed")

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._keep(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._keep(test, "error", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = ("failure" if issubclass(err[0], test.failureException)
                    else "error")
            self._keep(subtest, kind, self._exc_info_to_string(err, test))


def _write_report(path: str, records) -> None:
    """Writes `records` as a JUnit XML report, one testcase per record.

    A fixture that fails (setUpModule, setUpClass) is recorded by unittest
    as an error of a pseudo-test, so it shows as a failed case too."""
    suite = ET.Element(
        "testsuite", name="watch_test", tests=str(len(records)),
        failures=str(sum(r[2] == "failure" for r in records)),
        errors=str(sum(r[2] == "error" for r in records)))
    for test_id, seconds, outcome, detail in records:
        classname, _, name = test_id.rpartition(".")
        classname = re.sub(r"^__main__\.", "watch_test.", classname)
        case = ET.SubElement(suite, "testcase", classname=classname,
                             name=name, time=f"{seconds:.3f}")
        if outcome in ("failure", "error"):
            ET.SubElement(case, outcome, message=outcome).text = detail
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def main() -> int:
    global ROOT
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ROOT = sys.argv[1]
    suite = unittest.defaultTestLoader.loadTestsFromModule(
        sys.modules[__name__])
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=_Recorder).run(suite)
    if _server is not None:
        if not result.wasSuccessful():
            print("last lines of the server's log:\n" + _server.log_tail())
        shutil.rmtree(_server.work, ignore_errors=True)
    if os.environ.get("XML_OUTPUT_FILE"):
        _write_report(os.environ["XML_OUTPUT_FILE"], result.records)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
