#include "server/lease_rules.h"

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/job_rules.h"
#include "server/status_util.h"
#include "server/test_util.h"
#include "storage/job_store.h"

namespace jobline {
namespace {

using ::jobline::testing::EqualsProto;
using ::jobline::testing::Logs;
using ::jobline::testing::ParseText;
using ::jobline::testing::Violation;

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kJobId = 12;
constexpr char kPopulate[] = "populate_captures_collection";

// ---- Helpers ----------------------------------------------------------------

// A fixed "now" with a fraction of a second.
absl::Time TestNow() {
  return absl::FromCivil(absl::CivilSecond(2025, 11, 12, 19, 1, 0),
                         absl::UTCTimeZone()) +
         absl::Milliseconds(250);
}

google::protobuf::Timestamp ProtoNow() { return ToProtoTime(TestNow()); }

// A lease as "{lease_id, holder, expires_at, attempts}".
std::string LeaseText(const JobLease& lease) {
  return absl::StrCat("{", lease.lease_id, ", ", lease.holder, ", ",
                      absl::FormatTime(absl::RFC3339_full, lease.expires_at,
                                       absl::UTCTimeZone()),
                      ", ", lease.attempts, "}");
}

JobLease MakeLease(const std::string& lease_id, const std::string& holder,
                   absl::Time expires_at, int32_t attempts) {
  JobLease lease;
  lease.lease_id = lease_id;
  lease.holder = holder;
  lease.expires_at = expires_at;
  lease.attempts = attempts;
  return lease;
}

// Job 12 "Nightly batch" of type `type` in `status`, summary following it.
JobMutation MakeMutation(v2::JobStatus status,
                         const std::string& type = kPopulate) {
  JobMutation mutation;
  v2::Job& job = mutation.job;
  job.set_id(kJobId);
  job.set_name("Nightly batch");
  job.set_status(status);
  job.mutable_progress()->mutable_summary()->set_status(status);
  job.mutable_job_type()->set_key(type);
  job.set_dispatch_mode("internal");
  return mutation;
}

// A job leased by worker-1 under "lease-1" until `expires_at`.
JobMutation MakeLeased(v2::JobStatus status, absl::Time expires_at,
                       int32_t attempts = 1) {
  JobMutation mutation = MakeMutation(status);
  *mutation.job.mutable_started_at() =
      ToProtoTime(TestNow() - absl::Minutes(1));
  mutation.lease = MakeLease("lease-1", "worker-1", expires_at, attempts);
  return mutation;
}

// Expects `after` to be `before`: job, lease and log lines.
void ExpectUnchanged(const JobMutation& before, const JobMutation& after) {
  EXPECT_THAT(after.job, EqualsProto(before.job));
  EXPECT_EQ(LeaseText(after.lease), LeaseText(before.lease));
  EXPECT_EQ(Logs(after), Logs(before));
  EXPECT_EQ(after.allow_leave_final, before.allow_leave_final);
}

google::protobuf::RepeatedPtrField<v2::StageUpdate> Updates(
    const std::vector<std::string>& texts) {
  google::protobuf::RepeatedPtrField<v2::StageUpdate> updates;
  for (const std::string& text : texts) {
    *updates.Add() = ParseText<v2::StageUpdate>(text);
  }
  return updates;
}

// ---- GrantLease -------------------------------------------------------------

TEST(GrantLease, FromTheWorkersQueueStartsTheJob) {
  JobMutation mutation = MakeMutation(v2::PENDING);
  *mutation.job.mutable_finished_at() = ProtoNow();
  const absl::Time expires = TestNow() + absl::Seconds(60);

  ASSERT_TRUE(
      GrantLease("", "worker-1", "lease-1", TestNow(), expires, mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::STARTED);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::STARTED);
  EXPECT_THAT(mutation.job.started_at(), EqualsProto(ProtoNow()));
  EXPECT_FALSE(mutation.job.has_finished_at());
  EXPECT_EQ(LeaseText(mutation.lease),
            "{lease-1, worker-1, 2025-11-12T19:02:00.25+00:00, 1}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Running job #12 \"Nightly batch\" (PENDING)",
                          "INFO Changing status of job 12 from PENDING to "
                          "STARTED"));
  EXPECT_FALSE(mutation.allow_leave_final);
}

TEST(GrantLease, FromTheRunnersQueueCountsTheNextAttempt) {
  JobMutation mutation = MakeMutation(v2::PENDING, "unknown");
  mutation.lease.holder = kRunnerHolder;
  mutation.lease.attempts = 2;
  const absl::Time expires = TestNow() + absl::Seconds(30);

  ASSERT_TRUE(GrantLease(kRunnerHolder, kRunnerHolder, "lease-7", TestNow(),
                         expires, mutation)
                  .ok());

  EXPECT_EQ(mutation.job.status(), v2::STARTED);
  EXPECT_EQ(LeaseText(mutation.lease),
            "{lease-7, jobline-runner, 2025-11-12T19:01:30.25+00:00, 3}");
}

TEST(GrantLease, RefusedUnlessPendingUnleasedInTheNamedQueue) {
  struct Case {
    std::string name;
    JobMutation mutation;
    std::string queue;
  };
  std::vector<Case> cases;
  JobMutation leased = MakeMutation(v2::PENDING);
  leased.lease =
      MakeLease("lease-0", "worker-0", TestNow() + absl::Seconds(5), 1);
  cases.push_back({"leased already", leased, ""});
  JobMutation runners = MakeMutation(v2::PENDING, "unknown");
  runners.lease.holder = kRunnerHolder;
  cases.push_back({"runner's job, workers' queue", runners, ""});
  cases.push_back({"worker's job, runner's queue", MakeMutation(v2::PENDING),
                   kRunnerHolder});
  for (const v2::JobStatus status :
       {v2::CREATED, v2::STARTED, v2::RETRY, v2::CANCELING, v2::SUCCESS,
        v2::FAILURE, v2::REVOKED, v2::UNKNOWN}) {
    cases.push_back(
        {std::string(StatusName(status)), MakeMutation(status), ""});
  }

  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    const JobMutation before = c.mutation;
    const absl::Status status =
        GrantLease(c.queue, "worker-1", "lease-1", TestNow(),
                   TestNow() + absl::Seconds(60), c.mutation);
    EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
    EXPECT_EQ(status.message(), "job 12 is no longer waiting in the queue");
    ExpectUnchanged(before, c.mutation);
  }
}

