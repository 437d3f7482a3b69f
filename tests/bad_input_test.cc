// Bad input against the real job_server, over REST, gRPC and the worker
// protocol: every kind of input docs/reliability.md lists under "Bad input"
// gets the answer written there, the server never crashes or hangs, and
// nothing is stored that should not be.
//
// Covered: malformed and truncated HTTP requests and gRPC frames, wrong JSON
// types, huge strings and arrays, deeply nested JSON, invalid UTF-8 and NUL
// bytes, path tricks, SQL metacharacters, integers at and past the int32 and
// int64 ranges, duplicate, out-of-order and stale worker reports, clients
// that never read, a thousand connections opened and dropped, slowloris
// clients, and SIGTERM and SIGINT with such clients connected; and the same
// limits and bounds in the standalone REST face, jobline_rest.

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "jobline/v2/jobs.grpc.pb.h"
#include "jobline/v2/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"

namespace jobline {
namespace {

using ::jobline::testing::CommandResult;
using ::jobline::testing::NewTempDir;
using ::jobline::testing::RunCommand;
using ::jobline::testing::RunfilePath;
using ::jobline::testing::ServerProcess;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::ordered_json;

constexpr char kPopulate[] = "populate_captures_collection";
constexpr char kStage[] = "Populate captures collection";
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int32_t kInt32Min = std::numeric_limits<int32_t>::min();
constexpr char kPageTooLarge[] =
    "429 {\"detail\":\"limit: a page may hold at most 10000 jobs "
    "(--max_page_size)\"}";

// ---- Sockets ----------------------------------------------------------------

// A TCP port that was free a moment ago.
int FreePort() {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(sock, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(sock);
  return port;
}

// A connected socket to 127.0.0.1:`port` whose reads give up after
// `read_timeout`; -1 if it cannot connect.
int Connect(int port, absl::Duration read_timeout = absl::Seconds(30)) {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    close(sock);
    return -1;
  }
  timeval timeout = absl::ToTimeval(read_timeout);
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return sock;
}

bool SendAll(int sock, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n =
        send(sock, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// What the peer sends until it closes the connection; "<timeout>" is
// appended if it sends nothing for the socket's read timeout first.
std::string ReadUntilClosed(int sock) {
  std::string answer;
  char buffer[65536];
  while (true) {
    const ssize_t n = recv(sock, buffer, sizeof(buffer), 0);
    if (n > 0) {
      answer.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno == ECONNRESET) {
      return answer;
    } else {
      return answer + "<timeout>";
    }
  }
}

// Sends `request` on a new connection to `port` and returns everything the
// server sends before it closes the connection. With `half_close` the
// client then closes its sending side, as a client that gives up does;
// else the connection stays open for writing.
std::string Exchange(int port, const std::string& request,
                     bool half_close = false) {
  const int sock = Connect(port);
  if (sock < 0) return "<no connection>";
  if (!SendAll(sock, request)) {
    close(sock);
    return "<not sent>";
  }
  if (half_close) shutdown(sock, SHUT_WR);
  std::string answer = ReadUntilClosed(sock);
  close(sock);
  return answer;
}

// Closes `sock` with a reset instead of a FIN.
void Reset(int sock) {
  linger abort = {1, 0};
  setsockopt(sock, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
  close(sock);
}

// The body of a raw HTTP answer (what follows the blank line).
std::string BodyOf(const std::string& answer) {
  const size_t end = answer.find("\r\n\r\n");
  return end == std::string::npos ? "" : answer.substr(end + 4);
}

// ---- The server process -----------------------------------------------------

// The pid of the process whose command line has `argument`, or -1.
pid_t FindProcess(const std::string& argument) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return -1;
  pid_t found = -1;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream file(absl::StrCat("/proc/", pid, "/cmdline"));
    std::stringstream text;
    text << file.rdbuf();
    std::string line = text.str();
    for (char& c : line) {
      if (c == '\0') c = ' ';
    }
    if (absl::StrContains(line, argument)) {
      found = static_cast<pid_t>(pid);
      break;
    }
  }
  closedir(proc);
  return found;
}

// Open file descriptors of `pid`.
int OpenDescriptors(pid_t pid) {
  DIR* fds = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (fds == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(fds)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(fds);
  return count;
}

// Polls `done` every 50 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& done,
                absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

// A gRPC answer: the code and the message.
struct GrpcAnswer {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
};

// Builds the raw bytes of a length-delimited protobuf field.
std::string LengthDelimited(int field, const std::string& bytes) {
  std::string out(1, static_cast<char>(field << 3 | 2));
  uint64_t length = bytes.size();
  while (length >= 0x80) {
    out.push_back(static_cast<char>(length | 0x80));
    length >>= 7;
  }
  out.push_back(static_cast<char>(length));
  return out + bytes;
}

class BadInput : public ::testing::Test {
 protected:
  void TearDown() override {
    jobs_.reset();
    workers_.reset();
    channel_.reset();
    server_.reset();
  }

  // Starts job_server with the demo catalogue, the REST face on a free
  // port and `flags`.
  void StartServer(const std::vector<std::string>& flags = {}) {
    dir_ = NewTempDir("bad-input");
    ASSERT_FALSE(dir_.empty());
    db_ = dir_ + "/jobline.db";
    http_port_ = FreePort();
    ASSERT_NE(http_port_, 0);
    std::vector<std::string> all = {
        "--db=" + db_,
        "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
        absl::StrCat("--http_port=", http_port_)};
    all.insert(all.end(), flags.begin(), flags.end());
    server_ = std::make_unique<ServerProcess>();
    const absl::Status started = server_->Start(all);
    ASSERT_TRUE(started.ok()) << started;
    pid_ = FindProcess("--db=" + db_);
    ASSERT_GT(pid_, 0);
    grpc_port_ =
        std::stoi(server_->address().substr(server_->address().rfind(':') + 1));
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v2::JobService::NewStub(channel_);
    workers_ = v2::WorkerService::NewStub(channel_);
  }

  // Stops the server with `signal_number`; its exit code.
  int StopServer(int signal_number = SIGTERM) {
    jobs_.reset();
    workers_.reset();
    channel_.reset();
    absl::StatusOr<int> code = server_->Stop(signal_number);
    EXPECT_TRUE(code.ok()) << code.status();
    return code.ok() ? *code : -1;
  }

  std::unique_ptr<httplib::Client> Rest() const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", http_port_);
    client->set_read_timeout(30, 0);
    return client;
  }

  // POST `body` (JSON) to `path`: "<status> <body>".
  std::string Post(const std::string& path, const std::string& body) const {
    httplib::Result result =
        Rest()->Post(path.c_str(), body, "application/json");
    if (!result) return "<" + httplib::to_string(result.error()) + ">";
    return absl::StrCat(result->status, " ", result->body);
  }

  // GET `path`: "<status> <body>".
  std::string Get(const std::string& path) const {
    httplib::Result result = Rest()->Get(path.c_str());
    if (!result) return "<" + httplib::to_string(result.error()) + ">";
    return absl::StrCat(result->status, " ", result->body);
  }

  // The number of jobs the REST list counts.
  int64_t JobCount() const {
    httplib::Result result = Rest()->Get("/api/v2/jobs/?limit=1");
    if (!result || result->status != 200) return -1;
    return Json::parse(result->body, nullptr, false).value("count", -1);
  }

  // Whether both faces answer a plain request now.
  bool Responsive() const {
    httplib::Result rest = Rest()->Get("/api/v2/");
    v2::ListJobsRequest request;
    request.set_limit(1);
    v2::ListJobsResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto stub = v2::JobService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
    return rest && rest->status == 200 &&
           stub->ListJobs(&context, request, &response).ok();
  }

  // Calls `method` with `payload` as the raw bytes of its request.
  GrpcAnswer RawCall(const std::string& method, const std::string& payload) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    grpc::Slice slice(payload.data(), payload.size());
    grpc::ByteBuffer request(&slice, 1);
    grpc::CompletionQueue queue;
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
        stub.PrepareUnaryCall(&context, method, request, &queue);
    call->StartCall();
    grpc::ByteBuffer response;
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    queue.Next(&tag, &ok);
    queue.Shutdown();
    while (queue.Next(&tag, &ok)) {
    }
    return {status.error_code(), status.error_message()};
  }

  template <typename Call>
  static GrpcAnswer Answer(Call call) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    const grpc::Status status = call(&context);
    return {status.error_code(), status.error_message()};
  }

