// The requests of the Antenna web UI's jobs pages, replayed against the REST
// face of a real in-process stack (server/rest/rest_test_server.h), and
// every field the UI reads checked for presence, JSON type and, where the
// value is deterministic, the exact value (spec section 12, with the
// documents of 1.2 - 1.5, the endpoints of 5 and the list rules of 6).
//
// One test per page or hook of the UI: the jobs list (useJobs), the detail
// page (useJobDetails), useCreateJob, useQueueJob (run), useCancelJob,
// useRetryJob, useDeleteJob, and the error display.
//
// Requests carry what the UI's HTTP client (axios) sends: the Accept header
// "application/json, text/plain, */*", JSON bodies with ids as strings, and
// action POSTs with neither a body nor a Content-Type.
//
// Nothing runs in the background: no runner and no worker is started, and
// the clock is a FakeClock, so every timestamp is known. What a worker would
// report is written through the store, as the worker protocol stores it.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/substitute.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "jobline/v2/catalog.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"
#include "server/rest/rest_test_server.h"
#include "storage/fake_clock.h"
#include "storage/job_store.h"

namespace jobline {
namespace rest {
namespace {

// Documents are compared as the UI sees them: key order does not matter.
using Json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// The Accept header axios sends with every request.
constexpr char kUiAccept[] = "application/json, text/plain, */*";

// The records the jobs point to: two projects; stations, pipelines and
// collections of project 16, one of each kind in project 18; captures of
// station 60; the export of collection 111.
constexpr char kCatalogue[] = R"({
  "projects": [
    {"id": 16, "name": "Aarhus Universitet, Department of Ecoscience"},
    {"id": 18, "name": "Demo project"}
  ],
  "deployments": [
    {"id": 60, "name": "Mols Laboratory, station 1", "project_id": 16},
    {"id": 61, "name": "Mols Laboratory, station 2", "project_id": 16},
    {"id": 62, "name": "Demo station", "project_id": 18}
  ],
  "pipelines": [
    {"id": 3, "name": "Moth detector", "slug": "moth-detector",
     "description": "Detects moths in trap images.", "version": 1,
     "version_name": "2025.01", "created_at": "2025-01-02T09:00:00.500Z",
     "updated_at": "2025-01-02T09:00:00.500Z"},
    {"id": 4, "name": "Quick check", "slug": "quick-check",
     "description": "", "version": 2, "version_name": "",
     "created_at": "2025-03-04T05:06:07Z",
     "updated_at": "2025-03-04T05:06:07Z"}
  ],
  "capture_collections": [
    {"id": 111, "name": "Random 1000", "method": "random",
     "kwargs": {"size": 1000}, "project_id": 16},
    {"id": 112, "name": "All captures", "method": "full", "project_id": 16},
    {"id": 120, "name": "Starred", "method": "starred", "project_id": 18}
  ],
  "captures": [
    {"id": 5001, "deployment_id": 60, "event_id": 901,
     "url": "https://example.org/captures/60/20250612220000.jpg",
     "width": 4096, "height": 2160, "timestamp": "2025-06-12T22:00:00Z",
     "path": "60/20250612220000.jpg"},
    {"id": 5002, "deployment_id": 60, "path": "60/20250612221000.jpg"}
  ],
  "data_exports": [
    {"id": 7, "user": 1, "project": 16, "format": "occurrences_simple_csv",
     "filters": {"collection_id": 111}}
  ]
})";

// Second `k` of the test's timeline: 2025-11-12 19:00:59.806356 UTC + k s.
absl::Time Moment(int k) {
  return absl::FromCivil(absl::CivilSecond(2025, 11, 12, 19, 0, 59),
                         absl::UTCTimeZone()) +
         absl::Microseconds(806356) + absl::Seconds(k);
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(
      (time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  return timestamp;
}

google::protobuf::Value Number(double number) {
  google::protobuf::Value value;
  value.set_number_value(number);
  return value;
}

google::protobuf::Value Text(const std::string& text) {
  google::protobuf::Value value;
  value.set_string_value(text);
  return value;
}

// The stage `key` of `job`, appended (CREATED, 0, no params) when missing.
v2::ProgressStage& StageOf(v2::Job& job, const std::string& key,
                           const std::string& name) {
  v2::JobProgress& progress = *job.mutable_progress();
  for (v2::ProgressStage& stage : *progress.mutable_stages()) {
    if (stage.key() == key) return stage;
  }
  v2::ProgressStage& stage = *progress.add_stages();
  stage.set_status(v2::CREATED);
  stage.set_key(key);
  stage.set_name(name);
  return stage;
}

// Sets param `key` of `stage`, appended with `name` when missing.
void SetParam(v2::ProgressStage& stage, const std::string& key,
              const std::string& name, const google::protobuf::Value& value) {
  for (v2::StageParam& param : *stage.mutable_params()) {
    if (param.key() == key) {
      *param.mutable_value() = value;
      return;
    }
  }
  v2::StageParam& param = *stage.add_params();
  param.set_name(name);
  param.set_key(key);
  param.set_category("default");
  *param.mutable_value() = value;
}

// ---- What the UI reads ------------------------------------------------------

// The ten status codes (spec 2.1).
constexpr absl::string_view kStatusCodes[] = {
    "CREATED", "PENDING",   "STARTED", "SUCCESS",  "FAILURE",
    "RETRY",   "CANCELING", "REVOKED", "RECEIVED", "UNKNOWN"};

// `key` of `object`, or nullptr when `object` is not an object or lacks it.
const Json* Member(const Json* object, const char* key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  const auto found = object->find(key);
  return found == object->end() ? nullptr : &*found;
}

bool IsInteger(const Json* value) {
  return value != nullptr && value->is_number_integer();
}
bool IsString(const Json* value) {
  return value != nullptr && value->is_string();
}
bool IsNull(const Json* value) { return value != nullptr && value->is_null(); }
bool IsStatus(const Json* value) {
  if (!IsString(value)) return false;
  for (const absl::string_view code : kStatusCodes) {
    if (value->get_ref<const std::string&>() == code) return true;
  }
  return false;
}
bool IsStringArray(const Json* value) {
  if (value == nullptr || !value->is_array()) return false;
  for (const Json& element : *value) {
    if (!element.is_string()) return false;
  }
  return true;
}

// Whether `text` has the shape `shape`, in which 'd' stands for a digit and
// any other character for itself.
bool HasShape(absl::string_view text, absl::string_view shape) {
  if (text.size() != shape.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (shape[i] == 'd' ? !absl::ascii_isdigit(text[i]) : text[i] != shape[i]) {
      return false;
    }
  }
  return true;
}

// A naive ISO-8601 date-time as upstream writes it ("2025-11-12T19:00:59",
// with ".ffffff" when the microseconds are not 0; never an offset) that
// also reads back as a time.
bool IsNaiveDateTime(const Json* value) {
  if (!IsString(value)) return false;
  const std::string& text = value->get_ref<const std::string&>();
  absl::Time time;
  std::string error;
  return (HasShape(text, "dddd-dd-ddTdd:dd:dd") ||
          HasShape(text, "dddd-dd-ddTdd:dd:dd.dddddd")) &&
         absl::ParseTime("%Y-%m-%dT%H:%M:%E*S", text, absl::UTCTimeZone(),
                         &time, &error);
}

// What is wrong, for the UI, with one job document (a list item, or with
// `detail` the detail page's document): each problem as
// "<path>: want <what>, got <value>".
std::vector<std::string> UiProblems(const Json& job, bool detail) {
  std::vector<std::string> problems;
  auto want = [&problems](bool ok, const std::string& path,
                          absl::string_view what, const Json* got) {
    if (ok) return;
    problems.push_back(absl::StrCat(path, ": want ", what, ", got ",
                                    got == nullptr ? "nothing" : got->dump()));
  };
  auto nullable_record = [&](const char* key,
                             const std::vector<const char*>& strings,
                             const std::vector<const char*>& integers,
                             const std::vector<const char*>& nullable_ints) {
    const Json* record = Member(&job, key);
    if (IsNull(record)) return;
    want(record != nullptr && record->is_object(), key, "null or an object",
         record);
    want(IsInteger(Member(record, "id")), absl::StrCat(key, ".id"), "a number",
         Member(record, "id"));
    for (const char* field : strings) {
      const Json* value = Member(record, field);
      want(IsString(value), absl::StrCat(key, ".", field), "a string", value);
    }
    for (const char* field : integers) {
      const Json* value = Member(record, field);
      want(IsInteger(value), absl::StrCat(key, ".", field), "a number", value);
    }
    for (const char* field : nullable_ints) {
      const Json* value = Member(record, field);
      want(IsInteger(value) || IsNull(value), absl::StrCat(key, ".", field),
           "a number or null", value);
    }
  };

  // Cells of the table and the detail header.
  want(IsInteger(Member(&job, "id")), "id", "a number", Member(&job, "id"));
  want(IsString(Member(&job, "name")), "name", "a string",
       Member(&job, "name"));
  want(IsInteger(Member(&job, "delay")), "delay", "a number",
       Member(&job, "delay"));
  for (const char* key : {"created_at", "updated_at"}) {
    want(IsNaiveDateTime(Member(&job, key)), key, "a naive ISO date-time",
         Member(&job, key));
  }
  for (const char* key : {"started_at", "finished_at"}) {
    const Json* value = Member(&job, key);
    want(IsNull(value) || IsNaiveDateTime(value), key,
         "null or a naive ISO date-time", value);
  }
  want(IsStatus(Member(&job, "status")), "status", "one of the 10 codes",
       Member(&job, "status"));

  // The progress bar and the stage wizard.
  const Json* progress = Member(&job, "progress");
  const Json* summary = Member(progress, "summary");
  const Json* fraction = Member(summary, "progress");
  want(fraction != nullptr && fraction->is_number() &&
           fraction->get<double>() >= 0 && fraction->get<double>() <= 1,
       "progress.summary.progress", "a number in 0..1", fraction);
  want(IsStatus(Member(summary, "status")), "progress.summary.status",
       "one of the 10 codes", Member(summary, "status"));
  const Json* stages = Member(progress, "stages");
  want(stages != nullptr && stages->is_array(), "progress.stages", "an array",
       stages);
  if (stages != nullptr && stages->is_array()) {
    for (size_t i = 0; i < stages->size(); ++i) {
      const Json* stage = &(*stages)[i];
      const std::string at = absl::StrCat("progress.stages[", i, "]");
      want(IsString(Member(stage, "key")), at + ".key", "a string",
           Member(stage, "key"));
      want(IsString(Member(stage, "name")), at + ".name", "a string",
           Member(stage, "name"));
      want(IsStatus(Member(stage, "status")), at + ".status",
           "one of the 10 codes", Member(stage, "status"));
      const Json* params = Member(stage, "params");
      want(params != nullptr && params->is_array(), at + ".params", "an array",
           params);
      if (params == nullptr || !params->is_array()) continue;
      for (size_t j = 0; j < params->size(); ++j) {
        const Json* param = &(*params)[j];
        const std::string in = absl::StrCat(at, ".params[", j, "]");
        want(IsString(Member(param, "key")), in + ".key", "a string",
             Member(param, "key"));
        want(IsString(Member(param, "name")), in + ".name", "a string",
             Member(param, "name"));
        want(Member(param, "value") != nullptr, in + ".value", "a value",
             nullptr);
      }
    }
  }

  // Labels and links.
  want(IsString(Member(Member(&job, "job_type"), "key")), "job_type.key",
       "a string", Member(Member(&job, "job_type"), "key"));
  const Json* project = Member(&job, "project");
  want(IsInteger(Member(project, "id")), "project.id", "a number",
       Member(project, "id"));
  want(IsString(Member(project, "name")), "project.name", "a string",
       Member(project, "name"));
  nullable_record("deployment", {"name"}, {}, {});
  nullable_record("pipeline", {"name", "slug", "version_name"}, {"version"},
                  {});
  nullable_record("source_image_single", {}, {}, {"event_id"});
  nullable_record("source_image_collection", {"name"}, {}, {});
  nullable_record("data_export", {"format"}, {}, {});

  // The code blocks of the detail page.
  if (detail) {
    const Json* logs = Member(&job, "logs");
    want(IsStringArray(Member(logs, "stdout")), "logs.stdout",
         "an array of strings", Member(logs, "stdout"));
    want(IsStringArray(Member(logs, "stderr")), "logs.stderr",
         "an array of strings", Member(logs, "stderr"));
  }

  // The buttons: "run" for start, cancel and retry, "delete" for delete
  // (D17). Only a job of type "unknown" has no run permission.
  const Json* permissions = Member(&job, "user_permissions");
  want(IsStringArray(permissions), "user_permissions", "an array of strings",
       permissions);
  if (IsStringArray(permissions)) {
    const std::set<std::string> granted(permissions->begin(),
                                        permissions->end());
    want(granted.count("delete") > 0, "user_permissions", "\"delete\" in it",
         permissions);
    const Json* type = Member(Member(&job, "job_type"), "key");
    if (!IsString(type) || type->get<std::string>() != "unknown") {
      want(granted.count("run") > 0, "user_permissions", "\"run\" in it",
           permissions);
    }
  }
  return problems;
}

// `record` cut down to `keys` (null stays null; a missing key stays out, so
// that a comparison shows it).
Json Pick(const Json& record, const std::vector<const char*>& keys) {
  if (!record.is_object()) return record;
  Json picked = Json::object();
  for (const char* key : keys) {
    if (record.contains(key)) picked[key] = record[key];
  }
  return picked;
}

// The fields of a job document that the UI reads, for exact comparison.
// user_permissions is sorted (upstream builds it from a set).
Json UiView(const Json& job) {
  if (!job.is_object()) return job;
  Json view = Pick(job, {"id", "name", "delay", "status", "created_at",
                         "updated_at", "started_at", "finished_at", "logs"});
  if (job.contains("progress") && job["progress"].is_object()) {
    const Json& progress = job["progress"];
    Json stages = Json::array();
    if (progress.contains("stages") && progress["stages"].is_array()) {
      for (const Json& stage : progress["stages"]) {
        Json item = Pick(stage, {"key", "name", "status", "status_label"});
        Json params = Json::array();
        if (stage.contains("params") && stage["params"].is_array()) {
          for (const Json& param : stage["params"]) {
            params.push_back(Pick(param, {"key", "name", "value"}));
          }
        }
        item["params"] = std::move(params);
        stages.push_back(std::move(item));
      }
    }
    view["progress"] = {
        {"summary", Pick(progress.value("summary", Json()),
                         {"status", "progress", "status_label"})},
        {"stages", std::move(stages)}};
  }
  view["job_type"] = Pick(job.value("job_type", Json()), {"key"});
  view["project"] = Pick(job.value("project", Json()), {"id", "name"});
  view["deployment"] = Pick(job.value("deployment", Json()), {"id", "name"});
  view["pipeline"] = Pick(job.value("pipeline", Json()),
                          {"id", "name", "slug", "version", "version_name"});
  view["source_image_single"] =
      Pick(job.value("source_image_single", Json()), {"id", "event_id"});
  view["source_image_collection"] =
      Pick(job.value("source_image_collection", Json()), {"id", "name"});
  view["data_export"] =
      Pick(job.value("data_export", Json()), {"id", "format"});
  if (job.contains("user_permissions") && job["user_permissions"].is_array()) {
    std::vector<std::string> permissions;
    for (const Json& permission : job["user_permissions"]) {
      permissions.push_back(permission.is_string()
                                ? permission.get<std::string>()
                                : permission.dump());
    }
    std::sort(permissions.begin(), permissions.end());
    view["user_permissions"] = permissions;
  }
  return view;
}

// A JSON literal with $0, $1, ... replaced by `args` (job ids).
template <typename... Args>
Json Expected(absl::string_view text, const Args&... args) {
  const std::string substituted = absl::Substitute(text, args...);
  Json parsed = Json::parse(substituted, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << substituted;
  return parsed;
}

// What is wrong with a 400 body for the UI's display of field errors: it
// must be an object whose every member is a non-empty array of strings.
std::vector<std::string> FieldErrorProblems(const Json& body) {
  if (!body.is_object()) return {"body: want an object, got " + body.dump()};
  std::vector<std::string> problems;
  for (const auto& [key, messages] : body.items()) {
    if (!IsStringArray(&messages) || messages.empty()) {
      problems.push_back(absl::StrCat(key, ": want an array of strings, got ",
                                      messages.dump()));
    }
  }
  return problems;
}

// ---- The client -------------------------------------------------------------

// One answer of the REST face.
struct Answer {
  int status = 0;  // 0 when no answer came.
  std::string content_type;
  std::string body;
  Json json;  // The body parsed; discarded when it is not JSON.
};

Answer FromResult(const httplib::Result& result) {
  Answer answer;
  if (!result) {
    answer.body = httplib::to_string(result.error());
    return answer;
  }
  answer.status = result->status;
  answer.content_type = result->get_header_value("Content-Type");
  answer.body = result->body;
  answer.json = Json::parse(answer.body, nullptr, false);
  return answer;
}

// Sends `request` (raw HTTP/1.1, ending with Connection: close) to
// 127.0.0.1:`port` and reads the answer until the server closes.
Answer RawExchange(int port, const std::string& request) {
  std::string raw;
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(sock, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
          0 &&
      send(sock, request.data(), request.size(), 0) ==
          static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    ssize_t got;
    while ((got = recv(sock, buffer, sizeof(buffer), 0)) > 0) {
      raw.append(buffer, static_cast<size_t>(got));
    }
  }
  close(sock);

  // "HTTP/1.1 200 OK", the headers, a blank line, the body.
  Answer answer;
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    answer.body = raw;
    return answer;
  }
  const std::vector<std::string> lines =
      absl::StrSplit(raw.substr(0, head_end), "\r\n");
  const std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 ||
      !absl::SimpleAtoi(status_line[1], &answer.status)) {
    answer.status = 0;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    if (absl::AsciiStrToLower(lines[i].substr(0, colon)) == "content-type") {
      answer.content_type =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
  }
  answer.body = raw.substr(head_end + 4);
  answer.json = Json::parse(answer.body, nullptr, false);
  return answer;
}

// The ids of the results of a list answer, in order.
std::vector<int64_t> ResultIds(const Answer& answer) {
  std::vector<int64_t> ids;
  if (!answer.json.is_object() || !answer.json.contains("results") ||
      !answer.json["results"].is_array()) {
    return ids;
  }
  for (const Json& job : answer.json["results"]) {
    ids.push_back(job.is_object() && job.contains("id") &&
                          job["id"].is_number_integer()
                      ? job["id"].get<int64_t>()
                      : -1);
  }
  return ids;
}

// ---- Fixtures ---------------------------------------------------------------

// The stack with the catalogue and no jobs, the clock at Moment(0).
class UiReplay : public ::testing::Test {
 protected:
  UiReplay() : clock_(Moment(0)) {}

  void SetUp() override {
    v2::Catalog catalogue;
    const auto parsed =
        google::protobuf::util::JsonStringToMessage(kCatalogue, &catalogue);
    ASSERT_TRUE(parsed.ok()) << parsed.ToString();
    RestTestServerOptions options;
    options.clock = &clock_;
    server_ = std::make_unique<RestTestServer>(options);
    const absl::Status started = server_->Start(catalogue);
    ASSERT_TRUE(started.ok()) << started;
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_default_headers({{"Accept", kUiAccept}});
  }

  // Sets the clock to Moment(k).
  void At(int k) { clock_.Set(Moment(k)); }

  Answer Get(const std::string& target) {
    return FromResult(client_->Get(target.c_str()));
  }

  // A POST with a JSON body, as axios sends an object.
  Answer PostJson(const std::string& target, const std::string& body) {
    return FromResult(client_->Post(target.c_str(), body, "application/json"));
  }

  // POST /api/v2/jobs/{id}/{action}/ as the UI's hooks send it: no body,
  // no Content-Type, no project_id.
  Answer Action(int64_t id, const std::string& action) {
    return RawExchange(
        server_->port(),
        absl::StrCat("POST /api/v2/jobs/", id, "/", action,
                     "/ HTTP/1.1\r\nHost: 127.0.0.1:", server_->port(),
                     "\r\nAccept: ", kUiAccept,
                     "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
  }

  // DELETE /api/v2/jobs/{id}/ as useDeleteJob sends it: no body.
  Answer Delete(int64_t id) {
    return RawExchange(server_->port(),
                       absl::StrCat("DELETE /api/v2/jobs/", id,
                                    "/ HTTP/1.1\r\nHost: 127.0.0.1:",
                                    server_->port(), "\r\nAccept: ", kUiAccept,
                                    "\r\nConnection: close\r\n\r\n"));
  }

  // Creates a job with `body` (POST /api/v2/jobs/`query`) and returns its
  // id; 0 after a failure, which is reported.
  int64_t Create(const std::string& body, const std::string& query = "") {
    Answer answer = PostJson("/api/v2/jobs/" + query, body);
    EXPECT_EQ(answer.status, 201) << body << " -> " << answer.body;
    if (answer.status != 201 || !answer.json.is_object() ||
        !answer.json.contains("id") || !answer.json["id"].is_number_integer()) {
      return 0;
    }
    return answer.json["id"].get<int64_t>();
  }

  // Writes to job `id` what a worker's report stores (through the store,
  // since no worker runs here).
  absl::Status WriteAsWorker(int64_t id,
                             const std::function<void(JobMutation&)>& change) {
    return server_->store()
        .MutateJob(id,
                   [&change](JobMutation& mutation) {
                     change(mutation);
                     return absl::OkStatus();
                   })
        .status();
  }

  // A worker leases job `id` now: STARTED with started_at and its log line.
  absl::Status StartAsWorker(int64_t id) {
    const absl::Time now = clock_.Now();
    return WriteAsWorker(id, [id, now](JobMutation& mutation) {
      v2::Job& job = mutation.job;
      mutation.logs.push_back(
          {LogLevel::kInfo,
           absl::StrCat("Changing status of job ", id, " from ",
                        v2::JobStatus_Name(job.status()), " to STARTED")});
      job.set_status(v2::STARTED);
      job.mutable_progress()->mutable_summary()->set_status(v2::STARTED);
      *job.mutable_started_at() = ToTimestamp(now);
      job.clear_finished_at();
      mutation.lease.lease_id = "5f0c2a7d9e1b4c6a8d3e2f1a0b9c8d7e";
      mutation.lease.holder = "station-worker";
      mutation.lease.expires_at = now + absl::Minutes(1);
      mutation.lease.attempts = 1;
    });
  }

  // A worker finishes populating collection 111 of job `id` now.
  absl::Status FinishPopulateAsWorker(int64_t id) {
    const absl::Time now = clock_.Now();
    return WriteAsWorker(id, [id, now](JobMutation& mutation) {
      v2::Job& job = mutation.job;
      v2::ProgressStage& stage = StageOf(job, "populate_captures_collection",
                                         "Populate captures collection");
      stage.set_status(v2::SUCCESS);
      stage.set_progress(1.0);
      SetParam(stage, "captures_added", "Captures added", Number(1000));
      job.mutable_progress()->mutable_summary()->set_progress(1.0);
      job.mutable_progress()->mutable_summary()->set_status(v2::SUCCESS);
      job.set_status(v2::SUCCESS);
      *job.mutable_finished_at() = ToTimestamp(now);
      mutation.lease.lease_id.clear();
      mutation.lease.expires_at = absl::InfinitePast();
      mutation.logs.push_back(
          {LogLevel::kInfo,
           "Added 1000 captures to source image collection #111 Random 1000"});
      mutation.logs.push_back(
          {LogLevel::kInfo, absl::StrCat("Changing status of job ", id,
                                         " from STARTED to SUCCESS")});
    });
  }

  // Declared first: the server uses it until it is destroyed.
  FakeClock clock_;
  std::unique_ptr<RestTestServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

// The jobs of project 16 in every state the jobs page shows, and one job of
// project 18, on this timeline (k = seconds after Moment(0)):
//   k0  create populate_     (populate_captures_collection, collection 111)
//   k1  create ml_           (ml, delay 2, pipeline 3, collection 112,
//                             station 60)
//   k2  create single_       (ml, pipeline 4, capture 5001)
//   k3  create export_       (data_export)
//   k4  create sync_         (data_storage_sync, station 61)
//   k5  create other_        (project 18, collection 120)
//   k10 export_ gets data export 7 (no API field sets it)
//   k11 cancel export_       -> REVOKED
//   k12 run sync_            -> PENDING
//   k13 run ml_              -> PENDING
//   k14 a worker leases ml_  -> STARTED
//   k15 the worker reports: delay stage done, collect at 0.5, an error line
//   k16 run populate_        -> PENDING
//   k17 a worker leases populate_ -> STARTED
//   k18 the worker finishes it    -> SUCCESS
class JobsPage : public UiReplay {
 protected:
  void SetUp() override {
    UiReplay::SetUp();
    if (HasFatalFailure()) return;

    // Created as useCreateJob sends it: ids as strings.
    At(0);
    populate_ = Create(
        R"({"name":"Populate captures for collection 111","project_id":"16",)"
        R"("source_image_collection_id":"111",)"
        R"("job_type_key":"populate_captures_collection","delay":"0"})");
    At(1);
    ml_ = Create(
        R"({"delay":2,"name":"ML run on Mols station","project_id":"16",)"
        R"("pipeline_id":"3","source_image_collection_id":"112",)"
        R"("deployment_id":"60"})");
    At(2);
    single_ =
        Create(R"({"delay":0,"name":"Single capture check","project_id":"16",)"
               R"("pipeline_id":"4","source_image_single_id":"5001"})");
    At(3);
    export_ = Create(R"({"name":"Export occurrences","project_id":16,)"
                     R"("job_type_key":"data_export","delay":0})");
    At(4);
    sync_ =
        Create(R"({"name":"Sync station 2","project_id":16,"deployment_id":61,)"
               R"("job_type_key":"data_storage_sync","delay":0})");
    At(5);
    other_ =
        Create(R"({"name":"Demo project job","project_id":18,)"
               R"("source_image_collection_id":120,)"
               R"("job_type_key":"populate_captures_collection","delay":0})");
    ASSERT_FALSE(HasFailure());

    // The export job: its export, then cancelled before it ran.
    At(10);
    ASSERT_TRUE(WriteAsWorker(export_, [](JobMutation& mutation) {
                  mutation.job.mutable_data_export()->set_id(7);
                }).ok());
    At(11);
    ASSERT_EQ(Action(export_, "cancel").status, 200);
    At(12);
    ASSERT_EQ(Action(sync_, "run").status, 200);

    // The ML job, half way through collecting.
    At(13);
    ASSERT_EQ(Action(ml_, "run").status, 200);
    At(14);
    ASSERT_TRUE(StartAsWorker(ml_).ok());
    At(15);
    ASSERT_TRUE(
        WriteAsWorker(ml_, [](JobMutation& mutation) {
          v2::Job& job = mutation.job;
          v2::ProgressStage& delay = StageOf(job, "delay", "Delay");
          delay.set_status(v2::SUCCESS);
          delay.set_progress(1.0);
          SetParam(delay, "mood", "Mood", Text("\xF0\x9F\xA5\xB3"));
          v2::ProgressStage& collect = StageOf(job, "collect", "Collect");
          collect.set_status(v2::STARTED);
          collect.set_progress(0.5);
          SetParam(collect, "total_images", "Total Images", Number(40));
          // The mean of the four stages: (1 + 0.5 + 0 + 0) / 4.
          job.mutable_progress()->mutable_summary()->set_progress(0.375);
          mutation.logs.push_back(
              {LogLevel::kInfo, "Collecting captures of #112 All captures"});
          mutation.logs.push_back(
              {LogLevel::kError, "Capture 5002 has no image URL"});
        }).ok());

    // The populate job, run to the end.
    At(16);
    ASSERT_EQ(Action(populate_, "run").status, 200);
    At(17);
    ASSERT_TRUE(StartAsWorker(populate_).ok());
    At(18);
    ASSERT_TRUE(FinishPopulateAsWorker(populate_).ok());
  }

  // The UI's view of each job of project 16 on the detail page.
  Json ExpectedDetail(int64_t id) const {
    if (id == populate_) {
      return Expected(
          R"({"id":$0,"name":"Populate captures for collection 111",)"
          R"("delay":0,"status":"SUCCESS",)"
          R"("created_at":"2025-11-12T19:00:59.806356",)"
          R"("updated_at":"2025-11-12T19:01:17.806356",)"
          R"("started_at":"2025-11-12T19:01:16.806356",)"
          R"("finished_at":"2025-11-12T19:01:17.806356",)"
          R"("progress":{"summary":{"status":"SUCCESS","progress":1.0,)"
          R"("status_label":"100% complete"},"stages":[)"
          R"({"key":"populate_captures_collection",)"
          R"("name":"Populate captures collection","status":"SUCCESS",)"
          R"("status_label":"100% complete","params":[)"
          R"({"key":"captures_added","name":"Captures added",)"
          R"("value":1000}]}]},)"
          R"("job_type":{"key":"populate_captures_collection"},)"
          R"("project":{"id":16,)"
          R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
          R"("deployment":null,"pipeline":null,"source_image_single":null,)"
          R"("source_image_collection":{"id":111,"name":"Random 1000"},)"
          R"("data_export":null,)"
          R"("logs":{"stdout":[)"
          R"("[2025-11-12 19:01:17] INFO Changing status of job $0 from )"
          R"(STARTED to SUCCESS",)"
          R"("[2025-11-12 19:01:17] INFO Added 1000 captures to source )"
          R"(image collection #111 Random 1000",)"
          R"("[2025-11-12 19:01:16] INFO Changing status of job $0 from )"
          R"(PENDING to STARTED"],"stderr":[]},)"
          R"("user_permissions":["delete","run","update"]})",
          id);
    }
    if (id == ml_) {
      return Expected(
          R"({"id":$0,"name":"ML run on Mols station","delay":2,)"
          R"("status":"STARTED",)"
          R"("created_at":"2025-11-12T19:01:00.806356",)"
          R"("updated_at":"2025-11-12T19:01:14.806356",)"
          R"("started_at":"2025-11-12T19:01:13.806356",)"
          R"("finished_at":null,)"
          R"("progress":{"summary":{"status":"STARTED","progress":0.375,)"
          R"("status_label":"37% complete"},"stages":[)"
          R"({"key":"delay","name":"Delay","status":"SUCCESS",)"
          R"("status_label":"100% complete","params":[)"
          R"({"key":"delay","name":"Delay","value":2},)"
          R"({"key":"mood","name":"Mood","value":"\ud83e\udd73"}]},)"
          R"({"key":"collect","name":"Collect","status":"STARTED",)"
          R"("status_label":"50% complete","params":[)"
          R"({"key":"total_images","name":"Total Images","value":40}]},)"
          R"({"key":"process","name":"Process","status":"CREATED",)"
          R"("status_label":"Waiting to start","params":[)"
          R"({"key":"processed","name":"Processed","value":""},)"
          R"({"key":"remaining","name":"Remaining","value":""},)"
          R"({"key":"failed","name":"Failed","value":""}]},)"
          R"({"key":"results","name":"Results","status":"CREATED",)"
          R"("status_label":"Waiting to start","params":[)"
          R"({"key":"captures","name":"Captures","value":""},)"
          R"({"key":"detections","name":"Detections","value":""},)"
          R"({"key":"classifications","name":"Classifications",)"
          R"("value":""}]}]},)"
          R"("job_type":{"key":"ml"},)"
          R"("project":{"id":16,)"
          R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
          R"("deployment":{"id":60,"name":"Mols Laboratory, station 1"},)"
          R"("pipeline":{"id":3,"name":"Moth detector",)"
          R"("slug":"moth-detector","version":1,"version_name":"2025.01"},)"
          R"("source_image_single":null,)"
          R"("source_image_collection":{"id":112,"name":"All captures"},)"
          R"("data_export":null,)"
          R"("logs":{"stdout":[)"
          R"("[2025-11-12 19:01:14] ERROR Capture 5002 has no image URL",)"
          R"("[2025-11-12 19:01:14] INFO Collecting captures of #112 All )"
          R"(captures",)"
          R"("[2025-11-12 19:01:13] INFO Changing status of job $0 from )"
          R"(PENDING to STARTED"],)"
          R"("stderr":["Capture 5002 has no image URL"]},)"
          R"("user_permissions":["delete","run","run_single_image",)"
          R"("update"]})",
          id);
    }
    if (id == single_) {
      return Expected(
          R"({"id":$0,"name":"Single capture check","delay":0,)"
          R"("status":"CREATED",)"
          R"("created_at":"2025-11-12T19:01:01.806356",)"
          R"("updated_at":"2025-11-12T19:01:01.806356",)"
          R"("started_at":null,"finished_at":null,)"
          R"("progress":{"summary":{"status":"CREATED","progress":0.0,)"
          R"("status_label":"Waiting to start"},"stages":[)"
          R"({"key":"collect","name":"Collect","status":"CREATED",)"
          R"("status_label":"Waiting to start","params":[)"
          R"({"key":"total_images","name":"Total Images","value":""}]},)"
          R"({"key":"process","name":"Process","status":"CREATED",)"
          R"("status_label":"Waiting to start","params":[)"
          R"({"key":"processed","name":"Processed","value":""},)"
          R"({"key":"remaining","name":"Remaining","value":""},)"
          R"({"key":"failed","name":"Failed","value":""}]},)"
          R"({"key":"results","name":"Results","status":"CREATED",)"
          R"("status_label":"Waiting to start","params":[)"
          R"({"key":"captures","name":"Captures","value":""},)"
          R"({"key":"detections","name":"Detections","value":""},)"
          R"({"key":"classifications","name":"Classifications",)"
          R"("value":""}]}]},)"
          R"("job_type":{"key":"ml"},)"
          R"("project":{"id":16,)"
          R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
          R"("deployment":null,)"
          R"("pipeline":{"id":4,"name":"Quick check","slug":"quick-check",)"
          R"("version":2,"version_name":""},)"
          R"("source_image_single":{"id":5001,"event_id":901},)"
          R"("source_image_collection":null,"data_export":null,)"
          R"("logs":{"stdout":[],"stderr":[]},)"
          R"("user_permissions":["delete","run","run_single_image",)"
          R"("update"]})",
          id);
    }
    if (id == export_) {
      return Expected(
          R"({"id":$0,"name":"Export occurrences","delay":0,)"
          R"("status":"REVOKED",)"
          R"("created_at":"2025-11-12T19:01:02.806356",)"
          R"("updated_at":"2025-11-12T19:01:10.806356",)"
          R"("started_at":null,)"
          R"("finished_at":"2025-11-12T19:01:10.806356",)"
          R"("progress":{"summary":{"status":"REVOKED","progress":0.0,)"
          R"("status_label":"REVOKED"},"stages":[]},)"
          R"("job_type":{"key":"data_export"},)"
          R"("project":{"id":16,)"
          R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
          R"("deployment":null,"pipeline":null,"source_image_single":null,)"
          R"("source_image_collection":null,)"
          R"("data_export":{"id":7,"format":"occurrences_simple_csv"},)"
          R"("logs":{"stdout":[)"
          R"("[2025-11-12 19:01:10] INFO Changing status of job $0 from )"
          R"(CREATED to REVOKED"],"stderr":[]},)"
          R"("user_permissions":["delete","run","update"]})",
          id);
    }
    return Expected(
        R"({"id":$0,"name":"Sync station 2","delay":0,"status":"PENDING",)"
        R"("created_at":"2025-11-12T19:01:03.806356",)"
        R"("updated_at":"2025-11-12T19:01:11.806356",)"
        R"("started_at":null,"finished_at":null,)"
        R"("progress":{"summary":{"status":"PENDING","progress":0.0,)"
        R"("status_label":"Waiting to start"},"stages":[]},)"
        R"("job_type":{"key":"data_storage_sync"},)"
        R"("project":{"id":16,)"
        R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
        R"("deployment":{"id":61,"name":"Mols Laboratory, station 2"},)"
        R"("pipeline":null,"source_image_single":null,)"
        R"("source_image_collection":null,"data_export":null,)"
        R"("logs":{"stdout":[],"stderr":[]},)"
        R"("user_permissions":["delete","run","update"]})",
        id);
  }

  // The same in a list: the list serializer shows the legacy log column,
  // empty for every job (spec 4.2).
  Json ExpectedListItem(int64_t id) const {
    Json item = ExpectedDetail(id);
    item["logs"] = {{"stdout", Json::array()}, {"stderr", Json::array()}};
    return item;
  }

  // The jobs page's request with `extra` query parameters appended.
  static std::string PageUrl(const std::string& extra = "") {
    return "/api/v2/jobs/?project_id=16&limit=20&offset=0"
           "&ordering=-created_at" +
           extra;
  }

  int64_t populate_ = 0;
  int64_t ml_ = 0;
  int64_t single_ = 0;
  int64_t export_ = 0;
  int64_t sync_ = 0;
  int64_t other_ = 0;
};

