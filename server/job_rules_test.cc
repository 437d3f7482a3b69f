#include "server/job_rules.h"

#include <cmath>
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

// ---- Helpers ----------------------------------------------------------------

// A fixed "now" with a fraction of a second.
absl::Time TestNow() {
  return absl::FromCivil(absl::CivilSecond(2025, 11, 12, 19, 1, 0),
                         absl::UTCTimeZone()) +
         absl::Milliseconds(250);
}

// Job 12 "Nightly batch" in `status`, summary following it.
v2::Job MakeJob(v2::JobStatus status) {
  v2::Job job;
  job.set_id(kJobId);
  job.set_name("Nightly batch");
  job.set_status(status);
  job.mutable_progress()->mutable_summary()->set_status(status);
  job.mutable_job_type()->set_key("ml");
  job.set_dispatch_mode("internal");
  return job;
}

JobMutation MakeMutation(v2::JobStatus status) {
  JobMutation mutation;
  mutation.job = MakeJob(status);
  return mutation;
}

// An ML job with a pipeline, after its setup step: stages collect, process
// and results.
JobMutation MakePipelineMutation(v2::JobStatus status) {
  JobMutation mutation = MakeMutation(status);
  mutation.job.mutable_pipeline()->set_id(2);
  EXPECT_TRUE(ApplySetup(mutation.job));
  return mutation;
}

// Reports every stage at progress 1 and recomputes the summary, as the
// last progress report of finished work does.
void ReportAllStagesDone(v2::JobProgress& progress) {
  const v2::JobProgress reported = progress;
  for (const v2::ProgressStage& stage : reported.stages()) {
    StageUpdate update;
    update.progress = 1.0;
    ASSERT_TRUE(UpdateStage(progress, stage.key(), update).ok());
  }
  RecomputeSummary(progress);
}

// A completion: every stage reaches 1.0, then the guarded SUCCESS write.
absl::StatusOr<bool> Complete(absl::Time now, JobMutation& mutation) {
  ReportAllStagesDone(*mutation.job.mutable_progress());
  return SetStatus(v2::SUCCESS, now, FinishGuard(), mutation);
}

// Expects `after` to be `before`, field by field.
void ExpectUnchanged(const JobMutation& before, const JobMutation& after) {
  EXPECT_THAT(after.job, EqualsProto(before.job));
  EXPECT_EQ(Logs(after), Logs(before));
  EXPECT_EQ(after.allow_leave_final, before.allow_leave_final);
}

v2::JobInput ValidInput() {
  v2::JobInput input;
  input.set_name("Nightly batch");
  input.set_project_id(16);
  return input;
}

google::protobuf::FieldMask Mask(std::vector<std::string> paths) {
  google::protobuf::FieldMask mask;
  for (const std::string& path : paths) mask.add_paths(path);
  return mask;
}

// ---- Statuses ---------------------------------------------------------------

TEST(Statuses, AllStatusesInDefinitionOrderWithTheirNames) {
  std::vector<std::string> names;
  for (v2::JobStatus status : AllStatuses()) {
    names.emplace_back(StatusName(status));
  }
  EXPECT_THAT(names, ElementsAre("CREATED", "PENDING", "STARTED", "SUCCESS",
                                 "FAILURE", "RETRY", "CANCELING", "REVOKED",
                                 "RECEIVED", "UNKNOWN"));
  EXPECT_EQ(StatusName(v2::JOB_STATUS_UNSPECIFIED), "");
}

TEST(Statuses, NamedSets) {
  std::vector<std::string> running, final_statuses, finalizable;
  for (v2::JobStatus status : AllStatuses()) {
    const std::string name(StatusName(status));
    if (IsRunningStatus(status)) running.push_back(name);
    if (IsFinalStatus(status)) final_statuses.push_back(name);
    if (IsFinalizableStatus(status)) finalizable.push_back(name);
  }
  EXPECT_THAT(running, ElementsAre("PENDING", "STARTED", "RETRY", "CANCELING",
                                   "UNKNOWN"));
  EXPECT_THAT(final_statuses, ElementsAre("SUCCESS", "FAILURE", "REVOKED"));
  EXPECT_THAT(finalizable,
              ElementsAre("CREATED", "PENDING", "STARTED", "RETRY"));
}

TEST(Statuses, ParseStatusIsExactAndCaseSensitive) {
  for (v2::JobStatus status : AllStatuses()) {
    EXPECT_EQ(ParseStatus(StatusName(status)), status) << StatusName(status);
  }
  EXPECT_FALSE(ParseStatus("created").has_value());
  EXPECT_FALSE(ParseStatus("CREATED ").has_value());
  EXPECT_FALSE(ParseStatus("").has_value());
  EXPECT_FALSE(ParseStatus("JOB_STATUS_UNSPECIFIED").has_value());
}

// ---- Job types --------------------------------------------------------------

TEST(JobTypes, SevenTypesInModelOrder) {
  std::vector<std::string> types;
  for (const JobTypeInfo& type : JobTypes()) {
    types.push_back(absl::StrCat(type.key, "=", type.name));
  }
  EXPECT_THAT(types, ElementsAre("ml=ML pipeline",
                                 "populate_captures_collection="
                                 "Populate captures collection",
                                 "data_storage_sync=Data storage sync",
                                 "regroup_events=Regroup sessions",
                                 "unknown=Unknown", "data_export=Data Export",
                                 "post_processing=Post Processing"));
}

TEST(JobTypes, FindJobTypeByExactKey) {
  const JobTypeInfo* type = FindJobType("data_export");
  ASSERT_NE(type, nullptr);
  EXPECT_EQ(type->name, "Data Export");
  EXPECT_EQ(FindJobType("ML"), nullptr);
  EXPECT_EQ(FindJobType(""), nullptr);
  EXPECT_EQ(FindJobType("bogus"), nullptr);
}

TEST(JobTypes, DispatchModes) {
  EXPECT_TRUE(IsDispatchMode("internal"));
  EXPECT_TRUE(IsDispatchMode("sync_api"));
  EXPECT_TRUE(IsDispatchMode("async_api"));
  EXPECT_FALSE(IsDispatchMode("Internal"));
  EXPECT_FALSE(IsDispatchMode(""));
}

// ---- Slugify (spec 3.2) -----------------------------------------------------

TEST(Slugify, SpecExamples) {
  EXPECT_EQ(Slugify("Total Images"), "total_images");
  EXPECT_EQ(Slugify("Uploading snapshot"), "uploading_snapshot");
  EXPECT_EQ(Slugify("File URL"), "file_url");
  EXPECT_EQ(Slugify("Number of records exported"),
            "number_of_records_exported");
}

TEST(Slugify, FoldsLatinAccentsToAscii) {
  EXPECT_EQ(Slugify("Café Crème Brûlée"), "cafe_creme_brulee");
  EXPECT_EQ(Slugify("Mañana Pré²"), "manana_pre2");
  EXPECT_EQ(Slugify("Ĳssel ŉ ſ"), "ijssel_n_s");
  // Letters without a decomposition are dropped, not transliterated.
  EXPECT_EQ(Slugify("Über Größe"), "uber_groe");
  EXPECT_EQ(Slugify("Łódź Øresund Æble"), "odz_resund_ble");
}

TEST(Slugify, DropsOtherNonAsciiAndInvalidBytes) {
  EXPECT_EQ(Slugify("日本 Jobs 😴"), "jobs");
  const std::string invalid = std::string("ab\xFF\xFE") + "cd";
  EXPECT_EQ(Slugify(invalid), "abcd");
}

TEST(Slugify, DropsPunctuationAndCollapsesSeparators) {
  EXPECT_EQ(Slugify("Hello, World!"), "hello_world");
  EXPECT_EQ(Slugify("50% done (approx.)"), "50_done_approx");
  EXPECT_EQ(Slugify("a - b -- c"), "a_b_c");
  EXPECT_EQ(Slugify("tab\tand\nnewline"), "tab_and_newline");
  // Underscores are word characters: kept, never collapsed.
  EXPECT_EQ(Slugify("a_-_b"), "a___b");
  EXPECT_EQ(Slugify("snake_case_name"), "snake_case_name");
}

TEST(Slugify, StripsLeadingAndTrailingSeparators) {
  EXPECT_EQ(Slugify("  --Leading and trailing--  "), "leading_and_trailing");
  EXPECT_EQ(Slugify("__init__"), "init");
  EXPECT_EQ(Slugify("-_-"), "");
  EXPECT_EQ(Slugify("!!!"), "");
  EXPECT_EQ(Slugify(""), "");
}

// ---- Stages and params (spec 3.3) -------------------------------------------

TEST(AddStage, AppendsACreatedStageKeyedBySlug) {
  v2::JobProgress progress;
  v2::ProgressStage* stage = AddStage(progress, "Uploading snapshot");
  ASSERT_NE(stage, nullptr);
  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                stages {
                  status: CREATED
                  progress: 0
                  key: "uploading_snapshot"
                  name: "Uploading snapshot"
                }
              )pb")));
  EXPECT_EQ(stage, progress.mutable_stages(0));
}

TEST(AddStage, UsesAnExplicitKey) {
  v2::JobProgress progress;
  AddStage(progress, "Data storage sync", "data_storage_sync");
  AddStage(progress, "Regroup sessions", "regroup_sessions");
  ASSERT_EQ(progress.stages_size(), 2);
  EXPECT_EQ(progress.stages(0).key(), "data_storage_sync");
  EXPECT_EQ(progress.stages(1).key(), "regroup_sessions");
  EXPECT_EQ(progress.stages(1).name(), "Regroup sessions");
}

