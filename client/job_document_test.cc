#include "client/job_document.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace jobline {
namespace {

using nlohmann::ordered_json;

// ---- Helpers ----

// A UTC instant given as civil time plus microseconds.
google::protobuf::Timestamp UtcTimestamp(int year, int month, int day, int hour,
                                         int minute, int second,
                                         int micros = 0) {
  const absl::Time time =
      absl::FromCivil(absl::CivilSecond(year, month, day, hour, minute, second),
                      absl::UTCTimeZone());
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(absl::ToUnixSeconds(time));
  timestamp.set_nanos(micros * 1000);
  return timestamp;
}

google::protobuf::Duration MakeDuration(int64_t seconds, int32_t nanos) {
  google::protobuf::Duration duration;
  duration.set_seconds(seconds);
  duration.set_nanos(nanos);
  return duration;
}

google::protobuf::Value NumberValue(double number) {
  google::protobuf::Value value;
  value.set_number_value(number);
  return value;
}

std::vector<std::string> Keys(const ordered_json& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

// The JSON type of `value` as the wire sees it: signed and unsigned
// integers are one type ("integer"), distinct from "float".
std::string JsonKind(const ordered_json& value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) return "boolean";
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "float";
  if (value.is_string()) return "string";
  if (value.is_array()) return "array";
  if (value.is_object()) return "object";
  return "other";
}

// Expects `actual` to equal `expected` member by member: the same type at
// every path (1000 and 1000.0 differ), the same keys in the same order and
// the same values. Failures name the path, e.g. "$.progress.stages[0]".
void ExpectSameJson(const ordered_json& expected, const ordered_json& actual,
                    const std::string& path = "$") {
  const std::string expected_kind = JsonKind(expected);
  ASSERT_EQ(JsonKind(actual), expected_kind) << "type at " << path;
  if (expected.is_object()) {
    ASSERT_EQ(Keys(actual), Keys(expected)) << "keys at " << path;
    for (const auto& [key, value] : expected.items()) {
      ExpectSameJson(value, actual.at(key), absl::StrCat(path, ".", key));
    }
  } else if (expected.is_array()) {
    ASSERT_EQ(actual.size(), expected.size()) << "length at " << path;
    for (size_t i = 0; i < expected.size(); ++i) {
      ExpectSameJson(expected[i], actual[i], absl::StrCat(path, "[", i, "]"));
    }
  } else {
    EXPECT_EQ(actual, expected) << "value at " << path;
  }
}

// The folder of the seed documents: $JOBLINE_SEED_DIR when set, else
// ../shared/seed next to the workspace root. Under `bazel test` the root is
// found through the runfiles: walking up from the test binary (or the
// working directory) to the execroot, whose client/ entry links to the
// source folder.
absl::StatusOr<std::filesystem::path> SeedDir() {
  namespace fs = std::filesystem;
  if (const char* dir = std::getenv("JOBLINE_SEED_DIR")) return fs::path(dir);

  std::vector<fs::path> starts;
  std::error_code error;
  starts.push_back(fs::current_path(error));
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    starts.push_back(fs::path(srcdir) / workspace);
  }
  starts.push_back(fs::canonical("/proc/self/exe", error).parent_path());

