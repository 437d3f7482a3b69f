#include "server/job_manager.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/job_rules.h"
#include "server/status_util.h"
#include "server/test_util.h"
#include "storage/fake_clock.h"
#include "storage/sqlite_job_store.h"

namespace jobline {
namespace {

using ::jobline::testing::EqualsProto;
using ::jobline::testing::Violation;

using ::testing::ElementsAre;

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteJobStoreOptions options;
    options.path = ":memory:";
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
        OpenSqliteJobStore(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    manager_ = std::make_unique<JobManager>(store_.get(), &clock_);

    v2::Catalog catalog;
    v2::Project* aarhus = catalog.add_projects();
    aarhus->set_id(16);
    aarhus->set_name("Aarhus Universitet, Department of Ecoscience");
    v2::Project* other = catalog.add_projects();
    other->set_id(17);
    other->set_name("Other project");
    v2::Deployment* station = catalog.add_deployments();
    station->set_id(5);
    station->set_name("Station 5");
    station->set_project_id(16);
    v2::Pipeline* pipeline = catalog.add_pipelines();
    pipeline->set_id(3);
    pipeline->set_name("Moth detector");
    pipeline->set_slug("moth-detector");
    pipeline->set_version(1);
    v2::CaptureCollection* collection = catalog.add_capture_collections();
    collection->set_id(111);
    collection->set_name("Random 1000");
    collection->set_method("random");
    collection->set_project_id(16);
    v2::Capture* capture = catalog.add_captures();
    capture->set_id(9);
    capture->set_deployment_id(5);
    ASSERT_TRUE(manager_->ImportCatalog(catalog).ok());
  }

  // The seed's job: populate collection 111 of project 16.
  static v2::CreateJobRequest SeedRequest() {
    v2::CreateJobRequest request;
    v2::JobInput* input = request.mutable_job();
    input->set_name("Populate captures for collection 111");
    input->set_project_id(16);
    input->set_source_image_collection_id(111);
    input->set_job_type_key("populate_captures_collection");
    return request;
  }