// ---- useJobs: the jobs list page -------------------------------------------

TEST_F(JobsPage, ListEnvelopeAndEveryResultAsTheTableReadsThem) {
  Answer answer = Get(PageUrl());
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(answer.content_type, "application/json");
  const Json& list = answer.json;
  ASSERT_TRUE(list.is_object()) << answer.body;

  // The envelope: the total, no neighbour pages, the "New job" button.
  ASSERT_TRUE(list.contains("count"));
  EXPECT_TRUE(list["count"].is_number_integer());
  EXPECT_EQ(list["count"], 5);
  ASSERT_TRUE(list.contains("next"));
  EXPECT_TRUE(list["next"].is_null());
  ASSERT_TRUE(list.contains("previous"));
  EXPECT_TRUE(list["previous"].is_null());
  ASSERT_TRUE(list.contains("user_permissions"));
  EXPECT_EQ(list["user_permissions"], Json::array({"create"}));
  ASSERT_TRUE(list.contains("results"));
  ASSERT_TRUE(list["results"].is_array());

  // Newest first, project 18's job left out.
  EXPECT_THAT(ResultIds(answer),
              ElementsAre(sync_, export_, single_, ml_, populate_));
  for (const Json& job : list["results"]) {
    EXPECT_THAT(UiProblems(job, /*detail=*/false), IsEmpty()) << job.dump();
    const int64_t id = job.value("id", int64_t{0});
    EXPECT_EQ(UiView(job), ExpectedListItem(id)) << "job " << id;
  }
}

