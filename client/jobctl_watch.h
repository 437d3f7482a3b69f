// `jobctl watch ID`: follows a job over JobService.WatchProgress until it
// is final, and shows it three ways:
//   - on a terminal, a live view redrawn in place (LiveView): the job's
//     name and status, a progress bar per stage with its params, the
//     summary bar and the newest log lines, fitted to the terminal's size;
//   - otherwise one line per change (PlainView): "[seq 7] STARTED  Delay 40%
//     (Mood: x)" when the stages changed, "[seq 5] STARTED" when only the
//     status did, and each new log line as the server wrote it;
//   - with --json one JSON document per message (JsonView).
//
// RunWatch reconnects by itself: when the stream breaks (UNAVAILABLE,
// CANCELLED or ABORTED, or an end without a final status) it tries again
// after 0.2 s, doubling to 5 s, resuming after the last sequence it showed,
// so nothing is shown twice. It says "connection lost; reconnecting..."
// once per loss and gives up when it has had no connection for the
// reconnect timeout.
//
// Exit status (WatchExit): 0 SUCCESS, 1 FAILURE or another error of the
// call, 2 REVOKED, 3 unknown job or bad request, 4 no connection for the
// reconnect timeout, 130 interrupted (Ctrl-C).
//
// Thread safety: the views and RunWatch are used from one thread.

#ifndef JOBLINE_CLIENT_JOBCTL_WATCH_H_
#define JOBLINE_CLIENT_JOBCTL_WATCH_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/job_client.h"
#include "client/job_document.h"
#include "jobline/v2/jobs.pb.h"

namespace jobline {

// Exit statuses of `jobctl watch`.
enum WatchExit {
  kWatchSuccess = 0,
  kWatchFailure = 1,  // The job failed, or the call failed otherwise.
  kWatchRevoked = 2,
  kWatchNotFound = 3,  // Also a bad command line or request.
  kWatchNoConnection = 4,
  kWatchInterrupted = 130,
};

// ---- Text ----

// Columns `text` (UTF-8) takes on a terminal: 0 for combining marks,
// joiners and variation selectors, 2 for East Asian wide characters and
// emoji, 1 for anything else (an invalid byte counts 1). Errs on the wide
// side, never the narrow one, for the characters it knows.
int DisplayWidth(absl::string_view text);

// `text` cut to at most `columns` columns (DisplayWidth), never inside a
// character; control characters (C0, DEL, C1) become spaces and invalid
// bytes "?", so the result moves no cursor.
std::string FitToWidth(absl::string_view text, int columns);

// The stages of `job` in one line: each as "Name P%", followed by its
// status unless it is STARTED and by its params "(name: value, ...)",
// joined by "; ". E.g. "Delay 100% SUCCESS (Mood: x); Export 40%".
std::string WatchStagesText(const v2::Job& job);

// The lines PlainView prints for `message`, without newlines. For each
// change in the message, in sequence order: "[seq S] STATUS" when the job
// entered a status there, then the change's log lines. At the message's
// own sequence N the job's stages follow the status, "[seq N] STARTED
// Delay 40%", when they differ from `last_stages_text` (always when it is
// unset: the first message); a change there with neither a new status nor
// new stages gets no such line. A snapshot, a fresh document, always gets
// it with the stages, followed by its log lines (oldest first).
//
// A change's line depends only on the statuses and the stages' state, not
// on how the server batched the changes, as long as the stages did not
// change within a batch.
std::vector<std::string> PlainLines(
    const v2::WatchProgressResponse& message,
    const std::optional<std::string>& last_stages_text);

// One message as a JSON document: {"sequence", "snapshot", "job" (the
// upstream job document), "status_changes" [{"sequence", "status",
// "changed_at"}], "logs" [{"sequence", "level", "text"}]}.
std::string WatchMessageJson(const v2::WatchProgressResponse& message,
                             const DocumentOptions& options);

// The live view of `job` after change `sequence`, with `logs` its newest
// log lines (oldest first), for a terminal `columns` wide and `rows` high:
// at most rows - 1 lines, each at most columns - 1 wide, so the view never
// wraps or scrolls. When it does not fit, log lines go first, then the
// stages' params, then the stages past those that fit ("(N more stages)").
std::vector<std::string> LiveViewLines(const v2::Job& job, int64_t sequence,
                                       const std::deque<std::string>& logs,
                                       int columns, int rows);

// ---- Views ----

// Where RunWatch shows what it receives.
class WatchView {
 public:
  virtual ~WatchView() = default;
  // A message to show; its sequence is newer than any shown before.
  virtual void Show(const v2::WatchProgressResponse& message) = 0;
  // A line for stderr, e.g. "connection lost; reconnecting...".
  virtual void Notice(absl::string_view line);
  // The watch is over: leave the output in a clean state.
  virtual void Close() {}