  v2::Job Create(const v2::CreateJobRequest& request) {
    absl::StatusOr<v2::Job> job = manager_->CreateJob(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v2::Job();
  }

  // The status of job `id` as stored.
  v2::JobStatus StoredStatus(int64_t id) {
    absl::StatusOr<v2::Job> job = store_->GetJob(id);
    return job.ok() ? job->status() : v2::JOB_STATUS_UNSPECIFIED;
  }

  FakeClock clock_{absl::FromUnixSeconds(1762974059)};  // 19:00:59
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<JobManager> manager_;
};

// ---- Create ----

TEST_F(JobManagerTest, CreateFillsTheSeedJobDocument) {
  const v2::Job job = Create(SeedRequest());

  EXPECT_EQ(job.id(), 1);
  EXPECT_EQ(job.details(), "/api/v2/jobs/1/");
  EXPECT_EQ(job.name(), "Populate captures for collection 111");
  EXPECT_EQ(job.delay(), 0);
  EXPECT_FALSE(job.has_limit());
  EXPECT_TRUE(job.shuffle());
  EXPECT_EQ(job.project().id(), 16);
  EXPECT_EQ(job.project().name(),
            "Aarhus Universitet, Department of Ecoscience");
  EXPECT_EQ(job.project().details(), "/api/v2/projects/16/");
  EXPECT_FALSE(job.has_deployment());
  EXPECT_EQ(job.source_image_collection().name(), "Random 1000");
  EXPECT_EQ(job.source_image_collection().method(), "random");
  EXPECT_EQ(job.source_image_collection().details(),
            "/api/v2/captures/collections/111/");
  EXPECT_FALSE(job.has_pipeline());
  EXPECT_EQ(job.status(), v2::CREATED);
  EXPECT_EQ(job.progress().summary().status(), v2::CREATED);
  EXPECT_EQ(job.progress().summary().progress(), 0.0);
  EXPECT_EQ(job.progress().stages_size(), 0);
  EXPECT_EQ(job.created_at().seconds(), 1762974059);
  EXPECT_EQ(job.updated_at().seconds(), 1762974059);
  EXPECT_FALSE(job.has_started_at());
  EXPECT_FALSE(job.has_finished_at());
  EXPECT_FALSE(job.has_duration());
  EXPECT_EQ(job.job_type().key(), "populate_captures_collection");
  EXPECT_EQ(job.job_type().name(), "Populate captures collection");
  EXPECT_EQ(job.dispatch_mode(), "internal");
  EXPECT_EQ(job.logs().stdout_size(), 0);
  EXPECT_THAT(job.user_permissions(), ElementsAre("update", "delete", "run"));
}

// Spec 5: every lookup is scoped by an existing project_id, and refuses
// a bad one; a project that does not exist scopes nothing.
TEST_F(JobManagerTest, ActionsAreScopedByTheRequestsProject) {
  const v2::Job job = Create(SeedRequest());
  const int64_t id = job.id();

  v2::RunJobRequest run;
  run.set_id(id);
  run.set_project_id(17);
  EXPECT_EQ(manager_->RunJob(run).status().code(), absl::StatusCode::kNotFound);
  v2::CancelJobRequest cancel;
  cancel.set_id(id);
  cancel.set_project_id(17);
  EXPECT_EQ(manager_->CancelJob(cancel).status().code(),
            absl::StatusCode::kNotFound);
  v2::RetryJobRequest retry;
  retry.set_id(id);
  retry.set_project_id(17);
  EXPECT_EQ(manager_->RetryJob(retry).status().code(),
            absl::StatusCode::kNotFound);
  v2::UpdateJobRequest update;
  update.set_id(id);
  update.set_project_id(17);
  update.mutable_job()->set_name("Hijacked");
  update.mutable_update_mask()->add_paths("name");
  EXPECT_EQ(manager_->UpdateJob(update).status().code(),
            absl::StatusCode::kNotFound);
  v2::DeleteJobRequest remove;
  remove.set_id(id);
  remove.set_project_id(17);
  EXPECT_EQ(manager_->DeleteJob(remove).code(), absl::StatusCode::kNotFound);

  // Bad values name their field.
  run.set_project_id(-1);
  absl::Status bad = manager_->RunJob(run).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), ::testing::StartsWith("project_id"));
  cancel.clear_project_id();
  cancel.set_cutoff_hours(-2);
  bad = manager_->CancelJob(cancel).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()),
              ::testing::StartsWith("cutoff_hours"));

  // Nothing changed.
  v2::GetJobRequest get;
  get.set_id(id);
  const absl::StatusOr<v2::Job> unchanged = manager_->GetJob(get);
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_EQ(unchanged->status(), v2::CREATED);
  EXPECT_EQ(unchanged->name(), job.name());
  EXPECT_EQ(unchanged->sequence(), job.sequence());

  // The job's own project, and one that does not exist, let it through.
  update.set_project_id(16);
  const absl::StatusOr<v2::Job> renamed = manager_->UpdateJob(update);
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ(renamed->name(), "Hijacked");
  run.set_project_id(999);
  const absl::StatusOr<v2::Job> queued = manager_->RunJob(run);
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(queued->status(), v2::PENDING);
  remove.set_project_id(16);
  EXPECT_TRUE(manager_->DeleteJob(remove).ok());
}

TEST_F(JobManagerTest, ListRefusesAPageOverTheLimit) {
  Create(SeedRequest());
  v2::ListJobsRequest request;
  request.set_limit(10000);
  const absl::StatusOr<v2::ListJobsResponse> largest =
      manager_->ListJobs(request);
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->results_size(), 1);
  request.set_limit(10001);
  const absl::Status refused = manager_->ListJobs(request).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.message(),
            "limit: a page may hold at most 10000 jobs (--max_page_size)");
}