TEST_F(JobsPage, ListWithEachFilterThePageSends) {
  struct Case {
    std::string filter;
    std::vector<int64_t> ids;
  };
  const std::vector<Case> cases = {
      {"source_image_single=5001", {single_}},
      {"status=CREATED", {single_}},
      {"status=PENDING", {sync_}},
      {"status=STARTED", {ml_}},
      {"status=SUCCESS", {populate_}},
      {"status=REVOKED", {export_}},
      {"status=FAILURE", {}},
      {"job_type_key=ml", {single_, ml_}},
      {"job_type_key=populate_captures_collection", {populate_}},
      {"job_type_key=data_storage_sync", {sync_}},
      {"job_type_key=data_export", {export_}},
      {"job_type_key=unknown", {}},
      {"deployment=60", {ml_}},
      {"deployment=61", {sync_}},
      {"deployment=62", {}},
      {"pipeline=3", {ml_}},
      {"pipeline=4", {single_}},
      {"source_image_collection=111", {populate_}},
      {"source_image_collection=112", {ml_}},
      {"source_image_collection=120", {}},
      {"job_type_key=ml&pipeline=3&source_image_collection=112", {ml_}},
  };
  for (const Case& test : cases) {
    Answer answer = Get(PageUrl("&" + test.filter));
    ASSERT_EQ(answer.status, 200) << test.filter << ": " << answer.body;
    EXPECT_EQ(ResultIds(answer), test.ids) << test.filter;
    EXPECT_EQ(answer.json.value("count", int64_t{-1}),
              static_cast<int64_t>(test.ids.size()))
        << test.filter;
    EXPECT_EQ(answer.json.value("user_permissions", Json()),
              Json::array({"create"}))
        << test.filter;
    for (const Json& job : answer.json.value("results", Json::array())) {
      EXPECT_THAT(UiProblems(job, /*detail=*/false), IsEmpty())
          << test.filter << ": " << job.dump();
    }
  }
}

