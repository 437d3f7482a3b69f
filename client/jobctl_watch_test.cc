// Tests of `jobctl watch`'s parts: terminal columns, the plain, JSON and
// live renderings, and the reconnecting loop over scripted streams with a
// fake clock.

#include "client/jobctl_watch.h"

#include <deque>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kDizzy[] = "\xF0\x9F\x98\xB5\xE2\x80\x8D\xF0\x9F\x92\xAB";

// A stage with params given as (name, string value) pairs.
v2::ProgressStage* AddStage(
    v2::Job& job, const std::string& name, double progress,
    v2::JobStatus status,
    const std::vector<std::pair<std::string, std::string>>& params = {}) {
  v2::ProgressStage* stage = job.mutable_progress()->add_stages();
  stage->set_name(name);
  stage->set_key(name);
  stage->set_progress(progress);
  stage->set_status(status);
  for (const auto& [param_name, value] : params) {
    v2::StageParam* param = stage->add_params();
    param->set_name(param_name);
    param->mutable_value()->set_string_value(value);
  }
  return stage;
}

// Job 7, "Nightly export", with a Delay stage at `progress`.
v2::Job DelayJob(v2::JobStatus status, double progress,
                 v2::JobStatus stage_status) {
  v2::Job job;
  job.set_id(7);
  job.set_name("Nightly export");
  job.set_status(status);
  AddStage(job, "Delay", progress, stage_status, {{"Mood", kDizzy}});
  job.mutable_progress()->mutable_summary()->set_status(status);
  job.mutable_progress()->mutable_summary()->set_progress(progress);
  return job;
}

v2::WatchProgressResponse Message(int64_t sequence, const v2::Job& job,
                                  bool snapshot = false) {
  v2::WatchProgressResponse message;
  message.set_sequence(sequence);
  *message.mutable_job() = job;
  message.mutable_job()->set_sequence(sequence);
  message.set_snapshot(snapshot);
  return message;
}

void AddStatus(v2::WatchProgressResponse& message, int64_t sequence,
               v2::JobStatus status) {
  v2::JobStatusChange* change = message.add_status_changes();
  change->set_sequence(sequence);
  change->set_status(status);
  change->mutable_changed_at()->set_seconds(1700000000 + sequence);
}

void AddLog(v2::WatchProgressResponse& message, int64_t sequence,
            const std::string& text) {
  v2::JobLogLine* line = message.add_logs();
  line->set_sequence(sequence);
  line->set_level("INFO");
  line->set_text(text);
}

// ---- Text ----

TEST(DisplayWidth, CountsTerminalColumns) {
  EXPECT_EQ(DisplayWidth(""), 0);
  EXPECT_EQ(DisplayWidth("Delay"), 5);
  EXPECT_EQ(DisplayWidth("d\xC3\xAD"
                         "a"),
            3);                                            // día
  EXPECT_EQ(DisplayWidth("\xE6\x97\xA5\xE6\x9C\xAC"), 4);  // 日本
  EXPECT_EQ(DisplayWidth("e\xCC\x81"), 1);                 // e + acute
  EXPECT_EQ(DisplayWidth(kDizzy), 4);  // two emoji joined: counted wide
  EXPECT_EQ(DisplayWidth("a\xFF"), 2);
}

TEST(FitToWidth, CutsWholeCharactersAndNeutralisesControls) {
  EXPECT_EQ(FitToWidth("abcdef", 4), "abcd");
  EXPECT_EQ(FitToWidth("abc", 4), "abc");
  EXPECT_EQ(FitToWidth("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", 5),
            "\xE6\x97\xA5\xE6\x9C\xAC");
  EXPECT_EQ(FitToWidth("a\x1b[2Jb", 10), "a [2Jb");
  EXPECT_EQ(FitToWidth("x\xC2\x9By\x7Fz", 10), "x y z");
  EXPECT_EQ(FitToWidth("a\xFF"
                       "b",
                       10),
            "a?b");
  EXPECT_EQ(FitToWidth("abc", 0), "");
}

