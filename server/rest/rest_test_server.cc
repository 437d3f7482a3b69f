#include "server/rest/rest_test_server.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/channel_arguments.h"

namespace jobline {
namespace rest {
namespace {

// `status` with `step` before its message.
absl::Status InStep(absl::string_view step, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(step, ": ", status.message()));
}

}  // namespace

RestTestServer::RestTestServer(RestTestServerOptions options)
    : options_(std::move(options)) {}

RestTestServer::~RestTestServer() {
  if (rest_server_ != nullptr) rest_server_->Stop();
  // Open watches end first: the gRPC server's shutdown waits for them.
  if (hub_ != nullptr) hub_->Shutdown();
  if (grpc_server_ != nullptr) grpc_server_->Shutdown();
  if (store_ != nullptr) store_->SetChangeListener(nullptr);
}

absl::Status RestTestServer::Start(const v2::Catalog& catalog) {
  Clock* const clock = options_.clock != nullptr ? options_.clock : RealClock();

  // The store and the manager, on one clock.
  SqliteJobStoreOptions store_options;
  store_options.path = ":memory:";
  store_options.clock = clock;
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store =
      OpenSqliteJobStore(store_options);
  if (!store.ok()) return InStep("open store", store.status());
  store_ = *std::move(store);
  JobManagerOptions manager_options;
  manager_options.zone = options_.zone;
  manager_ = std::make_unique<JobManager>(store_.get(), clock, manager_options);

  // The reference records the jobs of the test point to.
  const absl::Status imported = manager_->ImportCatalog(catalog).status();
  if (!imported.ok()) return InStep("import catalog", imported);

  // Live progress, as job_server wires it.
  WatchHubOptions hub_options;
  hub_options.zone = options_.zone;
  hub_ = std::make_unique<WatchHub>(store_.get(), hub_options);
  store_->SetChangeListener([hub = hub_.get()](const JobChangeEvent& event) {
    hub->OnCommit(event);
  });

  // The gRPC services, reachable only through the in-process channel.
  job_service_ = std::make_unique<JobServiceImpl>(manager_.get(), hub_.get());
  catalog_service_ = std::make_unique<CatalogServiceImpl>(manager_.get());
  grpc::ServerBuilder builder;
  builder.RegisterService(job_service_.get());
  builder.RegisterService(catalog_service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr) {
    return absl::InternalError("start gRPC server: BuildAndStart failed");
  }

  // The REST face on a free port.
  RestServerOptions rest_options = options_.rest;
  rest_options.host = "127.0.0.1";
  rest_options.port = 0;
  rest_options.transcoder.zone = options_.zone;
  rest_server_ = std::make_unique<RestServer>(
      grpc_server_->InProcessChannel(grpc::ChannelArguments()), rest_options);
  const absl::Status started = rest_server_->Start();
  if (!started.ok()) return InStep("start REST face", started);
  return absl::OkStatus();
}

std::string RestTestServer::base_url() const {
  return absl::StrCat("http://127.0.0.1:", port());
}

}  // namespace rest
}  // namespace jobline