// ---- CheckLease, RenewLease, CancelRequested --------------------------------

TEST(CheckLease, AcceptsTheCurrentLeaseBeforeItRunsOut) {
  const JobMutation mutation =
      MakeLeased(v2::STARTED, TestNow() + absl::Microseconds(1));
  EXPECT_TRUE(CheckLease("lease-1", TestNow(), mutation).ok());
  const JobMutation canceling =
      MakeLeased(v2::CANCELING, TestNow() + absl::Seconds(1));
  EXPECT_TRUE(CheckLease("lease-1", TestNow(), canceling).ok());
}

TEST(CheckLease, RefusalsSayWhy) {
  const JobMutation leased =
      MakeLeased(v2::STARTED, TestNow() + absl::Seconds(10));
  const JobMutation expired = MakeLeased(v2::STARTED, TestNow());
  JobMutation finished = MakeMutation(v2::SUCCESS);
  finished.lease.attempts = 1;
  const JobMutation revoked_leased =
      MakeLeased(v2::REVOKED, TestNow() + absl::Seconds(10));
  const JobMutation pending = MakeMutation(v2::PENDING);

  struct Case {
    std::string lease_id;
    const JobMutation* mutation;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"lease-1", &finished, "job 12 is already SUCCESS"},
      {"lease-1", &revoked_leased, "job 12 is already REVOKED"},
      {"lease-2", &leased,
       "lease \"lease-2\" is not the current lease of job "
       "12"},
      {"", &leased, "lease \"\" is not the current lease of job 12"},
      {"", &pending, "lease \"\" is not the current lease of job 12"},
      {"lease-1", &expired,
       "lease \"lease-1\" of job 12 ran out at 2025-11-12T19:01:00.25+00:00"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    const absl::Status status = CheckLease(c.lease_id, TestNow(), *c.mutation);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(status.message(), c.message);
  }
}

TEST(RenewLease, MovesTheDeadlineLaterNeverEarlier) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(60));
  RenewLease(TestNow() + absl::Seconds(90), mutation);
  EXPECT_EQ(mutation.lease.expires_at, TestNow() + absl::Seconds(90));
  RenewLease(TestNow() + absl::Seconds(10), mutation);
  EXPECT_EQ(mutation.lease.expires_at, TestNow() + absl::Seconds(90));
  EXPECT_EQ(LeaseText(mutation.lease),
            "{lease-1, worker-1, 2025-11-12T19:02:30.25+00:00, 1}");
  EXPECT_THAT(Logs(mutation), IsEmpty());
}

TEST(CancelRequested, OnlyWhileCanceling) {
  for (const v2::JobStatus status : AllStatuses()) {
    EXPECT_EQ(CancelRequested(MakeMutation(status)), status == v2::CANCELING)
        << StatusName(status);
  }
}

// ---- ApplyStageUpdates ------------------------------------------------------

TEST(ApplyStageUpdates, CreatesAStageByNameKeyedBySlug) {
  v2::JobProgress progress;
  const auto updates = Updates({
      R"pb(name: "Populate capture set"
           status: STARTED
           progress: 0.1
           params {
             name: "Captures added"
             value { number_value: 5 }
           })pb",
  });

  ASSERT_TRUE(ApplyStageUpdates(updates, progress).ok());

  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { progress: 0.1 }
                stages {
                  status: STARTED
                  progress: 0.1
                  key: "populate_capture_set"
                  name: "Populate capture set"
                  params {
                    name: "Captures added"
                    key: "captures_added"
                    category: "default"
                    value { number_value: 5 }
                  }
                })pb")));
}