TEST(WatchStagesText, ShowsEachStageWithItsStatusUnlessStarted) {
  v2::Job job = DelayJob(v2::STARTED, 1.0, v2::SUCCESS);
  AddStage(job, "Export", 0.4, v2::STARTED);
  AddStage(job, "Upload", 0, v2::CREATED, {{"Files", "none yet"}});
  EXPECT_EQ(WatchStagesText(job),
            absl::StrCat("Delay 100% SUCCESS (Mood: ", kDizzy,
                         "); Export 40%; Upload 0% CREATED (Files: none yet)"));
  EXPECT_EQ(WatchStagesText(v2::Job()), "");
}

// ---- Plain lines ----

TEST(PlainLines, OneLinePerChangeAndTheNewLogLines) {
  v2::WatchProgressResponse snapshot =
      Message(1, DelayJob(v2::CREATED, 0, v2::CREATED), /*snapshot=*/true);
  snapshot.mutable_job()->mutable_logs()->add_stdout("[t2] INFO second");
  snapshot.mutable_job()->mutable_logs()->add_stdout("[t1] INFO first");
  EXPECT_THAT(PlainLines(snapshot, std::nullopt),
              ElementsAre(absl::StrCat("[seq 1] CREATED  Delay 0% CREATED "
                                       "(Mood: ",
                                       kDizzy, ")"),
                          "[t1] INFO first", "[t2] INFO second"));
  const std::string created_stages =
      WatchStagesText(DelayJob(v2::CREATED, 0, v2::CREATED));

  // A status change alone: the stages are not repeated.
  v2::WatchProgressResponse started =
      Message(2, DelayJob(v2::STARTED, 0, v2::CREATED));
  AddStatus(started, 2, v2::STARTED);
  AddLog(started, 2, "[t3] INFO Changing status");
  EXPECT_THAT(PlainLines(started, created_stages),
              ElementsAre("[seq 2] STARTED", "[t3] INFO Changing status"));

  // Progress: the stages with the current status.
  v2::WatchProgressResponse step =
      Message(3, DelayJob(v2::STARTED, 0.4, v2::STARTED));
  AddLog(step, 3, "[t4] INFO Delaying: 2 of 5");
  EXPECT_THAT(
      PlainLines(step, created_stages),
      ElementsAre(
          absl::StrCat("[seq 3] STARTED  Delay 40% (Mood: ", kDizzy, ")"),
          "[t4] INFO Delaying: 2 of 5"));

  // A log line alone.
  v2::WatchProgressResponse log =
      Message(4, DelayJob(v2::STARTED, 0.4, v2::STARTED));
  AddLog(log, 4, "[t5] INFO still\nhere");
  EXPECT_THAT(PlainLines(log, WatchStagesText(step.job())),
              ElementsAre("[t5] INFO still here"));
}

TEST(PlainLines, ABatchReadsLikeTheChangesOneByOne) {
  const v2::Job created = DelayJob(v2::CREATED, 0, v2::CREATED);
  v2::WatchProgressResponse batch =
      Message(5, DelayJob(v2::STARTED, 0, v2::CREATED));
  AddStatus(batch, 2, v2::PENDING);
  AddLog(batch, 3, "[t] INFO Running job #7");
  AddStatus(batch, 4, v2::STARTED);
  AddLog(batch, 4, "[t] INFO Changing status of job 7 from PENDING to STARTED");
  AddLog(batch, 5, "[t] INFO Lease renewed");
  EXPECT_THAT(
      PlainLines(batch, WatchStagesText(created)),
      ElementsAre("[seq 2] PENDING", "[t] INFO Running job #7",
                  "[seq 4] STARTED",
                  "[t] INFO Changing status of job 7 from PENDING to STARTED",
                  "[t] INFO Lease renewed"));

  // The same changes one message each.
  std::vector<std::string> one_by_one;
  v2::WatchProgressResponse pending =
      Message(2, DelayJob(v2::PENDING, 0, v2::CREATED));
  AddStatus(pending, 2, v2::PENDING);
  v2::WatchProgressResponse running =
      Message(3, DelayJob(v2::PENDING, 0, v2::CREATED));
  AddLog(running, 3, "[t] INFO Running job #7");
  v2::WatchProgressResponse started =
      Message(4, DelayJob(v2::STARTED, 0, v2::CREATED));
  AddStatus(started, 4, v2::STARTED);
  AddLog(started, 4,
         "[t] INFO Changing status of job 7 from PENDING to STARTED");
  v2::WatchProgressResponse renewed =
      Message(5, DelayJob(v2::STARTED, 0, v2::CREATED));
  AddLog(renewed, 5, "[t] INFO Lease renewed");
  for (const auto* message : {&pending, &running, &started, &renewed}) {
    for (const std::string& line :
         PlainLines(*message, WatchStagesText(created))) {
      one_by_one.push_back(line);
    }
  }
  EXPECT_EQ(one_by_one, PlainLines(batch, WatchStagesText(created)));
}

