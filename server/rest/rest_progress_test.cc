// End-to-end tests of the progress stream of the REST face
// (GET /api/v2/jobs/{id}/progress/): WatchProgress as Server-Sent Events and
// as NDJSON, on the in-process stack of server/rest/rest_test_server.h with
// its WatchHub, read over a raw socket as the bytes arrive.
//
// The clock is a FakeClock and nothing runs in the background: a job
// changes only when a test changes it, so every event is known exactly.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"
#include "server/rest/rest_test_server.h"
#include "server/watch_hub.h"
#include "storage/fake_clock.h"
#include "storage/job_store.h"

namespace jobline {
namespace rest {
namespace {

using Json = nlohmann::ordered_json;

// One SSE event as a client parses it; a comment alone is an event with
// only `comment` set.
struct SseEvent {
  std::string id;
  std::string type;
  std::string data;
  std::string comment;
};

// A client of one HTTP answer over a raw socket, read as it arrives: the
// head at once, then the body line by line (chunked transfer coding
// decoded). Every read gives up after 30 s, so that a stream that never
// comes fails the test instead of hanging it.
class StreamClient {
 public:
  // Sends GET `target` with `headers` ("Name: value") to 127.0.0.1:`port`
  // and reads the answer's head.
  StreamClient(int port, const std::string& target,
               const std::vector<std::string>& headers = {}) {
    socket_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout = {30, 0};
    setsockopt(socket_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(socket_, reinterpret_cast<sockaddr*>(&address),
                sizeof(address)) != 0) {
      return;
    }
    std::string request = absl::StrCat(
        "GET ", target, " HTTP/1.1\r\nHost: 127.0.0.1:", port, "\r\n");
    for (const std::string& header : headers) {
      absl::StrAppend(&request, header, "\r\n");
    }
    request += "\r\n";
    send(socket_, request.data(), request.size(), MSG_NOSIGNAL);
    ReadHead();
  }

  ~StreamClient() { Close(); }

  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  int status() const { return status_; }

  // The value of header `name` (any case), empty when absent.
  std::string header(absl::string_view name) const {
    for (const auto& [key, value] : headers_) {
      if (absl::EqualsIgnoreCase(key, name)) return value;
    }
    return "";
  }

  // The next line of the body, without its "\n"; nullopt at its end.
  std::optional<std::string> NextLine() {
    while (true) {
      const size_t newline = body_.find('\n');
      if (newline != std::string::npos) {
        std::string line = body_.substr(0, newline);
        body_.erase(0, newline + 1);
        return line;
      }
      if (!MoreBody()) return std::nullopt;
    }
  }

  // The whole rest of the body.
  std::string Rest() {
    while (MoreBody()) {
    }
    std::string rest = std::move(body_);
    body_.clear();
    return rest;
  }

  // The next SSE event (lines up to a blank line); nullopt at the end.
  std::optional<SseEvent> NextEvent() {
    SseEvent event;
    bool any = false;
    while (std::optional<std::string> line = NextLine()) {
      if (line->empty()) {
        if (any) return event;
        continue;
      }
      any = true;
      const absl::string_view text = *line;
      if (absl::StartsWith(text, ":")) {
        event.comment =
            std::string(absl::StripLeadingAsciiWhitespace(text.substr(1)));
      } else if (absl::StartsWith(text, "id: ")) {
        event.id = std::string(text.substr(4));
      } else if (absl::StartsWith(text, "event: ")) {
        event.type = std::string(text.substr(7));
      } else if (absl::StartsWith(text, "data: ")) {
        event.data = std::string(text.substr(6));
      }
    }
    if (any) return event;
    return std::nullopt;
  }

  // Whether the body has ended and the server closed the connection or
  // kept it for the next request (the chunked body's last chunk came).
  bool ended() const { return ended_; }

  void Close() {
    if (socket_ >= 0) close(socket_);
    socket_ = -1;
  }

 private:
  // Receives more bytes; false when the connection ended or failed.
  bool Receive() {
    if (socket_ < 0) return false;
    char buffer[4096];
    const ssize_t got = recv(socket_, buffer, sizeof(buffer), 0);
    if (got <= 0) return false;
    raw_.append(buffer, static_cast<size_t>(got));
    return true;
  }

  void ReadHead() {
    while (raw_.find("\r\n\r\n") == std::string::npos) {
      if (!Receive()) return;
    }
    const size_t end = raw_.find("\r\n\r\n");
    const std::string head = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12 ||
        !absl::SimpleAtoi(status_line.substr(9, 3), &status_)) {
      status_ = 0;
    }
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      headers_.emplace_back(
          line.substr(0, colon),
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
    }
    chunked_ = absl::EqualsIgnoreCase(header("Transfer-Encoding"), "chunked");
    if (!chunked_ && !absl::SimpleAtoi(header("Content-Length"), &remaining_)) {
      remaining_ = 0;
    }
  }

