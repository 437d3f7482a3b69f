// Renders jobs and reference records as the documents of the upstream REST
// API (/api/v2/jobs/), byte for byte.
//
// The input is a message as the server returns it: `details` fields hold
// paths ("/api/v2/jobs/12/"), job_type.name, duration, the status labels and
// user_permissions are filled. The output follows spec sections 1.2-1.4 and
// 6.4 and Decisions D3, D5, D11, D14 and D15:
//   - keys in upstream order; absent references render null;
//   - ids as JSON numbers;
//   - floats as Python prints them: integral floats keep ".0" (1.0), others
//     the shortest text that reads back as the same double;
//   - timestamps as naive ISO-8601 in a display time zone,
//     "YYYY-MM-DDTHH:MM:SS.ffffff" with the fraction left out when the
//     microseconds are 0;
//   - duration as the string of the total seconds ("0.356203", "3.0");
//   - details links absolute: base_url + path + details_suffix;
//   - compact text, UTF-8 unescaped except U+2028 and U+2029, invalid UTF-8
//     replaced by U+FFFD.
//
// Documents are built as nlohmann::ordered_json and written by ToJsonText,
// which (unlike nlohmann's own dump) prints floats and line separators the
// way upstream does.
//
// Thread safety: all functions are pure and safe to call concurrently.

#ifndef JOBLINE_CLIENT_JOB_DOCUMENT_H_
#define JOBLINE_CLIENT_JOB_DOCUMENT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "jobline/v2/jobs.pb.h"
#include "nlohmann/json.hpp"

namespace jobline {

struct DocumentOptions {
  // Scheme, host and port of the REST face, without a trailing slash, e.g.
  // "http://localhost:8000".
  std::string base_url;
  // Appended to every details link, e.g. "?format=api"; usually empty. A
  // format suffix (".json") replaces the link's trailing slash.
  std::string details_suffix;
  // Zone in which timestamps are shown (naive local time).
  absl::TimeZone zone = absl::UTCTimeZone();
};

// Which serializer upstream would use: the detail one carries `result`, the
// list one does not.
enum class JobView { kDetail, kListItem };

// The collection-level parts of a list answer (spec 6.4).
struct JobListEnvelope {
  int64_t count = 0;
  // Absolute URLs of the neighbouring pages; empty renders null.
  std::string next;
  std::string previous;
  // Collection-level permissions, e.g. {"create"}.
  std::vector<std::string> user_permissions;
};

// ---- Documents ----

// The job document: id, details, name, ..., dispatch_mode, [result],
// user_permissions.
nlohmann::ordered_json JobDocument(const v2::Job& job, JobView view,
                                   const DocumentOptions& options);

// The minimal list item of ?ids_only: {"id","pipeline_slug",
// "user_permissions"}; pipeline_slug is null without a pipeline.
nlohmann::ordered_json IdsOnlyItem(const v2::Job& job);

// {"count","next","previous","results","user_permissions"}; results are
// list items (JobView::kListItem) or, with `ids_only`, IdsOnlyItem.
nlohmann::ordered_json JobListDocument(
    const google::protobuf::RepeatedPtrField<v2::Job>& results,
    const JobListEnvelope& envelope, bool ids_only,
    const DocumentOptions& options);

// The reference records, in the shape they are nested in a job document
// (spec 1.3); also the answer of GET on their details URL.
nlohmann::ordered_json ProjectDocument(const v2::Project& project,
                                       const DocumentOptions& options);
nlohmann::ordered_json DeploymentDocument(const v2::Deployment& deployment,
                                          const DocumentOptions& options);
nlohmann::ordered_json CaptureCollectionDocument(
    const v2::CaptureCollection& collection, const DocumentOptions& options);
nlohmann::ordered_json CaptureDocument(const v2::Capture& capture,
                                       const DocumentOptions& options);
nlohmann::ordered_json PipelineDocument(const v2::Pipeline& pipeline,
                                        const DocumentOptions& options);
nlohmann::ordered_json DataExportDocument(const v2::DataExport& data_export);

// ---- Text ----

// Compact JSON text of `document` as upstream writes it (see the file
// comment). Non-finite floats, which upstream refuses to write, render
// null. Never fails.
std::string ToJsonText(const nlohmann::ordered_json& document);

// ToJsonText(JobDocument(job, JobView::kDetail, options)).
std::string RenderJob(const v2::Job& job, const DocumentOptions& options);

// ---- Scalars ----

// Python's repr of a finite double: "1.0", "0.356203", "1e-05", "1e+16".
std::string PythonFloat(double value);

// Naive ISO-8601 local time of `timestamp` in `zone`, microsecond
// precision (sub-microsecond digits are dropped).
std::string IsoDateTime(const google::protobuf::Timestamp& timestamp,
                        absl::TimeZone zone);

// The total seconds of `duration` at microsecond precision, as Python's
// str(float): "3.0", "125.123456", "-1.5".
std::string DurationText(const google::protobuf::Duration& duration);

// A google.protobuf.Value as JSON. Numbers that are whole and exactly
// representable (|x| <= 2^53) become integers, as upstream stores them
// (a param value 1000 renders 1000, not 1000.0); object keys are sorted.
nlohmann::ordered_json ValueToJson(const google::protobuf::Value& value);

// ---- Text checks ----

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF), as protobuf requires of string fields.
bool IsValidUtf8(absl::string_view text);

// ---- Page links ----

struct PageLinks {
  std::string next;      // Empty when there is no next page.
  std::string previous;  // Empty when there is no previous page.
};

// The next/previous links of a limit/offset page as upstream builds them:
// `collection_url` (absolute, without a query) plus the request's other
// query parameters with `limit` and `offset` set (`offset` removed when the
// previous page starts at 0), sorted by name and form-encoded.
PageLinks ListPageLinks(absl::string_view collection_url,
                        std::vector<std::pair<std::string, std::string>> query,
                        int64_t count, int64_t limit, int64_t offset);

}  // namespace jobline

#endif  // JOBLINE_CLIENT_JOB_DOCUMENT_H_