  GrpcAnswer CreateJob(const v2::JobInput& input, v2::Job* job = nullptr) {
    v2::CreateJobRequest request;
    *request.mutable_job() = input;
    v2::Job scratch;
    return Answer([&](grpc::ClientContext* context) {
      return jobs_->CreateJob(context, request, job ? job : &scratch);
    });
  }

  GrpcAnswer GetJob(const v2::GetJobRequest& request, v2::Job* job = nullptr) {
    v2::Job scratch;
    return Answer([&](grpc::ClientContext* context) {
      return jobs_->GetJob(context, request, job ? job : &scratch);
    });
  }

  GrpcAnswer ListJobs(const v2::ListJobsRequest& request,
                      v2::ListJobsResponse* response = nullptr) {
    v2::ListJobsResponse scratch;
    return Answer([&](grpc::ClientContext* context) {
      return jobs_->ListJobs(context, request, response ? response : &scratch);
    });
  }

  v2::Job Job(int64_t id) {
    v2::GetJobRequest request;
    request.set_id(id);
    v2::Job job;
    const GrpcAnswer answer = GetJob(request, &job);
    EXPECT_EQ(answer.code, grpc::StatusCode::OK) << answer.message;
    return job;
  }

  static v2::JobInput Input(const std::string& name) {
    v2::JobInput input;
    input.set_name(name);
    input.set_project_id(16);
    return input;
  }

  // A job for the workers, queued; its id.
  int64_t QueueWorkerJob() {
    v2::CreateJobRequest request;
    *request.mutable_job() = Input("For a worker");
    request.mutable_job()->set_source_image_collection_id(111);
    request.mutable_job()->set_job_type_key(kPopulate);
    request.set_start_now(true);
    v2::Job job;
    const GrpcAnswer answer = Answer([&](grpc::ClientContext* context) {
      return jobs_->CreateJob(context, request, &job);
    });
    EXPECT_EQ(answer.code, grpc::StatusCode::OK) << answer.message;
    return job.id();
  }

  // Leases one job of the workers' type as `worker` for `seconds`.
  v2::Lease LeaseOne(const std::string& worker, int64_t seconds = 60) {
    v2::LeaseJobsRequest request;
    request.set_worker_id(worker);
    request.add_job_types(kPopulate);
    request.mutable_lease_duration()->set_seconds(seconds);
    request.mutable_wait()->set_seconds(5);
    v2::LeaseJobsResponse response;
    const GrpcAnswer answer = Answer([&](grpc::ClientContext* context) {
      return workers_->LeaseJobs(context, request, &response);
    });
    EXPECT_EQ(answer.code, grpc::StatusCode::OK) << answer.message;
    return response.leases_size() > 0 ? response.leases(0) : v2::Lease();
  }

  GrpcAnswer Report(const v2::ReportProgressRequest& request) {
    v2::ReportProgressResponse response;
    return Answer([&](grpc::ClientContext* context) {
      return workers_->ReportProgress(context, request, &response);
    });
  }

  GrpcAnswer Finish(const v2::FinishJobRequest& request) {
    v2::FinishJobResponse response;
    return Answer([&](grpc::ClientContext* context) {
      return workers_->FinishJob(context, request, &response);
    });
  }

  // A report of the populate stage at `progress` with one log line.
  // The report renews the lease for `lease_seconds`.
  static v2::ReportProgressRequest StageReport(const v2::Lease& lease,
                                               double progress,
                                               const std::string& line,
                                               int64_t lease_seconds = 60) {
    v2::ReportProgressRequest request;
    request.mutable_lease_duration()->set_seconds(lease_seconds);
    request.set_lease_id(lease.lease_id());
    request.set_job_id(lease.job().id());
    v2::StageUpdate* stage = request.add_stages();
    stage->set_name(kStage);
    stage->set_status(v2::STARTED);
    stage->set_progress(progress);
    if (!line.empty()) {
      v2::WorkerLogLine* log = request.add_logs();
      log->set_level("INFO");
      log->set_message(line);
    }
    return request;
  }

  std::string dir_;
  std::string db_;
  int http_port_ = 0;
  int grpc_port_ = 0;
  pid_t pid_ = -1;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v2::JobService::Stub> jobs_;
  std::unique_ptr<v2::WorkerService::Stub> workers_;
};

// How many of the job's log lines (stdout) contain `text`.
int LogLinesWith(const v2::Job& job, const std::string& text) {
  int count = 0;
  for (const std::string& line : job.logs().stdout()) {
    if (absl::StrContains(line, text)) ++count;
  }
  return count;
}

// ---- REST -------------------------------------------------------------------

TEST_F(BadInput, RestMalformedAndTruncatedRequestsAre400AndCloseTheConnection) {
  StartServer();
  constexpr char kBadRequest[] = R"({"detail":"Bad request."})";
  // Each answer is the only one on its connection: the server closes it,
  // since where such a request ends is unknown (httplib would otherwise
  // parse the rest of the bytes as more requests).
  struct Case {
    std::string request;
    std::string status_line;
    std::string body;
    // A request without a line end is answered once the client closes its
    // side (else at the read timeout, 408).
    bool half_close = false;
  };
  const std::vector<Case> cases = {
      {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) +
           std::string(50, '\0'),
       "HTTP/1.1 400 Bad Request", kBadRequest, true},  // a TLS hello
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 400 Bad Request",
       kBadRequest},  // the HTTP/2 preface
      {"GET\r\n\r\n", "HTTP/1.1 400 Bad Request", kBadRequest},
      {"FOO /api/v2/ HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 400 Bad Request",
       kBadRequest},
      {"GET /api/v2/ HTTP/9.9\r\nHost: h\r\n\r\n", "HTTP/1.1 400 Bad Request",
       kBadRequest},
      {"GET /api/v2/" + std::string(10000, 'a') +
           " HTTP/1.1\r\nHost: h\r\n\r\n",
       "HTTP/1.1 414 URI Too Long", kBadRequest},
      {"GET /api/v2/ HTTP/1.1\r\nHost: h\r\nX: " + std::string(10000, 'a') +
           "\r\n\r\n",
       "HTTP/1.1 400 Bad Request", kBadRequest},  // a header over 8 KiB
      {"POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Type: "
       "application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
       "0\r\n\r\n",
       "HTTP/1.1 400 Bad Request",
       R"({"detail":"The request body could not be read."})"},
  };
  for (const Case& c : cases) {
    const std::string answer = Exchange(http_port_, c.request, c.half_close);
    EXPECT_THAT(answer, StartsWith(c.status_line + "\r\n"))
        << c.request.substr(0, 40);
    EXPECT_THAT(answer, HasSubstr("\r\nConnection: close\r\n"));
    EXPECT_EQ(BodyOf(answer), c.body) << c.request.substr(0, 40);
  }

  // 20,000 headers: the head is over its 64 KiB limit.
  std::string many = "GET /api/v2/ HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 20000; ++i) absl::StrAppend(&many, "X-", i, ": y\r\n");
  const std::string large = Exchange(http_port_, many + "\r\n");
  EXPECT_THAT(large,
              StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  EXPECT_EQ(BodyOf(large),
            R"({"detail":"The request head is larger than 65536 bytes."})");
  // So is a request line of 200 KB (one of 8 KiB to 64 KiB is 414).
  const std::string long_line = Exchange(
      http_port_, "GET /api/v2/jobs/?search=" + std::string(200000, 'a') +
                      " HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_THAT(long_line,
              StartsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  EXPECT_EQ(BodyOf(long_line),
            R"({"detail":"The request head is larger than 65536 bytes."})");

  // Truncated: the head or the body ends with the connection.
  for (const std::string& truncated :
       {std::string("GET /api/v2/ HTTP/1.1\r\nHo"),
        std::string("POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Type: "
                    "application/json\r\nContent-Length: 100\r\n\r\n"
                    R"({"name": "x")"),
        std::string("POST /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nContent-Type: "
                    "application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\n{\"nam")}) {
    const int sock = Connect(http_port_);
    ASSERT_GE(sock, 0);
    ASSERT_TRUE(SendAll(sock, truncated));
    shutdown(sock, SHUT_WR);
    const std::string answer = ReadUntilClosed(sock);
    close(sock);
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 400 Bad Request\r\n"));
    EXPECT_THAT(BodyOf(answer),
                ::testing::AnyOf(kBadRequest,
                                 R"({"detail":"The request body could not )"
                                 R"(be read."})"));
  }
  EXPECT_EQ(JobCount(), 0);
  EXPECT_TRUE(Responsive());
}