TEST(ApplyStageUpdates, CreatesAStageWithAnExplicitKey) {
  v2::JobProgress progress;
  const auto updates = Updates({
      R"pb(key: "populate_captures_collection" name: "Populate capture set")pb",
      R"pb(key: "Uploading Snapshot" name: "Uploading snapshot")pb",
  });

  ASSERT_TRUE(ApplyStageUpdates(updates, progress).ok());

  ASSERT_EQ(progress.stages_size(), 2);
  EXPECT_EQ(progress.stages(0).key(), "populate_captures_collection");
  EXPECT_EQ(progress.stages(0).name(), "Populate capture set");
  EXPECT_EQ(progress.stages(0).status(), v2::CREATED);
  EXPECT_EQ(progress.stages(0).progress(), 0.0);
  // A key is a slug, whatever the worker sent.
  EXPECT_EQ(progress.stages(1).key(), "uploading_snapshot");
  EXPECT_EQ(progress.stages(1).name(), "Uploading snapshot");
}

TEST(ApplyStageUpdates, UpdatesAnExistingStageByKeyAndItsParams) {
  v2::JobProgress progress;
  ASSERT_TRUE(ApplyStageUpdates(Updates({R"pb(name: "Data storage sync"
                                              params {
                                                name: "Total files"
                                                value { number_value: 0 }
                                              }
                                              params {
                                                name: "Failed"
                                                value { number_value: 0 }
                                              })pb",
                                         R"pb(name: "Regroup sessions")pb"}),
                                progress)
                  .ok());

  const auto updates = Updates({
      R"pb(key: "data_storage_sync"
           status: SUCCESS
           progress: 1.0
           params {
             name: "Total files"
             value { number_value: 40 }
           }
           params {
             key: "failed"
             value { number_value: 2 }
           }
           params {
             name: "Skipped"
             value { string_value: "none" }
           })pb",
      R"pb(key: "regroup_sessions" progress: 0.5)pb",
  });
  ASSERT_TRUE(ApplyStageUpdates(updates, progress).ok());

  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { progress: 0.75 }
                stages {
                  status: SUCCESS
                  progress: 1.0
                  key: "data_storage_sync"
                  name: "Data storage sync"
                  params {
                    name: "Total files"
                    key: "total_files"
                    category: "default"
                    value { number_value: 40 }
                  }
                  params {
                    name: "Failed"
                    key: "failed"
                    category: "default"
                    value { number_value: 2 }
                  }
                  params {
                    name: "Skipped"
                    key: "skipped"
                    category: "default"
                    value { string_value: "none" }
                  }
                }
                stages {
                  status: STARTED
                  progress: 0.5
                  key: "regroup_sessions"
                  name: "Regroup sessions"
                })pb")));
}

TEST(ApplyStageUpdates, ALowerProgressKeepsTheHigherOneD18) {
  v2::JobProgress progress;
  ASSERT_TRUE(ApplyStageUpdates(
                  Updates({R"pb(name: "Collect" progress: 0.6)pb"}), progress)
                  .ok());
  ASSERT_TRUE(ApplyStageUpdates(
                  Updates({R"pb(key: "collect" progress: 0.4)pb"}), progress)
                  .ok());
  EXPECT_EQ(progress.stages(0).progress(), 0.6);
  EXPECT_EQ(progress.stages(0).status(), v2::STARTED);
  EXPECT_EQ(progress.summary().progress(), 0.6);
}

TEST(ApplyStageUpdates, AStageReportedAtOneSucceeds) {
  v2::JobProgress progress;
  ASSERT_TRUE(ApplyStageUpdates(
                  Updates({R"pb(name: "Collect" progress: 1.0)pb"}), progress)
                  .ok());
  EXPECT_EQ(progress.stages(0).status(), v2::SUCCESS);
  EXPECT_EQ(progress.summary().progress(), 1.0);
}