TEST_F(JobsPage, ListSortedByEachColumnBothWays) {
  // Nulls sort last both ways; ties fall back to the newest job first.
  const int64_t p = populate_, m = ml_, s = single_, e = export_, y = sync_;
  struct Case {
    std::string ordering;
    std::vector<int64_t> ids;
  };
  const std::vector<Case> cases = {
      {"name", {e, m, p, s, y}},
      {"-name", {y, s, p, m, e}},
      {"status", {s, y, e, m, p}},
      {"-status", {p, m, e, y, s}},
      {"deployment", {m, y, e, s, p}},
      {"-deployment", {y, m, e, s, p}},
      {"pipeline", {m, s, y, e, p}},
      {"-pipeline", {s, m, y, e, p}},
      {"source_image_collection", {p, m, y, e, s}},
      {"-source_image_collection", {m, p, y, e, s}},
      {"created_at", {p, m, s, e, y}},
      {"-created_at", {y, e, s, m, p}},
      {"updated_at", {s, e, y, m, p}},
      {"-updated_at", {p, m, y, e, s}},
      {"started_at", {m, p, y, e, s}},
      {"-started_at", {p, m, y, e, s}},
      {"finished_at", {e, p, y, s, m}},
      {"-finished_at", {p, e, y, s, m}},
  };
  for (const Case& test : cases) {
    const std::string url = "/api/v2/jobs/?project_id=16&limit=20&offset=0" +
                            std::string("&ordering=") + test.ordering;
    Answer answer = Get(url);
    ASSERT_EQ(answer.status, 200) << url << ": " << answer.body;
    EXPECT_EQ(ResultIds(answer), test.ids) << url;
  }
}

