// The gRPC services of Jobline: JobService, CatalogService, WorkerService
// and OperatorService.
//
// All are thin adapters over JobManager (server/job_manager.h) or
// WorkerProtocol (server/worker_protocol.h), where the rules live: each method
// calls the manager and turns its absl::Status into the gRPC answer with
// ToGrpcStatus(), the one mapping of errors to gRPC codes
// (server/status_util.h).
//
// WatchProgress is a raw callback (reactor) method served by WatchHub
// (server/watch_hub.h), so open streams hold no thread of the synchronous
// pool and a message shared by many watchers is serialized once.
//
// Thread safety: safe for concurrent use by gRPC's thread pool; the
// services keep no state beyond the manager, which is itself thread-safe.

#ifndef JOBLINE_SERVER_JOB_SERVICE_IMPL_H_
#define JOBLINE_SERVER_JOB_SERVICE_IMPL_H_

#include "google/protobuf/empty.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "jobline/v2/catalog.grpc.pb.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "server/job_manager.h"
#include "server/watch_hub.h"
#include "server/worker_protocol.h"

namespace jobline {

class JobServiceImpl final
    : public v2::JobService::WithRawCallbackMethod_WatchProgress<
          v2::JobService::Service> {
 public:
  // `manager` and `hub` are not owned and must outlive the service. Without
  // a hub, WatchProgress answers UNIMPLEMENTED.
  explicit JobServiceImpl(JobManager* manager, WatchHub* hub = nullptr)
      : manager_(manager), hub_(hub) {}

  grpc::Status CreateJob(grpc::ServerContext* context,
                         const v2::CreateJobRequest* request,
                         v2::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context,
                      const v2::GetJobRequest* request,
                      v2::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context,
                        const v2::ListJobsRequest* request,
                        v2::ListJobsResponse* response) override;
  grpc::Status UpdateJob(grpc::ServerContext* context,
                         const v2::UpdateJobRequest* request,
                         v2::Job* response) override;
  grpc::Status DeleteJob(grpc::ServerContext* context,
                         const v2::DeleteJobRequest* request,
                         google::protobuf::Empty* response) override;
  grpc::Status RunJob(grpc::ServerContext* context,
                      const v2::RunJobRequest* request,
                      v2::Job* response) override;
  grpc::Status RetryJob(grpc::ServerContext* context,
                        const v2::RetryJobRequest* request,
                        v2::Job* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context,
                         const v2::CancelJobRequest* request,
                         v2::Job* response) override;
  // Raw: WatchHub writes each message serialized once for all its
  // watchers. A request that does not parse is INVALID_ARGUMENT.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchProgress(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;

 private:
  JobManager* const manager_;  // Not owned.
  WatchHub* const hub_;        // Not owned; may be null.
};

class CatalogServiceImpl final : public v2::CatalogService::Service {
 public:
  // `manager` is not owned and must outlive the service.
  explicit CatalogServiceImpl(JobManager* manager) : manager_(manager) {}

  grpc::Status ImportCatalog(grpc::ServerContext* context,
                             const v2::ImportCatalogRequest* request,
                             v2::ImportCatalogResponse* response) override;
  grpc::Status GetProject(grpc::ServerContext* context,
                          const v2::GetRecordRequest* request,
                          v2::Project* response) override;
  grpc::Status GetDeployment(grpc::ServerContext* context,
                             const v2::GetRecordRequest* request,
                             v2::Deployment* response) override;
  grpc::Status GetCaptureCollection(grpc::ServerContext* context,
                                    const v2::GetRecordRequest* request,
                                    v2::CaptureCollection* response) override;
  grpc::Status GetCapture(grpc::ServerContext* context,
                          const v2::GetRecordRequest* request,
                          v2::Capture* response) override;
  grpc::Status GetPipeline(grpc::ServerContext* context,
                           const v2::GetRecordRequest* request,
                           v2::Pipeline* response) override;
  grpc::Status SetCollectionCaptures(
      grpc::ServerContext* context,
      const v2::SetCollectionCapturesRequest* request,
      v2::SetCollectionCapturesResponse* response) override;

 private:
  JobManager* const manager_;  // Not owned.
};

class WorkerServiceImpl final : public v2::WorkerService::Service {
 public:
  // `protocol` is not owned and must outlive the service.
  explicit WorkerServiceImpl(WorkerProtocol* protocol) : protocol_(protocol) {}

  grpc::Status LeaseJobs(grpc::ServerContext* context,
                         const v2::LeaseJobsRequest* request,
                         v2::LeaseJobsResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const v2::HeartbeatRequest* request,
                         v2::HeartbeatResponse* response) override;
  grpc::Status ReportProgress(grpc::ServerContext* context,
                              const v2::ReportProgressRequest* request,
                              v2::ReportProgressResponse* response) override;
  grpc::Status FinishJob(grpc::ServerContext* context,
                         const v2::FinishJobRequest* request,
                         v2::FinishJobResponse* response) override;

 private:
  WorkerProtocol* const protocol_;  // Not owned.
};

class OperatorServiceImpl final : public v2::OperatorService::Service {
 public:
  // `protocol` is not owned and must outlive the service.
  explicit OperatorServiceImpl(WorkerProtocol* protocol)
      : protocol_(protocol) {}

  grpc::Status ReapStaleJobs(grpc::ServerContext* context,
                             const v2::ReapStaleJobsRequest* request,
                             v2::ReapStaleJobsResponse* response) override;

 private:
  WorkerProtocol* const protocol_;  // Not owned.
};

}  // namespace jobline

#endif  // JOBLINE_SERVER_JOB_SERVICE_IMPL_H_
