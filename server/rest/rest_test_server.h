// RestTestServer: Jobline's whole stack in the test's own process, for tests
// that drive the REST face over HTTP.
//
// A JobManager on a private in-memory SqliteJobStore, a WatchHub that hears
// the store's commits, the JobService (with WatchProgress) and
// CatalogService on an in-process grpc::Server, and a RestServer on a free
// port of 127.0.0.1 in front of that server's in-process channel.
//
// No runner and no worker is started: a job changes only when a request
// asks for it or the test writes through store(), so nothing in the
// background races a test's assertions.
//
// Thread safety: Start() and the destructor must not race; once Start() has
// returned OK, the accessors may be used from any thread (the store is
// itself safe for concurrent use).

#ifndef JOBLINE_SERVER_REST_REST_TEST_SERVER_H_
#define JOBLINE_SERVER_REST_REST_TEST_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "jobline/v2/catalog.pb.h"
#include "server/job_manager.h"
#include "server/job_service_impl.h"
#include "server/rest/rest_server.h"
#include "server/watch_hub.h"
#include "storage/job_store.h"
#include "storage/sqlite_job_store.h"

namespace jobline {
namespace rest {

struct RestTestServerOptions {
  // Source of every timestamp the store and the manager write. Not owned;
  // must outlive the server. Null means RealClock().
  Clock* clock = nullptr;
  // Zone of the timestamps in documents and in log lines (D11).
  absl::TimeZone zone = absl::UTCTimeZone();
  // The REST face's options; host, port and the transcoder's zone are set
  // by Start().
  RestServerOptions rest;
};

class RestTestServer {
 public:
  explicit RestTestServer(RestTestServerOptions options = {});

  RestTestServer(const RestTestServer&) = delete;
  RestTestServer& operator=(const RestTestServer&) = delete;

  // Stops the REST face, ends the watchers, then stops the gRPC server.
  ~RestTestServer();

  // Opens the store, imports `catalog`, and starts the gRPC services and
  // the REST face. An error names the step that failed. Call at most once;
  // the accessors below are valid only after it returned OK.
  absl::Status Start(const v2::Catalog& catalog);

  // The store under the services, for writes no REST request makes (what a
  // worker would report, references the API cannot set).
  JobStore& store() { return *store_; }

  JobManager& manager() { return *manager_; }

  // The hub of the WatchProgress streams.
  WatchHub& hub() { return *hub_; }

  // The REST face, e.g. to stop it while a stream is open.
  RestServer& rest_server() { return *rest_server_; }

  // The port of the REST face on 127.0.0.1.
  int port() const { return rest_server_->port(); }

  // "http://127.0.0.1:<port>": the base of every absolute URL the REST face
  // answers with to a client that connects to port().
  std::string base_url() const;

 private:
  const RestTestServerOptions options_;

  // Members are destroyed in reverse order: the REST face first, the store
  // last.
  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<WatchHub> hub_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<CatalogServiceImpl> catalog_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<RestServer> rest_server_;
};

}  // namespace rest
}  // namespace jobline

#endif  // JOBLINE_SERVER_REST_REST_TEST_SERVER_H_