TEST(PlainLines, ASnapshotAlwaysShowsTheJob) {
  const v2::Job job = DelayJob(v2::STARTED, 0.4, v2::STARTED);
  EXPECT_THAT(
      PlainLines(Message(9, job, /*snapshot=*/true), WatchStagesText(job)),
      ElementsAre(
          absl::StrCat("[seq 9] STARTED  Delay 40% (Mood: ", kDizzy, ")")));
  EXPECT_THAT(PlainLines(Message(9, job), WatchStagesText(job)), IsEmpty());
  EXPECT_THAT(PlainLines(Message(1, v2::Job(), true), std::nullopt),
              ElementsAre("[seq 1] JOB_STATUS_UNSPECIFIED"));
}

TEST(PlainView, PrintsTheLinesOfEveryMessage) {
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  view.Show(Message(1, DelayJob(v2::CREATED, 0, v2::CREATED), true));
  v2::WatchProgressResponse cancelled =
      Message(2, DelayJob(v2::REVOKED, 0, v2::CREATED));
  AddStatus(cancelled, 2, v2::REVOKED);
  AddLog(cancelled, 2, "[t] INFO Changing status");
  view.Show(cancelled);
  view.Notice("connection lost; reconnecting...");
  EXPECT_EQ(out.str(),
            absl::StrCat("[seq 1] CREATED  Delay 0% CREATED (Mood: ", kDizzy,
                         ")\n[seq 2] REVOKED\n[t] INFO Changing status\n"));
  EXPECT_EQ(err.str(), "connection lost; reconnecting...\n");
}

// ---- JSON ----

TEST(WatchMessageJson, TheJobDocumentWithTheChanges) {
  v2::WatchProgressResponse message =
      Message(4, DelayJob(v2::REVOKED, 0.5, v2::STARTED));
  message.mutable_job()->set_details("/api/v2/jobs/7/");
  AddStatus(message, 3, v2::CANCELING);
  AddStatus(message, 4, v2::REVOKED);
  AddLog(message, 4, "[2023-11-14 22:13:24] INFO Changing status");
  DocumentOptions options;
  options.base_url = "http://jobs.example";
  const nlohmann::ordered_json json =
      nlohmann::ordered_json::parse(WatchMessageJson(message, options));

  std::vector<std::string> keys;
  for (const auto& item : json.items()) keys.push_back(item.key());
  EXPECT_THAT(keys, ElementsAre("sequence", "snapshot", "job", "status_changes",
                                "logs"));
  EXPECT_EQ(json["sequence"], 4);
  EXPECT_EQ(json["snapshot"], false);
  EXPECT_EQ(json["job"]["id"], 7);
  EXPECT_EQ(json["job"]["details"], "http://jobs.example/api/v2/jobs/7/");
  EXPECT_EQ(json["job"]["status"], "REVOKED");
  EXPECT_EQ(json["job"]["progress"]["stages"][0]["progress"], 0.5);
  EXPECT_EQ(json["status_changes"].dump(),
            R"([{"sequence":3,"status":"CANCELING",)"
            R"("changed_at":"2023-11-14T22:13:23"},)"
            R"({"sequence":4,"status":"REVOKED",)"
            R"("changed_at":"2023-11-14T22:13:24"}])");
  EXPECT_EQ(json["logs"].dump(),
            R"([{"sequence":4,"level":"INFO",)"
            R"("text":"[2023-11-14 22:13:24] INFO Changing status"}])");
}

// ---- The live view ----

