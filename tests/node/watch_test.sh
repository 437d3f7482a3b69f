#!/usr/bin/env bash
# //tests:node_watch_test: WatchProgress read by the Node.js client (see
# watch_test.js) over the test's runfiles.
#
# The npm packages are not part of the build: tools/test installs them with
# `npm ci --prefix tests/node` and passes their folder as
# JOBLINE_NODE_MODULES. Without it the node_modules beside the checkout's
# watch_test.js is used, when there is one.
set -euo pipefail
root="${TEST_SRCDIR:?run this with bazel test}/${TEST_WORKSPACE:-jobline}"
script="$root/tests/node/watch_test.js"

fail() {
  echo "node_watch_test: $*" >&2
  exit 1
}

command -v node >/dev/null ||
  fail "node is not installed (tools/install-deps installs Debian's nodejs)"

# The runfile is a link into the checkout; its node_modules is beside it.
modules="${JOBLINE_NODE_MODULES:-}"
[ -n "$modules" ] ||
  modules="$(dirname "$(readlink -f "$script")")/node_modules"
[ -f "$modules/@grpc/grpc-js/package.json" ] &&
  [ -f "$modules/@grpc/proto-loader/package.json" ] ||
  fail "no @grpc/grpc-js and @grpc/proto-loader in $modules: run" \
       "\`npm ci --prefix tests/node\` (tools/test does) and pass" \
       "--test_env=JOBLINE_NODE_MODULES=<checkout>/tests/node/node_modules"

export NODE_PATH="$modules"
exec node "$script" "$root"
