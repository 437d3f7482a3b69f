#include "client/jobctl_watch.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <ostream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/jobctl_text.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace {

// ---- UTF-8 and terminal columns ----

// One decoded character: its code point (-1 for an invalid byte) and its
// length in bytes.
struct Decoded {
  int32_t code_point;
  size_t length;
};

// Decodes the character at the start of `text` (not empty). Overlong forms,
// surrogates and code points past U+10FFFF are invalid bytes.
Decoded DecodeOne(absl::string_view text) {
  const auto byte = [&text](size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {lead, 1};
  size_t length = 0;
  int32_t code_point = 0;
  int32_t least = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code_point = lead & 0x1F;
    least = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code_point = lead & 0x0F;
    least = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code_point = lead & 0x07;
    least = 0x10000;
  } else {
    return {-1, 1};
  }
  if (text.size() < length) return {-1, 1};
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return {-1, 1};
    code_point = (code_point << 6) | (byte(i) & 0x3F);
  }
  if (code_point < least || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return {-1, 1};
  }
  return {code_point, length};
}

bool InRanges(int32_t c,
              std::initializer_list<std::pair<int32_t, int32_t>> ranges) {
  for (const auto& [first, last] : ranges) {
    if (c >= first && c <= last) return true;
  }
  return false;
}

// Columns of one printable code point.
int CodePointWidth(int32_t c) {
  if (InRanges(c, {{0x0300, 0x036F},
                   {0x0483, 0x0489},
                   {0x0591, 0x05BD},
                   {0x0610, 0x061A},
                   {0x064B, 0x065F},
                   {0x200B, 0x200F},
                   {0x202A, 0x202E},
                   {0x2060, 0x2064},
                   {0x20D0, 0x20FF},
                   {0xFE00, 0xFE0F},
                   {0xFE20, 0xFE2F},
                   {0xFEFF, 0xFEFF},
                   {0x1F3FB, 0x1F3FF},
                   {0xE0000, 0xE0FFF}})) {
    return 0;
  }
  if (InRanges(c, {{0x1100, 0x115F},   {0x231A, 0x231B},   {0x2329, 0x232A},
                   {0x23E9, 0x23F3},   {0x25FD, 0x25FE},   {0x2600, 0x27BF},
                   {0x2B1B, 0x2B55},   {0x2E80, 0x303E},   {0x3041, 0x33FF},
                   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},
                   {0xA960, 0xA97F},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},
                   {0xFE10, 0xFE19},   {0xFE30, 0xFE6F},   {0xFF00, 0xFF60},
                   {0xFFE0, 0xFFE6},   {0x16FE0, 0x18AFF}, {0x1B000, 0x1B2FF},
                   {0x1F000, 0x1FAFF}, {0x20000, 0x3FFFD}})) {
    return 2;
  }
  return 1;
}

// A control character that a terminal would act on.
bool IsControl(int32_t c) {
  return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F);
}

// `text` padded with spaces to `columns` (it must not be wider).
std::string PadToWidth(absl::string_view text, int columns) {
  std::string padded(text);
  padded.append(std::max(0, columns - DisplayWidth(text)), ' ');
  return padded;
}

// ---- Job text ----

std::string StatusName(v2::JobStatus status) {
  return v2::JobStatus_Name(status);
}

bool IsFinal(v2::JobStatus status) {
  return status == v2::SUCCESS || status == v2::FAILURE ||
         status == v2::REVOKED;
}

// "name: value, name: value" of a stage's params.
std::string ParamsText(const v2::ProgressStage& stage) {
  std::vector<std::string> parts;
  for (const v2::StageParam& param : stage.params()) {
    parts.push_back(absl::StrCat(OneLine(param.name()), ": ",
                                 OneLine(ParamValueText(param.value()))));
  }
  return absl::StrJoin(parts, ", ");
}

// The `count` newest lines of a snapshot's log, oldest first (the document
// carries them newest first).
std::vector<std::string> SnapshotLogs(const v2::Job& job, size_t count) {
  const auto& stdout_lines = job.logs().stdout();
  const size_t shown =
      std::min(count, static_cast<size_t>(stdout_lines.size()));
  std::vector<std::string> lines;
  for (size_t i = shown; i > 0; --i) lines.push_back(stdout_lines[i - 1]);
  return lines;
}

// ---- Live view layout ----

// The widest a progress bar gets, and the least it is still drawn at.
constexpr int kMaxBarWidth = 40;
constexpr int kMinBarWidth = 5;
// The longest status name (CANCELING).
constexpr int kStatusWidth = 9;

