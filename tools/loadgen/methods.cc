#include "tools/loadgen/methods.h"

#include <string>
#include <utility>

#include "jobline/v2/jobs.pb.h"
#include "jobline/v2/worker.pb.h"

namespace jobline {
namespace loadgen {
namespace {

// Page size of `list`.
constexpr int kListPageSize = 20;
// How long `cycle`'s LeaseJobs waits for a job when none is pending yet
// (another operation may have leased the one just created; its own is
// then on the way).
constexpr int kLeaseWaitSeconds = 1;
constexpr int kLeaseSeconds = 60;
constexpr char kWorkerId[] = "jobline_loadgen";
constexpr char kCycleStage[] = "Load test";

void StartGet(const MethodParams& params, const Caller& caller,
              DoneCallback done) {
  v2::GetJobRequest request;
  request.set_id(params.job_id);
  caller.Unary(caller.jobs(), &v2::JobService::Stub::PrepareAsyncGetJob,
               request,
               [done](const grpc::Status& status, v2::Job&) { done(status); });
}

v2::CreateJobRequest CreateRequest(const MethodParams& params,
                                   absl::string_view name) {
  v2::CreateJobRequest request;
  request.mutable_job()->set_name(std::string(name));
  request.mutable_job()->set_project_id(params.project_id);
  return request;
}

void StartCreate(const MethodParams& params, const Caller& caller,
                 DoneCallback done) {
  caller.Unary(caller.jobs(), &v2::JobService::Stub::PrepareAsyncCreateJob,
               CreateRequest(params, "Load test: create"),
               [done](const grpc::Status& status, v2::Job&) { done(status); });
}

void StartList(const MethodParams& params, const Caller& caller,
               DoneCallback done) {
  v2::ListJobsRequest request;
  request.set_status(params.list_status);
  request.set_limit(kListPageSize);
  caller.Unary(caller.jobs(), &v2::JobService::Stub::PrepareAsyncListJobs,
               request,
               [done](const grpc::Status& status, v2::ListJobsResponse&) {
                 done(status);
               });
}

// The last step of `cycle`: finishes `lease` with SUCCESS, its one stage
// complete.
void FinishLease(const Caller& caller, const v2::Lease& lease,
                 DoneCallback done) {
  v2::FinishJobRequest request;
  request.set_lease_id(lease.lease_id());
  request.set_job_id(lease.job().id());
  request.set_status(v2::SUCCESS);
  v2::StageUpdate* stage = request.add_stages();
  stage->set_name(kCycleStage);
  stage->set_status(v2::SUCCESS);
  stage->set_progress(1.0);
  caller.Unary(caller.workers(),
               &v2::WorkerService::Stub::PrepareAsyncFinishJob, request,
               [done](const grpc::Status& status, v2::FinishJobResponse&) {
                 done(status);
               });
}

// The second step of `cycle`: leases one job of kCycleJobType.
void LeaseOne(const Caller& caller, DoneCallback done) {
  v2::LeaseJobsRequest request;
  request.set_worker_id(kWorkerId);
  request.add_job_types(std::string(kCycleJobType));
  request.set_max_jobs(1);
  request.mutable_lease_duration()->set_seconds(kLeaseSeconds);
  request.mutable_wait()->set_seconds(kLeaseWaitSeconds);
  caller.Unary(
      caller.workers(), &v2::WorkerService::Stub::PrepareAsyncLeaseJobs,
      request,
      [&caller, done](const grpc::Status& status,
                      v2::LeaseJobsResponse& response) {
        if (!status.ok()) return done(status);
        if (response.leases_size() == 0) {
          return done(grpc::Status(
              grpc::StatusCode::FAILED_PRECONDITION,
              "LeaseJobs leased nothing although a job was created for it "
              "(does another worker lease this job type?)"));
        }
        FinishLease(caller, response.leases(0), done);
      });
}

void StartCycle(const MethodParams& params, const Caller& caller,
                DoneCallback done) {
  v2::CreateJobRequest request = CreateRequest(params, "Load test: cycle");
  request.mutable_job()->set_job_type_key(std::string(kCycleJobType));
  request.set_start_now(true);
  caller.Unary(caller.jobs(), &v2::JobService::Stub::PrepareAsyncCreateJob,
               request, [&caller, done](const grpc::Status& status, v2::Job&) {
                 if (!status.ok()) return done(status);
                 LeaseOne(caller, done);
               });
}

constexpr Method kMethods[] = {
    {"get", "JobService.GetJob of --job_id (default: a job made first)", true,
     &StartGet},
    {"create", "JobService.CreateJob of a job in --project_id", false,
     &StartCreate},
    {"list", "JobService.ListJobs with status --list_status, 20 a page", false,
     &StartList},
    {"cycle",
     "CreateJob (start_now) + WorkerService.LeaseJobs + FinishJob SUCCESS",
     false, &StartCycle},
};

}  // namespace

absl::Span<const Method> Methods() { return kMethods; }

const Method* FindMethod(absl::string_view name) {
  for (const Method& method : kMethods) {
    if (method.name == name) return &method;
  }
  return nullptr;
}

}  // namespace loadgen
}  // namespace jobline