TEST(ApplyStageUpdates, RefusesBadInputNamingTheFieldAndChangesNothing) {
  v2::JobProgress start;
  ASSERT_TRUE(ApplyStageUpdates(
                  Updates({R"pb(name: "Collect" progress: 0.5)pb"}), start)
                  .ok());

  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    std::vector<std::string> updates;
    std::string violation;
  };
  const std::vector<Case> cases = {
      {{R"pb(key: "collect" progress: 0.9)pb", R"pb(key: "process")pb"},
       "stages[1].key: Stage \"process\" does not exist; give a name to "
       "create it."},
      {{R"pb(progress: 0.9)pb"},
       "stages[0].key: A stage needs a key or a name."},
      {{R"pb(name: "!!!")pb"}, "stages[0].key: A stage needs a key or a name."},
      {{R"pb(key: "collect" status: CREATED)pb"},
       "stages[0].status: A stage status must be STARTED, SUCCESS or "
       "FAILURE."},
      {{R"pb(key: "collect" status: PENDING)pb"},
       "stages[0].status: A stage status must be STARTED, SUCCESS or "
       "FAILURE."},
      {{R"pb(key: "collect" progress: 0.9)pb", R"pb(key: "collect"
                                                    status: REVOKED)pb"},
       "stages[1].status: A stage status must be STARTED, SUCCESS or "
       "FAILURE."},
      {{R"pb(key: "collect" progress: -0.1)pb"},
       "stages[0].progress: Ensure this value is between 0 and 1."},
      {{R"pb(name: "Process" progress: 1.5)pb"},
       "stages[0].progress: Ensure this value is between 0 and 1."},
      {{R"pb(key: "collect"
             params { value { number_value: 1 } })pb"},
       "stages[0].params[0].name: A param needs a name or a key."},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.violation);
    v2::JobProgress progress = start;
    const absl::Status status = ApplyStageUpdates(Updates(c.updates), progress);
    EXPECT_EQ(Violation(status), c.violation);
    EXPECT_THAT(progress, EqualsProto(start));
  }

  // NaN cannot be written in text format.
  v2::JobProgress progress = start;
  google::protobuf::RepeatedPtrField<v2::StageUpdate> updates =
      Updates({R"pb(key: "collect")pb"});
  updates[0].set_progress(nan);
  EXPECT_EQ(Violation(ApplyStageUpdates(updates, progress)),
            "stages[0].progress: Ensure this value is between 0 and 1.");
  EXPECT_THAT(progress, EqualsProto(start));
}

// ---- ParseWorkerLogs --------------------------------------------------------

TEST(ParseWorkerLogs, ParsesEveryLevelEmptyMeaningInfoAndDropsDebug) {
  google::protobuf::RepeatedPtrField<v2::WorkerLogLine> lines;
  for (const char* level :
       {"DEBUG", "INFO", "", "WARNING", "ERROR", "CRITICAL"}) {
    v2::WorkerLogLine* line = lines.Add();
    line->set_level(level);
    line->set_message(absl::StrCat("at ", level));
  }

  absl::StatusOr<std::vector<NewLogLine>> parsed = ParseWorkerLogs(lines);

  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::vector<std::string> texts;
  for (const NewLogLine& line : *parsed) {
    texts.push_back(absl::StrCat(LogLevelName(line.level), " ", line.message));
  }
  EXPECT_THAT(texts,
              ElementsAre("INFO at INFO", "INFO at ", "WARNING at WARNING",
                          "ERROR at ERROR", "CRITICAL at CRITICAL"));
}

TEST(ParseWorkerLogs, RefusesABlankOrHugeMessage) {
  google::protobuf::RepeatedPtrField<v2::WorkerLogLine> lines;
  v2::WorkerLogLine* line = lines.Add();
  line->set_level("INFO");
  line->set_message("   ");
  EXPECT_EQ(Violation(ParseWorkerLogs(lines).status()),
            "logs[0].message: This field may not be blank.");
  line->set_message(std::string(64 * 1024 + 1, 'x'));
  const absl::Status huge = ParseWorkerLogs(lines).status();
  EXPECT_EQ(huge.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(huge.message(),
            "logs[0].message: a log message may have at most 65536 bytes "
            "(--max_log_message_kb)");
  line->set_message(std::string(64 * 1024, 'x'));
  EXPECT_TRUE(ParseWorkerLogs(lines).ok());
}

TEST(ParseWorkerLogs, RefusesMoreLinesThanTheLimit) {
  google::protobuf::RepeatedPtrField<v2::WorkerLogLine> lines;
  for (int i = 0; i < 3; ++i) {
    v2::WorkerLogLine* line = lines.Add();
    line->set_level("INFO");
    line->set_message("line");
  }
  ReportLimits limits;
  limits.max_lines = 3;
  EXPECT_TRUE(ParseWorkerLogs(lines, limits).ok());
  limits.max_lines = 2;
  const absl::Status many = ParseWorkerLogs(lines, limits).status();
  EXPECT_EQ(many.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(many.message(),
            "logs: a report may carry at most 2 lines (--max_report_lines); "
            "this one has 3");
}

TEST(ParseWorkerLogs, RefusesAnUnknownLevelOrAnEmptyMessage) {
  google::protobuf::RepeatedPtrField<v2::WorkerLogLine> lines;
  *lines.Add() =
      ParseText<v2::WorkerLogLine>(R"pb(level: "INFO" message: "fine")pb");
  *lines.Add() = ParseText<v2::WorkerLogLine>(R"pb(level: "warning"
                                                   message: "lower case")pb");
  EXPECT_EQ(Violation(ParseWorkerLogs(lines).status()),
            "logs[1].level: Use DEBUG, INFO, WARNING, ERROR or CRITICAL.");

  lines.Mutable(1)->set_level("WARNING");
  lines.Mutable(1)->clear_message();
  EXPECT_EQ(Violation(ParseWorkerLogs(lines).status()),
            "logs[1].message: This field may not be blank.");
}

// ---- EndRun -----------------------------------------------------------------

TEST(EndRun, SuccessPromotesStagesStoresTheResultAndClearsTheLease) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(5),
                                    /*attempts=*/2);
  // Stages at 1.0 that are not final yet, as a last report may leave them.
  v2::JobProgress& progress = *mutation.job.mutable_progress();
  AddStage(progress, "Collect")->set_progress(1.0);
  AddStage(progress, "Process")->set_progress(1.0);
  progress.mutable_stages(1)->set_status(v2::STARTED);
  const google::protobuf::Value result =
      ParseText<google::protobuf::Value>(R"pb(struct_value {
                                                fields {
                                                  key: "captures_added"
                                                  value { number_value: 1000 }
                                                }
                                              })pb");
  RunEnd end;
  end.status = v2::SUCCESS;
  end.result = &result;

  ASSERT_TRUE(EndRun(end, TestNow(), mutation).ok());

  const v2::Job& job = mutation.job;
  EXPECT_EQ(job.status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().summary().status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().summary().progress(), 1.0);
  EXPECT_EQ(job.progress().stages(0).status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().stages(1).status(), v2::SUCCESS);
  EXPECT_THAT(job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_THAT(job.result(), EqualsProto(result));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 2}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Changing status of job 12 from STARTED to "
                          "SUCCESS",
                          "INFO Finished job #12 \"Nightly batch\" (SUCCESS)"));
}