TEST(AddStage, ReturnsAnExistingStageUnchanged) {
  v2::JobProgress progress;
  AddStage(progress, "Collect");
  StageUpdate update;
  update.progress = 0.5;
  ASSERT_TRUE(UpdateStage(progress, "collect", update).ok());
  const v2::JobProgress before = progress;

  v2::ProgressStage* stage = AddStage(progress, "COLLECT");

  EXPECT_EQ(stage, progress.mutable_stages(0));
  EXPECT_THAT(progress, EqualsProto(before));
  EXPECT_EQ(stage->name(), "Collect");
  EXPECT_EQ(stage->progress(), 0.5);
}

TEST(FindStage, FindsBySlugOfKeyOrName) {
  v2::JobProgress progress;
  AddStage(progress, "Total Images");
  AddStage(progress, "Process");
  EXPECT_EQ(FindStage(progress, "total_images"), progress.mutable_stages(0));
  EXPECT_EQ(FindStage(progress, "Total Images"), progress.mutable_stages(0));
  EXPECT_EQ(FindStage(progress, "Process"), progress.mutable_stages(1));
  EXPECT_EQ(FindStage(progress, "results"), nullptr);

  const v2::JobProgress& read_only = progress;
  EXPECT_EQ(FindStage(read_only, "PROCESS"), &read_only.stages(1));
  EXPECT_EQ(FindStage(read_only, "collect"), nullptr);
}

TEST(AddParam, AppendsWithSlugKeyAndDefaultCategory) {
  v2::ProgressStage stage;
  v2::StageParam* param = AddParam(stage, "Total Images", NumberValue(40));
  ASSERT_NE(param, nullptr);
  EXPECT_THAT(stage, EqualsProto(ParseText<v2::ProgressStage>(R"pb(
                params {
                  name: "Total Images"
                  key: "total_images"
                  category: "default"
                  value { number_value: 40 }
                }
              )pb")));
}

TEST(AddParam, IsIdempotentAndKeepsTheExistingValue) {
  v2::ProgressStage stage;
  AddParam(stage, "Total Images", NumberValue(40));
  v2::StageParam* again = AddParam(stage, "total images", NumberValue(99));
  ASSERT_EQ(stage.params_size(), 1);
  EXPECT_EQ(again, stage.mutable_params(0));
  EXPECT_EQ(again->name(), "Total Images");
  EXPECT_EQ(again->value().number_value(), 40);
}

TEST(AddOrUpdateParam, UpdatesAnExistingValueOrAppends) {
  v2::ProgressStage stage;
  AddParam(stage, "Mood", StringValue("sleepy"));
  AddOrUpdateParam(stage, "Mood", StringValue("party"));
  AddOrUpdateParam(stage, "Captures added", NumberValue(1000));
  EXPECT_THAT(stage, EqualsProto(ParseText<v2::ProgressStage>(R"pb(
                params {
                  name: "Mood"
                  key: "mood"
                  category: "default"
                  value { string_value: "party" }
                }
                params {
                  name: "Captures added"
                  key: "captures_added"
                  category: "default"
                  value { number_value: 1000 }
                }
              )pb")));
}

TEST(UpdateStage, AppliesStatusProgressNameAndParams) {
  v2::JobProgress progress;
  AddParam(*AddStage(progress, "Data storage sync", "data_storage_sync"),
           "Total files", NumberValue(0));
  StageUpdate update;
  update.status = v2::STARTED;
  update.progress = 0.25;
  update.name = "Storage sync";
  update.params.emplace_back("Total files", NumberValue(7));
  update.params.emplace_back("failed", NumberValue(1));

  ASSERT_TRUE(UpdateStage(progress, "Data storage sync", update).ok());

  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                stages {
                  status: STARTED
                  progress: 0.25
                  key: "data_storage_sync"
                  name: "Storage sync"
                  params {
                    name: "Total files"
                    key: "total_files"
                    category: "default"
                    value { number_value: 7 }
                  }
                  params {
                    name: "failed"
                    key: "failed"
                    category: "default"
                    value { number_value: 1 }
                  }
                }
              )pb")));
}

TEST(UpdateStage, DoesNotRecomputeTheSummary) {
  v2::JobProgress progress;
  AddStage(progress, "Collect");
  StageUpdate update;
  update.progress = 1.0;
  ASSERT_TRUE(UpdateStage(progress, "collect", update).ok());
  EXPECT_EQ(progress.summary().progress(), 0.0);
  EXPECT_EQ(progress.stages(0).status(), v2::CREATED);
}

TEST(UpdateStage, MissingStageIsNotFound) {
  v2::JobProgress progress;
  AddStage(progress, "Collect");
  const v2::JobProgress before = progress;
  StageUpdate update;
  update.progress = 0.5;

  const absl::Status status = UpdateStage(progress, "Results", update);

  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "stage \"Results\" does not exist");
  EXPECT_THAT(progress, EqualsProto(before));
}

TEST(UpdateStage, ProgressOutsideZeroToOneChangesNothing) {
  const double kBad[] = {-0.01,
                         1.0000001,
                         2.0,
                         std::nan(""),
                         std::numeric_limits<double>::infinity(),
                         -std::numeric_limits<double>::infinity()};
  for (double bad : kBad) {
    v2::JobProgress progress;
    AddStage(progress, "Collect");
    const v2::JobProgress before = progress;
    StageUpdate update;
    update.status = v2::STARTED;
    update.progress = bad;
    update.name = "Renamed";
    update.params.emplace_back("Total Images", NumberValue(3));

    const absl::Status status = UpdateStage(progress, "collect", update);

    EXPECT_EQ(Violation(status),
              "progress: Ensure this value is between 0 and 1.")
        << bad;
    EXPECT_THAT(progress, EqualsProto(before)) << bad;
  }
}

TEST(UpdateStage, UnspecifiedStatusChangesNothing) {
  v2::JobProgress progress;
  AddStage(progress, "Collect");
  const v2::JobProgress before = progress;
  StageUpdate update;
  update.status = v2::JOB_STATUS_UNSPECIFIED;
  update.progress = 0.5;

  const absl::Status status = UpdateStage(progress, "collect", update);

  EXPECT_EQ(Violation(status), "status: Not a valid status.");
  EXPECT_THAT(progress, EqualsProto(before));
}

TEST(UpdateStage, BoundsAreAccepted) {
  v2::JobProgress progress;
  AddStage(progress, "Collect");
  StageUpdate update;
  update.progress = 0.0;
  EXPECT_TRUE(UpdateStage(progress, "collect", update).ok());
  update.progress = 1.0;
  EXPECT_TRUE(UpdateStage(progress, "collect", update).ok());
  EXPECT_EQ(progress.stages(0).progress(), 1.0);
}

TEST(UpdateStage, LowerProgressKeepsTheHigherOneD18) {
  v2::JobProgress progress;
  AddStage(progress, "Process");
  StageUpdate high;
  high.progress = 0.75;
  ASSERT_TRUE(UpdateStage(progress, "process", high).ok());
  StageUpdate low;
  low.progress = 0.25;
  low.status = v2::STARTED;
  low.params.emplace_back("Processed", NumberValue(5));

  ASSERT_TRUE(UpdateStage(progress, "process", low).ok());

  EXPECT_EQ(progress.stages(0).progress(), 0.75);
  // The rest of the report still applies.
  EXPECT_EQ(progress.stages(0).status(), v2::STARTED);
  ASSERT_EQ(progress.stages(0).params_size(), 1);
  EXPECT_EQ(progress.stages(0).params(0).value().number_value(), 5);
}

TEST(ResetProgress, ZeroesNumbersAndBoolsKeepsStringsAndNulls) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    summary { status: SUCCESS progress: 0.75 }
    stages {
      status: SUCCESS
      progress: 1
      key: "collect"
      name: "Collect"
      params {
        key: "total_images"
        value { number_value: 40 }
      }
      params {
        key: "mood"
        value { string_value: "party" }
      }
    }
    stages {
      status: FAILURE
      progress: 0.5
      key: "process"
      name: "Process"
      params {
        key: "done"
        value { bool_value: true }
      }
      params {
        key: "note"
        value { null_value: NULL_VALUE }
      }
      params {
        key: "empty"
        value { string_value: "" }
      }
    }
  )pb");

  ResetProgress(progress);

  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { status: CREATED progress: 0 }
                stages {
                  status: CREATED
                  progress: 0
                  key: "collect"
                  name: "Collect"
                  params {
                    key: "total_images"
                    value { number_value: 0 }
                  }
                  params {
                    key: "mood"
                    value { string_value: "party" }
                  }
                }
                stages {
                  status: CREATED
                  progress: 0
                  key: "process"
                  name: "Process"
                  params {
                    key: "done"
                    value { number_value: 0 }
                  }
                  params {
                    key: "note"
                    value { null_value: NULL_VALUE }
                  }
                  params {
                    key: "empty"
                    value { string_value: "" }
                  }
                }
              )pb")));
}

TEST(ResetProgress, UsesTheGivenStatus) {
  v2::JobProgress progress;
  AddStage(progress, "Collect");
  ResetProgress(progress, v2::PENDING);
  EXPECT_EQ(progress.summary().status(), v2::PENDING);
  EXPECT_EQ(progress.stages(0).status(), v2::PENDING);
}

// ---- Summary (spec 3.4, D18) ------------------------------------------------