// "  Name    [#####-----]  40% STARTED" fitted to `width` columns, the name
// column `name_width` wide.
std::string BarLine(absl::string_view name, double progress,
                    v2::JobStatus status, int name_width, int width) {
  std::string line = absl::StrCat(
      "  ", PadToWidth(FitToWidth(OneLine(name), name_width), name_width), " ");
  const int bar_width =
      std::min(kMaxBarWidth,
               width - (2 + name_width + 1 + 2 + 1 + 4 + 1 + kStatusWidth));
  if (bar_width >= kMinBarWidth) {
    const double clamped = std::clamp(progress, 0.0, 1.0);
    const int filled = std::clamp(
        static_cast<int>(std::floor(clamped * bar_width + 1e-9)), 0, bar_width);
    absl::StrAppend(&line, "[", std::string(filled, '#'),
                    std::string(bar_width - filled, '-'), "] ");
  }
  absl::StrAppend(&line, absl::StrFormat("%4s", PercentText(progress)), " ",
                  StatusName(status));
  return FitToWidth(line, width);
}

// Terminal size from the terminal, else $COLUMNS and $LINES, else 80x24.
TerminalSize TerminalSizeNow() {
  TerminalSize size;
  winsize window{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) == 0 && window.ws_col > 0) {
    size.columns = window.ws_col;
    if (window.ws_row > 0) size.rows = window.ws_row;
    return size;
  }
  int value = 0;
  const char* columns = std::getenv("COLUMNS");
  if (columns != nullptr && absl::SimpleAtoi(columns, &value) && value > 0) {
    size.columns = value;
  }
  const char* lines = std::getenv("LINES");
  if (lines != nullptr && absl::SimpleAtoi(lines, &value) && value > 0) {
    size.rows = value;
  }
  return size;
}

// ---- Ctrl-C ----

// Whether a signal must show the cursor again before the process exits.
std::atomic<bool> restore_cursor{false};

void OnInterrupt(int signal_number) {
  if (restore_cursor.load()) {
    const absl::string_view codes = LiveView::kShowCursor;
    ssize_t written = write(STDOUT_FILENO, codes.data(), codes.size());
    written = write(STDOUT_FILENO, "\n", 1);
    (void)written;
  }
  _exit(signal_number == SIGINT ? kWatchInterrupted : 128 + signal_number);
}

void InstallInterruptHandler(bool live) {
  restore_cursor.store(live);
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
}

bool IsRetryable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsCancelled(status) ||
         absl::IsAborted(status);
}

}  // namespace

// ---- Text ----

int DisplayWidth(absl::string_view text) {
  int width = 0;
  while (!text.empty()) {
    const Decoded decoded = DecodeOne(text);
    text.remove_prefix(decoded.length);
    width += decoded.code_point < 0 ? 1 : CodePointWidth(decoded.code_point);
  }
  return width;
}

std::string FitToWidth(absl::string_view text, int columns) {
  std::string fitted;
  int width = 0;
  while (!text.empty()) {
    const Decoded decoded = DecodeOne(text);
    absl::string_view character = text.substr(0, decoded.length);
    text.remove_prefix(decoded.length);
    int character_width = 1;
    if (decoded.code_point < 0) {
      character = "?";
    } else if (IsControl(decoded.code_point)) {
      character = " ";
    } else {
      character_width = CodePointWidth(decoded.code_point);
    }
    if (width + character_width > columns) break;
    fitted.append(character.data(), character.size());
    width += character_width;
  }
  return fitted;
}

std::string WatchStagesText(const v2::Job& job) {
  std::vector<std::string> stages;
  for (const v2::ProgressStage& stage : job.progress().stages()) {
    std::string text =
        absl::StrCat(OneLine(stage.name()), " ", PercentText(stage.progress()));
    if (stage.status() != v2::STARTED) {
      absl::StrAppend(&text, " ", StatusName(stage.status()));
    }
    if (stage.params_size() > 0) {
      absl::StrAppend(&text, " (", ParamsText(stage), ")");
    }
    stages.push_back(std::move(text));
  }
  return absl::StrJoin(stages, "; ");
}

