#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

Each seed is a realistic input: requests and bodies of the jobs API
(spec/jobs-api.md, README.md), and runs of real jobs as the worker protocol
and the job rules see them.

The fuzz targets read their inputs with FuzzedDataProvider
(tests/fuzz/fuzz_targets.h): text parts from the front, each ended by a
backslash and one more character, and numbers from the back, the first
number read being the input's last bytes. `Input` writes bytes that the
provider reads back as the values given, in the order the target reads
them; the scenario functions below follow the order of each target's
source, step by step.

Run from anywhere: tests/fuzz/make_corpus.py (rewrites every seed).
"""

import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- FuzzedDataProvider --------------------------------------------------


class Input:
    """The bytes of one input, built in the order a target consumes it."""

    def __init__(self):
        self._front = bytearray()
        self._back = []  # in consumption order, from the end of the input

    def text(self, value):
        """ConsumeRandomLengthString: the text, then its terminator."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        self._front += data.replace(b"\\", b"\\\\") + b"\\\n"

    def rest(self, value):
        """ConsumeRemainingBytesAsString: must be the last part."""
        self._front += value.encode() if isinstance(value, str) else value

    def integer(self, low, high, value):
        """ConsumeIntegralInRange(low, high) returning `value`."""
        assert low <= value <= high, (low, value, high)
        span = high - low
        count = (span.bit_length() + 7) // 8
        offset = value - low
        for i in range(count):
            self._back.append((offset >> (8 * (count - 1 - i))) & 0xFF)

    def boolean(self, value):
        self.integer(0, 255, 1 if value else 0)

    def pick(self, choices, value):
        """PickValueInArray over `choices` returning `value`."""
        self.integer(0, len(choices) - 1, choices.index(value))

    def enum(self, max_value, value):
        self.integer(0, max_value, value)

    def probability(self, value):
        """ConsumeProbability<double>: a 64-bit fraction of 2^64 - 1."""
        self.integer(0, 2**64 - 1, round(value * (2**64 - 1)))

    def int64(self, value):
        """ConsumeIntegral<int64_t>."""
        self.integer(-(2**63), 2**63 - 1, value)

    def data(self):
        return bytes(self._front) + bytes(reversed(self._back))


# ---- Shared constants of the targets ---------------------------------------

STATUS = {
    "UNSPECIFIED": 0, "CREATED": 1, "PENDING": 2, "STARTED": 3, "SUCCESS": 4,
    "FAILURE": 5, "RETRY": 6, "CANCELING": 7, "REVOKED": 8, "RECEIVED": 9,
    "UNKNOWN": 10,
}
STORED_STATUSES = ["CREATED", "PENDING", "STARTED", "SUCCESS", "FAILURE",
                   "RETRY", "CANCELING", "REVOKED", "RECEIVED", "UNKNOWN"]
# JobTypes() order.
JOB_TYPES = ["ml", "populate_captures_collection", "data_storage_sync",
             "regroup_events", "unknown", "data_export", "post_processing"]

# ---- rest_request ------------------------------------------------------------


def rest_request(verb, target, content_type="", accept="", last_event_id="",
                 body=""):
    seed = Input()
    for part in (verb, target, content_type, accept, last_event_id):
        seed.text(part)
    seed.rest(body)
    return seed.data()


CREATE_BODY = json.dumps({
    "name": "Populate captures for collection 111", "delay": 0,
    "project_id": "16", "source_image_collection_id": 111,
    "job_type_key": "populate_captures_collection"})
UI_ML_BODY = json.dumps({
    "delay": 0, "name": "Process Random 1000 with the moth detector",
    "project_id": "16", "pipeline_id": "3",
    "source_image_collection_id": "111"})
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,"
                  "*/*;q=0.8")


