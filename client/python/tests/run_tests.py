"""Runs every test_*.py of this folder and reports like a Bazel test.

Prints unittest's verbose report; when XML_OUTPUT_FILE is set (as `bazel
test` sets it) also writes a JUnit XML report there, one testcase per test,
which tools/test counts. Exits 0 when every test passed, else 1.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET
from typing import List, Tuple

# (test id, seconds, outcome, detail): outcome is "passed", "failure",
# "error" or "skipped".
Record = Tuple[str, float, str, str]


class _RecordingResult(unittest.TextTestResult):
    """A TextTestResult that also keeps one Record per test."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records: List[Record] = []
        self._began = 0.0

    def startTest(self, test: unittest.TestCase) -> None:
        self._began = time.monotonic()
        super().startTest(test)

    def _record(self, test: unittest.TestCase, outcome: str,
                detail: str = "") -> None:
        self.records.append((test.id(), time.monotonic() - self._began,
                             outcome, detail))

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failure" if issubclass(err[0], test.failureException) \
                else "error"
            self._record(subtest, kind, self._exc_info_to_string(err, test))


def _write_junit(path: str, records: List[Record]) -> None:
    """Writes `records` as a JUnit XML report at `path`."""
    failures = sum(1 for r in records if r[2] == "failure")
    errors = sum(1 for r in records if r[2] == "error")
    suite = ET.Element("testsuite", name="worker_test",
                       tests=str(len(records)), failures=str(failures),
                       errors=str(errors))
    for test_id, seconds, outcome, detail in records:
        module_class, _, name = test_id.rpartition(".")
        case = ET.SubElement(suite, "testcase", classname=module_class,
                             name=name, time=f"{seconds:.3f}")
        if outcome in ("failure", "error"):
            ET.SubElement(case, outcome, message=outcome).text = detail
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", message=detail)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def main() -> int:
    # The library's warnings are expected in several tests; keep them out
    # of the report (assertLogs still sees them).
    logging.getLogger().addHandler(logging.NullHandler())
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py",
                                                top_level_dir=here)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=_RecordingResult)
    result = runner.run(suite)
    xml_path = os.environ.get("XML_OUTPUT_FILE")
    if xml_path:
        _write_junit(xml_path, result.records)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