TEST(RecomputeSummary, PromotesStartedAndFinishedStages) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    summary { status: STARTED }
    stages { key: "a" status: CREATED progress: 0 }
    stages { key: "b" status: CREATED progress: 0.5 }
    stages { key: "c" status: STARTED progress: 1 }
    stages { key: "d" status: PENDING progress: 0.5 }
  )pb");

  RecomputeSummary(progress);

  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { status: STARTED progress: 0.5 }
                stages { key: "a" status: CREATED progress: 0 }
                stages { key: "b" status: STARTED progress: 0.5 }
                stages { key: "c" status: SUCCESS progress: 1 }
                stages { key: "d" status: PENDING progress: 0.5 }
              )pb")));
}

TEST(RecomputeSummary, CreatedStageAtOneEndsSuccessInOnePass) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    stages { key: "collect" status: CREATED progress: 1 }
  )pb");
  RecomputeSummary(progress);
  EXPECT_EQ(progress.stages(0).status(), v2::SUCCESS);
  EXPECT_TRUE(IsComplete(progress));
}

TEST(RecomputeSummary, FinalStageBelowOneIsLeftAlone) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    stages { key: "a" status: FAILURE progress: 0.25 }
    stages { key: "b" status: REVOKED progress: 0 }
    stages { key: "c" status: FAILURE progress: 1 }
  )pb");
  RecomputeSummary(progress);
  EXPECT_EQ(progress.summary().progress(), (0.25 + 0 + 1) / 3);
  progress.clear_summary();
  EXPECT_THAT(progress, EqualsProto(ParseText<v2::JobProgress>(R"pb(
                stages { key: "a" status: FAILURE progress: 0.25 }
                stages { key: "b" status: REVOKED progress: 0 }
                stages { key: "c" status: FAILURE progress: 1 }
              )pb")));
}

TEST(RecomputeSummary, NoStagesMeansZero) {
  v2::JobProgress progress;
  RecomputeSummary(progress);
  EXPECT_EQ(progress.summary().progress(), 0.0);
  EXPECT_EQ(progress.stages_size(), 0);
}

TEST(RecomputeSummary, NeverLowersTheSummaryD18) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    summary { status: STARTED progress: 0.75 }
    stages { key: "a" status: STARTED progress: 0.5 }
  )pb");
  RecomputeSummary(progress);
  EXPECT_EQ(progress.summary().progress(), 0.75);
}

TEST(RecomputeSummary, DoesNotTouchSummaryStatus) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    summary { status: REVOKED progress: 0 }
    stages { key: "a" status: SUCCESS progress: 1 }
  )pb");
  RecomputeSummary(progress);
  EXPECT_EQ(progress.summary().status(), v2::REVOKED);
  EXPECT_EQ(progress.summary().progress(), 1.0);
}

