#!/usr/bin/env bash
# //tests:python_watch_test: WatchProgress read by the Python client (see
# watch_test.py) over the test's runfiles. Debian's python3-grpcio is seen
# only by /usr/bin/python3.
set -euo pipefail
root="${TEST_SRCDIR:?run this with bazel test}/${TEST_WORKSPACE:-jobline}"
export PYTHONPATH="$root/protos"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$root/tests/python/watch_test.py" "$root"