std::vector<std::string> PlainLines(
    const v2::WatchProgressResponse& message,
    const std::optional<std::string>& last_stages_text) {
  // What happened at each sequence of the message, in order.
  struct Change {
    std::optional<v2::JobStatus> status;
    std::vector<std::string> logs;
  };
  std::map<int64_t, Change> changes;
  changes[message.sequence()];
  for (const v2::JobStatusChange& entered : message.status_changes()) {
    changes[entered.sequence()].status = entered.status();
  }
  for (const v2::JobLogLine& line : message.logs()) {
    changes[line.sequence()].logs.push_back(line.text());
  }

  std::vector<std::string> lines;
  for (const auto& [sequence, change] : changes) {
    std::string line = absl::StrCat("[seq ", sequence, "] ");
    if (sequence != message.sequence()) {
      if (change.status.has_value()) {
        lines.push_back(absl::StrCat(line, StatusName(*change.status)));
      }
    } else {
      // The message's own change: the job as it is now.
      const std::string stages = WatchStagesText(message.job());
      const bool new_stages = stages != last_stages_text;
      if (new_stages || change.status.has_value() || message.snapshot()) {
        absl::StrAppend(&line, StatusName(message.job().status()));
        if ((new_stages || message.snapshot()) && !stages.empty()) {
          absl::StrAppend(&line, "  ", stages);
        }
        lines.push_back(std::move(line));
      }
      if (message.snapshot()) {
        for (const std::string& log :
             SnapshotLogs(message.job(), message.job().logs().stdout_size())) {
          lines.push_back(OneLine(log));
        }
      }
    }
    for (const std::string& log : change.logs) lines.push_back(OneLine(log));
  }
  return lines;
}

std::string WatchMessageJson(const v2::WatchProgressResponse& message,
                             const DocumentOptions& options) {
  nlohmann::ordered_json document = nlohmann::ordered_json::object();
  document["sequence"] = message.sequence();
  document["snapshot"] = message.snapshot();
  document["job"] = JobDocument(message.job(), JobView::kDetail, options);
  nlohmann::ordered_json statuses = nlohmann::ordered_json::array();
  for (const v2::JobStatusChange& entered : message.status_changes()) {
    nlohmann::ordered_json item = nlohmann::ordered_json::object();
    item["sequence"] = entered.sequence();
    item["status"] = StatusName(entered.status());
    item["changed_at"] = entered.has_changed_at()
                             ? nlohmann::ordered_json(IsoDateTime(
                                   entered.changed_at(), options.zone))
                             : nlohmann::ordered_json(nullptr);
    statuses.push_back(std::move(item));
  }
  document["status_changes"] = std::move(statuses);
  nlohmann::ordered_json logs = nlohmann::ordered_json::array();
  for (const v2::JobLogLine& line : message.logs()) {
    nlohmann::ordered_json item = nlohmann::ordered_json::object();
    item["sequence"] = line.sequence();
    item["level"] = line.level();
    item["text"] = line.text();
    logs.push_back(std::move(item));
  }
  document["logs"] = std::move(logs);
  return ToJsonText(document);
}

std::vector<std::string> LiveViewLines(const v2::Job& job, int64_t sequence,
                                       const std::deque<std::string>& logs,
                                       int columns, int rows) {
  const int width = std::max(1, columns - 1);
  const int budget = std::max(1, rows - 1);

  // The name column fits the longest name, within a third of the width.
  const v2::JobProgress& progress = job.progress();
  constexpr absl::string_view kSummaryName = "Overall";
  int name_width = static_cast<int>(kSummaryName.size());
  for (const v2::ProgressStage& stage : progress.stages()) {
    name_width = std::max(name_width, DisplayWidth(OneLine(stage.name())));
  }
  name_width = std::min(name_width, std::max(8, width / 3));

  // The parts, before they are fitted to the height.
  const std::vector<std::string> header = {
      FitToWidth(absl::StrCat("Job ", job.id(), ": ", OneLine(job.name())),
                 width),
      FitToWidth(absl::StrCat("Status: ", StatusName(job.status()),
                              "  (sequence ", sequence, ")"),
                 width)};
  struct StageLines {
    std::string bar;
    std::optional<std::string> params;
  };
  std::vector<StageLines> stages;
  for (const v2::ProgressStage& stage : progress.stages()) {
    StageLines lines;
    lines.bar = BarLine(stage.name(), stage.progress(), stage.status(),
                        name_width, width);
    if (stage.params_size() > 0) {
      lines.params = FitToWidth(absl::StrCat("    ", ParamsText(stage)), width);
    }
    stages.push_back(std::move(lines));
  }
  const std::string summary =
      BarLine(kSummaryName, progress.summary().progress(),
              progress.summary().status(), name_width, width);

  // Fit the height: fewer log lines, then no params, then fewer stages.
  const int fixed = static_cast<int>(header.size()) + 1;
  const auto stage_rows = [&stages](bool with_params) {
    int count = 0;
    for (const StageLines& lines : stages) {
      count += 1 + (with_params && lines.params.has_value() ? 1 : 0);
    }
    return count;
  };
  bool with_params = true;
  int log_count = static_cast<int>(logs.size());
  const auto total = [&] {
    return fixed + stage_rows(with_params) +
           (log_count > 0 ? 1 + log_count : 0);
  };
  if (total() > budget) {
    log_count = std::max(0, budget - fixed - stage_rows(with_params) - 1);
  }
  if (total() > budget) with_params = false;
  size_t shown_stages = stages.size();
  if (total() > budget) {
    shown_stages = static_cast<size_t>(std::max(0, budget - fixed - 1));
  }

  std::vector<std::string> lines = header;
  for (size_t i = 0; i < shown_stages && i < stages.size(); ++i) {
    lines.push_back(stages[i].bar);
    if (with_params && stages[i].params.has_value()) {
      lines.push_back(*stages[i].params);
    }
  }
  if (shown_stages < stages.size()) {
    lines.push_back(FitToWidth(
        absl::StrCat("  (", stages.size() - shown_stages, " more stages)"),
        width));
  }
  lines.push_back(summary);
  if (log_count > 0) {
    lines.push_back(FitToWidth("Log:", width));
    for (size_t i = logs.size() - log_count; i < logs.size(); ++i) {
      lines.push_back(FitToWidth(absl::StrCat("  ", logs[i]), width));
    }
  }
  if (static_cast<int>(lines.size()) > budget) lines.resize(budget);
  return lines;
}