def rest_request_seeds():
    with open(os.path.join(HERE, "..", "..", "tools",
                           "demo-catalog.json")) as catalog:
        demo_catalog = catalog.read()
    return {
        "list_json": rest_request("GET", "/api/v2/jobs/?format=json"),
        "list_ui_page": rest_request(
            "GET", "/api/v2/jobs/?project_id=16&limit=10&offset=20"
            "&ordering=-created_at&status=STARTED", accept="application/json"),
        "list_ui_filters": rest_request(
            "GET", "/api/v2/jobs/?project_id=16&job_type_key=ml"
            "&source_image_collection=111&pipeline=3&deployment=60"
            "&ordering=name,-finished_at"),
        "list_search_ids_only": rest_request(
            "GET", "/api/v2/jobs/?search=moth%20detector&ids_only=true"
            "&incomplete_only&cutoff_hours=24"),
        "list_lenient_paging": rest_request(
            "GET", "/api/v2/jobs/?limit=abc&offset=-1&limit=5"),
        "create_start_now": rest_request(
            "POST", "/api/v2/jobs/?start_now", JSON, body=CREATE_BODY),
        "create_ui_ml": rest_request("POST", "/api/v2/jobs/", JSON,
                                     body=UI_ML_BODY),
        "create_form": rest_request(
            "POST", "/api/v2/jobs/", FORM,
            body="name=Populate+captures+for+collection+111&delay=0"
            "&project_id=16&source_image_collection_id=111"
            "&job_type_key=populate_captures_collection&shuffle=on"),
        "create_text_plain": rest_request("POST", "/api/v2/jobs/",
                                          "text/plain", body="name=x"),
        "create_not_json": rest_request("POST", "/api/v2/jobs/", JSON,
                                        body='{"name": "x", '),
        "create_slashless": rest_request("POST", "/api/v2/jobs?start_now=1",
                                         JSON, body=CREATE_BODY),
        "detail": rest_request("GET", "/api/v2/jobs/1256/"),
        "detail_head": rest_request("HEAD", "/api/v2/jobs/1256/"),
        "detail_slashless": rest_request("GET", "/api/v2/jobs/1256?format=json"),
        "detail_json_suffix": rest_request("GET", "/api/v2/jobs/1256.json"),
        "detail_api_suffix": rest_request("GET", "/api/v2/jobs/1256.api/"),
        "detail_browser": rest_request("GET", "/api/v2/jobs/1256/",
                                       accept=BROWSER_ACCEPT),
        "detail_not_acceptable": rest_request(
            "GET", "/api/v2/jobs/1256/", accept="application/json;q=0"),
        "detail_bad_id": rest_request("GET", "/api/v2/jobs/abc/"),
        "detail_escaped_id": rest_request("GET",
                                          "/api/v2/jobs/%31%32%35%36/"),
        "detail_project_scope": rest_request(
            "GET", "/api/v2/jobs/1256/?project_id=16&cutoff_hours=x"),
        "update_put": rest_request(
            "PUT", "/api/v2/jobs/1256/", JSON, body=json.dumps({
                "name": "Populate captures for collection 111", "delay": 0,
                "project_id": 16, "limit": 500, "shuffle": False,
                "source_image_collection_id": 111})),
        "update_patch": rest_request(
            "PATCH", "/api/v2/jobs/1256/", "application/json; charset=utf-8",
            body='{"name": "Populate collection 111 again"}'),
        "update_patch_form": rest_request(
            "PATCH", "/api/v2/jobs/1256/", "multipart/form-data; boundary=x",
            body="delay=2&pipeline_id="),
        "delete": rest_request("DELETE", "/api/v2/jobs/1256/"),
        "run": rest_request("POST", "/api/v2/jobs/1256/run/?no_async=false"),
        "retry": rest_request("POST", "/api/v2/jobs/1256/retry/"),
        "cancel": rest_request("POST", "/api/v2/jobs/1256/cancel/"),
        "cancel_wrong_verb": rest_request("GET", "/api/v2/jobs/1256/cancel/"),
        "options": rest_request("OPTIONS", "/api/v2/jobs/1256/"),
        "api_root_html": rest_request("GET", "/api/v2/", accept="text/html"),
        "api_root_suffix": rest_request("GET", "/api/v2/.json"),
        "progress_sse": rest_request(
            "GET", "/api/v2/jobs/1256/progress/", accept="text/event-stream",
            last_event_id="5"),
        "progress_ndjson_bad_resume": rest_request(
            "GET", "/api/v2/jobs/1256/progress/?format=ndjson&logs_limit=10",
            last_event_id="abc"),
        "catalog_import": rest_request("POST", "/api/v2/catalog/import/",
                                       JSON, body=demo_catalog),
        "project": rest_request("GET", "/api/v2/projects/16/"),
        "collection": rest_request("GET",
                                   "/api/v2/captures/collections/111/"),
        "pipeline_html": rest_request("GET",
                                      "/api/v2/ml/pipelines/3/?format=api"),
        "unknown_path": rest_request("GET", "/api/v2/events/12/"),
    }


# ---- json_body ---------------------------------------------------------------


