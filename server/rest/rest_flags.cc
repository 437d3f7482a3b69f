#include "server/rest/rest_flags.h"

#include <cstddef>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

DEFINE_int32(max_body_kb, 1024,
             "Largest REST request body accepted, in KiB; a larger one is "
             "413.");
DEFINE_int32(max_rest_streams, 32,
             "Open REST progress streams allowed (each holds a REST "
             "connection thread); past it a new one is 429.");
DEFINE_int32(http_read_timeout_seconds, 10,
             "How long a REST client may take to send a whole request, head "
             "and body; a slower one gets 408 and its connection closes.");
DEFINE_int32(http_write_timeout_seconds, 10,
             "How long each write of a REST answer may wait for the client "
             "to read; then the connection closes.");
DEFINE_int32(http_keep_alive_seconds, 5,
             "How long an idle kept-alive REST connection stays open.");

namespace jobline {
namespace rest {
namespace {

// The longest timeout the flags take: a day.
constexpr int kMaxSeconds = 24 * 60 * 60;

}  // namespace

absl::Status CheckRestFlags() {
  // A stream holds a connection thread: some of the threads stay free for
  // ordinary requests.
  const int threads = RestServerOptions().threads;
  const int max_streams = threads * 3 / 4;
  if (FLAGS_max_rest_streams < 1 || FLAGS_max_rest_streams > max_streams) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_rest_streams must be 1 to ", max_streams, " (of ",
                     threads, " REST threads)"));
  }
  if (FLAGS_max_body_kb < 1 || FLAGS_max_body_kb > 1024 * 1024) {
    return absl::InvalidArgumentError("--max_body_kb must be 1 to 1048576");
  }
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"http_read_timeout_seconds",
                                    FLAGS_http_read_timeout_seconds},
        {"http_write_timeout_seconds", FLAGS_http_write_timeout_seconds},
        {"http_keep_alive_seconds", FLAGS_http_keep_alive_seconds}}) {
    if (value < 1 || value > kMaxSeconds) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be 1 to ", kMaxSeconds));
    }
  }
  return absl::OkStatus();
}

void ApplyRestFlags(RestServerOptions& options) {
  options.max_body_bytes = static_cast<size_t>(FLAGS_max_body_kb) * 1024;
  options.max_streams = FLAGS_max_rest_streams;
  options.read_timeout = absl::Seconds(FLAGS_http_read_timeout_seconds);
  options.write_timeout = absl::Seconds(FLAGS_http_write_timeout_seconds);
  options.keep_alive_timeout = absl::Seconds(FLAGS_http_keep_alive_seconds);
}

}  // namespace rest
}  // namespace jobline