TEST_F(BadInput, RestWrongJsonTypesNameTheField) {
  StartServer();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"name": "x", "project_id": 16, "delay": [1]})",
       R"(400 {"delay":["A valid integer is required."]})"},
      {R"({"name": {"a": 1}, "project_id": 16})",
       R"(400 {"name":["Not a valid string."]})"},
      {R"({"name": "x", "project_id": true})",
       R"(400 {"project_id":["A valid integer is required."]})"},
      {R"({"name": "x", "project_id": 16, "shuffle": "maybe"})",
       R"(400 {"shuffle":["Must be a valid boolean."]})"},
      {R"({"name": "x", "project_id": 16, "delay": 1.5})",
       R"(400 {"delay":["A valid integer is required."]})"},
      {R"([1, 2])",
       R"(400 {"non_field_errors":["Invalid data. Expected a dictionary, )"
       R"(but got list."]})"},
      {R"("x")",
       R"(400 {"non_field_errors":["Invalid data. Expected a dictionary, )"
       R"(but got str."]})"},
      {R"(null)",
       R"(400 {"non_field_errors":["Invalid data. Expected a dictionary, )"
       R"(but got NoneType."]})"},
      {R"({"name": "x", "project_id": 16)",
       R"(400 {"detail":"JSON parse error - Unexpected end of string. )"
       R"(Expected , or } after key:value pair."})"},
  };
  for (const auto& [body, expected] : cases) {
    EXPECT_EQ(Post("/api/v2/jobs/", body), expected) << body;
  }
  EXPECT_EQ(JobCount(), 0);
}

TEST_F(BadInput, RestHugeStringsAndArrays) {
  StartServer();
  // A name of a million characters fits the 1 MiB body but not the field.
  EXPECT_EQ(
      Post("/api/v2/jobs/",
           Json({{"name", std::string(1000000, 'a')}, {"project_id", 16}})
               .dump()),
      R"(400 {"name":["Ensure this field has no more than 255 characters."]})");
  // Past the body limit.
  EXPECT_EQ(Post("/api/v2/jobs/",
                 Json({{"name", std::string(1 << 20, 'a')}, {"project_id", 16}})
                     .dump()),
            R"(413 {"detail":"Request body is larger than 1048576 bytes."})");

  // 100,000 elements: as a member the API does not know (ignored), as a
  // string field, and as the catalogue's list of projects.
  Json numbers = Json::array();
  for (int i = 0; i < 100000; ++i) numbers.push_back(i);
  EXPECT_THAT(
      Post(
          "/api/v2/jobs/",
          Json({{"name", "x"}, {"project_id", 16}, {"extra", numbers}}).dump()),
      StartsWith(R"(201 {"id":1,)"));
  EXPECT_EQ(Post("/api/v2/jobs/",
                 Json({{"name", numbers}, {"project_id", 16}}).dump()),
            R"(400 {"name":["Not a valid string."]})");
  EXPECT_EQ(
      Post("/api/v2/catalog/import/", Json({{"projects", numbers}}).dump()),
      R"(400 {"projects[0]":["Invalid data. Expected a dictionary, but got )"
      R"(int."]})");
  // The query: 1,500 search terms (split on commas), about all the 8 KiB
  // target holds.
  std::string terms;
  for (int i = 0; i < 1500; ++i) absl::StrAppend(&terms, i % 10, ",");
  EXPECT_EQ(Get("/api/v2/jobs/?search=" + terms),
            R"(400 {"search":["Use at most 64 terms."]})");
  EXPECT_EQ(JobCount(), 1);
}

// A head that declares a body over the limit and never sends it holds its
// thread only until the read timeout: the server reads the body to skip it
// (so that a client still sending can read the 413 instead of a reset),
// then answers 408 and closes. Also for a length past 64 bits.
TEST_F(BadInput, ADeclaredLengthOverTheLimitNeverSentEndsAtTheReadTimeout) {
  StartServer({"--http_read_timeout_seconds=1"});
  for (const std::string length : {"1048577", "99999999999999999999999"}) {
    const std::string answer =
        Exchange(http_port_,
                 "POST /api/v2/jobs/ HTTP/1.1\r\nHost: x\r\n"
                 "Content-Type: application/json\r\nContent-Length: " +
                     length + "\r\n\r\n");
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 408 Request Timeout\r\n"))
        << length;
    EXPECT_EQ(BodyOf(answer),
              R"({"detail":"The request did not arrive within 1s."})")
        << length;
  }
  EXPECT_EQ(JobCount(), 0);
}

TEST_F(BadInput, RestDeeplyNestedJsonIsRefusedWithoutAStackOverflow) {
  StartServer();
  auto nested = [](int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  constexpr char kTooDeep[] =
      R"(400 {"detail":"JSON parse error - nested deeper than 100 levels."})";
  // 10,000 levels, and 500,000 (a whole 1 MiB body of brackets), where a
  // list is expected, where a string is, in a member the API ignores, and
  // as the whole body.
  for (int depth : {10000, 500000}) {
    EXPECT_EQ(Post("/api/v2/catalog/import/",
                   absl::StrCat(R"({"projects":)", nested(depth), "}")),
              kTooDeep);
    EXPECT_EQ(Post("/api/v2/jobs/", absl::StrCat(R"({"name":)", nested(depth),
                                                 R"(,"project_id":16})")),
              kTooDeep);
    EXPECT_EQ(Post("/api/v2/jobs/",
                   absl::StrCat(R"({"name":"x","project_id":16,"a":)",
                                nested(depth), "}")),
              kTooDeep);
    EXPECT_EQ(Post("/api/v2/jobs/", nested(depth)), kTooDeep);
  }
  // Brackets inside strings do not count; 100 levels pass.
  EXPECT_THAT(
      Post("/api/v2/jobs/",
           Json({{"name", std::string(300, '[')}, {"project_id", 16}}).dump()),
      StartsWith("400 {\"name\":[\"Ensure this field"));
  EXPECT_THAT(
      Post("/api/v2/jobs/", absl::StrCat(R"({"name":"x","project_id":16,"a":)",
                                         nested(99), "}")),
      StartsWith(R"(201 {"id":)"));
  EXPECT_TRUE(Responsive());
}

TEST_F(BadInput, RestInvalidUtf8AndNulBytes) {
  StartServer();
  EXPECT_EQ(
      Post("/api/v2/jobs/", "{\"name\": \"caf\xe9\", \"project_id\": 16}"),
      R"(400 {"detail":"JSON parse error - )"
      R"(Encountered non UTF-8 code points."})");
  EXPECT_EQ(Post("/api/v2/jobs/", R"({"name": "a\u0000b", "project_id": 16})"),
            R"(400 {"name":["Null characters are not allowed."]})");
  // A raw NUL byte is a control character, not JSON.
  EXPECT_THAT(Post("/api/v2/jobs/",
                   std::string("{\"name\": \"a\0b\", \"project_id\": 16}", 33)),
              StartsWith(R"(400 {"detail":"JSON parse error - )"));
  // Forms and queries: bytes that are not UTF-8 become U+FFFD (as
  // upstream decodes them), NUL stays NUL.
  httplib::Result form =
      Rest()->Post("/api/v2/jobs/", "name=a%00b&project_id=16",
                   "application/x-www-form-urlencoded");
  ASSERT_TRUE(form);
  EXPECT_EQ(absl::StrCat(form->status, " ", form->body),
            R"(400 {"name":["Null characters are not allowed."]})");
  httplib::Result latin =
      Rest()->Post("/api/v2/jobs/", "name=caf%E9&project_id=16",
                   "application/x-www-form-urlencoded");
  ASSERT_TRUE(latin);
  EXPECT_EQ(latin->status, 201);
  EXPECT_EQ(Json::parse(latin->body, nullptr, false)["name"], "caf\uFFFD");
  EXPECT_EQ(JobCount(), 1);
}

