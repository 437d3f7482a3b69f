#!/usr/bin/env bash
# Runs the worker's Python unit tests (tests/run_tests.py) with Debian's
# Python, from a Bazel test's runfiles or, outside Bazel, from the
# checkout after `bazel build //protos:jobs_py`.
set -euo pipefail
if [ -n "${TEST_SRCDIR:-}" ]; then
  root="$TEST_SRCDIR/${TEST_WORKSPACE:-jobline}"
  protos="$root/protos"
else
  root="$(cd "$(dirname "$0")/../.." && pwd)"
  protos="$root/bazel-bin/protos"
fi
export PYTHONPATH="$protos:$root/client/python"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$root/client/python/tests/run_tests.py"