// A job with two stages, the second with two params.
v2::Job TwoStageJob() {
  v2::Job job = DelayJob(v2::STARTED, 1.0, v2::SUCCESS);
  job.mutable_progress()->mutable_stages(0)->clear_params();
  v2::ProgressStage* collect = AddStage(
      job, "Collect captures", 0.25, v2::STARTED, {{"Source", "Random 1000"}});
  v2::StageParam* added = collect->add_params();
  added->set_name("Captures added");
  added->mutable_value()->set_number_value(250);
  job.mutable_progress()->mutable_summary()->set_progress(0.625);
  return job;
}

TEST(LiveViewLines, BarsForEveryStageAndTheNewestLogLines) {
  const std::deque<std::string> logs = {"[t1] INFO one", "[t2] INFO two"};
  EXPECT_THAT(
      LiveViewLines(TwoStageJob(), 12, logs, 67, 24),
      ElementsAre(
          "Job 7: Nightly export", "Status: STARTED  (sequence 12)",
          "  Delay            [##############################] 100% SUCCESS",
          "  Collect captures [#######-----------------------]  25% STARTED",
          "    Source: Random 1000, Captures added: 250",
          "  Overall          [##################------------]  62% STARTED",
          "Log:", "  [t1] INFO one", "  [t2] INFO two"));
}

TEST(LiveViewLines, ANarrowTerminalGetsNoBarsAndNothingWraps) {
  const std::deque<std::string> logs = {
      "[2023-11-14 22:13:24] INFO a long line of the log"};
  const std::vector<std::string> lines =
      LiveViewLines(TwoStageJob(), 12, logs, 30, 24);
  EXPECT_THAT(
      lines,
      ElementsAre("Job 7: Nightly export", "Status: STARTED  (sequence 12",
                  "  Delay     100% SUCCESS", "  Collect c  25% STARTED",
                  "    Source: Random 1000, Capt", "  Overall    62% STARTED",
                  "Log:", "  [2023-11-14 22:13:24] INFO "));
  for (const std::string& line : lines) EXPECT_LE(DisplayWidth(line), 29);
}

TEST(LiveViewLines, AShortTerminalDropsLogsThenParamsThenStages) {
  const std::deque<std::string> logs = {"[t1] INFO one", "[t2] INFO two"};
  // 9 rows: one log line fits.
  EXPECT_THAT(
      LiveViewLines(TwoStageJob(), 12, logs, 46, 9),
      ElementsAre("Job 7: Nightly export", "Status: STARTED  (sequence 12)",
                  "  Delay           [##########] 100% SUCCESS",
                  "  Collect capture [##--------]  25% STARTED",
                  "    Source: Random 1000, Captures added: 250",
                  "  Overall         [######----]  62% STARTED",
                  "Log:", "  [t2] INFO two"));
  // 6 rows: no logs, no params.
  EXPECT_THAT(
      LiveViewLines(TwoStageJob(), 12, logs, 46, 6),
      ElementsAre("Job 7: Nightly export", "Status: STARTED  (sequence 12)",
                  "  Delay           [##########] 100% SUCCESS",
                  "  Collect capture [##--------]  25% STARTED",
                  "  Overall         [######----]  62% STARTED"));
  // 5 rows: the stages are counted.
  EXPECT_THAT(LiveViewLines(TwoStageJob(), 12, logs, 46, 5),
              ElementsAre("Job 7: Nightly export",
                          "Status: STARTED  (sequence 12)", "  (2 more stages)",
                          "  Overall         [######----]  62% STARTED"));
  EXPECT_THAT(LiveViewLines(TwoStageJob(), 12, logs, 46, 2),
              ElementsAre("Job 7: Nightly export"));
}

// The lines LiveView draws for `message` at 40x10, each ending in "\n".
std::string Frame(const v2::WatchProgressResponse& message,
                  const std::deque<std::string>& logs) {
  std::string frame;
  for (const std::string& line :
       LiveViewLines(message.job(), message.sequence(), logs, 40, 10)) {
    absl::StrAppend(&frame, line, "\n");
  }
  return frame;
}