// A NUL byte in a search term is refused as in a name (SQLite's LIKE
// would end the pattern at the NUL and match every job).
TEST_F(BadInput, ASearchWithANulByteIsRefusedNamingIt) {
  StartServer();
  ASSERT_EQ(CreateJob(Input("x")).code, grpc::StatusCode::OK);
  EXPECT_EQ(Get("/api/v2/jobs/?search=%00&limit=1"),
            R"(400 {"search":["Null characters are not allowed."]})");
  v2::ListJobsRequest request;
  request.set_search(std::string("x\0", 2));
  const GrpcAnswer answer = ListJobs(request);
  EXPECT_EQ(answer.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(answer.message, "search: Null characters are not allowed.");
}

TEST_F(BadInput, RestPathTricksAreNotFound) {
  StartServer();
  ASSERT_THAT(Post("/api/v2/jobs/", R"({"name": "x", "project_id": 16})"),
              StartsWith("201 "));
  // Sent as they are (httplib's client would not normalise them either).
  for (const char* path :
       {"/api/v2/jobs/../jobs/", "/api/v2/jobs/./", "/api/v2/jobs/%2e%2e/",
        "/api/v2/jobs/%2E%2E/jobs/", "/api/v2/jobs/%252e%252e/",
        "/api/v2/%2e%2e/v2/jobs/", "/api/v2/jobs/1%2f/",
        "/api/v2/jobs/..%2f..%2fetc%2fpasswd", "//api/v2/jobs/",
        "/../../etc/passwd", "/api/v2/jobs/%00/", "/api/v2/jobs/1%00/",
        "/api/v2/jobs/1/%2e%2e/"}) {
    const std::string answer =
        Exchange(http_port_, absl::StrCat("GET ", path,
                                          " HTTP/1.1\r\nHost: h\r\nConnection: "
                                          "close\r\n\r\n"));
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 404 Not Found\r\n")) << path;
    EXPECT_EQ(BodyOf(answer), R"({"detail":"Not found."})") << path;
  }
  EXPECT_EQ(JobCount(), 1);
}

TEST_F(BadInput, SqlMetacharactersAreStoredAndSearchedVerbatim) {
  StartServer();
  const std::vector<std::string> names = {"x'; DROP TABLE jobs; --",
                                          "100% done", "a_b", "quote \" and \\",
                                          "1' OR '1'='1"};
  for (const std::string& name : names) {
    httplib::Result created = Rest()->Post(
        "/api/v2/jobs/", Json({{"name", name}, {"project_id", 16}}).dump(),
        "application/json");
    ASSERT_TRUE(created);
    ASSERT_EQ(created->status, 201) << created->body;
    EXPECT_EQ(Json::parse(created->body, nullptr, false)["name"], name);
  }
  // LIKE's wildcards and quotes match only themselves.
  auto found = [&](const std::string& search) {
    v2::ListJobsRequest request;
    request.set_search(search);
    v2::ListJobsResponse response;
    const GrpcAnswer answer = ListJobs(request, &response);
    EXPECT_EQ(answer.code, grpc::StatusCode::OK) << answer.message;
    std::vector<std::string> got;
    for (const v2::Job& job : response.results()) got.push_back(job.name());
    return got;
  };
  EXPECT_EQ(found("%"), std::vector<std::string>{"100% done"});
  EXPECT_EQ(found("_"), std::vector<std::string>{"a_b"});
  EXPECT_EQ(found("'; DROP"),
            std::vector<std::string>{"x'; DROP TABLE jobs; --"});
  EXPECT_EQ(found("\\"), std::vector<std::string>{"quote \" and \\"});
  EXPECT_EQ(found("' OR '1'='1"), std::vector<std::string>{"1' OR '1'='1"});
  EXPECT_EQ(Get("/api/v2/jobs/?search=%27%20OR%201%3D1%20--&limit=1"),
            R"(200 {"count":0,"next":null,"previous":null,"results":[],)"
            R"("user_permissions":["create"]})");
  EXPECT_EQ(JobCount(), 5);
}

TEST_F(BadInput, RestIdsAndLimitsAtAndPastTheIntegerRanges) {
  StartServer();
  ASSERT_THAT(Post("/api/v2/jobs/", R"({"name": "x", "project_id": 16})"),
              StartsWith("201 "));
  for (const char* id :
       {"9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-1", "0", "99999999999999999999999"}) {
    EXPECT_EQ(Get(absl::StrCat("/api/v2/jobs/", id, "/")),
              R"(404 {"detail":"Not found."})")
        << id;
  }
  // limit and offset are lenient (spec 6.4): a value that is not a whole
  // number >= 0 is dropped; a page over --max_page_size is 429.
  EXPECT_THAT(Get("/api/v2/jobs/?limit=9223372036854775808"),
              StartsWith(R"(200 {"count":1,)"));
  EXPECT_THAT(Get("/api/v2/jobs/?limit=-1"), StartsWith(R"(200 {"count":1,)"));
  EXPECT_EQ(Get("/api/v2/jobs/?limit=9223372036854775807"), kPageTooLarge);
  EXPECT_EQ(Get("/api/v2/jobs/?limit=2147483648"), kPageTooLarge);
  EXPECT_THAT(Get("/api/v2/jobs/?offset=9223372036854775807"),
              StartsWith(R"(200 {"count":1,"next":null,)"
                         R"("previous":"http://127.0.0.1:)"));
  EXPECT_EQ(Get("/api/v2/jobs/?project_id=9223372036854775808"),
            R"(400 {"project_id":["A valid integer is required."]})");
  EXPECT_EQ(Get("/api/v2/jobs/1/?logs_limit=2147483648"),
            R"(400 {"logs_limit":["A valid integer is required."]})");
  // Bodies: int64 past its range; int32 fields past theirs.
  EXPECT_EQ(Post("/api/v2/jobs/",
                 R"({"name": "x", "project_id": 9223372036854775808})"),
            R"(400 {"project_id":["A valid integer is required."]})");
  EXPECT_EQ(Post("/api/v2/jobs/",
                 R"({"name": "x", "project_id": 16, "delay": 2147483648})"),
            R"(400 {"delay":["Ensure this value is less than or equal to )"
            R"(2147483647."]})");
  EXPECT_EQ(Post("/api/v2/jobs/",
                 R"({"name": "x", "project_id": 16, "limit": -2147483649})"),
            R"(400 {"limit":["Ensure this value is greater than or equal to )"
            R"(-2147483648."]})");
  EXPECT_EQ(Post("/api/v2/jobs/",
                 R"({"name": "x", "project_id": 9223372036854775807})"),
            R"(400 {"project_id":["Invalid pk \"9223372036854775807\" - )"
            R"(object does not exist."]})");
  EXPECT_EQ(JobCount(), 1);
}

// ---- gRPC -------------------------------------------------------------------

