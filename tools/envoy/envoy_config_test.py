"""Checks tools/envoy against the protos: run by envoy_config_test.sh.

Usage: envoy_config_test.py RUNFILES_ROOT

Reads tools/envoy/envoy.yaml, the descriptor set
//protos:jobline_envoy_descriptor_set and docs/rest.md from the runfiles and
checks what Envoy would otherwise only report at startup or per request:
the config parses, the transcoder names exactly the annotated services, no
google.api.http template ends in "/" (Envoy refuses those), every body and
path variable names a field, the error detail types are present, the route
table of docs/rest.md is the annotations' table, and tools/envoy/run writes
a config with the values it is given. When an `envoy` binary is on PATH it
also validates the written config with it.

Writes a JUnit XML report to $XML_OUTPUT_FILE (one testcase per check) when
set, as `bazel test` sets it. Run with /usr/bin/python3 (Debian's
python3-protobuf and python3-yaml).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

import yaml
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

ROOT = ""  # The runfiles root, set by main().

TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
ROUTER = "envoy.filters.http.router"
VERBS = ("get", "put", "post", "delete", "patch")


def _path(relative):
    return os.path.join(ROOT, relative)


def _load_config(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _connection_manager(config):
    """The http_connection_manager config of the only listener."""
    listeners = config["static_resources"]["listeners"]
    assert len(listeners) == 1, listeners
    filters = listeners[0]["filter_chains"][0]["filters"]
    assert len(filters) == 1, filters
    return filters[0]["typed_config"]


def _http_filter(config, name):
    for http_filter in _connection_manager(config)["http_filters"]:
        if http_filter["name"] == name:
            return http_filter["typed_config"]
    raise AssertionError("no http filter " + name)


def _listener_port(config):
    listener = config["static_resources"]["listeners"][0]
    return listener["address"]["socket_address"]["port_value"]


def _cluster_address(config):
    """(address, port) of the only endpoint of the only cluster."""
    clusters = config["static_resources"]["clusters"]
    assert len(clusters) == 1, clusters
    endpoints = clusters[0]["load_assignment"]["endpoints"]
    socket = endpoints[0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"]
    return socket["address"], socket["port_value"]


class Descriptors:
    """The descriptor set, with the google.api.http rule of each method."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        self.files = descriptor_pb2.FileDescriptorSet.FromString(self.data)
        self.pool = descriptor_pool.DescriptorPool()
        for file_proto in self.files.file:
            self.pool.Add(file_proto)
        # MethodOptions from this pool, so that its google.api.http
        # extension (from the same pool) can be read.
        self._http = self.pool.FindExtensionByName("google.api.http")
        self._options_class = message_factory.MessageFactory(
            self.pool).GetPrototype(
                self.pool.FindMessageTypeByName(
                    "google.protobuf.MethodOptions"))

    def services(self):
        """Every service: {full name: ServiceDescriptor}."""
        result = {}
        for file_proto in self.files.file:
            for service in file_proto.service:
                name = f"{file_proto.package}.{service.name}"
                result[name] = self.pool.FindServiceByName(name)
        return result

    def rule(self, method):
        """The method's HttpRule, or None without an annotation."""
        options = self._options_class.FromString(
            method.GetOptions().SerializeToString())
        if not options.HasExtension(self._http):
            return None
        return options.Extensions[self._http]

    def bindings(self, service_names=None):
        """(verb, template, body, method) of every binding, main rule and
        additional_bindings, of the named services (default all)."""
        result = []
        for name, service in sorted(self.services().items()):
            if service_names is not None and name not in service_names:
                continue
            for method in service.methods:
                rule = self.rule(method)
                if rule is None:
                    continue
                for binding in [rule] + list(rule.additional_bindings):
                    kind = binding.WhichOneof("pattern")
                    if kind == "custom":
                        verb = binding.custom.kind.upper()
                        template = binding.custom.path
                    else:
                        verb = kind.upper()
                        template = getattr(binding, kind)
                    result.append((verb, template, binding.body, method))
        return result


def _template_variables(template):
    """Field names of the {name} / {name=...} variables of a template."""
    return [m.split("=")[0] for m in re.findall(r"\{([^}]*)\}", template)]