TEST(LiveView, RedrawsInPlaceAndShowsTheCursorAtTheEnd) {
  std::ostringstream out;
  std::ostringstream err;
  TerminalSize size{40, 10};
  LiveView view(out, err, [&size] { return size; });

  v2::WatchProgressResponse first =
      Message(1, DelayJob(v2::STARTED, 0.2, v2::STARTED), true);
  first.mutable_job()->mutable_logs()->add_stdout("[t1] INFO one");
  view.Show(first);
  EXPECT_EQ(out.str(),
            absl::StrCat("\x1b[?25l", Frame(first, {"[t1] INFO one"})));
  // Job, status, Delay, its params, Overall, "Log:", one line.
  const int first_lines = 7;

  // The next message replaces the view: up to its first line, erase, draw.
  out.str("");
  v2::WatchProgressResponse second =
      Message(2, DelayJob(v2::STARTED, 0.4, v2::STARTED));
  AddLog(second, 2, "[t2] INFO two");
  view.Show(second);
  const std::string second_frame =
      Frame(second, {"[t1] INFO one", "[t2] INFO two"});
  EXPECT_EQ(out.str(),
            absl::StrCat("\r\x1b[", first_lines, "A\x1b[J", second_frame));

  // A notice goes above the view, which is drawn again below it.
  out.str("");
  view.Notice("connection lost; reconnecting...");
  EXPECT_EQ(out.str(), absl::StrCat("\r\x1b[8A\x1b[J", second_frame));
  EXPECT_EQ(err.str(), "connection lost; reconnecting...\n");

  // A narrower terminal may have rewrapped the view: clear the screen.
  out.str("");
  size = TerminalSize{30, 10};
  v2::WatchProgressResponse third =
      Message(3, DelayJob(v2::SUCCESS, 1.0, v2::SUCCESS));
  view.Show(third);
  std::string third_frame;
  for (const std::string& line : LiveViewLines(
           third.job(), 3, {"[t1] INFO one", "[t2] INFO two"}, 30, 10)) {
    absl::StrAppend(&third_frame, line, "\n");
  }
  EXPECT_EQ(out.str(), absl::StrCat("\x1b[H\x1b[2J", third_frame));

  out.str("");
  view.Close();
  EXPECT_EQ(out.str(), "\x1b[?25h");
}

// ---- The reconnecting loop ----

// One scripted stream: its messages, then how it ends.
struct Stream {
  std::vector<v2::WatchProgressResponse> messages;
  absl::Status end;
};

// Plays one stream per attempt (UNAVAILABLE once they run out) and records
// the after_sequence of each attempt; a fake clock that sleeping advances.
class ScriptedWatch {
 public:
  explicit ScriptedWatch(std::vector<Stream> streams)
      : streams_(std::move(streams)) {}

  int Run(WatchOptions options, WatchView& view, std::ostream& err) {
    options.job_id = 7;
    if (options.server.empty()) options.server = "localhost:50051";
    const WatchAttempt attempt =
        [this](int64_t after, const JobClient::WatchCallback& on_message) {
          afters.push_back(after);
          if (next_ == streams_.size()) {
            return absl::UnavailableError("connection refused");
          }
          const Stream& stream = streams_[next_++];
          for (const v2::WatchProgressResponse& message : stream.messages) {
            if (!on_message(message)) return absl::CancelledError("stopped");
          }
          return stream.end;
        };
    WatchEnvironment environment;
    environment.now = [this] { return now_; };
    environment.sleep = [this](absl::Duration duration) {
      sleeps.push_back(duration);
      now_ += duration;
    };
    return RunWatch(options, attempt, view, err, environment);
  }

  std::vector<int64_t> afters;
  std::vector<absl::Duration> sleeps;

