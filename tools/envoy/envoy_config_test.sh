#!/usr/bin/env bash
# //tools/envoy:envoy_config_test: checks envoy.yaml, the run script and the
# descriptor set against each other and against docs/rest.md (see
# envoy_config_test.py). Debian's python3-protobuf and python3-yaml are
# seen only by /usr/bin/python3.
set -euo pipefail
root="${TEST_SRCDIR:?run this with bazel test}/${TEST_WORKSPACE:-jobline}"
exec /usr/bin/python3 "$root/tools/envoy/envoy_config_test.py" "$root"