  // Moves the next piece of the body from raw_ to body_; false at its end.
  bool MoreBody() {
    if (ended_) return false;
    if (!chunked_) {
      while (raw_.empty() && remaining_ > 0) {
        if (!Receive()) return false;
      }
      const size_t take = std::min(raw_.size(), remaining_);
      body_.append(raw_, 0, take);
      raw_.erase(0, take);
      remaining_ -= take;
      ended_ = remaining_ == 0;
      return take > 0;
    }
    // A chunk: its size in hex, CRLF, the bytes, CRLF; size 0 ends.
    while (true) {
      const size_t size_end = raw_.find("\r\n");
      if (size_end != std::string::npos) {
        size_t size = 0;
        if (!absl::SimpleHexAtoi(raw_.substr(0, size_end), &size)) {
          return false;
        }
        if (size == 0) {
          ended_ = true;
          return false;
        }
        if (raw_.size() >= size_end + 2 + size + 2) {
          body_.append(raw_, size_end + 2, size);
          raw_.erase(0, size_end + 2 + size + 2);
          return true;
        }
      }
      if (!Receive()) return false;
    }
  }

  int socket_ = -1;
  int status_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  bool chunked_ = false;
  size_t remaining_ = 0;
  bool ended_ = false;
  std::string raw_;
  std::string body_;
};

// 2025-11-12 19:00:59 UTC + `k` seconds.
absl::Time Moment(int k) {
  return absl::FromCivil(absl::CivilSecond(2025, 11, 12, 19, 0, 59),
                         absl::UTCTimeZone()) +
         absl::Seconds(k);
}

// Waits until `condition` holds, polling; false if it still does not after
// a minute (the test then fails, instead of hanging).
template <typename Condition>
bool Eventually(Condition condition) {
  const absl::Time give_up = absl::Now() + absl::Minutes(1);
  while (!condition()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

class RestProgress : public ::testing::Test {
 protected:
  RestProgress() : clock_(Moment(0)) {}

  void SetUp() override { Start(RestServerOptions()); }

  void Start(RestServerOptions rest) {
    RestTestServerOptions options;
    options.clock = &clock_;
    options.rest = std::move(rest);
    server_ = std::make_unique<RestTestServer>(options);
    v2::Catalog catalog;
    v2::Project* project = catalog.add_projects();
    project->set_id(16);
    project->set_name("Aarhus Universitet, Department of Ecoscience");
    const absl::Status started = server_->Start(catalog);
    ASSERT_TRUE(started.ok()) << started;
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  // Creates a job (CREATED, change 1) and returns its id.
  int64_t CreateJob() {
    httplib::Result result =
        client_->Post("/api/v2/jobs/",
                      R"({"name": "Sync", "project_id": 16,)"
                      R"( "job_type_key": "data_storage_sync"})",
                      "application/json");
    EXPECT_TRUE(result) << httplib::to_string(result.error());
    if (!result) return 0;
    EXPECT_EQ(result->status, 201) << result->body;
    return Json::parse(result->body, nullptr, false).value("id", int64_t{0});
  }

  // Appends one INFO line (one change).
  void Log(int64_t id, const std::string& message) {
    ASSERT_TRUE(
        server_->store().AppendLogs(id, {{LogLevel::kInfo, message}}).ok());
  }

  // Sets the job's status (one change, no line).
  void SetStatus(int64_t id, v2::JobStatus status) {
    ASSERT_TRUE(server_->store()
                    .MutateJob(id,
                               [status](JobMutation& mutation) {
                                 mutation.job.set_status(status);
                                 return absl::OkStatus();
                               })
                    .ok());
  }

  // The job's document as GET /api/v2/jobs/{id}/ answers it now.
  Json Document(int64_t id) {
    httplib::Result result =
        client_->Get(absl::StrCat("/api/v2/jobs/", id, "/").c_str());
    EXPECT_TRUE(result) << httplib::to_string(result.error());
    if (!result) return Json();
    EXPECT_EQ(result->status, 200) << result->body;
    return Json::parse(result->body, nullptr, false);
  }

  // The document without its log lines, as a progress message carries it.
  Json DocumentWithoutLogs(int64_t id) {
    Json document = Document(id);
    document["logs"] = {{"stdout", Json::array()}, {"stderr", Json::array()}};
    return document;
  }

  std::string ProgressPath(int64_t id, const std::string& query = "") {
    return absl::StrCat("/api/v2/jobs/", id, "/progress/", query);
  }

  FakeClock clock_;
  std::unique_ptr<RestTestServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

// `text` parsed; a discarded value when it is not JSON.
Json Parse(const std::string& text) {
  return Json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// The data of a progress event: {"sequence", "snapshot", "job",
// "status_changes", "logs"}.
Json ProgressData(int64_t sequence, bool snapshot, Json job,
                  Json status_changes = Json::array(),
                  Json logs = Json::array()) {
  Json data = Json::object();
  data["sequence"] = sequence;
  data["snapshot"] = snapshot;
  data["job"] = std::move(job);
  data["status_changes"] = std::move(status_changes);
  data["logs"] = std::move(logs);
  return data;
}

Json StatusChange(int64_t sequence, const std::string& status,
                  const std::string& changed_at) {
  return {
      {"sequence", sequence}, {"status", status}, {"changed_at", changed_at}};
}

Json LogLine(int64_t sequence, const std::string& text) {
  return {{"sequence", sequence}, {"level", "INFO"}, {"text", text}};
}

TEST_F(RestProgress, SseGivesTheDocumentThenEveryChange) {
  const int64_t id = CreateJob();
  clock_.Set(Moment(1));
  Log(id, "queued by the test");

  StreamClient stream(server_->port(), ProgressPath(id),
                      {"Accept: text/event-stream"});
  ASSERT_EQ(stream.status(), 200);
  EXPECT_EQ(stream.header("Content-Type"), "text/event-stream");
  EXPECT_EQ(stream.header("Cache-Control"), "no-cache");

  // The current document, as GET shows it.
  std::optional<SseEvent> event = stream.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->id, "2");
  EXPECT_EQ(event->type, "snapshot");
  EXPECT_EQ(Parse(event->data), ProgressData(2, true, Document(id)));

  // A run (a status), a line, the final status: one event each.
  clock_.Set(Moment(2));
  httplib::Result run =
      client_->Post(absl::StrCat("/api/v2/jobs/", id, "/run/").c_str());
  ASSERT_TRUE(run);
  ASSERT_EQ(run->status, 200) << run->body;
  event = stream.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->id, "3");
  EXPECT_EQ(event->type, "progress");
  EXPECT_EQ(
      Parse(event->data),
      ProgressData(
          3, false, DocumentWithoutLogs(id),
          Json::array({StatusChange(3, "PENDING", "2025-11-12T19:01:01")})));

  clock_.Set(Moment(3));
  Log(id, "working");
  event = stream.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->id, "4");
  EXPECT_EQ(event->type, "progress");
  EXPECT_EQ(
      Parse(event->data),
      ProgressData(
          4, false, DocumentWithoutLogs(id), Json::array(),
          Json::array({LogLine(4, "[2025-11-12 19:01:02] INFO working")})));

  clock_.Set(Moment(4));
  SetStatus(id, v2::SUCCESS);
  event = stream.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->id, "5");
  EXPECT_EQ(
      Parse(event->data),
      ProgressData(
          5, false, DocumentWithoutLogs(id),
          Json::array({StatusChange(5, "SUCCESS", "2025-11-12T19:01:03")})));

  // A final status ends the stream.
  event = stream.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->id, "");
  EXPECT_EQ(event->type, "end");
  EXPECT_EQ(event->data, R"({"status":"OK"})");
  EXPECT_FALSE(stream.NextEvent().has_value());
  EXPECT_TRUE(stream.ended());
}

TEST_F(RestProgress, LastEventIdResumesWithExactlyTheMissedLines) {
  const int64_t id = CreateJob();
  {
    StreamClient stream(server_->port(), ProgressPath(id));
    ASSERT_EQ(stream.status(), 200);
    ASSERT_EQ(stream.NextEvent()->id, "1");
    Log(id, "a");
    ASSERT_EQ(stream.NextEvent()->id, "2");
  }
  Log(id, "b");
  Log(id, "c");

  StreamClient resumed(server_->port(), ProgressPath(id), {"Last-Event-ID: 2"});
  ASSERT_EQ(resumed.status(), 200);
  std::optional<SseEvent> event = resumed.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->id, "4");
  EXPECT_EQ(event->type, "progress");
  EXPECT_EQ(
      Parse(event->data),
      ProgressData(4, false, DocumentWithoutLogs(id), Json::array(),
                   Json::array({LogLine(3, "[2025-11-12 19:00:59] INFO b"),
                                LogLine(4, "[2025-11-12 19:00:59] INFO c")})));