TEST(EndRun, SuccessWithoutStagesIsAllowed) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(5));
  RunEnd end;
  ASSERT_TRUE(EndRun(end, TestNow(), mutation).ok());
  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  EXPECT_FALSE(mutation.job.has_result());
}

TEST(EndRun, SuccessNeedsEveryStageAtOne) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(5));
  ASSERT_TRUE(
      ApplyStageUpdates(Updates({R"pb(name: "Delay" progress: 1.0)pb",
                                 R"pb(name: "Collect" progress: 0.5)pb"}),
                        *mutation.job.mutable_progress())
          .ok());
  const JobMutation before = mutation;
  RunEnd end;
  end.status = v2::SUCCESS;

  EXPECT_EQ(Violation(EndRun(end, TestNow(), mutation)),
            "status: Stage \"collect\" is at 0.5; SUCCESS needs every stage "
            "at 1.0.");
  ExpectUnchanged(before, mutation);
}

TEST(EndRun, FailureLogsTheErrorAtError) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(5));
  ASSERT_TRUE(
      ApplyStageUpdates(Updates({R"pb(name: "Collect" progress: 0.5)pb"}),
                        *mutation.job.mutable_progress())
          .ok());
  RunEnd end;
  end.status = v2::FAILURE;
  end.error = "the collection is gone";

  ASSERT_TRUE(EndRun(end, TestNow(), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::FAILURE);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::FAILURE);
  EXPECT_EQ(mutation.job.progress().stages(0).progress(), 0.5);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 1}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("ERROR the collection is gone",
                          "INFO Changing status of job 12 from STARTED to "
                          "FAILURE",
                          "INFO Finished job #12 \"Nightly batch\" (FAILURE)"));
}

TEST(EndRun, CancelingBecomesRevokedWhateverTheWorkerSays) {
  for (const v2::JobStatus reported : {v2::SUCCESS, v2::FAILURE}) {
    SCOPED_TRACE(StatusName(reported));
    JobMutation mutation =
        MakeLeased(v2::CANCELING, TestNow() + absl::Seconds(5));
    ASSERT_TRUE(
        ApplyStageUpdates(Updates({R"pb(name: "Collect" progress: 0.5)pb"}),
                          *mutation.job.mutable_progress())
            .ok());
    RunEnd end;
    end.status = reported;

    ASSERT_TRUE(EndRun(end, TestNow(), mutation).ok());

    EXPECT_EQ(mutation.job.status(), v2::REVOKED);
    EXPECT_EQ(mutation.job.progress().summary().status(), v2::REVOKED);
    EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
    EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 1}");
    EXPECT_THAT(
        Logs(mutation),
        ElementsAre("INFO Changing status of job 12 from CANCELING to REVOKED",
                    "INFO Finished job #12 \"Nightly batch\" (REVOKED)"));
  }
}