def json_body_seeds():
    with open(os.path.join(HERE, "..", "..", "tools",
                           "demo-catalog.json")) as catalog:
        demo_catalog = catalog.read()
    seed_job = os.path.join(HERE, "..", "..", "..", "shared", "seed",
                            "job-1256.json")
    seeds = {
        "readme_create": CREATE_BODY,
        "ui_ml": UI_ML_BODY,
        "ui_single_image": json.dumps({
            "delay": 0, "name": "Process one capture", "project_id": "16",
            "pipeline_id": "3", "source_image_single_id": "5001"}),
        "patch_name": '{"name": "Populate collection 111 again"}',
        "put_every_field": json.dumps({
            "name": "Sync station 1", "delay": 3, "project_id": 16,
            "limit": 1000, "shuffle": False, "deployment_id": 60,
            "source_image_collection_id": None,
            "source_image_single_id": None, "pipeline_id": None,
            "job_type_key": "data_storage_sync"}),
        "blank_name": '{"name": "   ", "project_id": 16, "delay": 0}',
        "bad_delay": '{"name": "x", "project_id": 16, "delay": "x"}',
        "camel_case": '{"name": "camel", "projectId": 16, "jobTypeKey": '
                      '"data_export", "sourceImageCollectionId": "111"}',
        "nulls": '{"name": null, "project_id": null, "limit": null}',
        "loose_types": '{"name": 12.5, "project_id": " 16 ", "shuffle": '
                       '"off", "limit": 1.0e3, "delay": 2147483648}',
        "unicode_name": '{"name": "\\u00c9mile\'s job \\u2028 \\ud83d\\ude34 ",'
                        ' "project_id": 16}',
        "null_character": '{"name": "x\\u0000y", "project_id": 16}',
        "unknown_type": '{"name": "x", "project_id": 16, '
                        '"job_type_key": "unknown_type"}',
        "extra_members": '{"extra": {"a": [1, 2, {"b": null}]}, "name": "x",'
                         ' "project_id": 16, "details": "/api/v2/jobs/1/"}',
        "out_of_range": '{"name": "x", "project_id": 16, "delay": -1, '
                        '"limit": -2147483649}',
        "duplicate_member": '{"name": "first", "name": "second", '
                            '"project_id": 16, "projectId": 18}',
        "array": '[{"name": "x"}]',
        "string": '"Populate captures"',
        "truncated": '{"name": "Populate captures for',
        "catalog_demo": demo_catalog,
        "catalog_project": json.dumps({"projects": [
            {"id": 16, "name": "Aarhus Universitet, Department of "
             "Ecoscience"}]}),
    }
    if os.path.exists(seed_job):
        with open(seed_job) as job:
            seeds["seed_job_document"] = job.read()
    return {name: text.encode() for name, text in seeds.items()}


# ---- progress_merge ------------------------------------------------------------

# Operation numbers of progress_merge_target.cc.
(ADD_STAGE, UPDATE_STAGE, WORKER_UPDATES, RECOMPUTE, RESET, ENQUEUE, RETRY,
 CANCEL, SET_STATUS, GRANT_LEASE, END_RUN, EXPIRE_LEASE, RELEASE_LEASE,
 HAND_TO_WORKERS, REAP, ADVANCE_CLOCK, LABELS, ADD_PARAM,
 APPLY_SETUP) = range(19)
LAST_OPERATION = APPLY_SETUP