TEST_F(JobManagerTest, CreateDefaultsToAnMlJob) {
  v2::CreateJobRequest request;
  request.mutable_job()->set_name("Nightly batch");
  request.mutable_job()->set_project_id(16);
  const v2::Job job = Create(request);
  EXPECT_EQ(job.job_type().key(), "ml");
  EXPECT_EQ(job.job_type().name(), "ML pipeline");
  EXPECT_THAT(job.user_permissions(),
              ElementsAre("update", "delete", "run", "run_single_image"));
}

TEST_F(JobManagerTest, CreateWithPipelineAndDelaySetsUpStages) {
  v2::CreateJobRequest request;
  request.mutable_job()->set_name("Detect moths");
  request.mutable_job()->set_project_id(16);
  request.mutable_job()->set_pipeline_id(3);
  request.mutable_job()->set_delay(2);
  const v2::Job job = Create(request);

  EXPECT_EQ(job.dispatch_mode(), "sync_api");
  ASSERT_EQ(job.progress().stages_size(), 4);
  EXPECT_EQ(job.progress().stages(0).key(), "delay");
  EXPECT_EQ(job.progress().stages(1).key(), "collect");
  EXPECT_EQ(job.progress().stages(2).key(), "process");
  EXPECT_EQ(job.progress().stages(3).key(), "results");
  EXPECT_EQ(job.pipeline().slug(), "moth-detector");
  EXPECT_EQ(job.pipeline().details(), "/api/v2/ml/pipelines/3/");
}

TEST_F(JobManagerTest, CreateWithStartNowIsPendingInOneWrite) {
  v2::CreateJobRequest request = SeedRequest();
  request.set_start_now(true);
  const v2::Job job = Create(request);
  EXPECT_EQ(job.status(), v2::PENDING);
  EXPECT_EQ(job.progress().summary().status(), v2::PENDING);
  EXPECT_EQ(StoredStatus(job.id()), v2::PENDING);
}

TEST_F(JobManagerTest, CreateAnswersAsGetReadsTheNewJob) {
  // Created, and created with start_now; the answer of the create is the
  // single-job answer, log lines (none yet) included, without a read.
  v2::CreateJobRequest pending = SeedRequest();
  pending.set_start_now(true);
  for (const v2::CreateJobRequest& request : {SeedRequest(), pending}) {
    const v2::Job created = Create(request);
    v2::GetJobRequest get;
    get.set_id(created.id());
    absl::StatusOr<v2::Job> read = manager_->GetJob(get);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_THAT(created, EqualsProto(*read));
    EXPECT_EQ(created.logs().stdout_size(), 0);
    EXPECT_EQ(created.user_permissions_size(), 3);
  }
}

TEST_F(JobManagerTest, CreateRefusesBadInputNamingTheField) {
  struct Case {
    std::string name;
    std::function<void(v2::JobInput&)> change;
    std::string violation;
  };
  const std::vector<Case> cases = {
      {"missing name", [](v2::JobInput& in) { in.clear_name(); },
       "name: This field is required."},
      {"blank name", [](v2::JobInput& in) { in.set_name("   "); },
       "name: This field may not be blank."},
      {"long name",
       [](v2::JobInput& in) { in.set_name(std::string(256, 'x')); },
       "name: Ensure this field has no more than 255 characters."},
      {"non-UTF-8 name", [](v2::JobInput& in) { in.set_name("bad \xff"); },
       "name: Not a valid string."},
      {"missing project", [](v2::JobInput& in) { in.clear_project_id(); },
       "project_id: This field is required."},
      {"unknown project", [](v2::JobInput& in) { in.set_project_id(99); },
       "project_id: Invalid pk \"99\" - object does not exist."},
      {"unknown collection",
       [](v2::JobInput& in) { in.set_source_image_collection_id(4242); },
       "source_image_collection_id: Invalid pk \"4242\" - object does not "
       "exist."},
      {"unknown pipeline", [](v2::JobInput& in) { in.set_pipeline_id(7); },
       "pipeline_id: Invalid pk \"7\" - object does not exist."},
      {"unknown deployment", [](v2::JobInput& in) { in.set_deployment_id(8); },
       "deployment_id: Invalid pk \"8\" - object does not exist."},
      {"unknown capture",
       [](v2::JobInput& in) { in.set_source_image_single_id(10); },
       "source_image_single_id: Invalid pk \"10\" - object does not exist."},
      {"unknown project and pipeline: the project is named",
       [](v2::JobInput& in) {
         in.set_project_id(98);
         in.set_pipeline_id(7);
       },
       "project_id: Invalid pk \"98\" - object does not exist."},
      {"unknown collection and capture: the collection is named",
       [](v2::JobInput& in) {
         in.set_source_image_collection_id(4242);
         in.set_source_image_single_id(10);
       },
       "source_image_collection_id: Invalid pk \"4242\" - object does not "
       "exist."},
  };
  for (const Case& c : cases) {
    v2::CreateJobRequest request = SeedRequest();
    c.change(*request.mutable_job());
    const absl::StatusOr<v2::Job> job = manager_->CreateJob(request);
    EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_EQ(Violation(job.status()), c.violation) << c.name;
  }

  // Nothing was stored.
  v2::ListJobsRequest list;
  EXPECT_EQ(manager_->ListJobs(list)->count(), 0);
}