TEST(EndRun, RefusesAnotherStatus) {
  for (const v2::JobStatus status :
       {v2::JOB_STATUS_UNSPECIFIED, v2::CREATED, v2::PENDING, v2::STARTED,
        v2::REVOKED, v2::CANCELING}) {
    SCOPED_TRACE(StatusName(status));
    JobMutation mutation =
        MakeLeased(v2::STARTED, TestNow() + absl::Seconds(5));
    const JobMutation before = mutation;
    RunEnd end;
    end.status = status;
    EXPECT_EQ(Violation(EndRun(end, TestNow(), mutation)),
              "status: A run ends with SUCCESS or FAILURE.");
    ExpectUnchanged(before, mutation);
  }
}

// ---- HandToWorkers ----------------------------------------------------------

TEST(HandToWorkers, PutsTheJobInTheWorkersQueue) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  mutation.job.set_delay(2);
  ApplySetup(mutation.job);
  *mutation.job.mutable_started_at() = ProtoNow();
  mutation.lease =
      MakeLease("lease-1", kRunnerHolder, TestNow() + absl::Seconds(30), 1);
  StageUpdate done;
  done.status = v2::SUCCESS;
  done.progress = 1.0;
  ASSERT_TRUE(
      UpdateStage(*mutation.job.mutable_progress(), "delay", done).ok());

  HandToWorkers(TestNow(), mutation);

  EXPECT_EQ(mutation.job.status(), v2::PENDING);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::PENDING);
  EXPECT_FALSE(mutation.job.has_started_at());
  EXPECT_FALSE(mutation.job.has_finished_at());
  // The workers get every attempt: the runner's lease does not count.
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 0}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Job #12 is waiting for a worker of type "
                          "populate_captures_collection",
                          "INFO Changing status of job 12 from STARTED to "
                          "PENDING"));
}

TEST(HandToWorkers, ACancelingJobIsRevoked) {
  JobMutation mutation = MakeMutation(v2::CANCELING);
  mutation.lease =
      MakeLease("lease-1", kRunnerHolder, TestNow() + absl::Seconds(30), 1);

  HandToWorkers(TestNow(), mutation);

  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 1}");
  EXPECT_THAT(
      Logs(mutation),
      ElementsAre("INFO Changing status of job 12 from CANCELING to REVOKED",
                  "INFO Finished job #12 \"Nightly batch\" (REVOKED)"));
}

// ---- ExpireLease ------------------------------------------------------------

TEST(ExpireLease, RequeuesWithAWarningKeepingTheAttempts) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow(), /*attempts=*/2);

  ASSERT_TRUE(ExpireLease(TestNow(), 3, /*force=*/false, mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::PENDING);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::PENDING);
  EXPECT_FALSE(mutation.job.has_started_at());
  EXPECT_FALSE(mutation.job.has_finished_at());
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 2}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("WARNING The lease of job 12 held by worker-1 ended "
                          "without a result; queueing it again (attempt 2 of "
                          "3 used)",
                          "INFO Changing status of job 12 from STARTED to "
                          "PENDING"));
}

TEST(ExpireLease, ARunnerJobGoesBackToTheRunnersQueue) {
  JobMutation mutation = MakeMutation(v2::STARTED, "unknown");
  mutation.lease = MakeLease("lease-1", kRunnerHolder, TestNow(), 1);

  ASSERT_TRUE(ExpireLease(TestNow(), 3, /*force=*/false, mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::PENDING);
  EXPECT_EQ(LeaseText(mutation.lease), "{, jobline-runner, infinite-past, 1}");
}

TEST(ExpireLease, FailsTheJobAfterTheLastAttempt) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow(), /*attempts=*/3);

  ASSERT_TRUE(ExpireLease(TestNow(), 3, /*force=*/false, mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::FAILURE);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::FAILURE);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 3}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("ERROR Job 12 failed: its lease ended 3 times "
                          "without a result (last held by worker-1)",
                          "INFO Changing status of job 12 from STARTED to "
                          "FAILURE",
                          "INFO Finished job #12 \"Nightly batch\" (FAILURE)"));
}

TEST(ExpireLease, ACancelingJobIsRevoked) {
  JobMutation mutation = MakeLeased(v2::CANCELING, TestNow());

  ASSERT_TRUE(ExpireLease(TestNow(), 3, /*force=*/false, mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 1}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("WARNING The lease of job 12 held by worker-1 ended "
                          "while it was canceling",
                          "INFO Changing status of job 12 from CANCELING to "
                          "REVOKED",
                          "INFO Finished job #12 \"Nightly batch\" (REVOKED)"));
}