 protected:
  explicit WatchView(std::ostream& err) : err_(err) {}
  std::ostream& err_;
};

// One line per change on `out`, flushed after each message.
class PlainView : public WatchView {
 public:
  PlainView(std::ostream& out, std::ostream& err);
  void Show(const v2::WatchProgressResponse& message) override;

 private:
  std::ostream& out_;
  // WatchStagesText of the last message; unset before the first.
  std::optional<std::string> last_stages_text_;
};

// One JSON document per message on `out`, one per line.
class JsonView : public WatchView {
 public:
  JsonView(std::ostream& out, std::ostream& err, DocumentOptions options);
  void Show(const v2::WatchProgressResponse& message) override;

 private:
  std::ostream& out_;
  const DocumentOptions options_;
};

// A terminal's size in character cells.
struct TerminalSize {
  int columns = 80;
  int rows = 24;
};

// The live view on a terminal `out`, redrawn in place with ANSI escape
// codes on every message: the cursor is hidden while it runs (Close shows
// it again). `size` is asked before each drawing; when the terminal got
// narrower or shorter than the last drawing needs, the screen is cleared
// and the view drawn from the top, since the terminal may have rewrapped
// the old lines.
class LiveView : public WatchView {
 public:
  LiveView(std::ostream& out, std::ostream& err,
           std::function<TerminalSize()> size);
  void Show(const v2::WatchProgressResponse& message) override;
  // Erases the view, writes the line to stderr and draws the view again
  // below it.
  void Notice(absl::string_view line) override;
  void Close() override;

  // Escape codes that show the cursor again (for a signal handler).
  static constexpr absl::string_view kShowCursor = "\x1b[?25h";

  // The newest log lines the view keeps.
  static constexpr int kLogLines = 5;

 private:
  // Erases what was drawn: the cursor goes back to the view's first line.
  std::string EraseCodes(const TerminalSize& size) const;
  void Draw(std::string codes, const TerminalSize& size);

  std::ostream& out_;
  const std::function<TerminalSize()> size_;
  bool has_job_ = false;
  v2::Job job_;
  int64_t sequence_ = 0;
  std::deque<std::string> logs_;
  bool cursor_hidden_ = false;
  // What the last drawing took: lines, and the size it was fitted to.
  int drawn_lines_ = 0;
  TerminalSize drawn_size_;
};

// ---- The watch ----

struct WatchOptions {
  int64_t job_id = 0;
  // Resume after this sequence; 0 starts with the current document.
  int64_t after_sequence = 0;
  // Give up after this long without a connection.
  absl::Duration reconnect_timeout = absl::Seconds(60);
  // Wait before the first retry, doubled after each failed one up to
  // max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
  // Names the server in the give-up message.
  std::string server;
};

// One WatchProgress call (JobClient::Watch): calls `on_message` for each
// message and returns how the stream ended.
using WatchAttempt = std::function<absl::Status(
    int64_t after_sequence, const JobClient::WatchCallback& on_message)>;

// What RunWatch needs of the world; tests fake both.
struct WatchEnvironment {
  std::function<absl::Time()> now;
  std::function<void(absl::Duration)> sleep;
};

// The real clock and sleep.
WatchEnvironment RealWatchEnvironment();

// Watches `options.job_id` through `attempt`, retrying and resuming as the
// file comment says, shows every message on `view` and closes it. The
// error that ends a watch goes to `err` after the view is closed, as
// "jobctl: <CODE>: <message>". Returns the exit status (WatchExit).
int RunWatch(const WatchOptions& options, const WatchAttempt& attempt,
             WatchView& view, std::ostream& err,
             const WatchEnvironment& environment);

// The whole `jobctl watch` command on the real terminal: picks the view
// (--json: JsonView; stdout a terminal: LiveView; else PlainView), makes
// Ctrl-C show the cursor and exit 130, and runs the watch against
// `options.server`.
int RunWatchCommand(const WatchOptions& options, bool json,
                    const DocumentOptions& document, std::ostream& out,
                    std::ostream& err);

}  // namespace jobline

#endif  // JOBLINE_CLIENT_JOBCTL_WATCH_H_