TEST_F(JobManagerTest, CreateRefusesAnUnknownJobType) {
  v2::CreateJobRequest request = SeedRequest();
  request.mutable_job()->set_job_type_key("teleport");
  const absl::StatusOr<v2::Job> job = manager_->CreateJob(request);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Violation(job.status()),
            "job_type_key: \"teleport\" is not a valid choice.");
}

// ---- Get ----

TEST_F(JobManagerTest, GetUnknownJobIsNotFound) {
  v2::GetJobRequest request;
  request.set_id(404);
  const absl::StatusOr<v2::Job> job = manager_->GetJob(request);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(job.status().message(), "job 404 not found");
}

TEST_F(JobManagerTest, GetChecksLogsLimitProjectAndCutoff) {
  const v2::Job job = Create(SeedRequest());
  v2::GetJobRequest request;
  request.set_id(job.id());

  request.set_logs_limit(0);
  EXPECT_EQ(Violation(manager_->GetJob(request).status()),
            "logs_limit: Ensure this value is greater than or equal to 1.");
  request.set_logs_limit(5001);
  EXPECT_EQ(Violation(manager_->GetJob(request).status()),
            "logs_limit: Ensure this value is less than or equal to 5000.");
  request.set_logs_limit(5000);
  EXPECT_TRUE(manager_->GetJob(request).ok());

  request.set_cutoff_hours(-1);
  EXPECT_EQ(Violation(manager_->GetJob(request).status()),
            "cutoff_hours: Ensure this value is greater than or equal to 0.");
  request.clear_cutoff_hours();

  // Another existing project hides the job; an unknown one is ignored.
  request.set_project_id(17);
  EXPECT_EQ(manager_->GetJob(request).status().code(),
            absl::StatusCode::kNotFound);
  request.set_project_id(999);
  EXPECT_TRUE(manager_->GetJob(request).ok());
  request.set_project_id(16);
  EXPECT_TRUE(manager_->GetJob(request).ok());
  request.set_project_id(-3);
  EXPECT_EQ(Violation(manager_->GetJob(request).status()),
            "project_id: Ensure this value is greater than or equal to 0.");
}

TEST_F(JobManagerTest, GetReturnsNewestLogLinesFirstWithinTheLimit) {
  const v2::Job job = Create(SeedRequest());
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(store_
                    ->AppendLogs(job.id(),
                                 {{i == 4 ? LogLevel::kError : LogLevel::kInfo,
                                   absl::StrCat("line ", i)}})
                    .ok());
  }
  v2::GetJobRequest request;
  request.set_id(job.id());
  request.set_logs_limit(2);
  const absl::StatusOr<v2::Job> read = manager_->GetJob(request);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_THAT(read->logs().stdout(),
              ElementsAre("[2025-11-12 19:01:04] ERROR line 4",
                          "[2025-11-12 19:01:03] INFO line 3"));
  EXPECT_THAT(read->logs().stderr(), ElementsAre("line 4"));
}