TEST_F(BadInput, GrpcPortClosesGarbageAndHttp1Connections) {
  StartServer();
  // gRPC sends its SETTINGS frame to any client, and closes the connection
  // once its bytes are not the HTTP/2 preface or end (a client that stops
  // in the middle of the preface is closed by gRPC's handshake timeout).
  // The clients here close their side after sending.
  for (const std::string& garbage :
       {std::string("\x00\x00\x00\x00", 4),
        std::string("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        std::string("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"),
        std::string(100000, '\xff')}) {
    const std::string answer = Exchange(grpc_port_, garbage, true);
    EXPECT_THAT(answer, ::testing::Not(HasSubstr("<timeout>")));
  }
  // The preface and then a frame header cut short.
  const std::string answer = Exchange(
      grpc_port_, std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", 26),
      true);
  EXPECT_THAT(answer, ::testing::Not(HasSubstr("<timeout>")));
  EXPECT_TRUE(Responsive());
}

TEST_F(BadInput, GrpcUndecodableRequestsAreInvalidArgument) {
  StartServer();
  const std::string create = "/jobline.v2.JobService/CreateJob";
  const std::string name = LengthDelimited(1, "caf\xe9") + "\x18\x10";
  struct Case {
    std::string method;
    std::string payload;
  };
  const std::vector<Case> cases = {
      // A JobInput whose name is not UTF-8.
      {create, LengthDelimited(1, name)},
      // A length that runs past the end.
      {create, std::string("\x0a\x20\x0a\x05"
                           "ab",
                           6)},
      // Bytes that are no protobuf at all.
      {create, std::string("\xff\xff\xff", 3)},
      // A varint of eleven bytes.
      {"/jobline.v2.JobService/GetJob", "\x08" + std::string(10, '\xff')},
      // A worker id that is not UTF-8.
      {"/jobline.v2.WorkerService/LeaseJobs", LengthDelimited(1, "w\xc3")},
  };
  for (const Case& c : cases) {
    const GrpcAnswer answer = RawCall(c.method, c.payload);
    EXPECT_EQ(answer.code, grpc::StatusCode::INVALID_ARGUMENT) << c.method;
    const std::string type =
        c.method.substr(c.method.rfind('/') + 1) + "Request";
    EXPECT_EQ(answer.message,
              absl::StrCat("The request is not a valid jobline.v2.", type,
                           " message (truncated, malformed, or a string "
                           "that is not UTF-8)."))
        << c.method;
  }
  // An unknown method, and an empty message (every field at its default).
  EXPECT_EQ(RawCall("/jobline.v2.JobService/Nope", "").code,
            grpc::StatusCode::UNIMPLEMENTED);
  const GrpcAnswer empty = RawCall(create, "");
  EXPECT_EQ(empty.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(empty.message,
            "name: This field is required.; project_id: This field is "
            "required.");
  EXPECT_EQ(JobCount(), 0);
}

TEST_F(BadInput, GrpcHugeStringsArraysAndMessages) {
  StartServer();
  GrpcAnswer long_name = CreateJob(Input(std::string(1 << 20, 'a')));
  EXPECT_EQ(long_name.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(long_name.message,
            "name: Ensure this field has no more than 255 characters.");

  // Past --max_request_mb (16): gRPC refuses the message itself.
  GrpcAnswer too_big = CreateJob(Input(std::string(17 << 20, 'a')));
  EXPECT_EQ(too_big.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(too_big.message, HasSubstr("larger than max"));

  v2::ListJobsRequest search;
  for (int i = 0; i < 100000; ++i)
    absl::StrAppend(search.mutable_search(), "t ");
  GrpcAnswer terms = ListJobs(search);
  EXPECT_EQ(terms.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(terms.message, "search: Use at most 64 terms.");
  search.set_search(std::string(1001, 'x'));
  GrpcAnswer term = ListJobs(search);
  EXPECT_EQ(term.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(term.message, "search: Each term may have at most 1000 bytes.");

  // A worker's report of 100,000 lines, and of one line of a mebibyte.
  const int64_t id = QueueWorkerJob();
  const v2::Lease lease = LeaseOne("w1");
  ASSERT_EQ(lease.job().id(), id);
  v2::ReportProgressRequest lines = StageReport(lease, 0.1, "");
  for (int i = 0; i < 100000; ++i) {
    v2::WorkerLogLine* log = lines.add_logs();
    log->set_level("INFO");
    log->set_message("many-lines");
  }
  GrpcAnswer many = Report(lines);
  EXPECT_EQ(many.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(many.message,
            "logs: a report may carry at most 1000 lines "
            "(--max_report_lines); this one has 100000");
  GrpcAnswer huge_line =
      Report(StageReport(lease, 0.1, std::string(1 << 20, 'x')));
  EXPECT_EQ(huge_line.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(huge_line.message,
            "logs[0].message: a log message may have at most 65536 bytes "
            "(--max_log_message_kb)");
  // 100,000 stages in one report are taken (each a stage of the job).
  v2::ReportProgressRequest stages = StageReport(lease, 0.1, "");
  for (int i = 0; i < 100000; ++i) {
    stages.add_stages()->set_key(absl::StrCat("unknown-", i));
  }
  GrpcAnswer unknown = Report(stages);
  EXPECT_EQ(unknown.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(unknown.message,
            "stages[1].key: Stage \"unknown_0\" does not exist; give a name "
            "to create it.");
  // Nothing of the refused reports was stored.
  const v2::Job job = Job(id);
  EXPECT_EQ(job.progress().stages_size(), 0);
  EXPECT_EQ(LogLinesWith(job, "many-lines"), 0);
  EXPECT_EQ(LogLinesWith(job, std::string(100, 'x')), 0);
  EXPECT_EQ(JobCount(), 1);
}

TEST_F(BadInput, GrpcNulBytesAndInvalidValuesInStrings) {
  StartServer();
  GrpcAnswer nul = CreateJob(Input(std::string("a\0b", 3)));
  EXPECT_EQ(nul.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(nul.message, "name: Null characters are not allowed.");
  v2::JobInput type = Input("x");
  type.set_job_type_key(std::string("ml\0", 3));
  GrpcAnswer bad_type = CreateJob(type);
  EXPECT_EQ(bad_type.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad_type.message,
            std::string("job_type_key: \"ml\0\" is not a valid choice.", 42));
  v2::ListJobsRequest status;
  status.set_status(std::string("STARTED\0", 8));
  GrpcAnswer bad_status = ListJobs(status);
  EXPECT_EQ(bad_status.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_status.message, StartsWith("status: Select a valid choice."));
  EXPECT_EQ(JobCount(), 0);
}

TEST_F(BadInput, GrpcIdsAndLimitsAtAndPastTheIntegerRanges) {
  StartServer();
  ASSERT_EQ(CreateJob(Input("x")).code, grpc::StatusCode::OK);
  for (int64_t id : {kInt64Max, kInt64Min, int64_t{-1}, int64_t{0}}) {
    v2::GetJobRequest request;
    request.set_id(id);
    GrpcAnswer answer = GetJob(request);
    EXPECT_EQ(answer.code, grpc::StatusCode::NOT_FOUND) << id;
    EXPECT_EQ(answer.message, absl::StrCat("job ", id, " not found"));
  }
  v2::GetJobRequest logs;
  logs.set_id(1);
  logs.set_logs_limit(kInt32Min);
  EXPECT_EQ(GetJob(logs).message,
            "logs_limit: Ensure this value is greater than or equal to 1.");
  logs.set_logs_limit(kInt32Max);
  EXPECT_THAT(GetJob(logs).message,
              StartsWith("logs_limit: Ensure this value is less than or "
                         "equal to "));

  v2::ListJobsRequest list;
  list.set_limit(kInt64Max);
  GrpcAnswer big = ListJobs(list);
  EXPECT_EQ(big.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(big.message,
            "limit: a page may hold at most 10000 jobs (--max_page_size)");
  list.set_limit(kInt64Min);
  EXPECT_EQ(ListJobs(list).message,
            "limit: Ensure this value is greater than or equal to 0.");
  list.clear_limit();
  list.set_offset(kInt64Max);
  v2::ListJobsResponse far;
  EXPECT_EQ(ListJobs(list, &far).code, grpc::StatusCode::OK);
  EXPECT_EQ(far.count(), 1);
  EXPECT_EQ(far.results_size(), 0);
  list.set_offset(kInt64Min);
  EXPECT_EQ(ListJobs(list).message,
            "offset: Ensure this value is greater than or equal to 0.");
  v2::ListJobsRequest cutoff;
  cutoff.set_cutoff_hours(kInt64Max);
  EXPECT_EQ(ListJobs(cutoff).code, grpc::StatusCode::OK);

  v2::JobInput delay = Input("x");
  delay.set_delay(kInt64Max);
  EXPECT_EQ(CreateJob(delay).message,
            "delay: Ensure this value is less than or equal to 2147483647.");
  v2::JobInput project = Input("x");
  project.set_project_id(kInt64Min);
  EXPECT_EQ(CreateJob(project).message,
            "project_id: Invalid pk \"-9223372036854775808\" - object does "
            "not exist.");

  // The worker protocol's integers: max_jobs, lease lengths and waits.
  auto lease = [&](const std::function<void(v2::LeaseJobsRequest&)>& edit) {
    v2::LeaseJobsRequest request;
    request.set_worker_id("w1");
    request.add_job_types(kPopulate);
    edit(request);
    v2::LeaseJobsResponse response;
    return Answer([&](grpc::ClientContext* context) {
      return workers_->LeaseJobs(context, request, &response);
    });
  };
  EXPECT_EQ(lease([](auto& r) { r.set_max_jobs(kInt32Max); }).message,
            "max_jobs: Ensure this value is between 1 and 100.");
  EXPECT_EQ(lease([](auto& r) { r.set_max_jobs(kInt32Min); }).message,
            "max_jobs: Ensure this value is between 1 and 100.");
  EXPECT_THAT(lease([](auto& r) {
                r.mutable_lease_duration()->set_seconds(kInt64Max);
              }).message,
              StartsWith("lease_duration: Ensure this value is more than 0 "
                         "and at most "));
  EXPECT_THAT(lease([](auto& r) {
                r.mutable_lease_duration()->set_seconds(kInt64Min);
              }).message,
              StartsWith("lease_duration: Ensure this value is more than 0 "
                         "and at most "));
  EXPECT_EQ(
      lease([](auto& r) { r.mutable_wait()->set_seconds(kInt64Max); }).message,
      "wait: Ensure this value is between 0 and 30s.");
  EXPECT_EQ(lease([](auto& r) { r.mutable_wait()->set_nanos(-1); }).message,
            "wait: Ensure this value is between 0 and 30s.");
  v2::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id("nope");
  heartbeat.set_job_id(kInt64Max);
  v2::HeartbeatResponse beat;
  GrpcAnswer unknown = Answer([&](grpc::ClientContext* context) {
    return workers_->Heartbeat(context, heartbeat, &beat);
  });
  EXPECT_EQ(unknown.code, grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.message, "job 9223372036854775807 not found");
  EXPECT_EQ(JobCount(), 1);
}

// ---- The worker protocol ----------------------------------------------------

TEST_F(BadInput, WorkerDuplicateOutOfOrderAndStaleReports) {
  StartServer();
  const int64_t id = QueueWorkerJob();
  const v2::Lease lease = LeaseOne("w1", 2);
  ASSERT_EQ(lease.job().id(), id);

  // Duplicate: the same report twice is taken twice; progress is the same,
  // and the line is logged each time (a report carries no idempotency key).
  ASSERT_EQ(Report(StageReport(lease, 0.5, "half", 2)).code,
            grpc::StatusCode::OK);
  ASSERT_EQ(Report(StageReport(lease, 0.5, "half", 2)).code,
            grpc::StatusCode::OK);
  v2::Job job = Job(id);
  ASSERT_EQ(job.progress().stages_size(), 1);
  EXPECT_EQ(job.progress().stages(0).progress(), 0.5);
  EXPECT_EQ(LogLinesWith(job, "half"), 2);

  // Out of order: a lower progress after a higher one keeps the higher
  // (D18), its line is logged.
  ASSERT_EQ(Report(StageReport(lease, 0.8, "eighty", 2)).code,
            grpc::StatusCode::OK);
  ASSERT_EQ(Report(StageReport(lease, 0.3, "thirty", 2)).code,
            grpc::StatusCode::OK);
  job = Job(id);
  EXPECT_EQ(job.progress().stages(0).progress(), 0.8);
  EXPECT_EQ(LogLinesWith(job, "thirty"), 1);

  // Progress outside 0..1 and NaN are refused naming the stage.
  for (double bad : {1.5, -0.1, std::nan(""), HUGE_VAL}) {
    GrpcAnswer answer = Report(StageReport(lease, bad, "bad", 2));
    EXPECT_EQ(answer.code, grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(answer.message,
              "stages[0].progress: Ensure this value is between 0 and 1.");
  }
  // Made-up and foreign leases, unknown jobs.
  v2::ReportProgressRequest made_up = StageReport(lease, 0.9, "made up", 2);
  made_up.set_lease_id("nope");
  GrpcAnswer not_current = Report(made_up);
  EXPECT_EQ(not_current.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(
      not_current.message,
      absl::StrCat("lease \"nope\" is not the current lease of job ", id));
  v2::ReportProgressRequest other_job = StageReport(lease, 0.9, "other", 2);
  other_job.set_job_id(id + 1000);
  GrpcAnswer missing = Report(other_job);
  EXPECT_EQ(missing.code, grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.message, absl::StrCat("job ", id + 1000, " not found"));

  // Stale: once the 2 s lease runs out (reports renew it for 2 s) the job
  // goes back to the queue and another worker leases it; the first worker's
  // reports are refused.
  v2::Lease second;
  ASSERT_TRUE(Eventually([&] {
    second = LeaseOne("w2");
    return second.job().id() == id;
  }));
  GrpcAnswer stale = Report(StageReport(lease, 0.9, "stale", 2));
  EXPECT_EQ(stale.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(stale.message,
            absl::StrCat("lease \"", lease.lease_id(),
                         "\" is not the current lease of job ", id));
  v2::FinishJobRequest stale_finish;
  stale_finish.set_lease_id(lease.lease_id());
  stale_finish.set_job_id(id);
  stale_finish.set_status(v2::FAILURE);
  EXPECT_EQ(Finish(stale_finish).code, grpc::StatusCode::FAILED_PRECONDITION);

  // The second worker finishes; a second finish and any later report are
  // refused and change nothing.
  ASSERT_EQ(Report(StageReport(second, 1.0, "done")).code,
            grpc::StatusCode::OK);
  v2::FinishJobRequest finish;
  finish.set_lease_id(second.lease_id());
  finish.set_job_id(id);
  finish.set_status(v2::SUCCESS);
  ASSERT_EQ(Finish(finish).code, grpc::StatusCode::OK);
  const std::string final_text =
      absl::StrCat("job ", id, " is already SUCCESS");
  GrpcAnswer again = Finish(finish);
  EXPECT_EQ(again.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(again.message, final_text);
  finish.set_status(v2::FAILURE);
  EXPECT_EQ(Finish(finish).message, final_text);
  GrpcAnswer late = Report(StageReport(second, 0.2, "late"));
  EXPECT_EQ(late.code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(late.message, final_text);
  v2::HeartbeatRequest heartbeat;
  heartbeat.set_lease_id(second.lease_id());
  heartbeat.set_job_id(id);
  v2::HeartbeatResponse beat;
  EXPECT_EQ(Answer([&](grpc::ClientContext* context) {
              return workers_->Heartbeat(context, heartbeat, &beat);
            }).message,
            final_text);

  job = Job(id);
  EXPECT_EQ(job.status(), v2::SUCCESS);
  EXPECT_EQ(job.progress().stages(0).progress(), 1.0);
  for (const char* refused : {"bad", "made up", "other", "stale", "late"}) {
    EXPECT_EQ(LogLinesWith(job, refused), 0) << refused;
  }
  EXPECT_EQ(LogLinesWith(job, "done"), 1);
}

// ---- Connections ------------------------------------------------------------

TEST_F(BadInput, AClientThatNeverReadsLeavesTheServerResponsive) {
  StartServer({"--http_write_timeout_seconds=2"});
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(CreateJob(Input(absl::StrCat("Job ", i))).code,
              grpc::StatusCode::OK);
  }
  // A thousand pipelined requests for the list, none of the answers read:
  // the server's writes fill the socket and then wait.
  // (A small receive buffer, set before the connection so that the window
  // is small too.)
  const int greedy = socket(AF_INET, SOCK_STREAM, 0);
  int small_buffer = 4096;
  setsockopt(greedy, SOL_SOCKET, SO_RCVBUF, &small_buffer,
             sizeof(small_buffer));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(http_port_));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(
      connect(greedy, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
      0);
  std::string requests;
  for (int i = 0; i < 1000; ++i) {
    absl::StrAppend(&requests, "GET /api/v2/jobs/?limit=100 HTTP/1.1\r\n",
                    "Host: h\r\n\r\n");
  }
  ASSERT_TRUE(SendAll(greedy, requests));
  // On the gRPC port: a connection that never sends or reads.
  const int silent = Connect(grpc_port_);
  ASSERT_GE(silent, 0);

  // Everyone else is served meanwhile.
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(Responsive());
    EXPECT_EQ(JobCount(), 20);
  }
  // The writes to the greedy client give up after the write timeout: the
  // connection is closed (what it then reads ends).
  absl::SleepFor(absl::Seconds(4));
  timeval timeout = absl::ToTimeval(absl::Seconds(30));
  setsockopt(greedy, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const std::string got = ReadUntilClosed(greedy);
  EXPECT_THAT(got, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(got, ::testing::Not(HasSubstr("<timeout>")));
  close(greedy);
  close(silent);
  EXPECT_TRUE(Responsive());
}

TEST_F(BadInput, AThousandConnectionsOpenedAndDroppedLeakNoDescriptor) {
  StartServer();
  ASSERT_TRUE(Responsive());
  // Settle: the first calls open what the server keeps (SQLite readers,
  // gRPC's in-process channel).
  ASSERT_TRUE(Responsive());
  const int before = OpenDescriptors(pid_);
  ASSERT_GT(before, 0);

  // A thousand to each port, all open at once: some send nothing, some a
  // part of a request, some a whole one; half end with a reset.
  std::vector<int> socks;
  for (int i = 0; i < 2000; ++i) {
    const int port = i % 2 == 0 ? http_port_ : grpc_port_;
    const int sock = Connect(port);
    ASSERT_GE(sock, 0) << i;
    if (i % 3 == 1) {
      SendAll(sock, port == http_port_ ? "GET /api/v2/jobs/ HTTP/1.1\r\nHo"
                                       : "PRI * HTTP/2.0\r\n");
    } else if (i % 3 == 2 && port == http_port_) {
      SendAll(sock, "GET /api/v2/ HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    socks.push_back(sock);
  }
  for (size_t i = 0; i < socks.size(); ++i) {
    if (i % 4 < 2) {
      Reset(socks[i]);
    } else {
      close(socks[i]);
    }
  }
  EXPECT_TRUE(Responsive());
  // (The count before may still hold the connection of the last check.)
  int after = -1;
  EXPECT_TRUE(Eventually([&] {
    after = OpenDescriptors(pid_);
    return after <= before;
  })) << "before "
      << before << ", after " << after;
  EXPECT_TRUE(Responsive());
  EXPECT_EQ(StopServer(SIGTERM), 0);
}

// Slowloris clients: `count` connections to `port`, each sending the start
// of a request head and then, from a thread of its own, one more byte
// every 250 ms until destroyed (sends to a connection the server closed
// fail and are ignored).
class Slowloris {
 public:
  Slowloris(int port, int count) {
    for (int i = 0; i < count; ++i) {
      const int sock = Connect(port, absl::Seconds(60));
      if (sock < 0) break;
      SendAll(sock, "GET /api/v2/jobs/ HTTP/1.1\r\nHost: h\r\nX-Slow: ");
      socks_.push_back(sock);
    }
    thread_ = std::thread([this] {
      while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
        for (int sock : socks_) send(sock, "a", 1, MSG_NOSIGNAL);
      }
    });
  }
  ~Slowloris() {
    stop_.Notify();
    thread_.join();
    for (int sock : socks_) close(sock);
  }

  const std::vector<int>& socks() const { return socks_; }

 private:
  std::vector<int> socks_;
  absl::Notification stop_;
  std::thread thread_;
};

TEST_F(BadInput, ASlowlorisAttackEndsWithinTheReadTimeout) {
  StartServer({"--http_read_timeout_seconds=4"});
  // More connections than the REST face has threads (64), all sending all
  // the time.
  Slowloris attack(http_port_, 100);
  ASSERT_EQ(attack.socks().size(), 100u);
  absl::SleepFor(absl::Seconds(1));

  // A normal request, made while the attack goes on, is answered within
  // 30 s.
  auto client = Rest();
  client->set_connection_timeout(30, 0);
  const absl::Time start = absl::Now();
  httplib::Result result = client->Get("/api/v2/");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));

  // Every attacker was answered 408 and closed, those that waited for a
  // thread too: their time counts from their connection's acceptance.
  for (int sock : attack.socks()) {
    const std::string answer = ReadUntilClosed(sock);
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 408 Request Timeout\r\n"));
    EXPECT_EQ(BodyOf(answer),
              R"({"detail":"The request did not arrive within 4s."})");
  }
  EXPECT_TRUE(Responsive());
}

TEST_F(BadInput, KeptAliveClientsCannotHoldEveryThread) {
  StartServer();
  // 80 clients (more than the REST face's 64 threads), each sending a
  // request on its kept-alive connection every 100 ms, for 8 s.
  constexpr int kClients = 80;
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  absl::Notification stop;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      auto client = Rest();
      client->set_keep_alive(true);
      client->set_read_timeout(30, 0);
      while (!stop.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
        httplib::Result result = client->Get("/api/v2/jobs/?limit=1");
        if (result && result->status == 200) {
          ++answered;
        } else {
          ++failed;
        }
      }
    });
  }
  absl::SleepFor(absl::Seconds(2));
  // A newcomer is served while they go on: a connection that answers
  // while others wait for a thread closes after its answer, and its
  // client reconnects behind them.
  auto newcomer = Rest();
  newcomer->set_read_timeout(30, 0);
  const absl::Time start = absl::Now();
  httplib::Result result = newcomer->Get("/api/v2/");
  const absl::Duration waited = absl::Now() - start;
  absl::SleepFor(absl::Seconds(6));
  stop.Notify();
  for (std::thread& client : clients) client.join();

  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  // Well inside the read timeout (10 s), which would answer 408.
  EXPECT_LT(waited, absl::Seconds(10));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(answered.load(), kClients);
  EXPECT_TRUE(Responsive());
}

// SIGTERM or SIGINT with slow clients connected: 100 slowloris connections
// sending all along, a client whose answers are never read and an event
// stream.
class BadInputShutdown : public BadInput,
                         public ::testing::WithParamInterface<int> {};

TEST_P(BadInputShutdown, ExitsZeroWithinTheGraceDespiteSlowClients) {
  StartServer({"--shutdown_grace_seconds=2"});
  ASSERT_EQ(CreateJob(Input("Watched")).code, grpc::StatusCode::OK);
  Slowloris attack(http_port_, 100);
  ASSERT_EQ(attack.socks().size(), 100u);
  const int greedy = Connect(http_port_);
  std::string requests;
  for (int i = 0; i < 1000; ++i) {
    absl::StrAppend(&requests, "GET /api/v2/jobs/?limit=100 HTTP/1.1\r\n",
                    "Host: h\r\n\r\n");
  }
  ASSERT_TRUE(SendAll(greedy, requests));
  const int stream = Connect(http_port_);
  ASSERT_TRUE(SendAll(stream,
                      "GET /api/v2/jobs/1/progress/ HTTP/1.1\r\nHost: h\r\n"
                      "Accept: text/event-stream\r\n\r\n"));
  absl::SleepFor(absl::Seconds(1));

  // The stop: the process exits 0 within the grace plus a margin.
  const absl::Time start = absl::Now();
  EXPECT_EQ(StopServer(GetParam()), 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2 + 10));
  EXPECT_THAT(server_->stderr_text(), HasSubstr("stopped"));
  close(greedy);
  close(stream);
}

INSTANTIATE_TEST_SUITE_P(Signals, BadInputShutdown,
                         ::testing::Values(SIGTERM, SIGINT),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == SIGTERM ? "Sigterm" : "Sigint";
                         });

// ---- The standalone REST face (jobline_rest) --------------------------------

// jobline_rest in front of a job_server has the same body limit and
// slow-client bounds, set by the same flags (server/rest/rest_flags.h).
TEST(StandaloneRest, HasTheBodyLimitAndSlowClientBoundsOfItsFlags) {
  const std::string dir = NewTempDir("standalone-rest");
  ASSERT_FALSE(dir.empty());
  ServerProcess server;
  const absl::Status started = server.Start(
      {"--db=" + dir + "/jobline.db",
       "--seed_catalog=" + RunfilePath("tools/demo-catalog.json")});
  ASSERT_TRUE(started.ok()) << started;
  std::unique_ptr<ServerProcess> rest = ServerProcess::RestProxy();
  const absl::Status proxied = rest->Start(
      {"--grpc_target=" + server.address(), "--max_body_kb=1",
       "--http_read_timeout_seconds=1", "--http_keep_alive_seconds=1"});
  ASSERT_TRUE(proxied.ok()) << proxied;
  const int port =
      std::stoi(rest->address().substr(rest->address().rfind(':') + 1));

  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30, 0);
  httplib::Result created =
      client.Post("/api/v2/jobs/", R"({"name": "Through the proxy",
          "project_id": 16, "job_type_key": "unknown"})",
                  "application/json");
  ASSERT_TRUE(created) << httplib::to_string(created.error());
  EXPECT_EQ(created->status, 201) << created->body;
  EXPECT_EQ(Json::parse(created->body).value("name", ""), "Through the proxy");
  httplib::Result listed = client.Get("/api/v2/jobs/?project_id=16");
  ASSERT_TRUE(listed) << httplib::to_string(listed.error());
  EXPECT_EQ(Json::parse(listed->body).value("count", -1), 1) << listed->body;

  // --max_body_kb=1: 1,025 bytes are one too many.
  const std::string big =
      absl::StrCat(R"({"name": ")", std::string(1025 - 12, 'x'), R"("})");
  ASSERT_EQ(big.size(), 1025u);
  httplib::Result refused =
      client.Post("/api/v2/jobs/", big, "application/json");
  ASSERT_TRUE(refused) << httplib::to_string(refused.error());
  EXPECT_EQ(refused->status, 413);
  EXPECT_EQ(refused->body,
            R"({"detail":"Request body is larger than 1024 bytes."})");

  // --http_read_timeout_seconds=1: a head that never ends gets 408 after a
  // second and its connection is closed.
  const int sock = Connect(port);
  ASSERT_GE(sock, 0);
  ASSERT_TRUE(SendAll(sock, "GET /api/v2/jobs/ HTTP/1.1\r\nHost: x\r\n"));
  const absl::Time sent = absl::Now();
  const std::string answer = ReadUntilClosed(sock);
  close(sock);
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 408 Request Timeout\r\n"));
  EXPECT_EQ(BodyOf(answer),
            R"({"detail":"The request did not arrive within 1s."})");
  EXPECT_GE(absl::Now() - sent, absl::Milliseconds(900));

  absl::StatusOr<int> rest_code = rest->Stop(SIGTERM);
  ASSERT_TRUE(rest_code.ok()) << rest_code.status();
  EXPECT_EQ(*rest_code, 0) << rest->stderr_text();
  absl::StatusOr<int> server_code = server.Stop(SIGTERM);
  ASSERT_TRUE(server_code.ok()) << server_code.status();
  EXPECT_EQ(*server_code, 0);
}

// Out-of-range limits and bounds stop jobline_rest before it serves, with
// exit code 2 and a message naming the flag and its range.
TEST(StandaloneRest, RefusesOutOfRangeFlagsNamingThem) {
  const std::string binary = RunfilePath("server/rest/jobline_rest");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--max_rest_streams=49",
       "jobline_rest: --max_rest_streams must be 1 to 48 (of 64 REST "
       "threads)\n"},
      {"--max_body_kb=0", "jobline_rest: --max_body_kb must be 1 to 1048576\n"},
      {"--http_read_timeout_seconds=0",
       "jobline_rest: --http_read_timeout_seconds must be 1 to 86400\n"},
      {"--http_write_timeout_seconds=86401",
       "jobline_rest: --http_write_timeout_seconds must be 1 to 86400\n"},
      {"--http_keep_alive_seconds=-1",
       "jobline_rest: --http_keep_alive_seconds must be 1 to 86400\n"},
      {"--grpc_target=", "jobline_rest: --grpc_target must not be empty\n"},
  };
  for (const auto& [flag, expected] : cases) {
    absl::StatusOr<CommandResult> result =
        RunCommand({binary, flag, "--http_port=0"});
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->exit_code, 2) << flag;
    EXPECT_EQ(result->err, expected) << flag;
  }
}

// A GET through `port` (jobline_rest): its HTTP status, or 0 without an
// answer.
int ProxyGetStatus(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  httplib::Result result = client.Get("/api/v2/jobs/");
  return result ? result->status : 0;
}

// After an outage of its gRPC backend, jobline_rest serves again within
// about a second of the backend's return: gRPC's reconnect backoff, which
// grows to 120 s by default, is capped at a second.
TEST(StandaloneRest, ServesAgainSoonAfterTheBackendReturns) {
  const std::string dir = NewTempDir("standalone-rest-outage");
  ASSERT_FALSE(dir.empty());
  const int grpc_port = FreePort();
  ASSERT_NE(grpc_port, 0);
  const std::vector<std::string> server_flags = {
      "--db=" + dir + "/jobline.db",
      "--seed_catalog=" + RunfilePath("tools/demo-catalog.json"),
      absl::StrCat("--grpc_port=", grpc_port)};
  auto server = std::make_unique<ServerProcess>();
  absl::Status started = server->Start(server_flags);
  ASSERT_TRUE(started.ok()) << started;
  std::unique_ptr<ServerProcess> rest = ServerProcess::RestProxy();
  started = rest->Start({absl::StrCat("--grpc_target=127.0.0.1:", grpc_port)});
  ASSERT_TRUE(started.ok()) << started;
  const int port =
      std::stoi(rest->address().substr(rest->address().rfind(':') + 1));
  EXPECT_EQ(ProxyGetStatus(port), 200);

  // Ten seconds down, asked every half second: by default the backoff
  // (1 s, growing 1.6 times an attempt) would have grown past six seconds
  // by then.
  absl::StatusOr<int> killed = server->Stop(SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  const absl::Time down_until = absl::Now() + absl::Seconds(10);
  while (absl::Now() < down_until) {
    EXPECT_EQ(ProxyGetStatus(port), 503);
    absl::SleepFor(absl::Milliseconds(500));
  }

  server = std::make_unique<ServerProcess>();
  started = server->Start(server_flags);
  ASSERT_TRUE(started.ok()) << started;
  const absl::Time back = absl::Now();
  // By default the next attempt would come about 5 s after the return.
  EXPECT_TRUE(Eventually([port] { return ProxyGetStatus(port) == 200; },
                         absl::Seconds(3)))
      << "still not served " << absl::Now() - back << " after the return";

  absl::StatusOr<int> rest_code = rest->Stop(SIGTERM);
  ASSERT_TRUE(rest_code.ok()) << rest_code.status();
  EXPECT_EQ(*rest_code, 0);
  absl::StatusOr<int> server_code = server->Stop(SIGTERM);
  ASSERT_TRUE(server_code.ok()) << server_code.status();
  EXPECT_EQ(*server_code, 0);
}

}  // namespace
}  // namespace jobline