  // ?after_sequence does the same; the header wins over it.
  StreamClient by_query(server_->port(), ProgressPath(id, "?after_sequence=3"));
  event = by_query.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(Parse(event->data)["logs"],
            Json::array({LogLine(4, "[2025-11-12 19:00:59] INFO c")}));
  StreamClient both(server_->port(), ProgressPath(id, "?after_sequence=3"),
                    {"Last-Event-ID: 2"});
  event = both.NextEvent();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(Parse(event->data)["logs"].size(), 2u);
}

TEST_F(RestProgress, ABadResumeValueIs400NamingIt) {
  const int64_t id = CreateJob();
  struct Case {
    std::string query;
    std::string last_event_id;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"", "seven", R"({"Last-Event-ID":["A valid integer is required."]})"},
      {"", "2.5", R"({"Last-Event-ID":["A valid integer is required."]})"},
      {"", "-1",
       R"({"Last-Event-ID":["Ensure this value is greater than or equal )"
       R"(to 0."]})"},
      {"?after_sequence=x", "",
       R"({"after_sequence":["A valid integer is required."]})"},
      {"?after_sequence=-1", "",
       R"({"after_sequence":["Ensure this value is greater than or equal )"
       R"(to 0."]})"},
  };
  for (const Case& c : cases) {
    httplib::Headers headers;
    if (!c.last_event_id.empty()) {
      headers.emplace("Last-Event-ID", c.last_event_id);
    }
    httplib::Result result =
        client_->Get(ProgressPath(id, c.query).c_str(), headers);
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 400) << c.query << c.last_event_id;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    EXPECT_EQ(result->body, c.body);
  }
  // Nothing stays open.
  EXPECT_EQ(server_->rest_server().open_streams(), 0);
}