// ---- Actions (D6) ----

TEST_F(JobManagerTest, RunEnqueuesAndRefusesARunningJob) {
  const v2::Job job = Create(SeedRequest());
  const absl::StatusOr<v2::Job> run = manager_->RunJob(job.id());
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->status(), v2::PENDING);

  const absl::StatusOr<v2::Job> again = manager_->RunJob(job.id());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(again.status().message(), "cannot run job 1 while it is PENDING");
  EXPECT_EQ(StoredStatus(job.id()), v2::PENDING);
}

TEST_F(JobManagerTest, CancelOfCreatedOrPendingRevokesAtOnce) {
  const v2::Job created = Create(SeedRequest());
  clock_.Advance(absl::Seconds(3));
  absl::StatusOr<v2::Job> cancelled = manager_->CancelJob(created.id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status(), v2::REVOKED);
  EXPECT_EQ(cancelled->progress().summary().status(), v2::REVOKED);
  EXPECT_EQ(cancelled->finished_at().seconds(), 1762974062);
  EXPECT_THAT(cancelled->logs().stdout(),
              ElementsAre("[2025-11-12 19:01:02] INFO Changing status of job "
                          "1 from CREATED to REVOKED"));

  v2::CreateJobRequest start_now = SeedRequest();
  start_now.set_start_now(true);
  const v2::Job pending = Create(start_now);
  cancelled = manager_->CancelJob(pending.id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->status(), v2::REVOKED);
}

TEST_F(JobManagerTest, CancelOfAFinalJobReturnsItUnchanged) {
  const v2::Job job = Create(SeedRequest());
  ASSERT_TRUE(manager_->CancelJob(job.id()).ok());
  const absl::StatusOr<v2::Job> again = manager_->CancelJob(job.id());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->status(), v2::REVOKED);
  EXPECT_EQ(again->logs().stdout_size(), 1);
}

TEST_F(JobManagerTest, RetryOfARevokedJobResetsAndEnqueues) {
  const v2::Job job = Create(SeedRequest());
  ASSERT_TRUE(manager_->CancelJob(job.id()).ok());
  const absl::StatusOr<v2::Job> retried = manager_->RetryJob(job.id());
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->status(), v2::PENDING);
  EXPECT_FALSE(retried->has_finished_at());
  EXPECT_EQ(retried->progress().summary().progress(), 0.0);

  // A pending job cannot be retried.
  const absl::StatusOr<v2::Job> again = manager_->RetryJob(job.id());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(again.status().message(), "cannot retry job 1 while it is PENDING");
}

TEST_F(JobManagerTest, ActionsOnAnUnknownJobAreNotFound) {
  EXPECT_EQ(manager_->RunJob(77).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->RetryJob(77).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->CancelJob(77).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->DeleteJob(77).code(), absl::StatusCode::kNotFound);
}

TEST_F(JobManagerTest, DeleteRemovesTheJob) {
  const v2::Job job = Create(SeedRequest());
  ASSERT_TRUE(manager_->DeleteJob(job.id()).ok());
  v2::GetJobRequest request;
  request.set_id(job.id());
  EXPECT_EQ(manager_->GetJob(request).status().code(),
            absl::StatusCode::kNotFound);
}

// ---- Update ----

TEST_F(JobManagerTest, ReplaceNeedsNameAndProjectAndKeepsTheType) {
  const v2::Job job = Create(SeedRequest());
  v2::UpdateJobRequest request;
  request.set_id(job.id());
  request.mutable_job()->set_name("Renamed");
  EXPECT_EQ(Violation(manager_->UpdateJob(request).status()),
            "project_id: This field is required.");

  request.mutable_job()->set_project_id(17);
  const absl::StatusOr<v2::Job> updated = manager_->UpdateJob(request);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->name(), "Renamed");
  EXPECT_EQ(updated->project().id(), 17);
  // D8: the type stays; the omitted collection is cleared.
  EXPECT_EQ(updated->job_type().key(), "populate_captures_collection");
  EXPECT_FALSE(updated->has_source_image_collection());
}