TEST(ExpireLease, AbortedWhenNotLeasedOrNotOverUnlessForced) {
  struct Case {
    std::string name;
    JobMutation mutation;
    bool force;
  };
  std::vector<Case> cases = {
      {"not leased", MakeMutation(v2::PENDING), false},
      {"not leased, forced", MakeMutation(v2::PENDING), true},
      {"not over", MakeLeased(v2::STARTED, TestNow() + absl::Microseconds(1)),
       false},
  };
  JobMutation final_leased = MakeLeased(v2::SUCCESS, TestNow());
  cases.push_back({"final", final_leased, true});

  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    const JobMutation before = c.mutation;
    const absl::Status status = ExpireLease(TestNow(), 3, c.force, c.mutation);
    EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
    EXPECT_EQ(status.message(), "the lease of job 12 is not over");
    ExpectUnchanged(before, c.mutation);
  }

  // Forced, a lease that has not run out ends all the same.
  JobMutation forced = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(30));
  ASSERT_TRUE(ExpireLease(TestNow(), 3, /*force=*/true, forced).ok());
  EXPECT_EQ(forced.job.status(), v2::PENDING);
  EXPECT_EQ(LeaseText(forced.lease), "{, , infinite-past, 1}");
}

// ---- Reap -------------------------------------------------------------------

TEST(Reap, RevokesAnIdleRunningJobWithTheReason) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Hours(1));
  *mutation.job.mutable_updated_at() =
      ToProtoTime(TestNow() - absl::Minutes(11) - absl::Seconds(30));
  ASSERT_TRUE(
      ApplyStageUpdates(Updates({R"pb(name: "Delay" progress: 1.0)pb",
                                 R"pb(name: "Collect" progress: 0.456)pb"}),
                        *mutation.job.mutable_progress())
          .ok());

  ASSERT_TRUE(Reap(TestNow(), absl::Minutes(10), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::REVOKED);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 1}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("WARNING Reaping stalled job 12: no update for 11 "
                          "minutes (threshold 10 minutes); previous status "
                          "STARTED, holder worker-1; stages: delay=100% "
                          "SUCCESS, collect=45% STARTED",
                          "INFO Changing status of job 12 from STARTED to "
                          "REVOKED"));
}

TEST(Reap, RevokesEveryRunningStatusAtTheCutoff) {
  for (const v2::JobStatus status :
       {v2::PENDING, v2::STARTED, v2::RETRY, v2::CANCELING, v2::UNKNOWN}) {
    SCOPED_TRACE(StatusName(status));
    JobMutation mutation = MakeMutation(status);
    *mutation.job.mutable_updated_at() =
        ToProtoTime(TestNow() - absl::Minutes(10));

    ASSERT_TRUE(Reap(TestNow(), absl::Minutes(10), mutation).ok());

    EXPECT_EQ(mutation.job.status(), v2::REVOKED);
    EXPECT_THAT(
        Logs(mutation),
        ElementsAre(absl::StrCat("WARNING Reaping stalled job 12: no update "
                                 "for 10 minutes (threshold 10 minutes); "
                                 "previous status ",
                                 StatusName(status),
                                 ", holder none; stages: no stages"),
                    absl::StrCat("INFO Changing status of job 12 from ",
                                 StatusName(status), " to REVOKED")));
  }
}

TEST(Reap, AbortedForCreatedFinalOrRecentJobs) {
  std::vector<JobMutation> cases;
  for (const v2::JobStatus status :
       {v2::CREATED, v2::SUCCESS, v2::FAILURE, v2::REVOKED, v2::RECEIVED}) {
    cases.push_back(MakeMutation(status));
    *cases.back().job.mutable_updated_at() =
        ToProtoTime(TestNow() - absl::Hours(5));
  }
  cases.push_back(MakeMutation(v2::STARTED));
  *cases.back().job.mutable_updated_at() =
      ToProtoTime(TestNow() - absl::Minutes(5));
  cases.push_back(MakeMutation(v2::PENDING));
  *cases.back().job.mutable_updated_at() =
      ToProtoTime(TestNow() - absl::Minutes(10) + absl::Microseconds(1));

  for (JobMutation& mutation : cases) {
    SCOPED_TRACE(StatusName(mutation.job.status()));
    const JobMutation before = mutation;
    const absl::Status status = Reap(TestNow(), absl::Minutes(10), mutation);
    EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
    EXPECT_EQ(status.message(), "job 12 is not stalled");
    ExpectUnchanged(before, mutation);
  }
}

// ---- Queues: NeedsRunner, AssignQueue, Enqueue, Cancel ----------------------