TEST_F(UiReplay, ListPagesOfTwentyLinkAsUpstream) {
  // 45 jobs: three pages of the jobs page.
  std::vector<int64_t> ids;
  for (int i = 0; i < 45; ++i) {
    At(i);
    ids.push_back(Create(absl::StrCat(
        R"({"name":"Populate )", i, R"(","project_id":"16",)",
        R"("source_image_collection_id":"111",)",
        R"("job_type_key":"populate_captures_collection","delay":"0"})")));
  }
  ASSERT_FALSE(HasFailure());
  const std::string collection = server_->base_url() + "/api/v2/jobs/";
  auto newest = [&ids](int from, int count) {
    std::vector<int64_t> page;
    for (int i = 0; i < count; ++i) page.push_back(ids[44 - from - i]);
    return page;
  };

  // Page 1: a next link, no previous one.
  Answer first =
      Get("/api/v2/jobs/?project_id=16&limit=20&offset=0&ordering=-created_at");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.json["count"], 45);
  EXPECT_EQ(first.json["next"], collection +
                                    "?limit=20&offset=20&ordering=-created_at"
                                    "&project_id=16");
  EXPECT_TRUE(first.json["previous"].is_null());
  EXPECT_EQ(ResultIds(first), newest(0, 20));

  // Page 2: the previous page starts at 0, so its link has no offset.
  Answer second = Get(
      "/api/v2/jobs/?project_id=16&limit=20&offset=20&ordering=-created_at");
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.json["count"], 45);
  EXPECT_EQ(second.json["next"], collection +
                                     "?limit=20&offset=40&ordering=-created_at"
                                     "&project_id=16");
  EXPECT_EQ(second.json["previous"],
            collection + "?limit=20&ordering=-created_at&project_id=16");
  EXPECT_EQ(ResultIds(second), newest(20, 20));

  // Page 3: the last five, no next link.
  Answer third = Get(
      "/api/v2/jobs/?project_id=16&limit=20&offset=40&ordering=-created_at");
  ASSERT_EQ(third.status, 200) << third.body;
  EXPECT_EQ(third.json["count"], 45);
  EXPECT_TRUE(third.json["next"].is_null());
  EXPECT_EQ(third.json["previous"],
            collection +
                "?limit=20&offset=20&ordering=-created_at"
                "&project_id=16");
  EXPECT_EQ(ResultIds(third), newest(40, 5));

  // The links lead to the pages they name.
  const std::string next_path =
      first.json["next"].get<std::string>().substr(server_->base_url().size());
  Answer followed = Get(next_path);
  ASSERT_EQ(followed.status, 200) << followed.body;
  EXPECT_EQ(ResultIds(followed), newest(20, 20));

  // Past the end: no results, a link back.
  Answer beyond = Get(
      "/api/v2/jobs/?project_id=16&limit=20&offset=60&ordering=-created_at");
  ASSERT_EQ(beyond.status, 200) << beyond.body;
  EXPECT_EQ(beyond.json["count"], 45);
  EXPECT_EQ(beyond.json["results"], Json::array());
  EXPECT_TRUE(beyond.json["next"].is_null());
  EXPECT_EQ(beyond.json["previous"],
            collection +
                "?limit=20&offset=40&ordering=-created_at"
                "&project_id=16");
}