TEST_F(JobManagerTest, PatchChangesOnlyTheMaskedFields) {
  const v2::Job job = Create(SeedRequest());
  v2::UpdateJobRequest request;
  request.set_id(job.id());
  request.mutable_job()->set_delay(5);
  request.mutable_job()->set_name("ignored: not in the mask");
  request.mutable_update_mask()->add_paths("delay");
  const absl::StatusOr<v2::Job> patched = manager_->UpdateJob(request);
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ(patched->delay(), 5);
  EXPECT_EQ(patched->name(), "Populate captures for collection 111");
  EXPECT_EQ(patched->source_image_collection().id(), 111);
  // A stage-less job gets its setup stages on save (spec 3.4).
  ASSERT_EQ(patched->progress().stages_size(), 1);
  EXPECT_EQ(patched->progress().stages(0).key(), "delay");

  request.mutable_update_mask()->add_paths("status");
  EXPECT_EQ(manager_->UpdateJob(request).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JobManagerTest, PatchOfAWaitingJobMovesItToTheRightQueue) {
  v2::CreateJobRequest request = SeedRequest();
  request.set_start_now(true);
  const v2::Job job = Create(request);
  EXPECT_EQ(store_->GetLease(job.id())->holder, "");

  // With a delay, the runner's queue; the job stays PENDING.
  v2::UpdateJobRequest patch;
  patch.set_id(job.id());
  patch.mutable_job()->set_delay(3);
  patch.mutable_update_mask()->add_paths("delay");
  const absl::StatusOr<v2::Job> patched = manager_->UpdateJob(patch);
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ(patched->status(), v2::PENDING);
  EXPECT_EQ(store_->GetLease(job.id())->holder, kRunnerHolder);
}

TEST_F(JobManagerTest, ARunningJobKeepsItsTypeDelayAndPipeline) {
  const v2::Job job = Create(SeedRequest());
  ASSERT_TRUE(store_
                  ->MutateJob(job.id(),
                              [](JobMutation& mutation) {
                                mutation.job.set_status(v2::STARTED);
                                return absl::OkStatus();
                              })
                  .ok());
  v2::UpdateJobRequest request;
  request.set_id(job.id());
  request.mutable_job()->set_job_type_key("unknown");
  request.mutable_update_mask()->add_paths("job_type_key");
  absl::StatusOr<v2::Job> refused = manager_->UpdateJob(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            "cannot change job_type_key of job 1 while it is STARTED");

  // A new name is fine, and adds no setup stage.
  v2::UpdateJobRequest rename;
  rename.set_id(job.id());
  rename.mutable_job()->set_name("Renamed while running");
  rename.mutable_update_mask()->add_paths("name");
  absl::StatusOr<v2::Job> renamed = manager_->UpdateJob(rename);
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ(renamed->name(), "Renamed while running");
  EXPECT_EQ(renamed->progress().stages_size(), 0);
}

TEST_F(JobManagerTest, PatchRefusesAnUnknownPipeline) {
  const v2::Job job = Create(SeedRequest());
  v2::UpdateJobRequest request;
  request.set_id(job.id());
  request.mutable_job()->set_pipeline_id(12);
  request.mutable_update_mask()->add_paths("pipeline_id");
  EXPECT_EQ(Violation(manager_->UpdateJob(request).status()),
            "pipeline_id: Invalid pk \"12\" - object does not exist.");
  EXPECT_FALSE(store_->GetJob(job.id())->has_pipeline());
}

// ---- List ----

TEST_F(JobManagerTest, ListFiltersOrdersAndPages) {
  for (int i = 0; i < 12; ++i) {
    clock_.Advance(absl::Seconds(1));
    v2::CreateJobRequest request = SeedRequest();
    request.mutable_job()->set_name(absl::StrCat("Job ", i));
    if (i % 3 == 0) request.mutable_job()->set_pipeline_id(3);
    Create(request);
  }

  v2::ListJobsRequest request;
  absl::StatusOr<v2::ListJobsResponse> page = manager_->ListJobs(request);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->count(), 12);
  EXPECT_EQ(page->limit(), 10);
  ASSERT_EQ(page->results_size(), 10);
  EXPECT_EQ(page->results(0).name(), "Job 11");  // Newest first.
  EXPECT_FALSE(page->results(0).has_result());
  EXPECT_THAT(page->user_permissions(), ElementsAre("create"));

  request.set_pipeline(3);
  request.set_ordering("name");
  request.set_limit(2);
  request.set_offset(1);
  page = manager_->ListJobs(request);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->count(), 4);
  ASSERT_EQ(page->results_size(), 2);
  EXPECT_EQ(page->results(0).name(), "Job 3");
  EXPECT_EQ(page->results(1).name(), "Job 6");

  v2::ListJobsRequest search;
  search.set_search("job, 1");
  page = manager_->ListJobs(search);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->count(), 3);  // Job 1, Job 10, Job 11.
}