class ProgressSeed:
    """A progress_merge input: the starting job, then operations."""

    def __init__(self, job_type, delay, pipeline, status):
        self.input = Input()
        self.input.integer(0, len(JOB_TYPES) - 1, JOB_TYPES.index(job_type))
        self.input.integer(-2, 10, delay)
        self.input.boolean(pipeline)
        self.input.pick(STORED_STATUSES, status)
        # The stages the setup step gives the job.
        self.stages = (1 if delay != 0 else 0) + (3 if pipeline else 0)

    def _op(self, operation):
        self.input.enum(LAST_OPERATION, operation)

    def _progress(self, value):
        """AnyProgress: 0 and 1 exactly, else a probability."""
        if value == 0.0:
            self.input.integer(0, 9, 0)
        elif value == 1.0:
            self.input.integer(0, 9, 1)
        else:
            self.input.integer(0, 9, 2)
            self.input.probability(value)

    def _value(self, value):
        """AnyValue for None, a bool, a progress number, a count, a text."""
        if value is None:
            self.input.integer(0, 6, 0)
        elif isinstance(value, bool):
            self.input.integer(0, 6, 3)
            self.input.boolean(value)
        elif isinstance(value, float):
            self.input.integer(0, 6, 1)
            self._progress(value)
        elif isinstance(value, int):
            self.input.integer(0, 6, 4)
            self.input.integer(0, 1000000, value)
        else:
            self.input.integer(0, 6, 2)
            self.input.text(value)

    def worker_updates(self, updates, new_stages=0):
        """updates: dicts with name, status, progress, params [(name, v)];
        new_stages: how many stages the updates create."""
        self._op(WORKER_UPDATES)
        self.stages += new_stages
        self.input.integer(0, 4, len(updates))
        for update in updates:
            self.input.boolean(False)  # no key: the stage of the name
            self.input.text(update["name"])
            self.input.integer(0, 12, STATUS[update.get("status",
                                                        "UNSPECIFIED")])
            has_progress = "progress" in update
            self.input.boolean(has_progress)
            if has_progress:
                self._progress(update["progress"])
            params = update.get("params", [])
            self.input.integer(0, 3, len(params))
            for name, value in params:
                self.input.text(name)
                self.input.text("")
                self._value(value)
        return self

    def update_stage(self, name, status=None, progress=None):
        self._op(UPDATE_STAGE)
        if self.stages > 0:
            self.input.boolean(False)  # a text, not an existing stage
        self.input.text(name)
        self.input.boolean(status is not None)
        if status is not None:
            self.input.integer(0, 12, STATUS[status])
        self.input.boolean(progress is not None)
        if progress is not None:
            self._progress(progress)
        self.input.boolean(False)  # no new name
        self.input.integer(0, 3, 0)
        return self

    def add_stage(self, name, key=""):
        self._op(ADD_STAGE)
        self.input.text(name)
        self.input.boolean(not key)
        if key:
            self.input.text(key)
        self.stages += 1
        return self

    def simple(self, operation):
        """An operation that reads nothing more."""
        self._op(operation)
        return self

    def reset(self, status):
        self._op(RESET)
        self.input.pick(STORED_STATUSES, status)
        return self

    def set_status(self, status, guard):
        """guard: 'any' or 'finish'."""
        self._op(SET_STATUS)
        self.input.integer(0, 12, STATUS[status])
        self.input.integer(0, 2, 0 if guard == "any" else 1)
        return self

    def grant_lease(self):
        self._op(GRANT_LEASE)
        self.input.boolean(True)  # from the queue the job waits in
        return self

    def end_run(self, status, error="", result=None):
        self._op(END_RUN)
        self.input.integer(0, 12, STATUS[status])
        self.input.text(error)
        self.input.boolean(result is not None)
        if result is not None:
            self._value(result)
        return self

    def expire_lease(self, max_attempts, force=False):
        self._op(EXPIRE_LEASE)
        self.input.integer(1, 4, max_attempts)
        self.input.boolean(force)
        return self

    def reap(self, minutes):
        self._op(REAP)
        self.input.integer(0, 30, minutes)
        return self

    def advance(self, seconds):
        self._op(ADVANCE_CLOCK)
        self.input.integer(0, 3600, seconds)
        return self

    def labels(self, status, progress):
        self._op(LABELS)
        self.input.integer(0, 12, STATUS[status])
        self._progress(progress)
        return self

    def add_param(self, stage, name, value, update=True):
        self._op(ADD_PARAM)
        self.input.integer(0, self.stages - 1, stage)
        self.input.text(name)
        self._value(value)
        self.input.boolean(not update)
        return self

    def data(self):
        return self.input.data()


POPULATE = "Populate captures collection"