// ---- useJobDetails: the detail page ----------------------------------------

TEST_F(JobsPage, DetailPageOfEachJob) {
  for (const int64_t id : {populate_, ml_, single_, export_, sync_}) {
    Answer answer = Get(absl::StrCat("/api/v2/jobs/", id, "/"));
    ASSERT_EQ(answer.status, 200) << answer.body;
    EXPECT_EQ(answer.content_type, "application/json");
    EXPECT_THAT(UiProblems(answer.json, /*detail=*/true), IsEmpty())
        << answer.body;
    EXPECT_EQ(UiView(answer.json), ExpectedDetail(id)) << "job " << id;
  }

  // The page asks with the active project: its own jobs answer, another
  // project's do not.
  Answer own = Get(absl::StrCat("/api/v2/jobs/", populate_, "/?project_id=16"));
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(UiView(own.json), ExpectedDetail(populate_));
  Answer foreign =
      Get(absl::StrCat("/api/v2/jobs/", other_, "/?project_id=16"));
  EXPECT_EQ(foreign.status, 404);
  EXPECT_EQ(foreign.json, Json::parse(R"({"detail":"Not found."})"));
}

// ---- useCreateJob -----------------------------------------------------------

TEST_F(UiReplay, CreateJobAsTheFormSendsIt) {
  // Start now, for a pipeline on a collection: 201, PENDING, ids as
  // numbers (they were sent as strings).
  Answer started =
      PostJson("/api/v2/jobs/?start_now",
               R"({"delay":0,"name":"Moths of Random 1000","project_id":"16",)"
               R"("pipeline_id":"3","source_image_collection_id":"111"})");
  ASSERT_EQ(started.status, 201) << started.body;
  EXPECT_EQ(started.content_type, "application/json");
  EXPECT_THAT(UiProblems(started.json, /*detail=*/true), IsEmpty())
      << started.body;
  const int64_t started_id = started.json.value("id", int64_t{0});
  const Json started_view = Expected(
      R"({"id":$0,"name":"Moths of Random 1000","delay":0,)"
      R"("status":"PENDING",)"
      R"("created_at":"2025-11-12T19:00:59.806356",)"
      R"("updated_at":"2025-11-12T19:00:59.806356",)"
      R"("started_at":null,"finished_at":null,)"
      R"("progress":{"summary":{"status":"PENDING","progress":0.0,)"
      R"("status_label":"Waiting to start"},"stages":[)"
      R"({"key":"collect","name":"Collect","status":"CREATED",)"
      R"("status_label":"Waiting to start","params":[)"
      R"({"key":"total_images","name":"Total Images","value":""}]},)"
      R"({"key":"process","name":"Process","status":"CREATED",)"
      R"("status_label":"Waiting to start","params":[)"
      R"({"key":"processed","name":"Processed","value":""},)"
      R"({"key":"remaining","name":"Remaining","value":""},)"
      R"({"key":"failed","name":"Failed","value":""}]},)"
      R"({"key":"results","name":"Results","status":"CREATED",)"
      R"("status_label":"Waiting to start","params":[)"
      R"({"key":"captures","name":"Captures","value":""},)"
      R"({"key":"detections","name":"Detections","value":""},)"
      R"({"key":"classifications","name":"Classifications",)"
      R"("value":""}]}]},)"
      R"("job_type":{"key":"ml"},)"
      R"("project":{"id":16,)"
      R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
      R"("deployment":null,)"
      R"("pipeline":{"id":3,"name":"Moth detector",)"
      R"("slug":"moth-detector","version":1,"version_name":"2025.01"},)"
      R"("source_image_single":null,)"
      R"("source_image_collection":{"id":111,"name":"Random 1000"},)"
      R"("data_export":null,"logs":{"stdout":[],"stderr":[]},)"
      R"("user_permissions":["delete","run","run_single_image",)"
      R"("update"]})",
      started_id);
  EXPECT_EQ(UiView(started.json), started_view);

  // The detail page the form then opens: still PENDING, nothing runs it.
  Answer detail = Get(absl::StrCat("/api/v2/jobs/", started_id, "/"));
  ASSERT_EQ(detail.status, 200) << detail.body;
  EXPECT_EQ(UiView(detail.json), started_view);

  // Start now on a single capture: the hook reads source_image_single.id.
  At(1);
  Answer single =
      PostJson("/api/v2/jobs/?start_now",
               R"({"delay":0,"name":"Capture 5001","project_id":"16",)"
               R"("pipeline_id":"3","source_image_single_id":"5001"})");
  ASSERT_EQ(single.status, 201) << single.body;
  EXPECT_THAT(UiProblems(single.json, /*detail=*/true), IsEmpty())
      << single.body;
  EXPECT_EQ(single.json.value("status", ""), "PENDING");
  EXPECT_EQ(UiView(single.json)["source_image_single"],
            Json::parse(R"({"id":5001,"event_id":901})"));
  EXPECT_TRUE(single.json["source_image_collection"].is_null());

  // Without start_now, a populate job with the delay as a string too:
  // CREATED, no stages.
  At(2);
  Answer created = PostJson(
      "/api/v2/jobs/",
      R"({"name":"x","project_id":"16","source_image_collection_id":"111",)"
      R"("job_type_key":"populate_captures_collection","delay":"0"})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_THAT(UiProblems(created.json, /*detail=*/true), IsEmpty())
      << created.body;
  EXPECT_EQ(
      UiView(created.json),
      Expected(
          R"({"id":$0,"name":"x","delay":0,"status":"CREATED",)"
          R"("created_at":"2025-11-12T19:01:01.806356",)"
          R"("updated_at":"2025-11-12T19:01:01.806356",)"
          R"("started_at":null,"finished_at":null,)"
          R"("progress":{"summary":{"status":"CREATED","progress":0.0,)"
          R"("status_label":"Waiting to start"},"stages":[]},)"
          R"("job_type":{"key":"populate_captures_collection"},)"
          R"("project":{"id":16,)"
          R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
          R"("deployment":null,"pipeline":null,"source_image_single":null,)"
          R"("source_image_collection":{"id":111,"name":"Random 1000"},)"
          R"("data_export":null,"logs":{"stdout":[],"stderr":[]},)"
          R"("user_permissions":["delete","run","update"]})",
          created.json.value("id", int64_t{0})));

  // delay may be left out (D7): it is 0.
  Answer no_delay =
      PostJson("/api/v2/jobs/", R"({"name":"No delay","project_id":"16"})");
  ASSERT_EQ(no_delay.status, 201) << no_delay.body;
  EXPECT_EQ(no_delay.json["delay"], 0);
  EXPECT_TRUE(no_delay.json["delay"].is_number_integer());

  // The list the page goes back to shows all four.
  Answer list =
      Get("/api/v2/jobs/?project_id=16&limit=20&offset=0&ordering=-created_at");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.json["count"], 4);
}

