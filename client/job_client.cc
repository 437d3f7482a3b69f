#include "client/job_client.h"

#include <utility>

#include "client/status_util.h"
#include "google/protobuf/empty.pb.h"
#include "grpc/grpc.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace jobline {
namespace {

// Makes one unary call through `method` and converts its status.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> Call(Stub& stub,
                              grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                           const Request&,
                                                           Response*),
                              grpc::ClientContext& context,
                              const Request& request) {
  Response response;
  const grpc::Status status = (stub.*method)(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

}  // namespace

JobClient::JobClient(std::shared_ptr<grpc::Channel> channel)
    : JobClient(channel, Options()) {}

JobClient::JobClient(std::shared_ptr<grpc::Channel> channel, Options options)
    : JobClient(v2::JobService::NewStub(channel),
                v2::CatalogService::NewStub(channel), options,
                v2::OperatorService::NewStub(channel)) {}

JobClient::JobClient(
    std::unique_ptr<v2::JobService::StubInterface> jobs,
    std::unique_ptr<v2::CatalogService::StubInterface> catalog, Options options,
    std::unique_ptr<v2::OperatorService::StubInterface> operators)
    : jobs_(std::move(jobs)),
      catalog_(std::move(catalog)),
      operators_(std::move(operators)),
      options_(options) {}

std::shared_ptr<grpc::Channel> JobClient::Connect(const std::string& address) {
  return Connect(address, ConnectOptions());
}

std::shared_ptr<grpc::Channel> JobClient::Connect(
    const std::string& address, const ConnectOptions& options) {
  // A job with many long log lines can exceed gRPC's 4 MiB default.
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  if (options.own_connections) {
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   arguments);
}

std::unique_ptr<grpc::ClientContext> JobClient::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
  return context;
}

absl::StatusOr<v2::Job> JobClient::CreateJob(const v2::JobInput& input,
                                             bool start_now) const {
  v2::CreateJobRequest request;
  *request.mutable_job() = input;
  request.set_start_now(start_now);
  return Call(*jobs_, &v2::JobService::StubInterface::CreateJob, *NewContext(),
              request);
}

absl::StatusOr<v2::Job> JobClient::GetJob(
    int64_t id, std::optional<int32_t> logs_limit) const {
  v2::GetJobRequest request;
  request.set_id(id);
  if (logs_limit.has_value()) request.set_logs_limit(*logs_limit);
  return Call(*jobs_, &v2::JobService::StubInterface::GetJob, *NewContext(),
              request);
}

absl::StatusOr<v2::ListJobsResponse> JobClient::ListJobs(
    const v2::ListJobsRequest& request) const {
  return Call(*jobs_, &v2::JobService::StubInterface::ListJobs, *NewContext(),
              request);
}

absl::StatusOr<v2::Job> JobClient::UpdateJob(
    int64_t id, const v2::JobInput& input,
    const std::optional<google::protobuf::FieldMask>& update_mask) const {
  v2::UpdateJobRequest request;
  request.set_id(id);
  *request.mutable_job() = input;
  if (update_mask.has_value()) *request.mutable_update_mask() = *update_mask;
  return Call(*jobs_, &v2::JobService::StubInterface::UpdateJob, *NewContext(),
              request);
}

absl::Status JobClient::DeleteJob(int64_t id) const {
  v2::DeleteJobRequest request;
  request.set_id(id);
  return Call(*jobs_, &v2::JobService::StubInterface::DeleteJob, *NewContext(),
              request)
      .status();
}

absl::StatusOr<v2::Job> JobClient::RunJob(int64_t id) const {
  v2::RunJobRequest request;
  request.set_id(id);
  return Call(*jobs_, &v2::JobService::StubInterface::RunJob, *NewContext(),
              request);
}

absl::StatusOr<v2::Job> JobClient::RetryJob(int64_t id) const {
  v2::RetryJobRequest request;
  request.set_id(id);
  return Call(*jobs_, &v2::JobService::StubInterface::RetryJob, *NewContext(),
              request);
}

absl::StatusOr<v2::Job> JobClient::CancelJob(int64_t id) const {
  v2::CancelJobRequest request;
  request.set_id(id);
  return Call(*jobs_, &v2::JobService::StubInterface::CancelJob, *NewContext(),
              request);
}

absl::Status JobClient::Watch(int64_t id, int64_t after_sequence,
                              const WatchCallback& on_message,
                              std::optional<int32_t> logs_limit) const {
  v2::WatchProgressRequest request;
  request.set_job_id(id);
  request.set_after_sequence(after_sequence);
  if (logs_limit.has_value()) request.set_logs_limit(*logs_limit);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderInterface<v2::WatchProgressResponse>>
      reader = jobs_->WatchProgress(&context, request);

  v2::WatchProgressResponse message;
  while (reader->Read(&message)) {
    if (on_message(message)) continue;

    // Stopped by the caller: cancel, and let the reader run dry.
    context.TryCancel();
    while (reader->Read(&message)) {
    }
    const grpc::Status cancelled = reader->Finish();
    (void)cancelled;
    return absl::CancelledError("the watch was stopped");
  }
  return FromGrpcStatus(reader->Finish());
}

absl::StatusOr<v2::ImportCatalogResponse> JobClient::ImportCatalog(
    const v2::Catalog& catalog) const {
  v2::ImportCatalogRequest request;
  *request.mutable_catalog() = catalog;
  return Call(*catalog_, &v2::CatalogService::StubInterface::ImportCatalog,
              *NewContext(), request);
}

absl::StatusOr<v2::Project> JobClient::GetProject(int64_t id) const {
  v2::GetRecordRequest request;
  request.set_id(id);
  return Call(*catalog_, &v2::CatalogService::StubInterface::GetProject,
              *NewContext(), request);
}

absl::StatusOr<v2::Deployment> JobClient::GetDeployment(int64_t id) const {
  v2::GetRecordRequest request;
  request.set_id(id);
  return Call(*catalog_, &v2::CatalogService::StubInterface::GetDeployment,
              *NewContext(), request);
}

absl::StatusOr<v2::CaptureCollection> JobClient::GetCaptureCollection(
    int64_t id) const {
  v2::GetRecordRequest request;
  request.set_id(id);
  return Call(*catalog_,
              &v2::CatalogService::StubInterface::GetCaptureCollection,
              *NewContext(), request);
}

absl::StatusOr<v2::Capture> JobClient::GetCapture(int64_t id) const {
  v2::GetRecordRequest request;
  request.set_id(id);
  return Call(*catalog_, &v2::CatalogService::StubInterface::GetCapture,
              *NewContext(), request);
}

absl::StatusOr<v2::Pipeline> JobClient::GetPipeline(int64_t id) const {
  v2::GetRecordRequest request;
  request.set_id(id);
  return Call(*catalog_, &v2::CatalogService::StubInterface::GetPipeline,
              *NewContext(), request);
}

absl::StatusOr<v2::ReapStaleJobsResponse> JobClient::ReapStaleJobs(
    int32_t minutes, bool dry_run) const {
  if (operators_ == nullptr) {
    return absl::UnimplementedError("this client has no operator stub");
  }
  v2::ReapStaleJobsRequest request;
  request.set_minutes(minutes);
  request.set_dry_run(dry_run);
  return Call(*operators_, &v2::OperatorService::StubInterface::ReapStaleJobs,
              *NewContext(), request);
}

}  // namespace jobline