 private:
  const std::vector<Stream> streams_;
  size_t next_ = 0;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

v2::WatchProgressResponse StatusMessage(int64_t sequence,
                                        v2::JobStatus status) {
  v2::Job job;
  job.set_id(7);
  job.set_status(status);
  v2::WatchProgressResponse message = Message(sequence, job, sequence == 1);
  if (sequence > 1) AddStatus(message, sequence, status);
  return message;
}

TEST(RunWatch, ExitsWithTheFinalStatusOfTheJob) {
  const std::vector<std::pair<v2::JobStatus, int>> cases = {
      {v2::SUCCESS, kWatchSuccess},
      {v2::FAILURE, kWatchFailure},
      {v2::REVOKED, kWatchRevoked}};
  for (const auto& [status, code] : cases) {
    ScriptedWatch watch(
        {{{StatusMessage(1, v2::STARTED), StatusMessage(2, status)},
          absl::OkStatus()}});
    std::ostringstream out;
    std::ostringstream err;
    PlainView view(out, err);
    EXPECT_EQ(watch.Run({}, view, err), code);
    EXPECT_EQ(out.str(), absl::StrCat("[seq 1] STARTED\n[seq 2] ",
                                      v2::JobStatus_Name(status), "\n"));
    EXPECT_EQ(err.str(), "");
    EXPECT_THAT(watch.sleeps, IsEmpty());
  }
}

TEST(RunWatch, ResumesAfterTheLastSequenceShownWithoutRepeating) {
  v2::WatchProgressResponse log = StatusMessage(3, v2::STARTED);
  log.clear_status_changes();
  AddLog(log, 3, "[t] INFO after the restart");
  ScriptedWatch watch({
      {{StatusMessage(1, v2::PENDING), StatusMessage(2, v2::STARTED)},
       absl::UnavailableError("Socket closed")},
      // The resumed stream starts with the document already shown.
      {{Message(2, StatusMessage(2, v2::STARTED).job()), log,
        StatusMessage(4, v2::SUCCESS)},
       absl::OkStatus()},
  });
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  EXPECT_EQ(watch.Run({}, view, err), kWatchSuccess);
  EXPECT_THAT(watch.afters, ElementsAre(0, 2));
  EXPECT_THAT(watch.sleeps, ElementsAre(absl::Milliseconds(200)));
  EXPECT_EQ(out.str(),
            "[seq 1] PENDING\n"
            "[seq 2] STARTED\n"
            "[t] INFO after the restart\n"
            "[seq 4] SUCCESS\n");
  EXPECT_EQ(err.str(), "connection lost; reconnecting...\n");
}

TEST(RunWatch, GivesUpAfterTheReconnectTimeoutWithoutAConnection) {
  ScriptedWatch watch({});
  WatchOptions options;
  options.server = "localhost:1";
  options.reconnect_timeout = absl::Seconds(10);
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  EXPECT_EQ(watch.Run(options, view, err), kWatchNoConnection);
  // 0.2 s doubling, the last wait cut to the 10 s.
  EXPECT_THAT(watch.sleeps,
              ElementsAre(absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(800), absl::Milliseconds(1600),
                          absl::Milliseconds(3200), absl::Milliseconds(3800)));
  EXPECT_EQ(watch.afters.size(), 7u);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(),
            "cannot reach localhost:1; retrying...\n"
            "jobctl: UNAVAILABLE: no connection to localhost:1 for 10s; "
            "giving up (connection refused)\n");
}

TEST(RunWatch, TheBackoffStopsAtFiveSecondsAndStartsOverOnAConnection) {
  std::vector<Stream> streams(7, Stream{{}, absl::UnavailableError("down")});
  streams.push_back({{StatusMessage(1, v2::STARTED)},
                     absl::UnavailableError("Socket closed")});
  streams.push_back({{}, absl::UnavailableError("down")});
  streams.push_back({{StatusMessage(2, v2::SUCCESS)}, absl::OkStatus()});
  ScriptedWatch watch(std::move(streams));
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  EXPECT_EQ(watch.Run({}, view, err), kWatchSuccess);
  EXPECT_THAT(
      watch.sleeps,
      ElementsAre(absl::Milliseconds(200), absl::Milliseconds(400),
                  absl::Milliseconds(800), absl::Milliseconds(1600),
                  absl::Milliseconds(3200), absl::Seconds(5), absl::Seconds(5),
                  absl::Milliseconds(200), absl::Milliseconds(400)));
  EXPECT_THAT(watch.afters, ElementsAre(0, 0, 0, 0, 0, 0, 0, 0, 1, 1));
  EXPECT_EQ(err.str(),
            "cannot reach localhost:50051; retrying...\n"
            "connection lost; reconnecting...\n");
  EXPECT_EQ(out.str(), "[seq 1] STARTED\n[seq 2] SUCCESS\n");
}