TEST(IsComplete, NeedsAStageAndEveryStageAtOneAndFinal) {
  EXPECT_FALSE(IsComplete(v2::JobProgress()));
  EXPECT_TRUE(IsComplete(ParseText<v2::JobProgress>(R"pb(
    stages { status: SUCCESS progress: 1 }
    stages { status: FAILURE progress: 1 }
    stages { status: REVOKED progress: 1 }
  )pb")));
  EXPECT_FALSE(IsComplete(ParseText<v2::JobProgress>(R"pb(
    stages { status: SUCCESS progress: 1 }
    stages { status: STARTED progress: 1 }
  )pb")));
  EXPECT_FALSE(IsComplete(ParseText<v2::JobProgress>(R"pb(
    stages { status: SUCCESS progress: 1 }
    stages { status: FAILURE progress: 0.5 }
  )pb")));
}

TEST(StatusLabel, WaitingPercentOrName) {
  EXPECT_EQ(StatusLabel(v2::CREATED, 0.5), "Waiting to start");
  EXPECT_EQ(StatusLabel(v2::PENDING, 0.0), "Waiting to start");
  EXPECT_EQ(StatusLabel(v2::RECEIVED, 1.0), "Waiting to start");
  EXPECT_EQ(StatusLabel(v2::STARTED, 0.45), "45% complete");
  EXPECT_EQ(StatusLabel(v2::STARTED, 0.999), "99% complete");
  EXPECT_EQ(StatusLabel(v2::RETRY, 0.0), "0% complete");
  EXPECT_EQ(StatusLabel(v2::SUCCESS, 1.0), "100% complete");
  // Rounded down as Python's int(0.29 * 100) is.
  EXPECT_EQ(StatusLabel(v2::STARTED, 0.29), "28% complete");
  EXPECT_EQ(StatusLabel(v2::FAILURE, 0.5), "FAILURE");
  EXPECT_EQ(StatusLabel(v2::CANCELING, 0.5), "CANCELING");
  EXPECT_EQ(StatusLabel(v2::REVOKED, 1.0), "REVOKED");
  EXPECT_EQ(StatusLabel(v2::UNKNOWN, 0.0), "UNKNOWN");
}

TEST(FillStatusLabels, SummaryAndEveryStage) {
  v2::JobProgress progress = ParseText<v2::JobProgress>(R"pb(
    summary { status: STARTED progress: 0.5 }
    stages { key: "a" status: SUCCESS progress: 1 }
    stages { key: "b" status: CREATED progress: 0 }
  )pb");
  FillStatusLabels(progress);
  EXPECT_EQ(progress.summary().status_label(), "50% complete");
  EXPECT_EQ(progress.stages(0).status_label(), "100% complete");
  EXPECT_EQ(progress.stages(1).status_label(), "Waiting to start");
}

// ---- Setup step (spec 7.1) --------------------------------------------------

TEST(ApplySetup, DelayStageWithDelayAndMood) {
  v2::Job job = MakeJob(v2::CREATED);
  job.set_delay(3);

  EXPECT_TRUE(ApplySetup(job));

  EXPECT_THAT(job.progress(), EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { status: CREATED progress: 0 }
                stages {
                  status: CREATED
                  progress: 0
                  key: "delay"
                  name: "Delay"
                  params {
                    name: "Delay"
                    key: "delay"
                    category: "default"
                    value { number_value: 3 }
                  }
                  params {
                    name: "Mood"
                    key: "mood"
                    category: "default"
                    value { string_value: "😴" }
                  }
                }
              )pb")));
  EXPECT_EQ(job.progress().stages(0).params(1).value().string_value(),
            "\xF0\x9F\x98\xB4");
  EXPECT_EQ(job.dispatch_mode(), "internal");
}

TEST(ApplySetup, PipelineStagesAndSyncApi) {
  v2::Job job = MakeJob(v2::CREATED);
  job.mutable_pipeline()->set_id(2);

  EXPECT_TRUE(ApplySetup(job));

  EXPECT_EQ(job.dispatch_mode(), "sync_api");
  EXPECT_THAT(job.progress(), EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { status: CREATED progress: 0 }
                stages {
                  status: CREATED
                  progress: 0
                  key: "collect"
                  name: "Collect"
                  params {
                    name: "Total Images"
                    key: "total_images"
                    category: "default"
                    value { string_value: "" }
                  }
                }
                stages {
                  status: CREATED
                  progress: 0
                  key: "process"
                  name: "Process"
                  params {
                    name: "Processed"
                    key: "processed"
                    category: "default"
                    value { string_value: "" }
                  }
                  params {
                    name: "Remaining"
                    key: "remaining"
                    category: "default"
                    value { string_value: "" }
                  }
                  params {
                    name: "Failed"
                    key: "failed"
                    category: "default"
                    value { string_value: "" }
                  }
                }
                stages {
                  status: CREATED
                  progress: 0
                  key: "results"
                  name: "Results"
                  params {
                    name: "Captures"
                    key: "captures"
                    category: "default"
                    value { string_value: "" }
                  }
                  params {
                    name: "Detections"
                    key: "detections"
                    category: "default"
                    value { string_value: "" }
                  }
                  params {
                    name: "Classifications"
                    key: "classifications"
                    category: "default"
                    value { string_value: "" }
                  }
                }
              )pb")));
}

TEST(ApplySetup, DelayStageComesBeforePipelineStages) {
  v2::Job job = MakeJob(v2::CREATED);
  job.set_delay(-1);
  job.mutable_pipeline()->set_id(2);
  EXPECT_TRUE(ApplySetup(job));
  std::vector<std::string> keys;
  for (const auto& stage : job.progress().stages()) keys.push_back(stage.key());
  EXPECT_THAT(keys, ElementsAre("delay", "collect", "process", "results"));
  EXPECT_EQ(job.progress().stages(0).params(0).value().number_value(), -1);
}

TEST(ApplySetup, KeepsAnExplicitNonInternalDispatchMode) {
  v2::Job job = MakeJob(v2::CREATED);
  job.set_dispatch_mode("async_api");
  job.mutable_pipeline()->set_id(2);
  EXPECT_TRUE(ApplySetup(job));
  EXPECT_EQ(job.dispatch_mode(), "async_api");
}

TEST(ApplySetup, NothingToSetUp) {
  v2::Job job = MakeJob(v2::CREATED);
  const v2::Job before = job;
  EXPECT_FALSE(ApplySetup(job));
  EXPECT_THAT(job, EqualsProto(before));
}

TEST(ApplySetup, JobWithStagesIsUnchanged) {
  v2::Job job = MakeJob(v2::STARTED);
  job.set_delay(5);
  job.mutable_pipeline()->set_id(2);
  AddStage(*job.mutable_progress(), "Populate captures collection",
           "populate_captures_collection");
  const v2::Job before = job;

  EXPECT_FALSE(ApplySetup(job));

  EXPECT_THAT(job, EqualsProto(before));
}

// ---- Transitions (spec 2.2, D4, D6) -----------------------------------------

TEST(StatusChangeMessage, NamesJobAndBothStatuses) {
  EXPECT_EQ(StatusChangeMessage(12, v2::PENDING, v2::STARTED),
            "Changing status of job 12 from PENDING to STARTED");
  EXPECT_EQ(StatusChangeMessage(1256, v2::STARTED, v2::SUCCESS),
            "Changing status of job 1256 from STARTED to SUCCESS");
}

TEST(Enqueue, RefusedWhileQueuedOrRunningD6) {
  for (v2::JobStatus status :
       {v2::PENDING, v2::STARTED, v2::RETRY, v2::CANCELING}) {
    JobMutation mutation = MakeMutation(status);
    const JobMutation before = mutation;

    const absl::Status result = Enqueue(mutation);

    EXPECT_EQ(result.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(result.message(), absl::StrCat("cannot run job 12 while it is ",
                                             StatusName(status)));
    ExpectUnchanged(before, mutation);
  }
}

TEST(Enqueue, FromCreatedBecomesPendingWithSummaryD4) {
  JobMutation mutation = MakeMutation(v2::CREATED);

  ASSERT_TRUE(Enqueue(mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::PENDING);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::PENDING);
  EXPECT_FALSE(mutation.allow_leave_final);
  EXPECT_THAT(Logs(mutation), IsEmpty());
}

TEST(Enqueue, FromFinalStatusesAllowsLeavingFinal) {
  for (v2::JobStatus status : {v2::SUCCESS, v2::FAILURE, v2::REVOKED}) {
    JobMutation mutation = MakeMutation(status);
    *mutation.job.mutable_started_at() = ToProtoTime(TestNow());
    *mutation.job.mutable_finished_at() = ToProtoTime(TestNow());

    ASSERT_TRUE(Enqueue(mutation).ok()) << StatusName(status);

    EXPECT_EQ(mutation.job.status(), v2::PENDING);
    EXPECT_EQ(mutation.job.progress().summary().status(), v2::PENDING);
    EXPECT_TRUE(mutation.allow_leave_final);
    EXPECT_FALSE(mutation.job.has_started_at());
    EXPECT_FALSE(mutation.job.has_finished_at());
  }
}

TEST(Enqueue, FromReceivedAndUnknown) {
  for (v2::JobStatus status : {v2::RECEIVED, v2::UNKNOWN}) {
    JobMutation mutation = MakeMutation(status);
    ASSERT_TRUE(Enqueue(mutation).ok()) << StatusName(status);
    EXPECT_EQ(mutation.job.status(), v2::PENDING);
    EXPECT_FALSE(mutation.allow_leave_final);
  }
}

TEST(Enqueue, KeepsProgressAndRecomputesSummary) {
  JobMutation mutation = MakeMutation(v2::FAILURE);
  *mutation.job.mutable_progress() = ParseText<v2::JobProgress>(R"pb(
    summary { status: FAILURE progress: 0 }
    stages { key: "a" status: CREATED progress: 0.5 }
    stages { key: "b" status: FAILURE progress: 0 }
  )pb");

  ASSERT_TRUE(Enqueue(mutation).ok());

  EXPECT_THAT(mutation.job.progress(),
              EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { status: PENDING progress: 0.25 }
                stages { key: "a" status: STARTED progress: 0.5 }
                stages { key: "b" status: FAILURE progress: 0 }
              )pb")));
}

TEST(Retry, RefusedWhileQueuedRunningOrCancelingD6) {
  for (v2::JobStatus status : {v2::PENDING, v2::STARTED, v2::CANCELING}) {
    JobMutation mutation = MakeMutation(status);
    const JobMutation before = mutation;

    const absl::Status result = Retry(mutation);

    EXPECT_EQ(result.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(result.message(), absl::StrCat("cannot retry job 12 while it is ",
                                             StatusName(status)));
    ExpectUnchanged(before, mutation);
  }
}

TEST(Retry, FromFailureResetsProgressLogsAndEndsPending) {
  JobMutation mutation = MakeMutation(v2::FAILURE);
  *mutation.job.mutable_started_at() = ToProtoTime(TestNow());
  *mutation.job.mutable_finished_at() = ToProtoTime(TestNow());
  *mutation.job.mutable_progress() = ParseText<v2::JobProgress>(R"pb(
    summary { status: FAILURE progress: 0.75 }
    stages {
      key: "collect"
      status: SUCCESS
      progress: 1
      params {
        key: "total_images"
        value { number_value: 40 }
      }
    }
    stages { key: "process" status: FAILURE progress: 0.5 }
  )pb");

  ASSERT_TRUE(Retry(mutation).ok());

  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Re-running job #12 \"Nightly batch\"",
                          "INFO Changing status of job 12 from FAILURE to "
                          "RETRY",
                          "INFO Changing status of job 12 from RETRY to "
                          "PENDING"));
  EXPECT_EQ(mutation.job.status(), v2::PENDING);
  EXPECT_TRUE(mutation.allow_leave_final);
  EXPECT_FALSE(mutation.job.has_started_at());
  EXPECT_FALSE(mutation.job.has_finished_at());
  // The header and D4: summary.status follows status, so it ends PENDING
  // (upstream leaves it CREATED, Q4).
  EXPECT_THAT(mutation.job.progress(),
              EqualsProto(ParseText<v2::JobProgress>(R"pb(
                summary { status: PENDING progress: 0 }
                stages {
                  key: "collect"
                  status: CREATED
                  progress: 0
                  params {
                    key: "total_images"
                    value { number_value: 0 }
                  }
                }
                stages { key: "process" status: CREATED progress: 0 }
              )pb")));
}

TEST(Retry, FromCreatedAndRetry) {
  JobMutation created = MakeMutation(v2::CREATED);
  ASSERT_TRUE(Retry(created).ok());
  EXPECT_EQ(created.job.status(), v2::PENDING);
  EXPECT_FALSE(created.allow_leave_final);
  EXPECT_THAT(Logs(created),
              ElementsAre("INFO Re-running job #12 \"Nightly batch\"",
                          "INFO Changing status of job 12 from CREATED to "
                          "RETRY",
                          "INFO Changing status of job 12 from RETRY to "
                          "PENDING"));

  // Already RETRY: no change of status to log.
  JobMutation retry = MakeMutation(v2::RETRY);
  ASSERT_TRUE(Retry(retry).ok());
  EXPECT_EQ(retry.job.status(), v2::PENDING);
  EXPECT_THAT(Logs(retry),
              ElementsAre("INFO Re-running job #12 \"Nightly batch\"",
                          "INFO Changing status of job 12 from RETRY to "
                          "PENDING"));
}

TEST(Retry, FromSuccessAndRevokedLeavesFinal) {
  for (v2::JobStatus status : {v2::SUCCESS, v2::REVOKED}) {
    JobMutation mutation = MakeMutation(status);
    ASSERT_TRUE(Retry(mutation).ok()) << StatusName(status);
    EXPECT_EQ(mutation.job.status(), v2::PENDING);
    EXPECT_TRUE(mutation.allow_leave_final);
  }
}

TEST(Cancel, NotStartedJobsAreRevokedAtOnce) {
  for (v2::JobStatus status : {v2::CREATED, v2::PENDING, v2::RETRY}) {
    JobMutation mutation = MakeMutation(status);

    ASSERT_TRUE(Cancel(TestNow(), mutation).ok());

    EXPECT_EQ(mutation.job.status(), v2::REVOKED);
    EXPECT_EQ(mutation.job.progress().summary().status(), v2::REVOKED);
    EXPECT_THAT(mutation.job.finished_at(),
                EqualsProto(ToProtoTime(TestNow())));
    EXPECT_FALSE(mutation.allow_leave_final);
    EXPECT_THAT(Logs(mutation),
                ElementsAre(absl::StrCat("INFO Changing status of job 12 from ",
                                         StatusName(status), " to REVOKED")));
  }
}

TEST(Cancel, StartedJobBecomesCanceling) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  *mutation.job.mutable_started_at() = ToProtoTime(TestNow());

  ASSERT_TRUE(Cancel(TestNow() + absl::Seconds(5), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::CANCELING);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::CANCELING);
  EXPECT_FALSE(mutation.job.has_finished_at());
  EXPECT_THAT(mutation.job.started_at(), EqualsProto(ToProtoTime(TestNow())));
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Changing status of job 12 from STARTED to "
                          "CANCELING"));
}

TEST(Cancel, OtherStatusesAreLeftAloneWithoutError) {
  for (v2::JobStatus status : {v2::SUCCESS, v2::FAILURE, v2::REVOKED,
                               v2::CANCELING, v2::RECEIVED, v2::UNKNOWN}) {
    JobMutation mutation = MakeMutation(status);
    const JobMutation before = mutation;

    EXPECT_TRUE(Cancel(TestNow(), mutation).ok()) << StatusName(status);

    ExpectUnchanged(before, mutation);
  }
}

TEST(FinishGuard, FromFinalizableOnlySuccessNeedsComplete) {
  const StatusGuard guard = FinishGuard();
  EXPECT_THAT(guard.allowed_from,
              ElementsAre(v2::CREATED, v2::PENDING, v2::STARTED, v2::RETRY));
  EXPECT_TRUE(guard.success_requires_complete);
}

TEST(SetStatus, StartedSetsStartedAtClearsFinishedAtAndLogs) {
  JobMutation mutation = MakeMutation(v2::PENDING);
  *mutation.job.mutable_finished_at() = ToProtoTime(TestNow());

  const absl::StatusOr<bool> written =
      SetStatus(v2::STARTED, TestNow(), StatusGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(mutation.job.status(), v2::STARTED);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::STARTED);
  EXPECT_THAT(mutation.job.started_at(), EqualsProto(ToProtoTime(TestNow())));
  EXPECT_FALSE(mutation.job.has_finished_at());
  EXPECT_FALSE(mutation.allow_leave_final);
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Changing status of job 12 from PENDING to "
                          "STARTED"));
}

TEST(SetStatus, FinalStatusSetsFinishedAt) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  *mutation.job.mutable_started_at() = ToProtoTime(TestNow());
  const absl::Time later = TestNow() + absl::Seconds(3);

  const absl::StatusOr<bool> written =
      SetStatus(v2::FAILURE, later, StatusGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(mutation.job.status(), v2::FAILURE);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::FAILURE);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(later)));
  EXPECT_THAT(mutation.job.started_at(), EqualsProto(ToProtoTime(TestNow())));
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Changing status of job 12 from STARTED to "
                          "FAILURE"));
}