  std::vector<std::string> tried;
  for (const fs::path& start : starts) {
    for (fs::path dir = start; !dir.empty(); dir = dir.parent_path()) {
      const fs::path source = dir / "client" / "job_document_test.cc";
      if (fs::exists(source, error)) {
        const fs::path root =
            fs::canonical(source, error).parent_path().parent_path();
        const fs::path seed = root.parent_path() / "shared" / "seed";
        if (fs::is_directory(seed, error)) return seed;
        tried.push_back(seed.string());
      }
      if (dir == dir.root_path()) break;
    }
  }
  return absl::NotFoundError(absl::StrCat(
      "no seed folder found (set JOBLINE_SEED_DIR); tried: ",
      tried.empty() ? "no workspace root found" : absl::StrJoin(tried, ", ")));
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// A job with every reference and timestamp set, as the server answers it.
v2::Job FullJob() {
  v2::Job job;
  job.set_id(42);
  job.set_details("/api/v2/jobs/42/");
  job.set_name("Nightly batch");
  job.set_delay(5);
  job.set_limit(100);
  job.set_shuffle(true);

  v2::Project& project = *job.mutable_project();
  project.set_id(1);
  project.set_name("Demo");
  project.set_details("/api/v2/projects/1/");
  project.add_user_permissions("update");
  v2::Deployment& deployment = *job.mutable_deployment();
  deployment.set_id(60);
  deployment.set_name("Station 1");
  deployment.set_details("/api/v2/deployments/60/");
  v2::CaptureCollection& collection = *job.mutable_source_image_collection();
  collection.set_id(3);
  collection.set_name("Sample");
  collection.set_details("/api/v2/captures/collections/3/");
  collection.set_method("random");
  v2::Capture& capture = *job.mutable_source_image_single();
  capture.set_id(5001);
  capture.set_details("/api/v2/captures/5001/");
  capture.set_url("https://example.org/5001.jpg");
  capture.set_width(4096);
  capture.set_height(2160);
  *capture.mutable_timestamp() = UtcTimestamp(2025, 6, 12, 22, 0, 0);
  capture.set_event_id(9);
  v2::Pipeline& pipeline = *job.mutable_pipeline();
  pipeline.set_id(2);
  pipeline.set_details("/api/v2/ml/pipelines/2/");
  pipeline.set_name("Moth detector");
  pipeline.set_slug("moth-detector");
  pipeline.set_version(1);
  *pipeline.mutable_created_at() = UtcTimestamp(2025, 1, 2, 9, 0, 0, 500000);
  *pipeline.mutable_updated_at() = UtcTimestamp(2025, 1, 2, 9, 0, 0, 500000);

  job.set_status(v2::STARTED);
  *job.mutable_created_at() = UtcTimestamp(2025, 5, 1, 10, 0, 0, 123456);
  *job.mutable_updated_at() = UtcTimestamp(2025, 5, 1, 10, 2, 11, 4211);
  *job.mutable_started_at() = UtcTimestamp(2025, 5, 1, 10, 0, 3, 517);
  *job.mutable_finished_at() = UtcTimestamp(2025, 5, 1, 10, 0, 6, 517);
  *job.mutable_duration() = MakeDuration(3, 0);
  job.mutable_progress()->mutable_summary()->set_status(v2::STARTED);
  job.mutable_job_type()->set_name("ML pipeline");
  job.mutable_job_type()->set_key("ml");
  v2::DataExport& data_export = *job.mutable_data_export();
  data_export.set_id(7);
  data_export.set_user(1);
  data_export.set_project(1);
  data_export.set_format("occurrences_simple_csv");
  data_export.set_file_url("https://example.org/7.csv");
  job.set_dispatch_mode("sync_api");
  job.mutable_result()->set_string_value("done");
  return job;
}

// A job with none of the optional fields set.
v2::Job BareJob() {
  v2::Job job;
  job.set_id(7);
  job.set_details("/api/v2/jobs/7/");
  job.set_name("Bare");
  job.set_shuffle(true);
  job.mutable_project()->set_id(1);
  job.mutable_project()->set_name("Demo");
  job.set_status(v2::CREATED);
  *job.mutable_created_at() = UtcTimestamp(2025, 5, 1, 10, 0, 0);
  *job.mutable_updated_at() = UtcTimestamp(2025, 5, 1, 10, 0, 0);
  job.mutable_progress()->mutable_summary()->set_status(v2::CREATED);
  job.mutable_job_type()->set_name("Unknown");
  job.mutable_job_type()->set_key("unknown");
  job.set_dispatch_mode("internal");
  return job;
}

DocumentOptions LocalOptions() {
  DocumentOptions options;
  options.base_url = "http://localhost:8000";
  return options;
}

// ---- PythonFloat ----

TEST(PythonFloat, IntegralFloatsKeepPointZero) {
  EXPECT_EQ(PythonFloat(1.0), "1.0");
  EXPECT_EQ(PythonFloat(0.0), "0.0");
  EXPECT_EQ(PythonFloat(-0.0), "-0.0");
  EXPECT_EQ(PythonFloat(1e15), "1000000000000000.0");
  EXPECT_EQ(PythonFloat(9007199254740994.0), "9007199254740994.0");
}

TEST(PythonFloat, ShortestRoundTripDigits) {
  EXPECT_EQ(PythonFloat(0.356203), "0.356203");
  EXPECT_EQ(PythonFloat(0.1), "0.1");
  EXPECT_EQ(PythonFloat(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(PythonFloat(123456789.125), "123456789.125");
  EXPECT_EQ(PythonFloat(-1.5), "-1.5");
  EXPECT_EQ(PythonFloat(0.0001), "0.0001");
}

TEST(PythonFloat, ExponentOutsideOneE16AndOneEMinus4) {
  EXPECT_EQ(PythonFloat(1e-05), "1e-05");
  EXPECT_EQ(PythonFloat(1.5e-07), "1.5e-07");
  EXPECT_EQ(PythonFloat(1e+16), "1e+16");
  EXPECT_EQ(PythonFloat(2.5e16), "2.5e+16");
  EXPECT_EQ(PythonFloat(1e300), "1e+300");
  EXPECT_EQ(PythonFloat(5e-324), "5e-324");
}

// ---- IsoDateTime ----

TEST(IsoDateTime, FractionOmittedWhenZero) {
  EXPECT_EQ(
      IsoDateTime(UtcTimestamp(2025, 11, 12, 19, 0, 59), absl::UTCTimeZone()),
      "2025-11-12T19:00:59");
}

TEST(IsoDateTime, SixMicrosecondDigits) {
  EXPECT_EQ(IsoDateTime(UtcTimestamp(2025, 11, 12, 19, 0, 59, 806356),
                        absl::UTCTimeZone()),
            "2025-11-12T19:00:59.806356");
  EXPECT_EQ(IsoDateTime(UtcTimestamp(2025, 1, 2, 9, 0, 0, 500000),
                        absl::UTCTimeZone()),
            "2025-01-02T09:00:00.500000");
  EXPECT_EQ(
      IsoDateTime(UtcTimestamp(2025, 1, 2, 9, 0, 0, 5), absl::UTCTimeZone()),
      "2025-01-02T09:00:00.000005");
}

TEST(IsoDateTime, SubMicrosecondDigitsDropped) {
  google::protobuf::Timestamp timestamp = UtcTimestamp(2025, 1, 2, 9, 0, 0);
  timestamp.set_nanos(999);
  EXPECT_EQ(IsoDateTime(timestamp, absl::UTCTimeZone()), "2025-01-02T09:00:00");
  timestamp.set_nanos(1999);
  EXPECT_EQ(IsoDateTime(timestamp, absl::UTCTimeZone()),
            "2025-01-02T09:00:00.000001");
}

TEST(IsoDateTime, NaiveLocalTimeOfTheZone) {
  absl::TimeZone new_york;
  ASSERT_TRUE(absl::LoadTimeZone("America/New_York", &new_york));
  // Standard time in November (UTC-5), daylight time in June (UTC-4).
  EXPECT_EQ(
      IsoDateTime(UtcTimestamp(2025, 11, 12, 19, 0, 59, 806356), new_york),
      "2025-11-12T14:00:59.806356");
  EXPECT_EQ(IsoDateTime(UtcTimestamp(2025, 6, 1, 2, 30, 0), new_york),
            "2025-05-31T22:30:00");
}

// ---- DurationText ----

TEST(DurationText, SecondsAsPythonFloat) {
  EXPECT_EQ(DurationText(MakeDuration(0, 356203000)), "0.356203");
  EXPECT_EQ(DurationText(MakeDuration(3, 0)), "3.0");
  EXPECT_EQ(DurationText(MakeDuration(125, 123456000)), "125.123456");
  EXPECT_EQ(DurationText(MakeDuration(0, 0)), "0.0");
}

TEST(DurationText, Negative) {
  EXPECT_EQ(DurationText(MakeDuration(-1, -500000000)), "-1.5");
  EXPECT_EQ(DurationText(MakeDuration(-3, 0)), "-3.0");
}

TEST(DurationText, SubMicrosecondDigitsDropped) {
  EXPECT_EQ(DurationText(MakeDuration(1, 999)), "1.0");
}

// ---- ValueToJson ----

TEST(ValueToJson, WholeNumbersBecomeIntegers) {
  const ordered_json thousand = ValueToJson(NumberValue(1000));
  EXPECT_TRUE(thousand.is_number_integer());
  EXPECT_EQ(ToJsonText(thousand), "1000");
  EXPECT_EQ(ToJsonText(ValueToJson(NumberValue(-3))), "-3");
  EXPECT_EQ(ToJsonText(ValueToJson(NumberValue(9007199254740992.0))),
            "9007199254740992");
}

TEST(ValueToJson, OtherNumbersStayFloats) {
  const ordered_json half = ValueToJson(NumberValue(0.5));
  EXPECT_TRUE(half.is_number_float());
  EXPECT_EQ(ToJsonText(half), "0.5");
  // Beyond 2^53 a whole double is not exact; it stays a float.
  EXPECT_EQ(ToJsonText(ValueToJson(NumberValue(9007199254740994.0))),
            "9007199254740994.0");
}

TEST(ValueToJson, ScalarsAndNull) {
  google::protobuf::Value value;
  EXPECT_EQ(ToJsonText(ValueToJson(value)), "null");
  value.set_null_value(google::protobuf::NULL_VALUE);
  EXPECT_EQ(ToJsonText(ValueToJson(value)), "null");
  value.set_bool_value(true);
  EXPECT_EQ(ToJsonText(ValueToJson(value)), "true");
  value.set_string_value("a\"b");
  EXPECT_EQ(ToJsonText(ValueToJson(value)), R"("a\"b")");
}

TEST(ValueToJson, NestedObjectsAndListsWithSortedKeys) {
  google::protobuf::Value value;
  auto& fields = *value.mutable_struct_value()->mutable_fields();
  google::protobuf::ListValue& list = *fields["b"].mutable_list_value();
  *list.add_values() = NumberValue(1);
  *list.add_values() = NumberValue(2.5);
  list.add_values()->set_string_value("x");
  list.add_values()->set_bool_value(false);
  list.add_values()->set_null_value(google::protobuf::NULL_VALUE);
  (*fields["a"].mutable_struct_value()->mutable_fields())["size"] =
      NumberValue(1000);
  fields["c"].mutable_struct_value();

  EXPECT_EQ(ToJsonText(ValueToJson(value)),
            R"({"a":{"size":1000},"b":[1,2.5,"x",false,null],"c":{}})");
}

// ---- ToJsonText ----

TEST(ToJsonText, CompactWithKeysInInsertionOrder) {
  ordered_json document = ordered_json::object();
  document["z"] = ordered_json::array({1, "two", nullptr, true});
  document["a"] = ordered_json::object({{"x", 1.0}, {"y", 0.25}});
  document["e"] = ordered_json::array();
  document["o"] = ordered_json::object();
  EXPECT_EQ(
      ToJsonText(document),
      R"({"z":[1,"two",null,true],"a":{"x":1.0,"y":0.25},"e":[],"o":{}})");
}

TEST(ToJsonText, IntegersOfBothSigns) {
  EXPECT_EQ(ToJsonText(ordered_json(int64_t{-9007199254740993})),
            "-9007199254740993");
  EXPECT_EQ(ToJsonText(ordered_json(uint64_t{18446744073709551615u})),
            "18446744073709551615");
}

TEST(ToJsonText, NonFiniteFloatsRenderNull) {
  EXPECT_EQ(ToJsonText(ordered_json(std::nan(""))), "null");
  EXPECT_EQ(ToJsonText(ordered_json(HUGE_VAL)), "null");
}

TEST(ToJsonText, NonAsciiWrittenRaw) {
  EXPECT_EQ(ToJsonText(ordered_json("Århus \xC3\xA9 \xF0\x9F\xA6\x8B")),
            "\"Århus \xC3\xA9 \xF0\x9F\xA6\x8B\"");
  // DEL is not a control character for JSON.
  EXPECT_EQ(ToJsonText(ordered_json("\x7F")), "\"\x7F\"");
}

TEST(ToJsonText, LineAndParagraphSeparatorsEscaped) {
  EXPECT_EQ(ToJsonText(ordered_json("a\xE2\x80\xA8"
                                    "b\xE2\x80\xA9"
                                    "c")),
            R"("a\u2028b\u2029c")");
}

TEST(ToJsonText, ControlCharactersEscaped) {
  EXPECT_EQ(ToJsonText(ordered_json("\"\\\n\r\t\b\f\x01\x1F")),
            R"("\"\\\n\r\t\b\f\u0001\u001f")");
  EXPECT_EQ(ToJsonText(ordered_json(std::string("a\0b", 3))), R"("a\u0000b")");
}

TEST(ToJsonText, InvalidUtf8Replaced) {
  const std::string replacement = "\xEF\xBF\xBD";
  // A stray byte, a truncated sequence, and a lead byte at the end.
  EXPECT_EQ(ToJsonText(ordered_json("a\xFF"
                                    "b")),
            absl::StrCat("\"a", replacement, "b\""));
  EXPECT_EQ(ToJsonText(ordered_json("a\xE2\x80"
                                    "b")),
            absl::StrCat("\"a", replacement, "b\""));
  EXPECT_EQ(ToJsonText(ordered_json("a\xF0\x9F\xA6")),
            absl::StrCat("\"a", replacement, "\""));
  // An encoded surrogate: each byte is a maximal invalid subpart.
  EXPECT_EQ(ToJsonText(ordered_json("\xED\xA0\x80")),
            absl::StrCat("\"", replacement, replacement, replacement, "\""));
  // Overlong encodings.
  EXPECT_EQ(ToJsonText(ordered_json("\xC0\xAF")),
            absl::StrCat("\"", replacement, replacement, "\""));
}

TEST(ToJsonText, InvalidUtf8InKeysReplaced) {
  ordered_json document = ordered_json::object();
  document["k\xFF"] = 1;
  EXPECT_EQ(ToJsonText(document), "{\"k\xEF\xBF\xBD\":1}");
}

// ---- JobDocument ----

TEST(JobDocument, DetailKeysInUpstreamOrder) {
  const ordered_json document =
      JobDocument(FullJob(), JobView::kDetail, LocalOptions());
  EXPECT_EQ(Keys(document), (std::vector<std::string>{"id",
                                                      "details",
                                                      "name",
                                                      "delay",
                                                      "limit",
                                                      "shuffle",
                                                      "project",
                                                      "deployment",
                                                      "source_image_collection",
                                                      "source_image_single",
                                                      "pipeline",
                                                      "status",
                                                      "created_at",
                                                      "updated_at",
                                                      "started_at",
                                                      "finished_at",
                                                      "duration",
                                                      "progress",
                                                      "logs",
                                                      "job_type",
                                                      "data_export",
                                                      "dispatch_mode",
                                                      "result",
                                                      "user_permissions"}));
}

TEST(JobDocument, ListItemHasNoResult) {
  const ordered_json document =
      JobDocument(FullJob(), JobView::kListItem, LocalOptions());
  EXPECT_EQ(Keys(document), (std::vector<std::string>{"id",
                                                      "details",
                                                      "name",
                                                      "delay",
                                                      "limit",
                                                      "shuffle",
                                                      "project",
                                                      "deployment",
                                                      "source_image_collection",
                                                      "source_image_single",
                                                      "pipeline",
                                                      "status",
                                                      "created_at",
                                                      "updated_at",
                                                      "started_at",
                                                      "finished_at",
                                                      "duration",
                                                      "progress",
                                                      "logs",
                                                      "job_type",
                                                      "data_export",
                                                      "dispatch_mode",
                                                      "user_permissions"}));
}

TEST(JobDocument, NestedObjectsInUpstreamOrder) {
  const ordered_json document =
      JobDocument(FullJob(), JobView::kDetail, LocalOptions());
  EXPECT_EQ(ToJsonText(document["project"]),
            R"({"id":1,"name":"Demo",)"
            R"("details":"http://localhost:8000/api/v2/projects/1/",)"
            R"("user_permissions":["update"]})");
  EXPECT_EQ(ToJsonText(document["deployment"]),
            R"({"id":60,"name":"Station 1",)"
            R"("details":"http://localhost:8000/api/v2/deployments/60/",)"
            R"("user_permissions":[]})");
  EXPECT_EQ(ToJsonText(document["source_image_collection"]),
            R"({"id":3,"name":"Sample","details":)"
            R"("http://localhost:8000/api/v2/captures/collections/3/",)"
            R"("method":"random","user_permissions":[]})");
  EXPECT_EQ(ToJsonText(document["source_image_single"]),
            R"({"id":5001,)"
            R"("details":"http://localhost:8000/api/v2/captures/5001/",)"
            R"("url":"https://example.org/5001.jpg","width":4096,)"
            R"("height":2160,"timestamp":"2025-06-12T22:00:00",)"
            R"("event_id":9,"user_permissions":[]})");
  EXPECT_EQ(ToJsonText(document["pipeline"]),
            R"({"id":2,)"
            R"("details":"http://localhost:8000/api/v2/ml/pipelines/2/",)"
            R"("name":"Moth detector","slug":"moth-detector",)"
            R"("description":"","version":1,"version_name":"",)"
            R"("created_at":"2025-01-02T09:00:00.500000",)"
            R"("updated_at":"2025-01-02T09:00:00.500000",)"
            R"("user_permissions":[]})");
  EXPECT_EQ(ToJsonText(document["data_export"]),
            R"({"id":7,"user":1,"project":1,)"
            R"("format":"occurrences_simple_csv","filters":null,)"
            R"("file_url":"https://example.org/7.csv"})");
  EXPECT_EQ(ToJsonText(document["job_type"]),
            R"({"name":"ML pipeline","key":"ml"})");
}

TEST(JobDocument, ScalarsOfAFullJob) {
  const ordered_json document =
      JobDocument(FullJob(), JobView::kDetail, LocalOptions());
  EXPECT_EQ(ToJsonText(document["id"]), "42");
  EXPECT_EQ(document["details"], "http://localhost:8000/api/v2/jobs/42/");
  EXPECT_EQ(ToJsonText(document["delay"]), "5");
  EXPECT_EQ(ToJsonText(document["limit"]), "100");
  EXPECT_EQ(document["created_at"], "2025-05-01T10:00:00.123456");
  EXPECT_EQ(document["updated_at"], "2025-05-01T10:02:11.004211");
  EXPECT_EQ(document["started_at"], "2025-05-01T10:00:03.000517");
  EXPECT_EQ(document["finished_at"], "2025-05-01T10:00:06.000517");
  EXPECT_EQ(document["duration"], "3.0");
  EXPECT_EQ(document["status"], "STARTED");
  EXPECT_EQ(document["dispatch_mode"], "sync_api");
  EXPECT_EQ(document["result"], "done");
}

TEST(JobDocument, AbsentReferencesAndTimesAreNull) {
  const ordered_json document =
      JobDocument(BareJob(), JobView::kDetail, LocalOptions());
  for (const char* key : {"limit", "deployment", "source_image_collection",
                          "source_image_single", "pipeline", "started_at",
                          "finished_at", "duration", "data_export", "result"}) {
    EXPECT_TRUE(document.at(key).is_null()) << key;
  }
  EXPECT_EQ(ToJsonText(document["progress"]),
            R"({"summary":{"status":"CREATED","progress":0.0,)"
            R"("status_label":""},"stages":[],"errors":[],"logs":[]})");
  EXPECT_EQ(ToJsonText(document["logs"]), R"({"stdout":[],"stderr":[]})");
}

TEST(JobDocument, NullableCaptureFieldsAreNull) {
  v2::Job job = BareJob();
  job.mutable_source_image_single()->set_id(5002);
  const ordered_json document =
      JobDocument(job, JobView::kDetail, LocalOptions());
  EXPECT_EQ(ToJsonText(document["source_image_single"]),
            R"({"id":5002,)"
            R"("details":"http://localhost:8000/api/v2/captures/5002/",)"
            R"("url":null,"width":null,"height":null,"timestamp":null,)"
            R"("event_id":null,"user_permissions":[]})");
}

TEST(JobDocument, UserPermissionsIsAnArray) {
  v2::Job job = BareJob();
  EXPECT_EQ(ToJsonText(JobDocument(job, JobView::kDetail,
                                   LocalOptions())["user_permissions"]),
            "[]");
  for (const char* permission :
       {"update", "delete", "run", "run_single_image"}) {
    job.add_user_permissions(permission);
  }
  EXPECT_EQ(ToJsonText(JobDocument(job, JobView::kDetail,
                                   LocalOptions())["user_permissions"]),
            R"(["update","delete","run","run_single_image"])");
}

TEST(JobDocument, ProgressStagesWithLabelsAndParams) {
  v2::Job job = BareJob();
  v2::ProgressSummary& summary = *job.mutable_progress()->mutable_summary();
  summary.set_status(v2::STARTED);
  summary.set_progress(0.5);
  summary.set_status_label("50% complete");
  v2::ProgressStage& stage = *job.mutable_progress()->add_stages();
  stage.set_status(v2::STARTED);
  stage.set_progress(0.5);
  stage.set_key("process");
  stage.set_name("Process");
  stage.set_status_label("50% complete");
  v2::StageParam& param = *stage.add_params();
  param.set_name("Processed");
  param.set_key("processed");
  param.set_category("default");
  *param.mutable_value() = NumberValue(20);

  EXPECT_EQ(ToJsonText(
                JobDocument(job, JobView::kDetail, LocalOptions())["progress"]),
            R"({"summary":{"status":"STARTED","progress":0.5,)"
            R"("status_label":"50% complete"},)"
            R"("stages":[{"status":"STARTED","progress":0.5,)"
            R"("key":"process","name":"Process","params":[)"
            R"({"name":"Processed","key":"processed","category":"default",)"
            R"("value":20}],"status_label":"50% complete"}],)"
            R"("errors":[],"logs":[]})");
}

TEST(JobDocument, DetailsLinksFallBackToDefaultPathsAndCarrySuffix) {
  v2::Job job = BareJob();
  job.clear_details();
  job.mutable_project()->clear_details();
  DocumentOptions options = LocalOptions();
  options.details_suffix = "?format=json";
  const ordered_json document = JobDocument(job, JobView::kDetail, options);
  EXPECT_EQ(document["details"],
            "http://localhost:8000/api/v2/jobs/7/?format=json");
  EXPECT_EQ(document["project"]["details"],
            "http://localhost:8000/api/v2/projects/1/?format=json");
}

TEST(RenderJob, IsTheTextOfTheDetailDocument) {
  const v2::Job job = FullJob();
  EXPECT_EQ(RenderJob(job, LocalOptions()),
            ToJsonText(JobDocument(job, JobView::kDetail, LocalOptions())));
}

// ---- Lists ----

TEST(IdsOnlyItem, IdPipelineSlugAndPermissions) {
  v2::Job job = FullJob();
  job.add_user_permissions("run");
  EXPECT_EQ(ToJsonText(IdsOnlyItem(job)),
            R"({"id":42,"pipeline_slug":"moth-detector",)"
            R"("user_permissions":["run"]})");
  EXPECT_EQ(ToJsonText(IdsOnlyItem(BareJob())),
            R"({"id":7,"pipeline_slug":null,"user_permissions":[]})");
}

TEST(JobListDocument, EnvelopeKeysAndNullLinks) {
  google::protobuf::RepeatedPtrField<v2::Job> results;
  *results.Add() = BareJob();
  JobListEnvelope envelope;
  envelope.count = 1;
  envelope.user_permissions = {"create"};
  const ordered_json document =
      JobListDocument(results, envelope, false, LocalOptions());
  EXPECT_EQ(Keys(document),
            (std::vector<std::string>{"count", "next", "previous", "results",
                                      "user_permissions"}));
  EXPECT_EQ(ToJsonText(document["count"]), "1");
  EXPECT_TRUE(document["next"].is_null());
  EXPECT_TRUE(document["previous"].is_null());
  EXPECT_EQ(ToJsonText(document["user_permissions"]), R"(["create"])");
  ASSERT_EQ(document["results"].size(), 1u);
  EXPECT_FALSE(document["results"][0].contains("result"));
}

TEST(JobListDocument, LinksAndIdsOnlyItems) {
  google::protobuf::RepeatedPtrField<v2::Job> results;
  *results.Add() = FullJob();
  JobListEnvelope envelope;
  envelope.count = 30;
  envelope.next = "http://localhost:8000/api/v2/jobs/?limit=1&offset=11";
  envelope.previous = "http://localhost:8000/api/v2/jobs/?limit=1&offset=9";
  EXPECT_EQ(
      ToJsonText(JobListDocument(results, envelope, true, LocalOptions())),
      R"({"count":30,)"
      R"("next":"http://localhost:8000/api/v2/jobs/?limit=1&offset=11",)"
      R"("previous":"http://localhost:8000/api/v2/jobs/?limit=1&offset=9",)"
      R"("results":[{"id":42,"pipeline_slug":"moth-detector",)"
      R"("user_permissions":[]}],"user_permissions":[]})");
}

// ---- ListPageLinks (spec 6.4) ----

constexpr absl::string_view kJobsUrl = "http://localhost:8000/api/v2/jobs/";

TEST(ListPageLinks, HugeOffsetOrLimitHasNoNextPage) {
  const PageLinks past_the_end =
      ListPageLinks("http://h/api/v2/jobs/", {}, 5, 10, 9223372036854775807);
  EXPECT_EQ(past_the_end.next, "");
  const PageLinks huge_page =
      ListPageLinks("http://h/api/v2/jobs/", {}, 50, 9223372036854775807, 5);
  EXPECT_EQ(huge_page.next, "");
  EXPECT_EQ(huge_page.previous,
            "http://h/api/v2/jobs/?limit=9223372036854775807");
}

TEST(ListPageLinks, FirstPageHasNextOnly) {
  const PageLinks links = ListPageLinks(kJobsUrl, {}, 25, 10, 0);
  EXPECT_EQ(links.next,
            "http://localhost:8000/api/v2/jobs/?limit=10&offset=10");
  EXPECT_EQ(links.previous, "");
}

TEST(ListPageLinks, PreviousStartingAtZeroDropsOffset) {
  const PageLinks links = ListPageLinks(kJobsUrl, {}, 25, 10, 10);
  EXPECT_EQ(links.next,
            "http://localhost:8000/api/v2/jobs/?limit=10&offset=20");
  EXPECT_EQ(links.previous, "http://localhost:8000/api/v2/jobs/?limit=10");
  // An offset smaller than the page size also goes back to the start.
  EXPECT_EQ(ListPageLinks(kJobsUrl, {}, 25, 10, 4).previous,
            "http://localhost:8000/api/v2/jobs/?limit=10");
}

TEST(ListPageLinks, LastPageHasPreviousOnly) {
  const PageLinks links = ListPageLinks(kJobsUrl, {}, 25, 10, 20);
  EXPECT_EQ(links.next, "");
  EXPECT_EQ(links.previous,
            "http://localhost:8000/api/v2/jobs/?limit=10&offset=10");
  // offset + limit == count: no next page either.
  EXPECT_EQ(ListPageLinks(kJobsUrl, {}, 30, 10, 20).next, "");
  // Past the end.
  EXPECT_EQ(ListPageLinks(kJobsUrl, {}, 5, 10, 50).previous,
            "http://localhost:8000/api/v2/jobs/?limit=10&offset=40");
}

TEST(ListPageLinks, SinglePageHasNoLinks) {
  const PageLinks links = ListPageLinks(kJobsUrl, {}, 3, 10, 0);
  EXPECT_EQ(links.next, "");
  EXPECT_EQ(links.previous, "");
}

TEST(ListPageLinks, OtherParamsSortedByNameAndFormEncoded) {
  const PageLinks links = ListPageLinks(kJobsUrl,
                                        {{"status", "CREATED"},
                                         {"search", "moth trap"},
                                         {"ordering", "-created_at"},
                                         {"pipeline__slug__in", "a,b"}},
                                        25, 10, 10);
  EXPECT_EQ(links.next,
            "http://localhost:8000/api/v2/jobs/?limit=10&offset=20"
            "&ordering=-created_at&pipeline__slug__in=a%2Cb"
            "&search=moth+trap&status=CREATED");
  EXPECT_EQ(links.previous,
            "http://localhost:8000/api/v2/jobs/?limit=10"
            "&ordering=-created_at&pipeline__slug__in=a%2Cb"
            "&search=moth+trap&status=CREATED");
}

TEST(ListPageLinks, RequestLimitAndOffsetReplaced) {
  const PageLinks links = ListPageLinks(
      kJobsUrl, {{"offset", "30"}, {"limit", "15"}, {"format", "json"}}, 100,
      15, 30);
  EXPECT_EQ(links.next,
            "http://localhost:8000/api/v2/jobs/?format=json&limit=15"
            "&offset=45");
  EXPECT_EQ(links.previous,
            "http://localhost:8000/api/v2/jobs/?format=json&limit=15"
            "&offset=15");
}

TEST(ListPageLinks, RepeatedParamKeepsEveryValueInOrder) {
  const PageLinks links = ListPageLinks(
      kJobsUrl, {{"status", "SUCCESS"}, {"a", "1"}, {"status", "FAILURE"}}, 25,
      10, 0);
  EXPECT_EQ(links.next,
            "http://localhost:8000/api/v2/jobs/?a=1&limit=10&offset=10"
            "&status=SUCCESS&status=FAILURE");
}

TEST(ListPageLinks, EscapesAsQuotePlus) {
  const PageLinks links = ListPageLinks(
      kJobsUrl, {{"search", "a&b=c/\xC3\xA9 ~x_y.z-"}}, 25, 10, 0);
  EXPECT_EQ(links.next,
            "http://localhost:8000/api/v2/jobs/?limit=10&offset=10"
            "&search=a%26b%3Dc%2F%C3%A9+~x_y.z-");
}

// ---- The golden document (spec 1.5, seed/job-1256.json) ----

// Job 1256 as the server holds it: the values of the seed document.
v2::Job SeedJob1256() {
  v2::Job job;
  job.set_id(1256);
  job.set_details("/api/v2/jobs/1256/");
  job.set_name("Populate captures for collection 111");
  job.set_delay(0);
  job.set_shuffle(true);
  v2::Project& project = *job.mutable_project();
  project.set_id(16);
  project.set_name("Aarhus Universitet, Department of Ecoscience");
  project.set_details("/api/v2/projects/16/");
  v2::CaptureCollection& collection = *job.mutable_source_image_collection();
  collection.set_id(111);
  collection.set_name("Random 1000");
  collection.set_details("/api/v2/captures/collections/111/");
  collection.set_method("random");

  job.set_status(v2::SUCCESS);
  *job.mutable_created_at() = UtcTimestamp(2025, 11, 12, 19, 0, 59, 806356);
  *job.mutable_updated_at() = UtcTimestamp(2025, 11, 12, 19, 1, 0, 384337);
  *job.mutable_started_at() = UtcTimestamp(2025, 11, 12, 19, 0, 59, 987715);
  *job.mutable_finished_at() = UtcTimestamp(2025, 11, 12, 19, 1, 0, 343918);
  *job.mutable_duration() = MakeDuration(0, 356203000);

  // Decision D3: Jobline adds status labels, which the seed lacks.
  v2::JobProgress& progress = *job.mutable_progress();
  progress.mutable_summary()->set_status(v2::SUCCESS);
  progress.mutable_summary()->set_progress(1.0);
  progress.mutable_summary()->set_status_label("100% complete");
  v2::ProgressStage& stage = *progress.add_stages();
  stage.set_status(v2::SUCCESS);
  stage.set_progress(1.0);
  stage.set_key("populate_captures_collection");
  stage.set_name("Populate captures collection");
  stage.set_status_label("100% complete");
  v2::StageParam& param = *stage.add_params();
  param.set_name("Captures added");
  param.set_key("captures_added");
  param.set_category("default");
  *param.mutable_value() = NumberValue(1000);

  for (const char* line : {
           "[2025-11-12 19:01:00] INFO Finished job #1256 \"Populate "
           "captures for collection 111\" (SUCCESS)",
           "[2025-11-12 19:01:00] INFO Changing status of job 1256 from "
           "STARTED to SUCCESS",
           "[2025-11-12 19:01:00] INFO Added 1000 captures to source image "
           "collection #111 Random 1000",
           "[2025-11-12 19:01:00] INFO Finished populating source image "
           "collection #111 Random 1000",
           "[2025-11-12 19:01:00] INFO Done sampling and saving captures to "
           "#111 Random 1000",
           "[2025-11-12 19:01:00] INFO Sampling and saving captures to #111 "
           "Random 1000",
           "[2025-11-12 19:00:59] INFO Sampling using method 'sample_random' "
           "with params: {'size': 1000, 'event_ids': None, "
           "'deployment_ids': None}",
           "[2025-11-12 19:00:59] INFO Populating source image collection "
           "#111 Random 1000",
           "[2025-11-12 19:00:59] INFO Changing status of job 1256 from "
           "PENDING to STARTED",
           "[2025-11-12 19:00:59] INFO Running job #1256 \"Populate captures "
           "for collection 111\" (PENDING)",
       }) {
    job.mutable_logs()->add_stdout(line);
  }
  job.mutable_job_type()->set_name("Populate captures collection");
  job.mutable_job_type()->set_key("populate_captures_collection");
  job.set_dispatch_mode("internal");
  return job;
}

TEST(GoldenJob1256, MatchesTheSeedDocument) {
  const absl::StatusOr<std::filesystem::path> seed_dir = SeedDir();
  ASSERT_TRUE(seed_dir.ok()) << seed_dir.status();
  const std::filesystem::path seed_file = *seed_dir / "job-1256.json";
  const absl::StatusOr<std::string> text = ReadFile(seed_file);
  ASSERT_TRUE(text.ok()) << text.status();
  ordered_json expected = ordered_json::parse(*text, nullptr, false);
  ASSERT_FALSE(expected.is_discarded()) << seed_file << " is not JSON";

  // The seed predates Decision D3: the labels go last in the summary and
  // in each stage.
  expected["progress"]["summary"]["status_label"] = "100% complete";
  for (ordered_json& stage : expected["progress"]["stages"]) {
    stage["status_label"] = "100% complete";
  }

  DocumentOptions options;
  options.base_url = "https://api.beluga.insectai.org";
  options.details_suffix = "?format=api";
  const ordered_json actual =
      JobDocument(SeedJob1256(), JobView::kDetail, options);
  ExpectSameJson(expected, actual);
  EXPECT_EQ(RenderJob(SeedJob1256(), options), ToJsonText(expected));
}

}  // namespace
}  // namespace jobline