TEST(RunWatch, TheTimeoutCountsFromTheLastConnection) {
  // Connected for a while, then the server stays away.
  ScriptedWatch watch({{{StatusMessage(1, v2::STARTED)},
                        absl::UnavailableError("Socket closed")}});
  WatchOptions options;
  options.reconnect_timeout = absl::Seconds(1);
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  EXPECT_EQ(watch.Run(options, view, err), kWatchNoConnection);
  EXPECT_THAT(watch.sleeps,
              ElementsAre(absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(400)));
  EXPECT_EQ(err.str(),
            "connection lost; reconnecting...\n"
            "jobctl: UNAVAILABLE: no connection to localhost:50051 for 1s; "
            "giving up (connection refused)\n");
}

TEST(RunWatch, AStreamThatEndsBeforeAFinalStatusIsResumed) {
  ScriptedWatch watch({
      {{StatusMessage(1, v2::STARTED)}, absl::OkStatus()},
      {{StatusMessage(2, v2::REVOKED)}, absl::OkStatus()},
  });
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  EXPECT_EQ(watch.Run({}, view, err), kWatchRevoked);
  EXPECT_THAT(watch.afters, ElementsAre(0, 1));
  EXPECT_EQ(err.str(), "connection lost; reconnecting...\n");
}

TEST(RunWatch, AnUnknownJobOrABadRequestExits3AndOtherErrors1) {
  const std::vector<std::tuple<absl::Status, int, std::string>> cases = {
      {absl::NotFoundError("job 7 not found"), kWatchNotFound,
       "jobctl: NOT_FOUND: job 7 not found\n"},
      {absl::InvalidArgumentError(
           "logs_limit: Ensure this value is between 1 and 5000."),
       kWatchNotFound,
       "jobctl: INVALID_ARGUMENT: logs_limit: Ensure this value is between 1 "
       "and 5000.\n"},
      {absl::ResourceExhaustedError(
           "too many watchers: the server allows 3 (--max_watchers)"),
       kWatchFailure,
       "jobctl: RESOURCE_EXHAUSTED: too many watchers: the server allows 3 "
       "(--max_watchers)\n"},
      {absl::UnimplementedError("unknown method WatchProgress"), kWatchFailure,
       "jobctl: UNIMPLEMENTED: unknown method WatchProgress\n"},
  };
  for (const auto& [status, code, text] : cases) {
    ScriptedWatch watch({{{}, status}});
    std::ostringstream out;
    std::ostringstream err;
    PlainView view(out, err);
    EXPECT_EQ(watch.Run({}, view, err), code);
    EXPECT_EQ(err.str(), text);
    EXPECT_THAT(watch.sleeps, IsEmpty());
  }

  // Deleted while watched: what was shown stays, then the error.
  ScriptedWatch deleted({{{StatusMessage(1, v2::STARTED)},
                          absl::NotFoundError("job 7 was deleted")}});
  std::ostringstream out;
  std::ostringstream err;
  PlainView view(out, err);
  EXPECT_EQ(deleted.Run({}, view, err), kWatchNotFound);
  EXPECT_EQ(out.str(), "[seq 1] STARTED\n");
  EXPECT_EQ(err.str(), "jobctl: NOT_FOUND: job 7 was deleted\n");
}

TEST(RunWatch, ALiveViewIsClosedBeforeTheError) {
  ScriptedWatch watch({{{StatusMessage(1, v2::STARTED)},
                        absl::NotFoundError("job 7 was deleted")}});
  std::ostringstream out;
  std::ostringstream err;
  LiveView view(out, err, [] { return TerminalSize{80, 24}; });
  EXPECT_EQ(watch.Run({}, view, err), kWatchNotFound);
  EXPECT_TRUE(absl::EndsWith(out.str(), "\x1b[?25h")) << out.str();
  EXPECT_EQ(err.str(), "jobctl: NOT_FOUND: job 7 was deleted\n");
}

}  // namespace
}  // namespace jobline