// ---- Views ----

void WatchView::Notice(absl::string_view line) {
  err_ << line << "\n";
  err_.flush();
}

PlainView::PlainView(std::ostream& out, std::ostream& err)
    : WatchView(err), out_(out) {}

void PlainView::Show(const v2::WatchProgressResponse& message) {
  for (const std::string& line : PlainLines(message, last_stages_text_)) {
    out_ << line << "\n";
  }
  out_.flush();
  last_stages_text_ = WatchStagesText(message.job());
}

JsonView::JsonView(std::ostream& out, std::ostream& err,
                   DocumentOptions options)
    : WatchView(err), out_(out), options_(std::move(options)) {}

void JsonView::Show(const v2::WatchProgressResponse& message) {
  out_ << WatchMessageJson(message, options_) << "\n";
  out_.flush();
}

LiveView::LiveView(std::ostream& out, std::ostream& err,
                   std::function<TerminalSize()> size)
    : WatchView(err), out_(out), size_(std::move(size)) {}

void LiveView::Show(const v2::WatchProgressResponse& message) {
  job_ = message.job();
  sequence_ = message.sequence();
  has_job_ = true;
  if (message.snapshot()) {
    logs_.clear();
    for (std::string& line : SnapshotLogs(job_, kLogLines)) {
      logs_.push_back(std::move(line));
    }
  }
  for (const v2::JobLogLine& line : message.logs()) {
    logs_.push_back(line.text());
    if (logs_.size() > static_cast<size_t>(kLogLines)) logs_.pop_front();
  }
  const TerminalSize size = size_();
  Draw(EraseCodes(size), size);
}

void LiveView::Notice(absl::string_view line) {
  const TerminalSize size = size_();
  out_ << EraseCodes(size);
  out_.flush();
  drawn_lines_ = 0;
  WatchView::Notice(line);
  if (has_job_) Draw("", size);
}

void LiveView::Close() {
  if (!cursor_hidden_) return;
  out_ << kShowCursor;
  out_.flush();
  cursor_hidden_ = false;
}

std::string LiveView::EraseCodes(const TerminalSize& size) const {
  if (drawn_lines_ == 0) return "";
  // A narrower terminal may have rewrapped the old lines, and a shorter one
  // scrolled some of them away: only a clear screen is sure to remove them.
  if (size.columns < drawn_size_.columns || drawn_lines_ > size.rows - 1) {
    return "\x1b[H\x1b[2J";
  }
  // Up to the view's first line, then erase to the end of the screen.
  return absl::StrCat("\r\x1b[", drawn_lines_, "A\x1b[J");
}