def progress_merge_seeds():
    seeds = {}
    # Job 1256 of the seed document, run by the reference worker.
    seeds["populate_success"] = (
        ProgressSeed("populate_captures_collection", 0, False, "CREATED")
        .simple(ENQUEUE).grant_lease()
        .worker_updates([{"name": POPULATE, "status": "STARTED",
                          "progress": 0.0}], new_stages=1)
        .worker_updates([{"name": POPULATE, "status": "SUCCESS",
                          "progress": 1.0,
                          "params": [("Captures added", 1000)]}])
        .end_run("SUCCESS").labels("SUCCESS", 1.0).data())
    # An ML job with a delay: the runner's delay stage, then a worker.
    seeds["ml_pipeline_with_delay"] = (
        ProgressSeed("ml", 2, True, "PENDING")
        .grant_lease()
        .update_stage("delay", progress=0.5)
        .update_stage("delay", status="SUCCESS", progress=1.0)
        .simple(RECOMPUTE).simple(HAND_TO_WORKERS).grant_lease()
        .worker_updates([{"name": "Collect", "progress": 1.0,
                          "params": [("Total Images", 1000)]}])
        .worker_updates([{"name": "Process", "status": "STARTED",
                          "progress": 0.3,
                          "params": [("Processed", 300), ("Remaining", 700),
                                     ("Failed", 0)]}])
        .worker_updates([{"name": "Process", "progress": 1.0},
                         {"name": "Results", "progress": 1.0,
                          "params": [("Captures", 1000),
                                     ("Detections", 5321),
                                     ("Classifications", 5321)]}])
        .end_run("SUCCESS", result="done").data())
    seeds["cancel_while_running"] = (
        ProgressSeed("data_storage_sync", 0, False, "STARTED")
        .worker_updates([{"name": "Data storage sync", "status": "STARTED",
                          "progress": 0.25}], new_stages=1)
        .simple(CANCEL).labels("CANCELING", 0.25)
        .end_run("SUCCESS").simple(CANCEL).data())
    seeds["cancel_queued"] = (
        ProgressSeed("data_export", 0, False, "PENDING")
        .simple(CANCEL).simple(RETRY).simple(CANCEL).simple(ENQUEUE).data())
    seeds["retry_after_failure"] = (
        ProgressSeed("ml", 0, True, "FAILURE")
        .simple(RETRY).simple(ENQUEUE).simple(RETRY).grant_lease()
        .worker_updates([{"name": "Collect", "progress": 0.5}])
        .end_run("FAILURE", error="the pipeline is not reachable").data())
    seeds["lease_expiries"] = (
        ProgressSeed("post_processing", 0, False, "PENDING")
        .grant_lease().advance(61).expire_lease(3)
        .grant_lease().advance(61).expire_lease(3)
        .grant_lease().advance(30).expire_lease(3)
        .advance(31).expire_lease(3).data())
    seeds["lease_forced_end"] = (
        ProgressSeed("regroup_events", 0, False, "STARTED")
        .expire_lease(1, force=True).simple(RELEASE_LEASE).data())
    seeds["release_lease"] = (
        ProgressSeed("data_storage_sync", 0, False, "PENDING")
        .grant_lease().simple(RELEASE_LEASE).grant_lease()
        .simple(CANCEL).simple(RELEASE_LEASE).data())
    seeds["reaper"] = (
        ProgressSeed("populate_captures_collection", 0, False, "PENDING")
        .advance(600).reap(10).advance(1).reap(10).reap(0).data())
    seeds["progress_never_lowers"] = (
        ProgressSeed("data_export", 0, False, "STARTED")
        .worker_updates([{"name": "Export", "progress": 0.8}], new_stages=1)
        .worker_updates([{"name": "Export", "progress": 0.3}])
        .update_stage("export", progress=0.1)
        .simple(RECOMPUTE).data())
    seeds["stage_status_by_hand"] = (
        ProgressSeed("ml", 1, True, "STARTED")
        .update_stage("Process", status="FAILURE", progress=0.4)
        .update_stage("Results", status="CREATED", progress=1.0)
        .update_stage("missing stage", progress=0.5)
        .simple(RECOMPUTE).end_run("SUCCESS").data())
    seeds["reset_params"] = (
        ProgressSeed("ml", 3, True, "SUCCESS")
        .add_param(0, "Delay", 3).add_param(1, "Total Images", 1000)
        .add_param(1, "Note", "from the station", update=False)
        .add_param(2, "Ready", True)
        .reset("CREATED").labels("CREATED", 0.0).data())
    seeds["finish_guard"] = (
        ProgressSeed("populate_captures_collection", 0, False, "STARTED")
        .worker_updates([{"name": POPULATE, "progress": 0.5}], new_stages=1)
        .set_status("SUCCESS", "finish")
        .worker_updates([{"name": POPULATE, "progress": 1.0}])
        .set_status("SUCCESS", "finish").set_status("FAILURE", "any")
        .data())
    seeds["unicode_stages"] = (
        ProgressSeed("unknown", 0, False, "CREATED")
        .add_stage("\u00c9tape 1 \u2014 Collecte")
        .add_stage("Uploading snapshot", "uploading_snapshot")
        .worker_updates([{"name": "\u00e9tape 1 - collecte",
                          "status": "STARTED", "progress": 0.5,
                          "params": [("File URL", "s3://bucket/a.jpg"),
                                     ("Mood", "\U0001F634")]}])
        .labels("STARTED", 0.999).data())
    seeds["odd_statuses"] = (
        ProgressSeed("unknown", 0, False, "RECEIVED")
        .simple(CANCEL).simple(ENQUEUE).set_status("UNKNOWN", "any")
        .set_status("STARTED", "any").simple(APPLY_SETUP).data())
    return seeds


# ---- worker_report ---------------------------------------------------------

(LEASE_JOBS, HEARTBEAT, REPORT_PROGRESS, FINISH_JOB, ADVANCE, EXPIRE_LEASES,
 CLIENT_CANCEL, CLIENT_RETRY, CLIENT_RUN, REAP_JOBS, RUNNER_GRANT,
 RECOVER_RUNNER, RELEASE_RUNNER) = range(13)
LAST_CALL = RELEASE_RUNNER

WORKERS = ["worker-1", "worker-2", "", "host-1/pid-42"]
LEASE_TYPES = ["populate_captures_collection", "data_storage_sync", "ml",
               "unknown", "data_export", "post_processing", "regroup_events"]
STAGE_KEYS = ["delay", "collect", "process", "results"]
LEVELS = ["INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL", "", "info",
          "FATAL"]