TEST(SetStatus, NonFinalNonStartedLeavesTimestamps) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  *mutation.job.mutable_started_at() = ToProtoTime(TestNow());
  ASSERT_TRUE(*SetStatus(v2::CANCELING, TestNow() + absl::Seconds(1),
                         StatusGuard(), mutation));
  EXPECT_EQ(mutation.job.status(), v2::CANCELING);
  EXPECT_THAT(mutation.job.started_at(), EqualsProto(ToProtoTime(TestNow())));
  EXPECT_FALSE(mutation.job.has_finished_at());
}

TEST(SetStatus, UnspecifiedIsInvalidArgument) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  const JobMutation before = mutation;

  const absl::StatusOr<bool> written =
      SetStatus(v2::JOB_STATUS_UNSPECIFIED, TestNow(), StatusGuard(), mutation);

  EXPECT_EQ(Violation(written.status()), "status: Not a valid status.");
  ExpectUnchanged(before, mutation);
}

TEST(SetStatus, FinalJobIsNeverLeft) {
  for (v2::JobStatus status : {v2::SUCCESS, v2::FAILURE, v2::REVOKED}) {
    for (v2::JobStatus to : {v2::STARTED, v2::PENDING, v2::FAILURE}) {
      JobMutation mutation = MakeMutation(status);
      const JobMutation before = mutation;

      const absl::StatusOr<bool> written =
          SetStatus(to, TestNow(), StatusGuard(), mutation);

      ASSERT_TRUE(written.ok());
      EXPECT_FALSE(*written) << StatusName(status) << " -> " << StatusName(to);
      ExpectUnchanged(before, mutation);
    }
  }
}

TEST(SetStatus, SameStatusIsSkipped) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  const JobMutation before = mutation;
  const absl::StatusOr<bool> written =
      SetStatus(v2::STARTED, TestNow(), StatusGuard(), mutation);
  ASSERT_TRUE(written.ok());
  EXPECT_FALSE(*written);
  ExpectUnchanged(before, mutation);
}

TEST(SetStatus, AllowedFromGuard) {
  StatusGuard guard;
  guard.allowed_from = {v2::STARTED};

  JobMutation pending = MakeMutation(v2::PENDING);
  const JobMutation before = pending;
  ASSERT_TRUE(SetStatus(v2::FAILURE, TestNow(), guard, pending).ok());
  ExpectUnchanged(before, pending);

  JobMutation started = MakeMutation(v2::STARTED);
  const absl::StatusOr<bool> written =
      SetStatus(v2::FAILURE, TestNow(), guard, started);
  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(started.job.status(), v2::FAILURE);
}

TEST(SetStatus, FinishGuardRefusesCancelingAndUnknown) {
  for (v2::JobStatus status : {v2::CANCELING, v2::UNKNOWN, v2::RECEIVED}) {
    JobMutation mutation = MakeMutation(status);
    const JobMutation before = mutation;
    const absl::StatusOr<bool> written =
        SetStatus(v2::FAILURE, TestNow(), FinishGuard(), mutation);
    ASSERT_TRUE(written.ok());
    EXPECT_FALSE(*written) << StatusName(status);
    ExpectUnchanged(before, mutation);
  }
}

TEST(SetStatus, SuccessRequiresCompleteProgressOnlyWhenGuarded) {
  JobMutation guarded = MakePipelineMutation(v2::STARTED);
  const JobMutation before = guarded;
  StatusGuard guard;
  guard.success_requires_complete = true;
  const absl::StatusOr<bool> skipped =
      SetStatus(v2::SUCCESS, TestNow(), guard, guarded);
  ASSERT_TRUE(skipped.ok());
  EXPECT_FALSE(*skipped);
  ExpectUnchanged(before, guarded);

  JobMutation unguarded = MakePipelineMutation(v2::STARTED);
  const absl::StatusOr<bool> written =
      SetStatus(v2::SUCCESS, TestNow(), StatusGuard(), unguarded);
  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(unguarded.job.status(), v2::SUCCESS);
}

// ---- Acceptance cases of spec 9.1 and 9.2, without workers ------------------

TEST(AcceptanceCase, Case1CreateJobHasEmptyProgress) {
  v2::Job job;
  ApplyJobInput(ValidInput(), InputMode::kCreate, job);

  EXPECT_FALSE(ApplySetup(job));

  EXPECT_EQ(job.progress().stages_size(), 0);
  EXPECT_EQ(job.progress().summary().progress(), 0.0);
}

TEST(AcceptanceCase, Case2SaveDoesNotInflateFailedStageProgress) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);
  StageUpdate update;
  update.status = v2::FAILURE;
  update.progress = 0.3;
  ASSERT_TRUE(
      UpdateStage(*mutation.job.mutable_progress(), "collect", update).ok());

  RecomputeSummary(*mutation.job.mutable_progress());

  const v2::ProgressStage& collect = mutation.job.progress().stages(0);
  EXPECT_EQ(collect.status(), v2::FAILURE);
  EXPECT_EQ(collect.progress(), 0.3);
  EXPECT_FALSE(IsComplete(mutation.job.progress()));
  EXPECT_EQ(mutation.job.progress().summary().progress(), 0.3 / 3);
}

TEST(AcceptanceCase, Case3CreateJobWithDelay) {
  JobMutation mutation = MakeMutation(v2::CREATED);
  mutation.job.set_delay(1);
  mutation.job.mutable_pipeline()->set_id(2);
  mutation.job.mutable_source_image_collection()->set_id(111);
  ASSERT_TRUE(ApplySetup(mutation.job));
  v2::JobProgress& progress = *mutation.job.mutable_progress();

  // Before the run: the delay stage first, everything CREATED at 0.
  ASSERT_EQ(progress.stages_size(), 4);
  EXPECT_EQ(progress.stages(0).key(), "delay");
  EXPECT_EQ(progress.stages(0).status(), v2::CREATED);
  EXPECT_EQ(progress.stages(0).progress(), 0.0);
  EXPECT_EQ(mutation.job.status(), v2::CREATED);
  EXPECT_EQ(progress.summary().status(), v2::CREATED);
  EXPECT_EQ(progress.summary().progress(), 0.0);

  // The run: the delay passes, the empty collection finishes every stage.
  ASSERT_TRUE(*SetStatus(v2::STARTED, TestNow(), StatusGuard(), mutation));
  StageUpdate delay_done;
  delay_done.status = v2::SUCCESS;
  delay_done.progress = 1.0;
  delay_done.params.emplace_back("Mood", StringValue("🥳"));
  ASSERT_TRUE(UpdateStage(progress, "delay", delay_done).ok());
  const absl::StatusOr<bool> completed =
      Complete(TestNow() + absl::Seconds(1), mutation);

  ASSERT_TRUE(completed.ok());
  EXPECT_TRUE(*completed);
  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  EXPECT_EQ(progress.summary().status(), v2::SUCCESS);
  EXPECT_EQ(progress.summary().progress(), 1.0);
  EXPECT_EQ(progress.stages(0).status(), v2::SUCCESS);
  EXPECT_EQ(progress.stages(0).progress(), 1.0);
}

TEST(AcceptanceCase, Case4JobStatusGuardPreventsPrematureSuccess) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);
  StageUpdate update;
  update.progress = 1.0;
  ASSERT_TRUE(
      UpdateStage(*mutation.job.mutable_progress(), "collect", update).ok());
  RecomputeSummary(*mutation.job.mutable_progress());
  const JobMutation before = mutation;

  const absl::StatusOr<bool> written =
      SetStatus(v2::SUCCESS, TestNow(), FinishGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_FALSE(*written);
  EXPECT_EQ(mutation.job.status(), v2::STARTED);
  ExpectUnchanged(before, mutation);
}

TEST(AcceptanceCase, Case5AsyncJobCompletesWhenZeroImages) {
  JobMutation mutation = MakeMutation(v2::STARTED);
  mutation.job.set_dispatch_mode("async_api");
  mutation.job.mutable_pipeline()->set_id(2);
  ASSERT_TRUE(ApplySetup(mutation.job));
  EXPECT_EQ(mutation.job.dispatch_mode(), "async_api");
  StageUpdate collect;
  collect.status = v2::SUCCESS;
  collect.progress = 1.0;
  collect.params.emplace_back("Total Images", NumberValue(0));
  ASSERT_TRUE(
      UpdateStage(*mutation.job.mutable_progress(), "collect", collect).ok());

  const absl::StatusOr<bool> completed = Complete(TestNow(), mutation);

  ASSERT_TRUE(completed.ok());
  EXPECT_TRUE(*completed);
  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(TestNow())));
}