// ---- useQueueJob: the Start button of a CREATED job -------------------------

TEST_F(UiReplay, RunStartsACreatedJob) {
  const int64_t id =
      Create(R"({"name":"Populate","project_id":"16",)"
             R"("source_image_collection_id":"111",)"
             R"("job_type_key":"populate_captures_collection","delay":"0"})");
  ASSERT_NE(id, 0);

  At(5);
  Answer run = Action(id, "run");
  ASSERT_EQ(run.status, 200) << run.body;
  EXPECT_EQ(run.content_type, "application/json");
  EXPECT_THAT(UiProblems(run.json, /*detail=*/true), IsEmpty()) << run.body;
  const Json view = UiView(run.json);
  EXPECT_EQ(view["status"], "PENDING");
  EXPECT_EQ(view["progress"]["summary"],
            Json::parse(R"({"status":"PENDING","progress":0.0,)"
                        R"("status_label":"Waiting to start"})"));
  EXPECT_TRUE(view["started_at"].is_null());
  EXPECT_TRUE(view["finished_at"].is_null());
  EXPECT_EQ(view["created_at"], "2025-11-12T19:00:59.806356");
  EXPECT_EQ(view["updated_at"], "2025-11-12T19:01:04.806356");

  // The button is gone while PENDING; a second run is refused (D6) with a
  // body the UI shows as a message list.
  Answer again = Action(id, "run");
  EXPECT_EQ(again.status, 400);
  EXPECT_EQ(again.json, Json::array({absl::StrCat("cannot run job ", id,
                                                  " while it is PENDING")}))
      << again.body;

  // A worker has it: STARTED with started_at; a run is refused again.
  At(6);
  ASSERT_TRUE(StartAsWorker(id).ok());
  Answer detail = Get(absl::StrCat("/api/v2/jobs/", id, "/"));
  ASSERT_EQ(detail.status, 200) << detail.body;
  EXPECT_THAT(UiProblems(detail.json, /*detail=*/true), IsEmpty())
      << detail.body;
  EXPECT_EQ(detail.json["status"], "STARTED");
  EXPECT_EQ(detail.json["started_at"], "2025-11-12T19:01:05.806356");
  Answer while_started = Action(id, "run");
  EXPECT_EQ(while_started.status, 400);
  EXPECT_EQ(while_started.json,
            Json::array(
                {absl::StrCat("cannot run job ", id, " while it is STARTED")}));
}

// ---- useCancelJob: the Cancel button of a PENDING or STARTED job ------------

TEST_F(UiReplay, CancelStopsPendingAndStartedJobs) {
  const std::string body =
      R"({"name":"Populate","project_id":"16",)"
      R"("source_image_collection_id":"111",)"
      R"("job_type_key":"populate_captures_collection","delay":"0"})";
  const int64_t pending = Create(body, "?start_now");
  const int64_t started = Create(body, "?start_now");
  ASSERT_NE(pending, 0);
  ASSERT_NE(started, 0);
  At(1);
  ASSERT_TRUE(StartAsWorker(started).ok());

  // PENDING, never handed out: REVOKED at once, with finished_at.
  At(2);
  Answer revoked = Action(pending, "cancel");
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_THAT(UiProblems(revoked.json, /*detail=*/true), IsEmpty())
      << revoked.body;
  Json view = UiView(revoked.json);
  EXPECT_EQ(view["status"], "REVOKED");
  EXPECT_EQ(view["progress"]["summary"]["status"], "REVOKED");
  EXPECT_TRUE(view["started_at"].is_null());
  EXPECT_EQ(view["finished_at"], "2025-11-12T19:01:01.806356");
  EXPECT_EQ(view["logs"],
            Expected(R"({"stdout":["[2025-11-12 19:01:01] INFO Changing )"
                     R"(status of job $0 from PENDING to REVOKED"],)"
                     R"("stderr":[]})",
                     pending));

  // STARTED: CANCELING until the worker stops; not finished yet.
  Answer canceling = Action(started, "cancel");
  ASSERT_EQ(canceling.status, 200) << canceling.body;
  EXPECT_THAT(UiProblems(canceling.json, /*detail=*/true), IsEmpty())
      << canceling.body;
  view = UiView(canceling.json);
  EXPECT_EQ(view["status"], "CANCELING");
  EXPECT_EQ(view["progress"]["summary"]["status"], "CANCELING");
  EXPECT_EQ(view["started_at"], "2025-11-12T19:01:00.806356");
  EXPECT_TRUE(view["finished_at"].is_null());

  // A final job: cancel changes nothing and still answers the job (D6).
  At(3);
  Answer noop = Action(pending, "cancel");
  ASSERT_EQ(noop.status, 200) << noop.body;
  EXPECT_EQ(noop.json["status"], "REVOKED");
  EXPECT_EQ(noop.json["finished_at"], "2025-11-12T19:01:01.806356");
}

