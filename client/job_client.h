// JobClient: a synchronous C++ client of Jobline's JobService,
// CatalogService and OperatorService.
//
// Every method but Watch makes one unary call with the client's deadline and
// returns the server's answer, or the server's error as an absl::Status
// (same code and message; a field error carries its google.rpc.BadRequest,
// see client/status_util.h). A call that cannot reach the server answers
// UNAVAILABLE; one that outlives the deadline answers DEADLINE_EXCEEDED.
// Watch follows one server stream for as long as it lasts.
//
// Thread safety: a JobClient is safe for concurrent use from many threads
// (the gRPC stubs are); it holds no mutable state of its own.
//
// Example:
//   JobClient client(JobClient::Connect("localhost:50051"));
//   v2::JobInput input;
//   input.set_name("Nightly batch");
//   input.set_project_id(16);
//   absl::StatusOr<v2::Job> job = client.CreateJob(input, false);

#ifndef JOBLINE_CLIENT_JOB_CLIENT_H_
#define JOBLINE_CLIENT_JOB_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"
#include "grpcpp/channel.h"
#include "jobline/v2/catalog.grpc.pb.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"

namespace jobline {

class JobClient {
 public:
  struct Options {
    // Deadline of each call, counted from the moment it starts.
    absl::Duration deadline = absl::Seconds(10);
  };

  // Calls the services over `channel`, which must not be null.
  explicit JobClient(std::shared_ptr<grpc::Channel> channel);
  JobClient(std::shared_ptr<grpc::Channel> channel, Options options);

  // Calls the services through the given stubs (for example gMock stubs in
  // tests). `jobs` and `catalog` must not be null; without `operators`,
  // ReapStaleJobs answers UNIMPLEMENTED. The client owns them.
  JobClient(
      std::unique_ptr<v2::JobService::StubInterface> jobs,
      std::unique_ptr<v2::CatalogService::StubInterface> catalog,
      Options options,
      std::unique_ptr<v2::OperatorService::StubInterface> operators = nullptr);

  JobClient(const JobClient&) = delete;
  JobClient& operator=(const JobClient&) = delete;

  struct ConnectOptions {
    // By default channels to the same address share their connections, and
    // with them the wait before the next connection attempt after a failed
    // one (up to two minutes), during which calls fail at once. A channel
    // with its own connections connects when it is first used, whatever
    // other channels went through: what a caller that retries on its own
    // schedule wants.
    bool own_connections = false;
  };

  // An insecure channel to `address` ("host:port"). Connecting is lazy: an
  // unreachable server shows up as UNAVAILABLE on the first call.
  static std::shared_ptr<grpc::Channel> Connect(const std::string& address);
  static std::shared_ptr<grpc::Channel> Connect(const std::string& address,
                                                const ConnectOptions& options);

  // Called with each message of a watch, in stream order; returning false
  // stops the watch.
  using WatchCallback =
      std::function<bool(const v2::WatchProgressResponse& message)>;

  // Creates a job; with `start_now` it is enqueued at once.
  absl::StatusOr<v2::Job> CreateJob(const v2::JobInput& input,
                                    bool start_now) const;

  // One job with at most `logs_limit` newest log lines (server default
  // 1000).
  absl::StatusOr<v2::Job> GetJob(
      int64_t id, std::optional<int32_t> logs_limit = std::nullopt) const;

  absl::StatusOr<v2::ListJobsResponse> ListJobs(
      const v2::ListJobsRequest& request) const;

  // Without `update_mask` a full replace (PUT); with it a patch of the
  // named fields (PATCH).
  absl::StatusOr<v2::Job> UpdateJob(
      int64_t id, const v2::JobInput& input,
      const std::optional<google::protobuf::FieldMask>& update_mask =
          std::nullopt) const;

  absl::Status DeleteJob(int64_t id) const;
  absl::StatusOr<v2::Job> RunJob(int64_t id) const;
  absl::StatusOr<v2::Job> RetryJob(int64_t id) const;
  absl::StatusOr<v2::Job> CancelJob(int64_t id) const;

  // Follows job `id` (JobService.WatchProgress): first its current document,
  // or with `after_sequence` > 0 the changes after that sequence, then one
  // message per change until the job is final. Calls `on_message` on the
  // calling thread for each message and returns when the stream ends:
  //   OK                 after the message with a final status;
  //   NOT_FOUND          no such job, or it was deleted while watched;
  //   INVALID_ARGUMENT   a negative `after_sequence`, a bad `logs_limit`;
  //   RESOURCE_EXHAUSTED the server's watcher limits are reached;
  //   UNAVAILABLE        the server cannot be reached, shuts down, or the
  //                      connection breaks;
  //   CANCELLED          `on_message` returned false (or the server cut the
  //                      call off).
  // The client's deadline does not apply: a watch lasts as long as the job
  // runs. It does not reconnect; resume with the last message's sequence.
  // `logs_limit` caps the log lines of a snapshot (server default 100).
  absl::Status Watch(int64_t id, int64_t after_sequence,
                     const WatchCallback& on_message,
                     std::optional<int32_t> logs_limit = std::nullopt) const;

  // Upserts the reference records of `catalog`; returns the counts.
  absl::StatusOr<v2::ImportCatalogResponse> ImportCatalog(
      const v2::Catalog& catalog) const;

  // GET of a reference record by id (the target of a `details` link).
  absl::StatusOr<v2::Project> GetProject(int64_t id) const;
  absl::StatusOr<v2::Deployment> GetDeployment(int64_t id) const;
  absl::StatusOr<v2::CaptureCollection> GetCaptureCollection(int64_t id) const;
  absl::StatusOr<v2::Capture> GetCapture(int64_t id) const;
  absl::StatusOr<v2::Pipeline> GetPipeline(int64_t id) const;

  // Runs the stale-job reaper: jobs in a running status without an update
  // for `minutes` are revoked, or with `dry_run` only listed.
  absl::StatusOr<v2::ReapStaleJobsResponse> ReapStaleJobs(int32_t minutes,
                                                          bool dry_run) const;

 private:
  // A context carrying the client's deadline.
  std::unique_ptr<grpc::ClientContext> NewContext() const;

  const std::unique_ptr<v2::JobService::StubInterface> jobs_;
  const std::unique_ptr<v2::CatalogService::StubInterface> catalog_;
  const std::unique_ptr<v2::OperatorService::StubInterface> operators_;
  const Options options_;
};

}  // namespace jobline

#endif  // JOBLINE_CLIENT_JOB_CLIENT_H_