TEST_F(JobManagerTest, ListRefusesBadFilterValuesNamingThem) {
  struct Case {
    std::function<void(v2::ListJobsRequest&)> set;
    std::string violation;
  };
  const std::vector<Case> cases = {
      {[](v2::ListJobsRequest& r) { r.set_status("running"); },
       "status: Select a valid choice. running is not one of the available "
       "choices."},
      {[](v2::ListJobsRequest& r) { r.set_job_type_key("x"); },
       "job_type_key: Select a valid choice. x is not one of the available "
       "choices."},
      {[](v2::ListJobsRequest& r) { r.set_dispatch_mode("batch"); },
       "dispatch_mode: Select a valid choice. batch is not one of the "
       "available choices."},
      {[](v2::ListJobsRequest& r) { r.set_project(99); },
       "project: Select a valid choice. That choice is not one of the "
       "available choices."},
      {[](v2::ListJobsRequest& r) { r.set_pipeline(99); },
       "pipeline: Select a valid choice. That choice is not one of the "
       "available choices."},
      {[](v2::ListJobsRequest& r) { r.set_limit(-1); },
       "limit: Ensure this value is greater than or equal to 0."},
      {[](v2::ListJobsRequest& r) { r.set_offset(-5); },
       "offset: Ensure this value is greater than or equal to 0."},
      {[](v2::ListJobsRequest& r) { r.set_cutoff_hours(-1); },
       "cutoff_hours: Ensure this value is greater than or equal to 0."},
      {[](v2::ListJobsRequest& r) { r.set_project_id(-1); },
       "project_id: Ensure this value is greater than or equal to 0."},
  };
  for (const Case& c : cases) {
    v2::ListJobsRequest request;
    c.set(request);
    EXPECT_EQ(Violation(manager_->ListJobs(request).status()), c.violation);
  }
}

TEST_F(JobManagerTest, ListBoundsSearchAndIgnoresRepeatedOrdering) {
  Create(SeedRequest());
  v2::ListJobsRequest request;
  std::string terms;
  for (int i = 0; i < 65; ++i) absl::StrAppend(&terms, "t", i, " ");
  request.set_search(terms);
  EXPECT_EQ(Violation(manager_->ListJobs(request).status()),
            "search: Use at most 64 terms.");
  request.set_search(std::string(1001, 'x'));
  EXPECT_EQ(Violation(manager_->ListJobs(request).status()),
            "search: Each term may have at most 1000 bytes.");

  // 3000 ordering fields, all repeats of two: the query stays small.
  v2::ListJobsRequest ordered;
  std::string ordering;
  for (int i = 0; i < 1500; ++i) absl::StrAppend(&ordering, "name,-status,");
  ordered.set_ordering(ordering);
  absl::StatusOr<v2::ListJobsResponse> page = manager_->ListJobs(ordered);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->count(), 1);
}