// ---- useRetryJob: the Retry button of a finished job ------------------------

TEST_F(UiReplay, RetryRunsAFinishedJobAgain) {
  const int64_t id = Create(
      R"({"name":"Populate captures for collection 111","project_id":"16",)"
      R"("source_image_collection_id":"111",)"
      R"("job_type_key":"populate_captures_collection","delay":"0"})",
      "?start_now");
  ASSERT_NE(id, 0);
  At(1);
  ASSERT_TRUE(StartAsWorker(id).ok());
  At(2);
  ASSERT_TRUE(FinishPopulateAsWorker(id).ok());

  // SUCCESS -> PENDING: progress reset (numbers to 0), finished_at cleared,
  // the re-run logged.
  At(3);
  Answer retried = Action(id, "retry");
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(retried.content_type, "application/json");
  EXPECT_THAT(UiProblems(retried.json, /*detail=*/true), IsEmpty())
      << retried.body;
  EXPECT_EQ(
      UiView(retried.json),
      Expected(
          R"({"id":$0,"name":"Populate captures for collection 111",)"
          R"("delay":0,"status":"PENDING",)"
          R"("created_at":"2025-11-12T19:00:59.806356",)"
          R"("updated_at":"2025-11-12T19:01:02.806356",)"
          R"("started_at":null,"finished_at":null,)"
          R"("progress":{"summary":{"status":"PENDING","progress":0.0,)"
          R"("status_label":"Waiting to start"},"stages":[)"
          R"({"key":"populate_captures_collection",)"
          R"("name":"Populate captures collection","status":"CREATED",)"
          R"("status_label":"Waiting to start","params":[)"
          R"({"key":"captures_added","name":"Captures added",)"
          R"("value":0}]}]},)"
          R"("job_type":{"key":"populate_captures_collection"},)"
          R"("project":{"id":16,)"
          R"("name":"Aarhus Universitet, Department of Ecoscience"},)"
          R"("deployment":null,"pipeline":null,"source_image_single":null,)"
          R"("source_image_collection":{"id":111,"name":"Random 1000"},)"
          R"("data_export":null,)"
          R"("logs":{"stdout":[)"
          R"("[2025-11-12 19:01:02] INFO Changing status of job $0 from )"
          R"(RETRY to PENDING",)"
          R"("[2025-11-12 19:01:02] INFO Changing status of job $0 from )"
          R"(SUCCESS to RETRY",)"
          R"("[2025-11-12 19:01:02] INFO Re-running job #$0 \"Populate )"
          R"(captures for collection 111\"",)"
          R"("[2025-11-12 19:01:01] INFO Changing status of job $0 from )"
          R"(STARTED to SUCCESS",)"
          R"("[2025-11-12 19:01:01] INFO Added 1000 captures to source )"
          R"(image collection #111 Random 1000",)"
          R"("[2025-11-12 19:01:00] INFO Changing status of job $0 from )"
          R"(PENDING to STARTED"],"stderr":[]},)"
          R"("user_permissions":["delete","run","update"]})",
          id));

  // REVOKED -> PENDING too; while PENDING or CANCELING it is refused (D6).
  Answer pending = Action(id, "retry");
  EXPECT_EQ(pending.status, 400);
  EXPECT_EQ(pending.json, Json::array({absl::StrCat("cannot retry job ", id,
                                                    " while it is PENDING")}))
      << pending.body;
  At(4);
  ASSERT_EQ(Action(id, "cancel").json.value("status", ""), "REVOKED");
  Answer again = Action(id, "retry");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json["status"], "PENDING");
  EXPECT_TRUE(again.json["finished_at"].is_null());
  At(5);
  ASSERT_TRUE(StartAsWorker(id).ok());
  ASSERT_EQ(Action(id, "cancel").json.value("status", ""), "CANCELING");
  Answer canceling = Action(id, "retry");
  EXPECT_EQ(canceling.status, 400);
  EXPECT_EQ(canceling.json,
            Json::array({absl::StrCat("cannot retry job ", id,
                                      " while it is CANCELING")}));
}

// ---- useDeleteJob
// -------------------------------------------------------------

TEST_F(JobsPage, DeleteRemovesTheJob) {
  Answer deleted = Delete(export_);
  EXPECT_EQ(deleted.status, 204);
  EXPECT_EQ(deleted.body, "");

  Answer gone = Get(absl::StrCat("/api/v2/jobs/", export_, "/"));
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.json, Json::parse(R"({"detail":"Not found."})"));
  Answer list = Get(PageUrl());
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.json["count"], 4);
  EXPECT_THAT(ResultIds(list), ElementsAre(sync_, single_, ml_, populate_));

  Answer twice = Delete(export_);
  EXPECT_EQ(twice.status, 404);
  EXPECT_EQ(twice.json, Json::parse(R"({"detail":"Not found."})"));
}

// ---- The error display
// --------------------------------------------------------

TEST_F(JobsPage, ErrorBodiesTheUiCanShow) {
  // Field errors: an object of fields, each with a list of messages.
  struct Case {
    std::string body;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {R"({"delay":0,"project_id":"16"})",
       R"({"name":["This field is required."]})"},
      {R"({"delay":0,"name":"","project_id":"16"})",
       R"({"name":["This field may not be blank."]})"},
      {R"({"delay":0,"name":"x"})",
       R"({"project_id":["This field is required."]})"},
      {R"({"delay":0,"name":"x","project_id":"99"})",
       R"({"project_id":["Invalid pk \"99\" - object does not exist."]})"},
      {R"({"delay":0,"name":"x","project_id":"16","pipeline_id":"99"})",
       R"({"pipeline_id":["Invalid pk \"99\" - object does not exist."]})"},
      {R"({"delay":"x","name":"x","project_id":"16"})",
       R"({"delay":["A valid integer is required."]})"},
      {R"({"delay":0,"name":"x","project_id":"16","job_type_key":"nope"})",
       R"({"job_type_key":["\"nope\" is not a valid choice."]})"},
  };
  for (const Case& test : cases) {
    Answer answer = PostJson("/api/v2/jobs/?start_now", test.body);
    EXPECT_EQ(answer.status, 400) << test.body;
    EXPECT_EQ(answer.content_type, "application/json") << test.body;
    EXPECT_THAT(FieldErrorProblems(answer.json), IsEmpty()) << answer.body;
    EXPECT_EQ(answer.json, Json::parse(test.expected)) << test.body;
  }

  // A filter value that is not a choice.
  Answer status = Get(PageUrl("&status=DONE"));
  EXPECT_EQ(status.status, 400);
  EXPECT_THAT(FieldErrorProblems(status.json), IsEmpty()) << status.body;
  EXPECT_EQ(status.json,
            Json::parse(R"({"status":["Select a valid choice. DONE is not )"
                        R"(one of the available choices."]})"));

  // Nothing of the above was stored.
  EXPECT_EQ(Get(PageUrl()).json.value("count", int64_t{-1}), 5);

  // Unknown jobs, on every route the hooks use.
  const Json not_found = Json::parse(R"({"detail":"Not found."})");
  for (const std::string& path :
       {std::string("/api/v2/jobs/999/"), std::string("/api/v2/jobs/abc/"),
        std::string("/api/v2/jobs/999/?project_id=16")}) {
    Answer answer = Get(path);
    EXPECT_EQ(answer.status, 404) << path;
    EXPECT_EQ(answer.json, not_found) << path << ": " << answer.body;
  }
  for (const char* action : {"run", "cancel", "retry"}) {
    Answer answer = Action(999, action);
    EXPECT_EQ(answer.status, 404) << action;
    EXPECT_EQ(answer.json, not_found) << action << ": " << answer.body;
  }
  Answer removed = Delete(999);
  EXPECT_EQ(removed.status, 404);
  EXPECT_EQ(removed.json, not_found) << removed.body;
}

}  // namespace
}  // namespace rest
}  // namespace jobline