def _run(*args, env_extra=None):
    """Runs tools/envoy/run; returns (returncode, stdout, stderr)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    completed = subprocess.run(
        [_path("tools/envoy/run"), *args], env=env, capture_output=True,
        text=True, timeout=120, check=False)
    return completed.returncode, completed.stdout, completed.stderr


class EnvoyConfigTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.config = _load_config(_path("tools/envoy/envoy.yaml"))
        cls.descriptors = Descriptors(_path("protos/jobline_envoy.pb"))
        cls.transcoder = _http_filter(cls.config, TRANSCODER)

    def test_http_filters_are_the_transcoder_then_the_router(self):
        names = [f["name"] for f in
                 _connection_manager(self.config)["http_filters"]]
        self.assertEqual(names, [TRANSCODER, ROUTER])

    def test_transcoder_names_exactly_the_annotated_services(self):
        annotated = sorted({method.containing_service.full_name
                            for _, _, _, method in
                            self.descriptors.bindings()})
        self.assertEqual(annotated, ["jobline.v2.CatalogService",
                                     "jobline.v2.JobService"])
        self.assertEqual(sorted(self.transcoder["services"]), annotated)

    def test_print_options_follow_the_upstream_shape(self):
        self.assertEqual(self.transcoder["print_options"], {
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,
            "stream_newline_delimited": True,
        })

    def test_transcoder_options(self):
        self.assertEqual(self.transcoder["proto_descriptor"],
                         "@JOBLINE_DESCRIPTOR_SET@")
        self.assertIs(self.transcoder["match_incoming_request_route"], False)
        self.assertIs(self.transcoder["ignore_unknown_query_parameters"],
                      True)
        self.assertIs(self.transcoder["auto_mapping"], False)
        self.assertIs(self.transcoder["convert_grpc_status"], True)
        self.assertIs(self.transcoder["query_param_unescape_plus"], True)
        self.assertEqual(self.transcoder["request_validation_options"],
                         {"reject_unknown_method": True})

    def test_no_template_ends_in_a_slash(self):
        bindings = self.descriptors.bindings()
        self.assertEqual(len(bindings), 16)
        for verb, template, _, method in bindings:
            with self.subTest(method=method.full_name, verb=verb):
                self.assertTrue(template.startswith("/api/v2/"), template)
                self.assertFalse(template.endswith("/"), template)

    def test_bodies_and_path_variables_name_request_fields(self):
        for verb, template, body, method in self.descriptors.bindings():
            fields = {f.name for f in method.input_type.fields}
            with self.subTest(method=method.full_name, verb=verb):
                if body and body != "*":
                    self.assertIn(body, fields)
                for variable in _template_variables(template):
                    self.assertIn(variable, fields)

    def test_error_detail_types_are_in_the_descriptor_set(self):
        for name in ("google.rpc.Status", "google.rpc.BadRequest",
                     "google.protobuf.Any"):
            with self.subTest(type=name):
                self.assertEqual(
                    self.descriptors.pool.FindMessageTypeByName(
                        name).full_name, name)

    def test_routes_name_existing_methods(self):
        routes = _connection_manager(self.config)["route_config"][
            "virtual_hosts"][0]["routes"]
        self.assertEqual([r["match"] for r in routes],
                         [{"path": "/jobline.v2.JobService/WatchProgress"},
                          {"prefix": "/"}])
        watch = self.descriptors.pool.FindMethodByName(
            "jobline.v2.JobService.WatchProgress")
        self.assertTrue(watch.server_streaming)
        self.assertEqual(routes[0]["route"]["timeout"], "0s")
        for route in routes:
            self.assertEqual(route["route"]["cluster"], "jobline_grpc")

    def test_listener_and_grpc_cluster(self):
        self.assertEqual(_listener_port(self.config), 8080)
        self.assertEqual(_cluster_address(self.config),
                         ("127.0.0.1", 50051))
        cluster = self.config["static_resources"]["clusters"][0]
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        self.assertEqual(options["explicit_http_config"],
                         {"http2_protocol_options": {}})

    def test_docs_route_table_is_the_annotations(self):
        with open(_path("docs/rest.md"), encoding="utf-8") as f:
            text = f.read()
        # Rows like: | GET | `/api/v2/jobs/{id}/` | `JobService.GetJob` |
        # `job` |
        row = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `(/api/v2/\S*)`"
                         r" \| `(\w+\.\w+)` \| (`\w+`|-) \|", re.MULTILINE)
        documented = sorted(
            (verb, path, method, body.strip("`") if body != "-" else "")
            for verb, path, method, body in row.findall(text))
        expected = sorted(
            (verb, template + "/",
             f"{method.containing_service.name}.{method.name}", body)
            for verb, template, body, method in self.descriptors.bindings())
        self.assertEqual(documented, expected)

    def test_run_writes_the_config_it_is_given(self):
        work = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        descriptor = _path("protos/jobline_envoy.pb")
        code, out, err = _run(
            "--print_config", "--descriptor_set=" + descriptor,
            "--port=18080", "--grpc_target=10.0.0.7:15051",
            env_extra={"JOBLINE_ENVOY_DIR": work})
        self.assertEqual(code, 0, err)
        self.assertNotIn("\"@JOBLINE_DESCRIPTOR_SET@\"", out)
        written = yaml.safe_load(out)
        self.assertEqual(_listener_port(written), 18080)
        self.assertEqual(_cluster_address(written), ("10.0.0.7", 15051))
        copy = _http_filter(written, TRANSCODER)["proto_descriptor"]
        self.assertEqual(copy, os.path.join(os.path.realpath(work),
                                            "jobline_envoy.pb"))
        with open(copy, "rb") as f:
            self.assertEqual(f.read(), self.descriptors.data)
        # The file written is the config printed.
        self.assertEqual(_load_config(os.path.join(work, "envoy.yaml")),
                         written)
        # Apart from the three values, it is the template.
        template = _load_config(_path("tools/envoy/envoy.yaml"))
        _http_filter(written, TRANSCODER)["proto_descriptor"] = (
            "@JOBLINE_DESCRIPTOR_SET@")
        written["static_resources"]["listeners"][0]["address"][
            "socket_address"]["port_value"] = 8080
        endpoint = written["static_resources"]["clusters"][0][
            "load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"] = {"address": "127.0.0.1",
                                                 "port_value": 50051}
        self.assertEqual(written, template)

    def test_run_without_envoy_says_where_to_get_it(self):
        work = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        code, out, err = _run(
            "--descriptor_set=" + _path("protos/jobline_envoy.pb"),
            env_extra={"JOBLINE_ENVOY_DIR": work,
                       "JOBLINE_ENVOY": "/nonexistent/envoy"})
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertIn("Envoy is not packaged for Debian 12", err)
        self.assertIn("envoyproxy/envoy", err)
        self.assertIn("The config is written: " +
                      os.path.join(os.path.realpath(work), "envoy.yaml"), err)

    def test_run_refuses_bad_flags(self):
        for flag in ("--grpc_target=localhost:50051", "--port=0",
                     "--port=70000", "--grpc_target=127.0.0.1",
                     "--no_such_flag"):
            with self.subTest(flag=flag):
                code, out, _ = _run(flag)
                self.assertEqual((code, out), (2, ""))

    @unittest.skipUnless(shutil.which("envoy"), "no envoy binary on PATH")
    def test_envoy_validates_the_written_config(self):
        work = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        code, out, err = _run(
            "--validate", "--descriptor_set=" + _path("protos/jobline_envoy.pb"),
            env_extra={"JOBLINE_ENVOY_DIR": work})
        self.assertEqual(code, 0, out + err)


class _Recorder(unittest.TextTestResult):
    """Keeps (test id, seconds, outcome, detail) for the XML report."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []
        self._start = 0.0

    def startTest(self, test):
        self._start = time.monotonic()
        super().startTest(test)

    def _keep(self, test, outcome, detail=""):
        self.records.append(
            (test.id(), time.monotonic() - self._start, outcome, detail))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._keep(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._keep(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._keep(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._keep(test, "skipped", reason)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._keep(subtest, "failure" if failed else "error",
                       self._exc_info_to_string(err, test))


def _write_report(path, records):
    """One testcase per record; a skipped check is marked not run."""
    suite = ET.Element(
        "testsuite", name="envoy_config_test", tests=str(len(records)),
        failures=str(sum(r[2] == "failure" for r in records)),
        errors=str(sum(r[2] == "error" for r in records)))
    for test_id, seconds, outcome, detail in records:
        classname, _, name = test_id.rpartition(".")
        case = ET.SubElement(suite, "testcase", classname=classname,
                             name=name, time=f"{seconds:.3f}")
        if outcome in ("failure", "error"):
            ET.SubElement(case, outcome, message=outcome).text = detail
        elif outcome == "skipped":
            case.set("status", "notrun")
            ET.SubElement(case, "skipped", message=detail)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def main():
    global ROOT
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ROOT = sys.argv[1]
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(EnvoyConfigTest)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=_Recorder).run(suite)
    if os.environ.get("XML_OUTPUT_FILE"):
        _write_report(os.environ["XML_OUTPUT_FILE"], result.records)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