TEST_F(RestProgress, AnUnknownJobIs404) {
  for (const char* path :
       {"/api/v2/jobs/999/progress/", "/api/v2/jobs/abc/progress/"}) {
    httplib::Result result = client_->Get(path);
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 404) << path;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    EXPECT_EQ(result->body, R"({"detail":"Not found."})");
  }
  // A format the stream does not have.
  const int64_t id = CreateJob();
  httplib::Result result =
      client_->Get(ProgressPath(id, "?format=api").c_str());
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
}

TEST_F(RestProgress, NdjsonCarriesTheSameObjectsOneALine) {
  const int64_t id = CreateJob();
  StreamClient sse(server_->port(), ProgressPath(id));
  StreamClient ndjson(server_->port(), ProgressPath(id, "?format=ndjson"));
  StreamClient suffixed(server_->port(),
                        absl::StrCat("/api/v2/jobs/", id, "/progress.ndjson"));
  ASSERT_EQ(ndjson.status(), 200);
  EXPECT_EQ(ndjson.header("Content-Type"), "application/x-ndjson");
  EXPECT_EQ(ndjson.header("Cache-Control"), "no-cache");
  ASSERT_EQ(suffixed.status(), 200);

  // Each change is read from the three streams before the next one, so
  // that each carries one change.
  const Json snapshot = ProgressData(1, true, Document(id));
  std::vector<std::string> sse_data;
  std::vector<std::string> lines;
  std::vector<std::string> suffixed_lines;
  auto read_all = [&] {
    std::optional<SseEvent> event = sse.NextEvent();
    std::optional<std::string> line = ndjson.NextLine();
    std::optional<std::string> suffixed_line = suffixed.NextLine();
    ASSERT_TRUE(event.has_value() && line.has_value() &&
                suffixed_line.has_value());
    sse_data.push_back(event->type == "end" ? "end" : event->data);
    lines.push_back(*line);
    suffixed_lines.push_back(*suffixed_line);
  };
  read_all();
  Log(id, "one");
  read_all();
  SetStatus(id, v2::FAILURE);
  read_all();
  read_all();

  EXPECT_EQ(Parse(sse_data[0]), snapshot);
  EXPECT_EQ(sse_data[3], "end");
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(lines[i], sse_data[i]) << i;
  EXPECT_EQ(lines[3], R"({"end":{"status":"OK"}})");
  EXPECT_EQ(Parse(lines[1])["logs"],
            Json::array({LogLine(2, "[2025-11-12 19:00:59] INFO one")}));
  EXPECT_EQ(Parse(lines[2])["status_changes"],
            Json::array({StatusChange(3, "FAILURE", "2025-11-12T19:00:59")}));
  EXPECT_FALSE(ndjson.NextLine().has_value());
  EXPECT_TRUE(ndjson.ended());

  // The suffix is ?format=ndjson.
  EXPECT_EQ(suffixed_lines, lines);
}

