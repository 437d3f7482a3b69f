#include "server/job_service_impl.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "glog/logging.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "server/decode_error_interceptor.h"
#include "server/status_util.h"

namespace jobline {
namespace {

// Moves the value of `result` into `response`, or maps its error.
template <typename Message>
grpc::Status Answer(absl::StatusOr<Message> result, Message* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

// ---- JobService -------------------------------------------------------------

grpc::Status JobServiceImpl::CreateJob(grpc::ServerContext* /*context*/,
                                       const v2::CreateJobRequest* request,
                                       v2::Job* response) {
  grpc::Status status = Answer(manager_->CreateJob(*request), response);
  if (status.ok()) {
    VLOG(1) << "created job " << response->id() << " ("
            << response->job_type().key() << ")";
  }
  return status;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* /*context*/,
                                    const v2::GetJobRequest* request,
                                    v2::Job* response) {
  return Answer(manager_->GetJob(*request), response);
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* /*context*/,
                                      const v2::ListJobsRequest* request,
                                      v2::ListJobsResponse* response) {
  return Answer(manager_->ListJobs(*request), response);
}

grpc::Status JobServiceImpl::UpdateJob(grpc::ServerContext* /*context*/,
                                       const v2::UpdateJobRequest* request,
                                       v2::Job* response) {
  return Answer(manager_->UpdateJob(*request), response);
}

grpc::Status JobServiceImpl::DeleteJob(grpc::ServerContext* /*context*/,
                                       const v2::DeleteJobRequest* request,
                                       google::protobuf::Empty* /*response*/) {
  return ToGrpcStatus(manager_->DeleteJob(*request));
}

grpc::Status JobServiceImpl::RunJob(grpc::ServerContext* /*context*/,
                                    const v2::RunJobRequest* request,
                                    v2::Job* response) {
  return Answer(manager_->RunJob(*request), response);
}

grpc::Status JobServiceImpl::RetryJob(grpc::ServerContext* /*context*/,
                                      const v2::RetryJobRequest* request,
                                      v2::Job* response) {
  return Answer(manager_->RetryJob(*request), response);
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* /*context*/,
                                       const v2::CancelJobRequest* request,
                                       v2::Job* response) {
  return Answer(manager_->CancelJob(*request), response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* JobServiceImpl::WatchProgress(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  // A stream that ends at once.
  class Ended final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
   public:
    explicit Ended(grpc::Status status) { Finish(std::move(status)); }
    void OnDone() override { delete this; }
  };
  if (hub_ == nullptr) {
    return new Ended(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                  "this server does not serve WatchProgress"));
  }
  v2::WatchProgressRequest parsed;
  grpc::ByteBuffer bytes(*request);  // Deserialize consumes its buffer.
  if (!grpc::SerializationTraits<v2::WatchProgressRequest>::Deserialize(&bytes,
                                                                        &parsed)
           .ok()) {
    // Worded as the typed methods' decode errors.
    return new Ended(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        UndecodableRequestMessage("/jobline.v2.JobService/WatchProgress")));
  }
  return hub_->Watch(context, parsed);
}

// ---- CatalogService ---------------------------------------------------------

grpc::Status CatalogServiceImpl::ImportCatalog(
    grpc::ServerContext* /*context*/, const v2::ImportCatalogRequest* request,
    v2::ImportCatalogResponse* response) {
  return Answer(manager_->ImportCatalog(request->catalog()), response);
}

grpc::Status CatalogServiceImpl::GetProject(grpc::ServerContext* /*context*/,
                                            const v2::GetRecordRequest* request,
                                            v2::Project* response) {
  return Answer(manager_->GetProject(request->id()), response);
}

grpc::Status CatalogServiceImpl::GetDeployment(
    grpc::ServerContext* /*context*/, const v2::GetRecordRequest* request,
    v2::Deployment* response) {
  return Answer(manager_->GetDeployment(request->id()), response);
}

grpc::Status CatalogServiceImpl::GetCaptureCollection(
    grpc::ServerContext* /*context*/, const v2::GetRecordRequest* request,
    v2::CaptureCollection* response) {
  return Answer(manager_->GetCaptureCollection(request->id()), response);
}

grpc::Status CatalogServiceImpl::GetCapture(grpc::ServerContext* /*context*/,
                                            const v2::GetRecordRequest* request,
                                            v2::Capture* response) {
  return Answer(manager_->GetCapture(request->id()), response);
}

grpc::Status CatalogServiceImpl::GetPipeline(
    grpc::ServerContext* /*context*/, const v2::GetRecordRequest* request,
    v2::Pipeline* response) {
  return Answer(manager_->GetPipeline(request->id()), response);
}

grpc::Status CatalogServiceImpl::SetCollectionCaptures(
    grpc::ServerContext* /*context*/,
    const v2::SetCollectionCapturesRequest* request,
    v2::SetCollectionCapturesResponse* response) {
  absl::StatusOr<v2::SetCollectionCapturesResponse> result =
      manager_->SetCollectionCaptures(*request);
  return Answer(std::move(result), response);
}

// ---- WorkerService ----------------------------------------------------------

grpc::Status WorkerServiceImpl::LeaseJobs(grpc::ServerContext* context,
                                          const v2::LeaseJobsRequest* request,
                                          v2::LeaseJobsResponse* response) {
  const absl::Time deadline = absl::FromChrono(context->deadline());
  return Answer(protocol_->LeaseJobs(
                    *request,
                    [context, deadline] {
                      return context->IsCancelled() || absl::Now() >= deadline;
                    },
                    deadline),
                response);
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* /*context*/,
                                          const v2::HeartbeatRequest* request,
                                          v2::HeartbeatResponse* response) {
  return Answer(protocol_->Heartbeat(*request), response);
}

grpc::Status WorkerServiceImpl::ReportProgress(
    grpc::ServerContext* /*context*/, const v2::ReportProgressRequest* request,
    v2::ReportProgressResponse* response) {
  return Answer(protocol_->ReportProgress(*request), response);
}

grpc::Status WorkerServiceImpl::FinishJob(grpc::ServerContext* /*context*/,
                                          const v2::FinishJobRequest* request,
                                          v2::FinishJobResponse* response) {
  return Answer(protocol_->FinishJob(*request), response);
}

// ---- OperatorService --------------------------------------------------------

grpc::Status OperatorServiceImpl::ReapStaleJobs(
    grpc::ServerContext* /*context*/, const v2::ReapStaleJobsRequest* request,
    v2::ReapStaleJobsResponse* response) {
  if (request->minutes() < 0) {
    return ToGrpcStatus(InvalidFieldError(
        "minutes", "Ensure this value is greater than or equal to 0."));
  }
  const int minutes = request->has_minutes() ? request->minutes() : 10;
  return Answer(
      protocol_->ReapStaleJobs(absl::Minutes(minutes), request->dry_run()),
      response);
}

}  // namespace jobline