TEST(AcceptanceCase, Case6JobStatusAllowsFailureStatesImmediately) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);

  const absl::StatusOr<bool> written =
      SetStatus(v2::FAILURE, TestNow(), FinishGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(mutation.job.status(), v2::FAILURE);
  EXPECT_FALSE(IsComplete(mutation.job.progress()));
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(TestNow())));
}

// A job of the async path cancelled before its results came in.
JobMutation MakeRevokedMutation() {
  JobMutation mutation = MakePipelineMutation(v2::PENDING);
  EXPECT_TRUE(Cancel(TestNow(), mutation).ok());
  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  mutation.logs.clear();
  return mutation;
}

TEST(AcceptanceCase, Case96CompletionDoesNotResurrectRevokedJob) {
  JobMutation mutation = MakeRevokedMutation();

  const absl::StatusOr<bool> completed =
      Complete(TestNow() + absl::Seconds(9), mutation);

  ASSERT_TRUE(completed.ok());
  EXPECT_FALSE(*completed);
  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_TRUE(IsComplete(mutation.job.progress()));
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(TestNow())));
  EXPECT_THAT(Logs(mutation), IsEmpty());
}

TEST(AcceptanceCase, Case97CompletionSetsSuccessFromActiveState) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);

  const absl::StatusOr<bool> completed = Complete(TestNow(), mutation);

  ASSERT_TRUE(completed.ok());
  EXPECT_TRUE(*completed);
  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(TestNow())));
  EXPECT_THAT(Logs(mutation),
              ElementsAre("INFO Changing status of job 12 from STARTED to "
                          "SUCCESS"));
}

TEST(AcceptanceCase, Case98CompletionDoesNotFlipSummaryStatusOfRevokedJob) {
  JobMutation mutation = MakeRevokedMutation();

  ASSERT_TRUE(Complete(TestNow(), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::REVOKED);
  EXPECT_EQ(mutation.job.progress().summary().progress(), 1.0);
}

TEST(AcceptanceCase, Case99IncompleteUpdateNeverWritesOverallStatus) {
  JobMutation mutation = MakeRevokedMutation();
  StageUpdate update;
  update.status = v2::STARTED;
  update.progress = 0.5;
  ASSERT_TRUE(
      UpdateStage(*mutation.job.mutable_progress(), "process", update).ok());

  RecomputeSummary(*mutation.job.mutable_progress());

  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::REVOKED);
  EXPECT_FALSE(IsComplete(mutation.job.progress()));
}

TEST(AcceptanceCase, Case101PostrunSuccessCannotResurrectRevokedJob) {
  JobMutation mutation = MakeRevokedMutation();
  ReportAllStagesDone(*mutation.job.mutable_progress());
  const JobMutation before = mutation;

  const absl::StatusOr<bool> written =
      SetStatus(v2::SUCCESS, TestNow(), FinishGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_FALSE(*written);
  ExpectUnchanged(before, mutation);
}

TEST(AcceptanceCase, Case102PostrunSuccessFiresFromActiveState) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);
  ReportAllStagesDone(*mutation.job.mutable_progress());

  const absl::StatusOr<bool> written =
      SetStatus(v2::SUCCESS, TestNow(), FinishGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::SUCCESS);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(TestNow())));
}

TEST(AcceptanceCase, Case103TaskFailureCannotResurrectRevokedJob) {
  JobMutation mutation = MakeRevokedMutation();
  const JobMutation before = mutation;

  const absl::StatusOr<bool> written = SetStatus(
      v2::FAILURE, TestNow() + absl::Seconds(2), FinishGuard(), mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_FALSE(*written);
  ExpectUnchanged(before, mutation);
}

TEST(AcceptanceCase, Case104CancelOfAlreadySuccessJobIsNoop) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);
  ASSERT_TRUE(*Complete(TestNow(), mutation));
  mutation.logs.clear();
  const JobMutation before = mutation;

  EXPECT_TRUE(Cancel(TestNow() + absl::Seconds(1), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  ExpectUnchanged(before, mutation);
}

TEST(AcceptanceCase, Case105CancelOfActiveJobRevokes) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);

  // Jobline: STARTED becomes CANCELING, then REVOKED once the work stopped.
  ASSERT_TRUE(Cancel(TestNow(), mutation).ok());
  ASSERT_EQ(mutation.job.status(), v2::CANCELING);
  StatusGuard stopped;
  stopped.allowed_from = {v2::CREATED, v2::PENDING, v2::STARTED, v2::RETRY,
                          v2::CANCELING};
  const absl::Time later = TestNow() + absl::Seconds(1);
  const absl::StatusOr<bool> written =
      SetStatus(v2::REVOKED, later, stopped, mutation);

  ASSERT_TRUE(written.ok());
  EXPECT_TRUE(*written);
  EXPECT_EQ(mutation.job.status(), v2::REVOKED);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::REVOKED);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(later)));
  EXPECT_THAT(
      Logs(mutation),
      ElementsAre("INFO Changing status of job 12 from STARTED to CANCELING",
                  "INFO Changing status of job 12 from CANCELING to REVOKED"));
}

TEST(AcceptanceCase, Case106CompletionCommittingFirstIsNotOverwrittenByCancel) {
  JobMutation mutation = MakePipelineMutation(v2::STARTED);
  ASSERT_TRUE(*Complete(TestNow(), mutation));

  ASSERT_TRUE(Cancel(TestNow() + absl::Seconds(1), mutation).ok());

  EXPECT_EQ(mutation.job.status(), v2::SUCCESS);
  EXPECT_EQ(mutation.job.progress().summary().status(), v2::SUCCESS);
  EXPECT_THAT(mutation.job.finished_at(), EqualsProto(ToProtoTime(TestNow())));
}

TEST(AcceptanceCase, Case107CancelCommittingFirstIsNotResurrectedByCompletion) {
  // A queued job: the cancel revokes it, the late completion is ignored.
  JobMutation queued = MakePipelineMutation(v2::PENDING);
  ASSERT_TRUE(Cancel(TestNow(), queued).ok());
  const absl::StatusOr<bool> queued_completed =
      Complete(TestNow() + absl::Seconds(1), queued);
  ASSERT_TRUE(queued_completed.ok());
  EXPECT_FALSE(*queued_completed);
  EXPECT_EQ(queued.job.status(), v2::REVOKED);
  EXPECT_EQ(queued.job.progress().summary().status(), v2::REVOKED);

  // A running job: CANCELING is not finalizable, so no SUCCESS either.
  JobMutation running = MakePipelineMutation(v2::STARTED);
  ASSERT_TRUE(Cancel(TestNow(), running).ok());
  const absl::StatusOr<bool> running_completed =
      Complete(TestNow() + absl::Seconds(1), running);
  ASSERT_TRUE(running_completed.ok());
  EXPECT_FALSE(*running_completed);
  EXPECT_EQ(running.job.status(), v2::CANCELING);
  EXPECT_FALSE(running.job.has_finished_at());
}

// ---- Input (spec 5.1, 5.2, D2, D7, D8) --------------------------------------

TEST(ValidateJobInput, ValidCreateAndEmptyPatch) {
  EXPECT_TRUE(ValidateJobInput(ValidInput(), InputMode::kCreate).ok());
  EXPECT_TRUE(ValidateJobInput(ValidInput(), InputMode::kReplace).ok());
  EXPECT_TRUE(ValidateJobInput(v2::JobInput(), InputMode::kPatch).ok());
}

TEST(ValidateJobInput, MissingName) {
  v2::JobInput input = ValidInput();
  input.clear_name();
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: This field is required.");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kReplace)),
            "name: This field is required.");
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kPatch).ok());
}

TEST(ValidateJobInput, BlankName) {
  for (const std::string blank : {"", "   ", "\t\n", "\u3000\u00A0 "}) {
    v2::JobInput input = ValidInput();
    input.set_name(blank);
    EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
              "name: This field may not be blank.")
        << blank;
    EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kPatch)),
              "name: This field may not be blank.")
        << blank;
  }
}

TEST(ValidateJobInput, NameOver255Characters) {
  v2::JobInput input = ValidInput();
  input.set_name(std::string(256, 'x'));
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: Ensure this field has no more than 255 characters.");

  // Characters, not bytes; counted after trimming.
  std::string accents;
  for (int i = 0; i < 255; ++i) accents += "é";
  input.set_name(accents);
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok());
  input.set_name("  " + std::string(255, 'x') + "  ");
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok());
}

TEST(ValidateJobInput, NameNotUtf8OrWithNullCharacter) {
  v2::JobInput input = ValidInput();
  input.set_name("Caf\xE9");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: Not a valid string.");
  input.set_name("\xED\xA0\x80 surrogate");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: Not a valid string.");
  input.set_name("\xC0\xAF overlong");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: Not a valid string.");
  input.set_name(std::string("a\0b", 3));
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: Null characters are not allowed.");
  // As the API, the length is checked before the null characters.
  input.set_name(std::string(300, 'x') + std::string(1, '\0'));
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "name: Ensure this field has no more than 255 characters.");
}

TEST(ValidateJobInput, MissingProjectId) {
  v2::JobInput input = ValidInput();
  input.clear_project_id();
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "project_id: This field is required.");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kReplace)),
            "project_id: This field is required.");
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kPatch).ok());
}

TEST(ValidateJobInput, DelayIsOptionalD7) {
  v2::JobInput input = ValidInput();
  input.set_delay(-5);
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok());
}

TEST(ValidateJobInput, LimitInSigned32BitRange) {
  v2::JobInput input = ValidInput();
  input.set_limit(2147483647);
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok());
  input.set_limit(-2147483648LL);
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok());
  input.set_limit(0);
  EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok());

  input.set_limit(2147483648LL);
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "limit: Ensure this value is less than or equal to 2147483647.");
  input.set_limit(-2147483649LL);
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kPatch)),
            "limit: Ensure this value is greater than or equal to "
            "-2147483648.");
}

