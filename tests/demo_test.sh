#!/usr/bin/env bash
# The seed job end to end, inside Bazel: tools/demo run over the test's
# runfiles (job_server, jobctl, the Python protos and the worker), so the
# demo a person runs and the test are one flow. tools/test passes
# JOBLINE_SEED_DIR, and the demo then checks against the seed file itself.
set -euo pipefail
root="${TEST_SRCDIR:?run this with bazel test}/${TEST_WORKSPACE:-jobline}"
exec "$root/tools/demo" --bin_dir "$root"