class WorkerSeed:
    """A worker_report input: attempts, the jobs, then calls.

    The seed keeps the number of lease ids the target has seen and of the
    jobs it created, which decide how the target reads an id.
    """

    def __init__(self, max_attempts, jobs):
        """jobs: (type, delay, pipeline, start_now) tuples."""
        self.input = Input()
        self.leases = 0
        self.jobs = len(jobs)
        self.input.integer(1, 4, max_attempts)
        self.input.integer(1, 4, len(jobs))
        for job_type, delay, pipeline, start_now in jobs:
            self.input.integer(0, len(JOB_TYPES) - 1,
                               JOB_TYPES.index(job_type))
            self.input.integer(0, 4, 0 if delay else 1)
            self.input.boolean(pipeline)
            self.input.integer(0, 3, 1 if start_now else 0)

    def _call(self, call):
        self.input.enum(LAST_CALL, call)

    def _lease_id(self, lease):
        """lease: the index of a lease id seen, None for none, or a text."""
        if lease is None:
            self.input.integer(0, 3, 2)
        elif isinstance(lease, int):
            assert lease < self.leases
            self.input.integer(0, 3, 0)
            self.input.integer(0, self.leases - 1, lease)
        else:
            self.input.integer(0, 3, 3)
            self.input.text(lease)

    def _job_id(self, job):
        """job: the index of a created job, or ("id", n) for any number."""
        if isinstance(job, tuple):
            self.input.integer(0, 4, 0)
            self.input.int64(job[1])
            return
        self.input.integer(0, 4, 1)
        self.input.integer(0, self.jobs - 1, job)

    def _duration(self, seconds):
        if seconds is None:
            self.input.boolean(False)
            return
        self.input.boolean(True)
        if 1 <= seconds <= 600:
            self.input.integer(0, 3, 0)
            self.input.integer(1, 600, seconds)
        elif -100 <= seconds <= 0:
            self.input.integer(0, 3, 2)
            self.input.integer(-100, 0, seconds)
        else:
            self.input.integer(0, 3, 3)
            self.input.integer(3600, 315576000000, seconds)

    def _progress(self, value):
        if value == 1.0:
            self.input.integer(0, 5, 0)
        elif isinstance(value, str):
            # The odd values: -1.0, 2.0, 1e300, -0.0, inf.
            self.input.integer(0, 5, 3)
            self.input.pick(["-1", "2", "1e300", "-0", "inf"], value)
        else:
            self.input.integer(0, 5, 1)
            self.input.probability(value)

    def _value(self, value):
        if value is None:
            self.input.integer(0, 5, 0)
        elif isinstance(value, bool):
            self.input.integer(0, 5, 2)
            self.input.boolean(value)
        elif isinstance(value, int):
            self.input.integer(0, 5, 4)
            self.input.integer(0, 1000000, value)
        else:
            self.input.integer(0, 5, 5)
            self.input.text(str(value))

    def _stages(self, stages):
        """stages: dicts with key and/or name, status, progress, params."""
        self.input.integer(0, 3, len(stages))
        for stage in stages:
            key, name = stage.get("key"), stage.get("name")
            if key in STAGE_KEYS and name is None:
                self.input.integer(0, 2, 0)
                self.input.pick(STAGE_KEYS, key)
            elif key is None:
                self.input.integer(0, 2, 1)
                self.input.text(name)
            else:
                self.input.integer(0, 2, 2)
                self.input.text(key)
                self.input.text(name or "")
            self.input.integer(0, 11, STATUS[stage.get("status",
                                                       "UNSPECIFIED")])
            self.input.boolean("progress" in stage)
            if "progress" in stage:
                self._progress(stage["progress"])
            params = stage.get("params", [])
            self.input.integer(0, 2, len(params))
            for param_name, value in params:
                self.input.text(param_name)
                self.input.boolean(False)
                self._value(value)

    def _logs(self, logs):
        """logs: (level, message) pairs; message None is one too long."""
        self.input.integer(0, 3, len(logs))
        for level, message in logs:
            self.input.pick(LEVELS, level)
            if message is None:
                self.input.integer(0, 3, 1)
            elif message.strip() == "":
                self.input.integer(0, 3, 0)
            else:
                self.input.integer(0, 3, 2)
                self.input.text(message)

    def lease_jobs(self, worker, types, max_jobs, length=None, wait=0,
                   gone_after=None, granted=0):
        """granted: how many leases the call hands out."""
        self._call(LEASE_JOBS)
        self.input.pick(WORKERS, worker)
        self.input.integer(0, 3, len(types))
        for job_type in types:
            if job_type in LEASE_TYPES:
                self.input.integer(0, 9, 1)
                self.input.pick(LEASE_TYPES, job_type)
            else:
                self.input.integer(0, 9, 0)
                self.input.text(job_type)
        self.input.integer(-1, 101, max_jobs)
        self._duration(length)
        self.input.integer(0, 3, {None: 0, 0: 1, -1: 2, 31: 3}[wait])
        self.input.boolean(gone_after is None)
        if gone_after is not None:
            self.input.integer(0, 6, gone_after)
        self.leases += granted
        return self

    def heartbeat(self, lease, job, length=None):
        self._call(HEARTBEAT)
        self._lease_id(lease)
        self._job_id(job)
        self._duration(length)
        return self

    def report(self, lease, job, stages=(), logs=(), length=None):
        self._call(REPORT_PROGRESS)
        self._lease_id(lease)
        self._job_id(job)
        self._stages(stages)
        self._logs(logs)
        self._duration(length)
        return self

    def finish(self, lease, job, status, result=None, error="", stages=(),
               logs=()):
        self._call(FINISH_JOB)
        self._lease_id(lease)
        self._job_id(job)
        if status in ("SUCCESS", "FAILURE"):
            self.input.integer(0, 3, 1)
            self.input.pick(["SUCCESS", "FAILURE"], status)
        else:
            self.input.integer(0, 3, 0)
            self.input.integer(0, 11, STATUS[status])
        self.input.boolean(result is not None)
        if result is not None:
            self._value(result)
        self.input.text(error)
        self._stages(stages)
        self._logs(logs)
        return self

    def advance(self, seconds):
        self._call(ADVANCE)
        self.input.integer(0, 7200, seconds)
        return self

    def client(self, call, job):
        self._call(call)
        self._job_id(job)
        return self

    def simple(self, call):
        self._call(call)
        return self

    def reap(self, minutes, dry_run):
        self._call(REAP_JOBS)
        self.input.integer(0, 20, minutes)
        self.input.boolean(dry_run)
        return self

    def runner_grant(self, job, granted):
        self._call(RUNNER_GRANT)
        self._job_id(job)
        self.leases += 1 if granted else 0
        return self

    def data(self):
        return self.input.data()