TEST_F(RestProgress, StreamsPastTheLimitAre429AndUnaryCallsStillServe) {
  server_.reset();
  RestServerOptions rest;
  rest.threads = 4;  // two streams at most
  Start(rest);
  const int64_t id = CreateJob();

  auto first =
      std::make_unique<StreamClient>(server_->port(), ProgressPath(id));
  StreamClient second(server_->port(), ProgressPath(id));
  ASSERT_EQ(first->status(), 200);
  ASSERT_EQ(second.status(), 200);
  ASSERT_TRUE(first->NextEvent().has_value());
  ASSERT_TRUE(second.NextEvent().has_value());
  EXPECT_EQ(server_->rest_server().open_streams(), 2);

  httplib::Result refused = client_->Get(ProgressPath(id).c_str());
  ASSERT_TRUE(refused) << httplib::to_string(refused.error());
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(refused->body,
            R"({"detail":"Too many open progress streams (limit 2)."})");
  httplib::Result unary =
      client_->Get(absl::StrCat("/api/v2/jobs/", id, "/").c_str());
  ASSERT_TRUE(unary);
  EXPECT_EQ(unary->status, 200);

  // A closed stream makes room.
  first.reset();
  ASSERT_TRUE(
      Eventually([&] { return server_->rest_server().open_streams() == 1; }));
  StreamClient third(server_->port(), ProgressPath(id));
  EXPECT_EQ(third.status(), 200);
}

TEST_F(RestProgress, AClientThatLeavesFreesItsStream) {
  const int64_t id = CreateJob();
  auto stream =
      std::make_unique<StreamClient>(server_->port(), ProgressPath(id));
  ASSERT_EQ(stream->status(), 200);
  ASSERT_TRUE(stream->NextEvent().has_value());
  EXPECT_EQ(server_->hub().open_streams(), 1);
  EXPECT_EQ(server_->rest_server().open_streams(), 1);

  // Nothing is written after the client left: it is noticed anyway.
  stream.reset();
  EXPECT_TRUE(Eventually([&] { return server_->hub().open_streams() == 0; }));
  EXPECT_TRUE(
      Eventually([&] { return server_->rest_server().open_streams() == 0; }));
}

TEST_F(RestProgress, AnIdleStreamSendsKeepAlives) {
  server_.reset();
  RestServerOptions rest;
  rest.transcoder.stream_keep_alive = absl::Milliseconds(50);
  Start(rest);
  const int64_t id = CreateJob();
  StreamClient stream(server_->port(), ProgressPath(id));
  ASSERT_EQ(stream.NextEvent()->type, "snapshot");
  std::optional<SseEvent> idle = stream.NextEvent();
  ASSERT_TRUE(idle.has_value());
  EXPECT_EQ(idle->comment, "keep-alive");
  EXPECT_EQ(idle->data, "");

  // The NDJSON keep-alive is an empty line.
  StreamClient ndjson(server_->port(), ProgressPath(id, "?format=ndjson"));
  ASSERT_TRUE(ndjson.NextLine().has_value());
  EXPECT_EQ(ndjson.NextLine(), "");
}

TEST_F(RestProgress, TheHubsShutdownEndsTheStreamWithUnavailable) {
  const int64_t id = CreateJob();
  StreamClient stream(server_->port(), ProgressPath(id));
  ASSERT_TRUE(stream.NextEvent().has_value());
  server_->hub().Shutdown();
  std::optional<SseEvent> end = stream.NextEvent();
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->type, "end");
  EXPECT_EQ(end->data,
            R"({"status":"UNAVAILABLE","detail":"the server is shutting down; )"
            R"(watch again with after_sequence to resume"})");
  EXPECT_FALSE(stream.NextEvent().has_value());
}

TEST_F(RestProgress, StoppingTheRestFaceEndsTheStreamWithUnavailable) {
  const int64_t id = CreateJob();
  StreamClient stream(server_->port(), ProgressPath(id, "?format=ndjson"));
  ASSERT_TRUE(stream.NextLine().has_value());
  std::thread stop([this] { server_->rest_server().Stop(); });
  EXPECT_EQ(stream.NextLine(),
            R"({"end":{"status":"UNAVAILABLE","detail":"The server is )"
            R"(shutting down; reconnect with Last-Event-ID to resume."}})");
  EXPECT_FALSE(stream.NextLine().has_value());
  stream.Close();
  stop.join();
  EXPECT_TRUE(Eventually([&] { return server_->hub().open_streams() == 0; }));
}

}  // namespace
}  // namespace rest
}  // namespace jobline