TEST(NeedsRunner, UnknownMlWithoutPipelineAndUnfinishedDelay) {
  struct Case {
    std::string name;
    std::string type;
    int64_t delay;
    bool pipeline;
    std::optional<v2::JobStatus> delay_stage;
    bool expected;
  };
  const std::vector<Case> cases = {
      {"unknown", "unknown", 0, false, std::nullopt, true},
      {"ml without pipeline", "ml", 0, false, std::nullopt, true},
      {"ml with pipeline", "ml", 0, true, std::nullopt, false},
      {"populate", kPopulate, 0, false, std::nullopt, false},
      {"delay, no stage", kPopulate, 2, false, std::nullopt, true},
      {"delay, stage created", kPopulate, 2, false, v2::CREATED, true},
      {"delay, stage started", kPopulate, 2, false, v2::STARTED, true},
      {"delay, stage done", kPopulate, 2, false, v2::SUCCESS, false},
      {"negative delay", kPopulate, -1, false, v2::CREATED, true},
      {"ml with pipeline, delay", "ml", 3, true, v2::CREATED, true},
      {"ml with pipeline, delay done", "ml", 3, true, v2::SUCCESS, false},
      {"unknown, delay done", "unknown", 3, false, v2::SUCCESS, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v2::Job job = MakeMutation(v2::PENDING, c.type).job;
    job.set_delay(c.delay);
    if (c.pipeline) job.mutable_pipeline()->set_id(3);
    if (c.delay_stage.has_value()) {
      AddStage(*job.mutable_progress(), "Delay", "delay")
          ->set_status(*c.delay_stage);
    }
    EXPECT_EQ(NeedsRunner(job), c.expected);
  }
}

TEST(AssignQueue, ChoosesTheQueueAndKeepsTheAttempts) {
  JobMutation runner = MakeMutation(v2::PENDING, "unknown");
  runner.lease = MakeLease("lease-1", "worker-1", TestNow(), 2);
  AssignQueue(runner);
  EXPECT_EQ(LeaseText(runner.lease), "{, jobline-runner, infinite-past, 2}");

  JobMutation workers = MakeMutation(v2::PENDING);
  workers.lease = MakeLease("lease-1", kRunnerHolder, TestNow(), 1);
  AssignQueue(workers);
  EXPECT_EQ(LeaseText(workers.lease), "{, , infinite-past, 1}");
}

TEST(Enqueue, PutsTheJobInItsQueueWithTheAttemptsReset) {
  struct Case {
    std::string name;
    std::string type;
    int64_t delay;
    bool pipeline;
    std::string holder;
  };
  const std::vector<Case> cases = {
      {"unknown", "unknown", 0, false, kRunnerHolder},
      {"ml without pipeline", "ml", 0, false, kRunnerHolder},
      {"ml with pipeline", "ml", 0, true, ""},
      {"populate with delay", kPopulate, 2, false, kRunnerHolder},
      {"populate without delay", kPopulate, 0, false, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    JobMutation mutation = MakeMutation(v2::FAILURE, c.type);
    mutation.job.set_delay(c.delay);
    if (c.pipeline) mutation.job.mutable_pipeline()->set_id(3);
    ApplySetup(mutation.job);
    mutation.lease.attempts = 3;

    ASSERT_TRUE(Enqueue(mutation).ok());

    EXPECT_EQ(mutation.job.status(), v2::PENDING);
    EXPECT_EQ(LeaseText(mutation.lease),
              absl::StrCat("{, ", c.holder, ", infinite-past, 0}"));
  }
}

TEST(Retry, PutsTheJobInItsQueueWithTheAttemptsReset) {
  JobMutation mutation = MakeMutation(v2::FAILURE);
  mutation.job.set_delay(2);
  ApplySetup(mutation.job);
  StageUpdate done;
  done.status = v2::SUCCESS;
  done.progress = 1.0;
  ASSERT_TRUE(
      UpdateStage(*mutation.job.mutable_progress(), "delay", done).ok());
  mutation.lease.attempts = 2;

  ASSERT_TRUE(Retry(mutation).ok());

  // The reset delay stage has to run again: the runner's queue.
  EXPECT_EQ(mutation.job.status(), v2::PENDING);
  EXPECT_EQ(mutation.job.progress().stages(0).status(), v2::CREATED);
  EXPECT_EQ(LeaseText(mutation.lease), "{, jobline-runner, infinite-past, 0}");
}

TEST(Cancel, APendingJobLeavesItsQueue) {
  JobMutation mutation = MakeMutation(v2::PENDING, "unknown");
  mutation.lease.holder = kRunnerHolder;
  mutation.lease.attempts = 1;

  ASSERT_TRUE(Cancel(TestNow(), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ProtoNow()));
  EXPECT_EQ(LeaseText(mutation.lease), "{, , infinite-past, 1}");
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Changing status of job 12 from PENDING to "
                          "REVOKED"));
}

TEST(Cancel, ALeasedJobKeepsItsLeaseWhileCanceling) {
  JobMutation mutation = MakeLeased(v2::STARTED, TestNow() + absl::Seconds(9));

  ASSERT_TRUE(Cancel(TestNow(), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::CANCELING);
  EXPECT_EQ(LeaseText(mutation.lease),
            "{lease-1, worker-1, 2025-11-12T19:01:09.25+00:00, 1}");
  EXPECT_TRUE(CancelRequested(mutation));
}

}  // namespace
}  // namespace jobline