TEST(ValidateJobInput, UnknownJobTypeKeyOnItsFieldD2) {
  v2::JobInput input = ValidInput();
  input.set_job_type_key("bogus");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "job_type_key: \"bogus\" is not a valid choice.");
  input.set_job_type_key("ML");
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kPatch)),
            "job_type_key: \"ML\" is not a valid choice.");
  for (const JobTypeInfo& type : JobTypes()) {
    input.set_job_type_key(std::string(type.key));
    EXPECT_TRUE(ValidateJobInput(input, InputMode::kCreate).ok()) << type.key;
  }
}

// Every violation of `status` as "field: description", in order.
std::vector<std::string> AllViolations(const absl::Status& status) {
  std::vector<std::string> violations;
  const std::optional<google::rpc::BadRequest> bad_request =
      GetBadRequest(status);
  if (!bad_request.has_value()) return {"<no BadRequest>"};
  for (const auto& violation : bad_request->field_violations()) {
    violations.push_back(
        absl::StrCat(violation.field(), ": ", violation.description()));
  }
  return violations;
}

TEST(ValidateJobInput, EveryErrorInFieldOrder) {
  v2::JobInput input;
  input.set_delay(-(1LL << 40));
  input.set_limit(1LL << 40);
  input.set_job_type_key("bogus");
  const absl::Status status = ValidateJobInput(input, InputMode::kCreate);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      AllViolations(status),
      ElementsAre(
          "name: This field is required.",
          "delay: Ensure this value is greater than or equal to -2147483648.",
          "limit: Ensure this value is less than or equal to 2147483647.",
          "project_id: This field is required.",
          "job_type_key: \"bogus\" is not a valid choice."));
  EXPECT_EQ(status.message(),
            "name: This field is required.; "
            "delay: Ensure this value is greater than or equal to "
            "-2147483648.; "
            "limit: Ensure this value is less than or equal to 2147483647.; "
            "project_id: This field is required.; "
            "job_type_key: \"bogus\" is not a valid choice.");

  input.set_name("Nightly");
  input.set_project_id(16);
  input.clear_delay();
  input.clear_limit();
  EXPECT_EQ(Violation(ValidateJobInput(input, InputMode::kCreate)),
            "job_type_key: \"bogus\" is not a valid choice.");
}

TEST(MaskJobInput, ReportsMaskedRequiredFieldsWithTheOtherErrors) {
  v2::JobInput input;
  input.set_limit(1LL << 40);
  google::protobuf::FieldMask mask;
  mask.add_paths("name");
  mask.add_paths("limit");
  mask.add_paths("project_id");
  EXPECT_THAT(
      AllViolations(MaskJobInput(input, mask).status()),
      ElementsAre(
          "name: This field is required.",
          "project_id: This field is required.",
          "limit: Ensure this value is less than or equal to 2147483647."));
}

TEST(JobInputFields, TheWritableFields) {
  std::vector<std::string> fields;
  for (absl::string_view field : JobInputFields()) fields.emplace_back(field);
  EXPECT_THAT(
      fields,
      ElementsAre("name", "delay", "project_id", "limit", "shuffle",
                  "deployment_id", "source_image_collection_id",
                  "source_image_single_id", "pipeline_id", "job_type_key"));
}

TEST(MaskJobInput, UnknownPathIsAnErrorOnUpdateMask) {
  const absl::StatusOr<v2::JobInput> masked =
      MaskJobInput(ValidInput(), Mask({"name", "status"}));
  EXPECT_EQ(Violation(masked.status()),
            "update_mask: \"status\" is not a writable field.");
}

TEST(MaskJobInput, MaskedRequiredFieldThatIsUnset) {
  v2::JobInput input;
  input.set_delay(3);
  EXPECT_EQ(Violation(MaskJobInput(input, Mask({"delay", "name"})).status()),
            "name: This field is required.");
  EXPECT_EQ(
      Violation(MaskJobInput(input, Mask({"delay", "project_id"})).status()),
      "project_id: This field is required.");
}