TEST_F(JobManagerTest, CreateRefusesADelayPast32Bits) {
  v2::CreateJobRequest request = SeedRequest();
  request.mutable_job()->set_delay(2147483648);
  EXPECT_EQ(Violation(manager_->CreateJob(request).status()),
            "delay: Ensure this value is less than or equal to 2147483647.");
}

TEST_F(JobManagerTest, ListIdsOnlyDefaultsToOneItemPerPage) {
  for (int i = 0; i < 3; ++i) Create(SeedRequest());
  v2::ListJobsRequest request;
  request.set_ids_only(true);
  absl::StatusOr<v2::ListJobsResponse> page = manager_->ListJobs(request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->count(), 3);
  EXPECT_EQ(page->results_size(), 1);
  request.set_limit(10);
  EXPECT_EQ(manager_->ListJobs(request)->results_size(), 3);
}

TEST_F(JobManagerTest, ListActiveProjectRestrictsOnlyWhenItExists) {
  Create(SeedRequest());
  v2::CreateJobRequest other = SeedRequest();
  other.mutable_job()->set_project_id(17);
  Create(other);

  v2::ListJobsRequest request;
  request.set_project_id(17);
  EXPECT_EQ(manager_->ListJobs(request)->count(), 1);
  request.set_project_id(999);
  EXPECT_EQ(manager_->ListJobs(request)->count(), 2);
  request.set_project_id(0);
  EXPECT_EQ(manager_->ListJobs(request)->count(), 2);
  request.set_project_id(17);
  request.set_project(16);
  EXPECT_EQ(manager_->ListJobs(request)->count(), 0);
}

// ---- Catalogue ----

TEST_F(JobManagerTest, ImportNamesTheBadRecord) {
  v2::Catalog catalog;
  v2::CaptureCollection* collection = catalog.add_capture_collections();
  collection->set_id(200);
  collection->set_name("Odd");
  collection->set_method("alphabetical");
  collection->set_project_id(16);
  const absl::StatusOr<v2::ImportCatalogResponse> imported =
      manager_->ImportCatalog(catalog);
  EXPECT_EQ(Violation(imported.status()),
            "capture_collections[0].method: unknown sampling method "
            "\"alphabetical\"");
  EXPECT_EQ(manager_->GetCaptureCollection(200).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobManagerTest, RecordsAreDecorated) {
  const absl::StatusOr<v2::CaptureCollection> collection =
      manager_->GetCaptureCollection(111);
  ASSERT_TRUE(collection.ok());
  EXPECT_EQ(collection->details(), "/api/v2/captures/collections/111/");
  EXPECT_EQ(manager_->GetProject(16)->details(), "/api/v2/projects/16/");
  EXPECT_EQ(manager_->GetPipeline(3)->details(), "/api/v2/ml/pipelines/3/");
  EXPECT_EQ(manager_->GetDeployment(5)->details(), "/api/v2/deployments/5/");
  EXPECT_EQ(manager_->GetCapture(9)->details(), "/api/v2/captures/9/");
}

// ---- Concurrency (D19) ----

TEST_F(JobManagerTest, ConcurrentCancelsAndRunsLeaveOneConsistentState) {
  const v2::Job job = Create(SeedRequest());
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([this, &job, i] {
      for (int n = 0; n < 20; ++n) {
        if (i % 2 == 0) {
          (void)manager_->RunJob(job.id());
        } else {
          (void)manager_->CancelJob(job.id());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  // Whatever the interleaving, the job is PENDING or REVOKED and its log
  // holds one line per status change that was written.
  const absl::StatusOr<v2::Job> stored = store_->GetJob(job.id());
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->status() == v2::PENDING ||
              stored->status() == v2::REVOKED)
      << v2::JobStatus_Name(stored->status());
  EXPECT_EQ(stored->progress().summary().status(), stored->status());
}

}  // namespace
}  // namespace jobline