POPULATE_KEY = "populate_captures_collection"
LABEL = "Random 1000"


def worker_report_seeds():
    populate = ("populate_captures_collection", False, False, True)
    seeds = {}
    # The reference worker populating collection 111 (the seed job).
    seeds["populate_success"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("host-1/pid-42", ["populate_captures_collection"], 1,
                    granted=1)
        .report(0, 0, stages=[{"key": POPULATE_KEY, "name": POPULATE,
                               "status": "STARTED", "progress": 0.0}],
                logs=[("INFO", f"Populating source image collection {LABEL}")])
        .report(0, 0, logs=[("INFO", "Sampling using method 'random' with "
                             "size=1000"),
                            ("DEBUG", "1000 files found")])
        .heartbeat(0, 0, length=60)
        .finish(0, 0, "SUCCESS", result="1000",
                stages=[{"key": POPULATE_KEY, "name": POPULATE,
                         "status": "SUCCESS", "progress": 1.0,
                         "params": [("Captures added", 1000)]}],
                logs=[("INFO", f"Added 1000 captures to source image "
                       f"collection {LABEL}")])
        .finish(0, 0, "SUCCESS").data())
    seeds["heartbeats"] = (
        WorkerSeed(3, [("data_storage_sync", False, False, True)])
        .lease_jobs("worker-1", ["data_storage_sync"], 1, length=30,
                    granted=1)
        .advance(20).heartbeat(0, 0, length=30)
        .advance(20).heartbeat(0, 0)
        .advance(59).heartbeat(0, 0, length=600).data())
    seeds["lease_runs_out"] = (
        WorkerSeed(2, [("data_export", False, False, True)])
        .lease_jobs("worker-1", ["data_export"], 1, granted=1)
        .advance(61).simple(EXPIRE_LEASES)
        .report(0, 0, stages=[{"name": "Export", "progress": 0.5}])
        .lease_jobs("worker-2", ["data_export"], 1, granted=1)
        .advance(61).simple(EXPIRE_LEASES)
        .lease_jobs("worker-2", ["data_export"], 1).data())
    seeds["cancel_while_leased"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("worker-1", ["populate_captures_collection"], 5,
                    granted=1)
        .client(CLIENT_CANCEL, 0).heartbeat(0, 0)
        .report(0, 0, logs=[("WARNING", "stopping: the job was cancelled")])
        .finish(0, 0, "FAILURE", error="cancelled").data())
    seeds["stale_lease"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    granted=1)
        .advance(120).heartbeat(0, 0)
        .report("0123456789abcdef0123456789abcdef", 0)
        .heartbeat(None, 0).heartbeat(0, ("id", 999)).data())
    seeds["bad_lease_requests"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("", ["populate_captures_collection"], 1)
        .lease_jobs("worker-1", [], 1)
        .lease_jobs("worker-1", ["mystery"], 1)
        .lease_jobs("worker-1", ["populate_captures_collection"], 101)
        .lease_jobs("worker-1", ["populate_captures_collection"], -1)
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    length=0)
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    length=7200)
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    wait=31)
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    wait=-1).data())
    seeds["success_needs_every_stage"] = (
        WorkerSeed(3, [("ml", False, True, True)])
        .lease_jobs("worker-1", ["ml"], 1, granted=1)
        .report(0, 0, stages=[{"key": "collect", "progress": 1.0},
                              {"key": "process", "status": "STARTED",
                               "progress": 0.5}])
        .finish(0, 0, "SUCCESS")
        .finish(0, 0, "SUCCESS", stages=[{"key": "process", "progress": 1.0},
                                         {"key": "results",
                                          "progress": 1.0}])
        .data())
    seeds["runner_queue"] = (
        WorkerSeed(3, [("unknown", False, False, True),
                       ("ml", True, True, True)])
        .lease_jobs("worker-1", ["unknown", "ml"], 2)
        .runner_grant(0, True).runner_grant(1, True)
        .report(1, 1, stages=[{"key": "delay", "status": "SUCCESS",
                               "progress": 1.0}])
        .simple(RECOVER_RUNNER).runner_grant(0, True)
        .simple(RELEASE_RUNNER).data())
    seeds["reaper"] = (
        WorkerSeed(3, [populate, ("data_export", False, False, False)])
        .advance(1200).reap(10, True).reap(10, False)
        .client(CLIENT_RUN, 1).client(CLIENT_RUN, 0).data())
    seeds["retry_after_failure"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    granted=1)
        .report(0, 0, stages=[{"key": POPULATE_KEY, "name": POPULATE,
                               "progress": 0.7}])
        .finish(0, 0, "FAILURE", error="cannot save the captures to "
                "Random 1000: UNAVAILABLE")
        .client(CLIENT_RETRY, 0).client(CLIENT_RETRY, 0)
        .lease_jobs("worker-2", ["populate_captures_collection"], 1,
                    granted=1)
        .finish(1, 0, "FAILURE").data())
    seeds["two_workers_many_jobs"] = (
        WorkerSeed(3, [populate, populate,
                       ("data_storage_sync", False, False, True),
                       ("regroup_events", False, False, True)])
        .lease_jobs("worker-1", ["populate_captures_collection",
                                 "data_storage_sync"], 2, granted=2)
        .lease_jobs("worker-2", ["populate_captures_collection",
                                 "regroup_events", "data_storage_sync"], 3,
                    granted=2)
        .finish(0, 0, "SUCCESS").finish(2, 2, "FAILURE", error="boom")
        .data())
    seeds["caller_goes_away"] = (
        WorkerSeed(3, [populate, populate])
        .lease_jobs("worker-1", ["populate_captures_collection"], 2,
                    gone_after=1)
        .lease_jobs("worker-1", ["populate_captures_collection"], 2,
                    gone_after=0)
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    granted=1).data())
    seeds["log_lines"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    granted=1)
        .report(0, 0, logs=[("FATAL", "not a level")])
        .report(0, 0, logs=[("INFO", "   ")])
        .report(0, 0, logs=[("ERROR", None)])
        .report(0, 0, logs=[("", "no level is INFO"),
                            ("CRITICAL", "disk full"),
                            ("ERROR", "one capture failed")]).data())
    seeds["bad_stage_updates"] = (
        WorkerSeed(3, [populate])
        .lease_jobs("worker-1", ["populate_captures_collection"], 1,
                    granted=1)
        .report(0, 0, stages=[{"key": "nowhere", "progress": 0.5}])
        .report(0, 0, stages=[{"name": POPULATE, "progress": "2"}])
        .report(0, 0, stages=[{"name": POPULATE, "progress": "-1"}])
        .report(0, 0, stages=[{"name": POPULATE, "status": "PENDING"}])
        .report(0, 0, stages=[{"name": "", "params": [("", True)]}])
        .finish(0, 0, "REVOKED").data())
    return seeds


# ---- Writing -------------------------------------------------------------------


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(folder, name), "wb") as out:
            out.write(data)
    print(f"{target}: {len(seeds)} seeds")


def main():
    write("rest_request_fuzzer", rest_request_seeds())
    write("json_body_fuzzer", json_body_seeds())
    write("progress_merge_fuzzer", progress_merge_seeds())
    write("worker_report_fuzzer", worker_report_seeds())


if __name__ == "__main__":
    main()