TEST(MaskJobInput, KeepsOnlyMaskedFields) {
  v2::JobInput input = ValidInput();
  input.set_delay(3);
  input.set_limit(10);
  input.set_job_type_key("bogus");  // Not masked: neither kept nor checked.

  const absl::StatusOr<v2::JobInput> masked =
      MaskJobInput(input, Mask({"limit", "delay", "shuffle"}));

  ASSERT_TRUE(masked.ok()) << masked.status();
  EXPECT_THAT(*masked, EqualsProto(ParseText<v2::JobInput>(R"pb(
    delay: 3
    limit: 10
  )pb")));
}

TEST(MaskJobInput, ValidatesTheMaskedFields) {
  v2::JobInput input;
  input.set_name(" ");
  EXPECT_EQ(Violation(MaskJobInput(input, Mask({"name"})).status()),
            "name: This field may not be blank.");
  input.set_job_type_key("bogus");
  EXPECT_EQ(Violation(MaskJobInput(input, Mask({"job_type_key"})).status()),
            "job_type_key: \"bogus\" is not a valid choice.");
}

v2::Job MakeStoredJob() {
  v2::Job job = MakeJob(v2::SUCCESS);
  job.set_delay(4);
  job.set_limit(100);
  job.set_shuffle(false);
  job.mutable_project()->set_id(16);
  job.mutable_project()->set_name("Aarhus Universitet");
  job.mutable_deployment()->set_id(3);
  job.mutable_source_image_collection()->set_id(111);
  job.mutable_source_image_collection()->set_name("Random 1000");
  job.mutable_pipeline()->set_id(2);
  job.mutable_job_type()->set_key("data_export");
  return job;
}

TEST(JobInputFromJob, WritableFieldsAndSetReferences) {
  EXPECT_THAT(JobInputFromJob(MakeStoredJob()),
              EqualsProto(ParseText<v2::JobInput>(R"pb(
                name: "Nightly batch"
                delay: 4
                project_id: 16
                limit: 100
                shuffle: false
                deployment_id: 3
                source_image_collection_id: 111
                pipeline_id: 2
                job_type_key: "data_export"
              )pb")));
}

TEST(OverlayJobInput, MaskedFieldsAreCopiedOrCleared) {
  v2::JobInput base = JobInputFromJob(MakeStoredJob());
  v2::JobInput patch;
  patch.set_name("Renamed");
  patch.set_delay(99);  // Not masked.

  OverlayJobInput(patch, Mask({"name", "limit", "pipeline_id"}), base);

  EXPECT_THAT(base, EqualsProto(ParseText<v2::JobInput>(R"pb(
                name: "Renamed"
                delay: 4
                project_id: 16
                shuffle: false
                deployment_id: 3
                source_image_collection_id: 111
                job_type_key: "data_export"
              )pb")));
}

TEST(ApplyJobInput, CreateDefaults) {
  v2::JobInput input = ValidInput();
  input.set_name("  Nightly batch \u3000");
  v2::Job job;

  ApplyJobInput(input, InputMode::kCreate, job);

  EXPECT_THAT(job, EqualsProto(ParseText<v2::Job>(R"pb(
                name: "Nightly batch"
                delay: 0
                shuffle: true
                project { id: 16 }
                job_type { key: "ml" }
              )pb")));
}

TEST(ApplyJobInput, ReplaceWithoutJobTypeKeepsTheTypeD8) {
  v2::Job job = MakeStoredJob();
  ApplyJobInput(ValidInput(), InputMode::kReplace, job);
  EXPECT_EQ(job.job_type().key(), "data_export");
  // Omitted optional fields get their defaults.
  EXPECT_EQ(job.delay(), 0);
  EXPECT_FALSE(job.has_limit());
  EXPECT_TRUE(job.shuffle());
  EXPECT_FALSE(job.has_deployment());
  EXPECT_FALSE(job.has_source_image_collection());
  EXPECT_FALSE(job.has_pipeline());

  v2::JobInput typed = ValidInput();
  typed.set_job_type_key("unknown");
  ApplyJobInput(typed, InputMode::kReplace, job);
  EXPECT_EQ(job.job_type().key(), "unknown");
}

TEST(ApplyJobInput, ReferenceKeepsItsRecordWhileTheIdStays) {
  v2::Job job = MakeStoredJob();
  v2::JobInput input = JobInputFromJob(job);
  input.set_source_image_collection_id(112);

  ApplyJobInput(input, InputMode::kPatch, job);

  EXPECT_THAT(job.project(), EqualsProto(ParseText<v2::Project>(R"pb(
                id: 16
                name: "Aarhus Universitet"
              )pb")));
  EXPECT_THAT(job.source_image_collection(),
              EqualsProto(ParseText<v2::CaptureCollection>("id: 112")));
  EXPECT_EQ(job.limit(), 100);
  EXPECT_FALSE(job.shuffle());
  EXPECT_EQ(job.delay(), 4);
}

// ---- Presentation -----------------------------------------------------------

TEST(DecorateJob, DetailsPathsNamesAndPermissions) {
  v2::Job job = MakeStoredJob();
  job.mutable_job_type()->set_key("ml");
  job.mutable_source_image_single()->set_id(5);

  DecorateJob(job);

  EXPECT_EQ(job.details(), "/api/v2/jobs/12/");
  EXPECT_EQ(job.project().details(), "/api/v2/projects/16/");
  EXPECT_EQ(job.deployment().details(), "/api/v2/deployments/3/");
  EXPECT_EQ(job.source_image_collection().details(),
            "/api/v2/captures/collections/111/");
  EXPECT_EQ(job.source_image_single().details(), "/api/v2/captures/5/");
  EXPECT_EQ(job.pipeline().details(), "/api/v2/ml/pipelines/2/");
  EXPECT_THAT(job.project().user_permissions(),
              ElementsAre("update", "delete"));
  EXPECT_THAT(job.source_image_collection().user_permissions(),
              ElementsAre("update", "delete", "populate"));
  EXPECT_EQ(job.job_type().name(), "ML pipeline");
  EXPECT_THAT(job.user_permissions(),
              ElementsAre("update", "delete", "run", "run_single_image"));
}

TEST(DecorateJob, AbsentReferencesStayAbsent) {
  v2::Job job = MakeJob(v2::CREATED);
  DecorateJob(job);
  EXPECT_FALSE(job.has_project());
  EXPECT_FALSE(job.has_deployment());
  EXPECT_FALSE(job.has_source_image_collection());
  EXPECT_FALSE(job.has_source_image_single());
  EXPECT_FALSE(job.has_pipeline());
}

TEST(DecorateJob, JobTypeNameOfEveryType) {
  for (const JobTypeInfo& type : JobTypes()) {
    v2::Job job = MakeJob(v2::CREATED);
    job.mutable_job_type()->set_key(std::string(type.key));
    DecorateJob(job);
    EXPECT_EQ(job.job_type().name(), type.name);
  }
  v2::Job job = MakeJob(v2::CREATED);
  job.mutable_job_type()->set_key("populate_captures_collection");
  DecorateJob(job);
  EXPECT_EQ(job.job_type().name(), "Populate captures collection");
}

TEST(DecorateJob, PermissionsOfASuperuserPerTypeD17) {
  auto permissions = [](absl::string_view key) {
    v2::Job job = MakeJob(v2::CREATED);
    job.mutable_job_type()->set_key(std::string(key));
    job.add_user_permissions("stale");
    DecorateJob(job);
    return std::vector<std::string>(job.user_permissions().begin(),
                                    job.user_permissions().end());
  };
  EXPECT_THAT(permissions("ml"),
              ElementsAre("update", "delete", "run", "run_single_image"));
  EXPECT_THAT(permissions("populate_captures_collection"),
              ElementsAre("update", "delete", "run"));
  EXPECT_THAT(permissions("data_export"),
              ElementsAre("update", "delete", "run"));
  EXPECT_THAT(permissions("post_processing"),
              ElementsAre("update", "delete", "run"));
  EXPECT_THAT(permissions("unknown"), ElementsAre("update", "delete"));
  // A key that names no type has no run permission either.
  EXPECT_THAT(permissions("bogus"), ElementsAre("update", "delete"));
}

TEST(DecorateJob, UnrecognizedKeyHasNoTypeName) {
  v2::Job job = MakeJob(v2::CREATED);
  job.mutable_job_type()->set_key("bogus");
  job.mutable_job_type()->set_name("stale");
  DecorateJob(job);
  EXPECT_EQ(job.job_type().name(), "");
}

TEST(DecorateJob, DurationIsFinishedMinusStarted) {
  v2::Job job = MakeJob(v2::SUCCESS);
  *job.mutable_started_at() = ToProtoTime(TestNow());
  *job.mutable_finished_at() =
      ToProtoTime(TestNow() + absl::Seconds(3) + absl::Microseconds(356203));
  DecorateJob(job);
  EXPECT_THAT(job.duration(), EqualsProto(ParseText<google::protobuf::Duration>(
                                  "seconds: 3 nanos: 356203000")));

  // Inconsistent data gives a negative duration of one sign.
  *job.mutable_finished_at() =
      ToProtoTime(TestNow() - absl::Milliseconds(1500));
  DecorateJob(job);
  EXPECT_THAT(job.duration(), EqualsProto(ParseText<google::protobuf::Duration>(
                                  "seconds: -1 nanos: -500000000")));

  job.clear_finished_at();
  DecorateJob(job);
  EXPECT_FALSE(job.has_duration());
}

TEST(DecorateJob, FillsStatusLabels) {
  v2::Job job = MakeJob(v2::STARTED);
  *job.mutable_progress() = ParseText<v2::JobProgress>(R"pb(
    summary { status: STARTED progress: 0.45 }
    stages { key: "a" status: FAILURE progress: 0.5 }
  )pb");
  DecorateJob(job);
  EXPECT_EQ(job.progress().summary().status_label(), "45% complete");
  EXPECT_EQ(job.progress().stages(0).status_label(), "FAILURE");
}

TEST(DecorateRecords, DetailsPathsAndPermissions) {
  v2::Project project;
  project.set_id(16);
  DecorateProject(project);
  EXPECT_EQ(project.details(), "/api/v2/projects/16/");
  EXPECT_THAT(project.user_permissions(), ElementsAre("update", "delete"));

  v2::Deployment deployment;
  deployment.set_id(3);
  DecorateDeployment(deployment);
  EXPECT_EQ(deployment.details(), "/api/v2/deployments/3/");
  EXPECT_THAT(deployment.user_permissions(), ElementsAre("update", "delete"));

  v2::CaptureCollection collection;
  collection.set_id(111);
  DecorateCaptureCollection(collection);
  EXPECT_EQ(collection.details(), "/api/v2/captures/collections/111/");
  EXPECT_THAT(collection.user_permissions(),
              ElementsAre("update", "delete", "populate"));

  v2::Capture capture;
  capture.set_id(5);
  DecorateCapture(capture);
  EXPECT_EQ(capture.details(), "/api/v2/captures/5/");
  EXPECT_THAT(capture.user_permissions(), ElementsAre("update", "delete"));

  v2::Pipeline pipeline;
  pipeline.set_id(2);
  DecoratePipeline(pipeline);
  EXPECT_EQ(pipeline.details(), "/api/v2/ml/pipelines/2/");
  EXPECT_THAT(pipeline.user_permissions(), ElementsAre("update", "delete"));
}

LogLine MakeLogLine(absl::Time created_at, LogLevel level,
                    std::string message) {
  LogLine line;
  line.job_id = kJobId;
  line.created_at = created_at;
  line.level = level;
  line.message = std::move(message);
  return line;
}

TEST(FormatLogLine, SecondsInTheZone) {
  const LogLine line =
      MakeLogLine(TestNow(), LogLevel::kInfo,
                  "Changing status of job 1256 from STARTED to SUCCESS");
  EXPECT_EQ(FormatLogLine(line, absl::UTCTimeZone()),
            "[2025-11-12 19:01:00] INFO Changing status of job 1256 from "
            "STARTED to SUCCESS");

  absl::TimeZone new_york;
  ASSERT_TRUE(absl::LoadTimeZone("America/New_York", &new_york));
  EXPECT_EQ(FormatLogLine(line, new_york),
            "[2025-11-12 14:01:00] INFO Changing status of job 1256 from "
            "STARTED to SUCCESS");
  const LogLine summer =
      MakeLogLine(absl::FromCivil(absl::CivilSecond(2025, 7, 1, 0, 30, 59),
                                  absl::UTCTimeZone()),
                  LogLevel::kCritical, "down");
  EXPECT_EQ(FormatLogLine(summer, new_york),
            "[2025-06-30 20:30:59] CRITICAL down");
}

TEST(FillLogs, StdoutEveryLineStderrErrorsOnly) {
  const std::vector<LogLine> lines = {
      MakeLogLine(TestNow() + absl::Seconds(3), LogLevel::kCritical, "dead"),
      MakeLogLine(TestNow() + absl::Seconds(2), LogLevel::kWarning, "slow"),
      MakeLogLine(TestNow() + absl::Seconds(1), LogLevel::kError, "boom"),
      MakeLogLine(TestNow(), LogLevel::kInfo, "ok"),
  };
  v2::Job job;
  job.mutable_logs()->add_stdout("stale");
  job.mutable_logs()->add_stderr("stale");

  FillLogs(lines, absl::UTCTimeZone(), job);

  EXPECT_THAT(job.logs().stdout(),
              ElementsAre("[2025-11-12 19:01:03] CRITICAL dead",
                          "[2025-11-12 19:01:02] WARNING slow",
                          "[2025-11-12 19:01:01] ERROR boom",
                          "[2025-11-12 19:01:00] INFO ok"));
  EXPECT_THAT(job.logs().stderr(), ElementsAre("dead", "boom"));
}

TEST(FillLogs, NoLinesGiveEmptyLogs) {
  v2::Job job;
  job.mutable_logs()->add_stdout("stale");
  FillLogs({}, absl::UTCTimeZone(), job);
  EXPECT_TRUE(job.has_logs());
  EXPECT_THAT(job.logs().stdout(), IsEmpty());
  EXPECT_THAT(job.logs().stderr(), IsEmpty());
}

TEST(ProtoTime, RoundTripsWithNonNegativeNanos) {
  const google::protobuf::Timestamp now = ToProtoTime(TestNow());
  EXPECT_EQ(now.seconds(), absl::ToUnixSeconds(TestNow()));
  EXPECT_EQ(now.nanos(), 250000000);
  EXPECT_EQ(FromProtoTime(now), TestNow());

  const absl::Time before_epoch = absl::UnixEpoch() - absl::Milliseconds(1250);
  const google::protobuf::Timestamp early = ToProtoTime(before_epoch);
  EXPECT_EQ(early.seconds(), -2);
  EXPECT_EQ(early.nanos(), 750000000);
  EXPECT_EQ(FromProtoTime(early), before_epoch);
}

}  // namespace
}  // namespace jobline