void LiveView::Draw(std::string codes, const TerminalSize& size) {
  if (!cursor_hidden_) {
    codes = absl::StrCat("\x1b[?25l", codes);
    cursor_hidden_ = true;
  }
  const std::vector<std::string> lines =
      LiveViewLines(job_, sequence_, logs_, size.columns, size.rows);
  for (const std::string& line : lines) absl::StrAppend(&codes, line, "\n");
  out_ << codes;
  out_.flush();
  drawn_lines_ = static_cast<int>(lines.size());
  drawn_size_ = size;
}

// ---- The watch ----

WatchEnvironment RealWatchEnvironment() {
  WatchEnvironment environment;
  environment.now = [] { return absl::Now(); };
  environment.sleep = [](absl::Duration duration) { absl::SleepFor(duration); };
  return environment;
}

int RunWatch(const WatchOptions& options, const WatchAttempt& attempt,
             WatchView& view, std::ostream& err,
             const WatchEnvironment& environment) {
  // The last message shown; its sequence is where a new stream resumes.
  bool shown_any = false;
  int64_t after = options.after_sequence;
  v2::JobStatus status = v2::JOB_STATUS_UNSPECIFIED;

  // The connection: since when it is lost, and whether that was said.
  absl::Duration backoff = options.initial_backoff;
  absl::Time lost_since = environment.now();
  bool ever_connected = false;
  bool announced = false;

  const auto fail = [&view, &err](int code, absl::string_view line) {
    view.Close();
    err << line << "\n";
    err.flush();
    return code;
  };

  while (true) {
    bool connected = false;
    const absl::Status ended =
        attempt(after, [&](const v2::WatchProgressResponse& message) {
          if (!connected) {
            connected = true;
            ever_connected = true;
            announced = false;
            backoff = options.initial_backoff;
          }
          // A resumed stream starts with the document already shown.
          if (shown_any && message.sequence() <= after) return true;
          shown_any = true;
          after = message.sequence();
          status = message.job().status();
          view.Show(message);
          return true;
        });

    // The end of the job, or an error that another try would not mend.
    if (ended.ok() && shown_any && IsFinal(status)) {
      view.Close();
      if (status == v2::SUCCESS) return kWatchSuccess;
      return status == v2::FAILURE ? kWatchFailure : kWatchRevoked;
    }
    if (absl::IsNotFound(ended) || absl::IsInvalidArgument(ended)) {
      return fail(kWatchNotFound, ErrorText(ended));
    }
    if (!ended.ok() && !IsRetryable(ended)) {
      return fail(kWatchFailure, ErrorText(ended));
    }
    const absl::Status broken =
        ended.ok() ? absl::UnavailableError(
                         "the stream ended before the job was final")
                   : ended;

    // Try again after the backoff, until the connection was lost too long.
    const absl::Time now = environment.now();
    if (connected) lost_since = now;
    if (!announced) {
      view.Notice(ever_connected ? "connection lost; reconnecting..."
                                 : absl::StrCat("cannot reach ", options.server,
                                                "; retrying..."));
      announced = true;
    }
    const absl::Time give_up = lost_since + options.reconnect_timeout;
    if (now >= give_up) {
      return fail(
          kWatchNoConnection,
          absl::StrCat("jobctl: UNAVAILABLE: no connection to ", options.server,
                       " for ", absl::FormatDuration(options.reconnect_timeout),
                       "; giving up (", broken.message(), ")"));
    }
    environment.sleep(std::min(backoff, give_up - now));
    backoff = std::min(backoff * 2, options.max_backoff);
  }
}

int RunWatchCommand(const WatchOptions& options, bool json,
                    const DocumentOptions& document, std::ostream& out,
                    std::ostream& err) {
  // Each try connects afresh: a channel that saw the server go away would
  // wait out its own backoff before it tried again.
  const WatchAttempt attempt =
      [&options](int64_t after, const JobClient::WatchCallback& on_message) {
        JobClient::ConnectOptions connect;
        connect.own_connections = true;
        const JobClient client(JobClient::Connect(options.server, connect));
        return client.Watch(options.job_id, after, on_message);
      };

  const char* term = std::getenv("TERM");
  const bool live = !json && isatty(STDOUT_FILENO) == 1 &&
                    !(term != nullptr && absl::string_view(term) == "dumb");
  std::unique_ptr<WatchView> view;
  if (json) {
    view = std::make_unique<JsonView>(out, err, document);
  } else if (live) {
    view = std::make_unique<LiveView>(out, err, TerminalSizeNow);
  } else {
    view = std::make_unique<PlainView>(out, err);
  }
  InstallInterruptHandler(live);
  return RunWatch(options, attempt, *view, err, RealWatchEnvironment());
}

}  // namespace jobline
