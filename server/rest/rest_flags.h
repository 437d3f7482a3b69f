// The command-line flags of the REST face that job_server and jobline_rest
// share: the body and stream limits and the slow-client bounds.
//
// Each binary keeps its own --host, --http_port and --time_zone (their
// meanings differ between the two). Both call CheckRestFlags() once after
// parsing and then ApplyRestFlags() to fill their RestServerOptions.
//
// Thread safety: call both after flag parsing, before threads that change
// flags start; reading flags is then safe from any thread.

#ifndef JOBLINE_SERVER_REST_REST_FLAGS_H_
#define JOBLINE_SERVER_REST_REST_FLAGS_H_

#include "absl/status/status.h"
#include "gflags/gflags.h"
#include "server/rest/rest_server.h"

DECLARE_int32(max_body_kb);
DECLARE_int32(max_rest_streams);
DECLARE_int32(http_read_timeout_seconds);
DECLARE_int32(http_write_timeout_seconds);
DECLARE_int32(http_keep_alive_seconds);

namespace jobline {
namespace rest {

// OK when every flag above is in range, else INVALID_ARGUMENT whose message
// names the flag and its range.
absl::Status CheckRestFlags();

// Sets the limits and timeouts of `options` from the flags above; host,
// port, time zone and shutdown grace are left to the caller. The flags must
// have passed CheckRestFlags().
void ApplyRestFlags(RestServerOptions& options);

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_REST_FLAGS_H_
