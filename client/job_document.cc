#include "client/job_document.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string_view>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace jobline {
namespace {

using nlohmann::ordered_json;

// ---- Text writer ----

// U+FFFD, written in place of bytes that are not UTF-8.
constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";

void AppendAscii(char c, std::string& out) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        absl::StrAppendFormat(&out, "\\u%04x", c);
      } else {
        out += c;
      }
  }
}

// The well-formed UTF-8 sequence that starts at text[i] (i < size): its
// length, 1 to 4, or 0 when the bytes there are not one, and then
// *invalid is the length of the maximal invalid subsequence (Unicode 3.9),
// at least 1. Overlong forms, surrogates and code points past U+10FFFF are
// not well-formed.
size_t Utf8SequenceAt(absl::string_view text, size_t i, size_t* invalid) {
  const unsigned char lead = text[i];
  if (lead < 0x80) return 1;

  // Length of the sequence and the allowed range of its second byte.
  size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  }

  // Count the well-formed bytes of the sequence.
  size_t valid = length == 0 ? 0 : 1;
  while (valid > 0 && valid < length && i + valid < text.size()) {
    const unsigned char byte = text[i + valid];
    const unsigned char min = valid == 1 ? low : 0x80;
    const unsigned char max = valid == 1 ? high : 0xBF;
    if (byte < min || byte > max) break;
    ++valid;
  }
  if (valid < length || length == 0) {
    *invalid = valid == 0 ? 1 : valid;
    return 0;
  }
  return length;
}

// Appends `text` as a JSON string literal. Valid UTF-8 is copied raw except
// U+2028 and U+2029; each maximal invalid subsequence (Unicode 3.9) becomes
// one U+FFFD.
void AppendString(absl::string_view text, std::string& out) {
  out += '"';
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = text[i];
    if (lead < 0x80) {
      AppendAscii(static_cast<char>(lead), out);
      ++i;
      continue;
    }

    size_t invalid = 0;
    const size_t length = Utf8SequenceAt(text, i, &invalid);
    if (length == 0) {
      out.append(kReplacement.data(), kReplacement.size());
      i += invalid;
      continue;
    }

    const absl::string_view sequence = text.substr(i, length);
    if (sequence == "\xE2\x80\xA8") {
      out += "\\u2028";
    } else if (sequence == "\xE2\x80\xA9") {
      out += "\\u2029";
    } else {
      out.append(sequence.data(), sequence.size());
    }
    i += length;
  }
  out += '"';
}

void AppendJson(const ordered_json& value, std::string& out) {
  switch (value.type()) {
    case ordered_json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.items()) {
        if (!first) out += ',';
        first = false;
        AppendString(key, out);
        out += ':';
        AppendJson(member, out);
      }
      out += '}';
      return;
    }
    case ordered_json::value_t::array: {
      out += '[';
      bool first = true;
      for (const ordered_json& element : value) {
        if (!first) out += ',';
        first = false;
        AppendJson(element, out);
      }
      out += ']';
      return;
    }
    case ordered_json::value_t::string:
      AppendString(value.get_ref<const std::string&>(), out);
      return;
    case ordered_json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return;
    case ordered_json::value_t::number_integer:
      absl::StrAppend(&out, value.get<int64_t>());
      return;
    case ordered_json::value_t::number_unsigned:
      absl::StrAppend(&out, value.get<uint64_t>());
      return;
    case ordered_json::value_t::number_float: {
      const double number = value.get<double>();
      out += std::isfinite(number) ? PythonFloat(number) : "null";
      return;
    }
    case ordered_json::value_t::null:
    case ordered_json::value_t::binary:
    case ordered_json::value_t::discarded:
      out += "null";
      return;
  }
}

// ---- Document pieces ----

// Default paths of the record kinds, used when a message carries no
// `details` path of its own.
std::string DetailsUrl(absl::string_view path, absl::string_view default_path,
                       const DocumentOptions& options) {
  absl::string_view url_path = path.empty() ? default_path : path;
  // A format suffix stands for the trailing slash.
  if (absl::StartsWith(options.details_suffix, ".")) {
    absl::ConsumeSuffix(&url_path, "/");
  }
  return absl::StrCat(options.base_url, url_path, options.details_suffix);
}

ordered_json Strings(
    const google::protobuf::RepeatedPtrField<std::string>& strings) {
  ordered_json array = ordered_json::array();
  for (const std::string& s : strings) array.push_back(s);
  return array;
}

ordered_json Timestamp(bool present,
                       const google::protobuf::Timestamp& timestamp,
                       const DocumentOptions& options) {
  if (!present) return nullptr;
  return IsoDateTime(timestamp, options.zone);
}

std::string StatusName(v2::JobStatus status) {
  return v2::JobStatus_Name(status);
}

ordered_json ProgressDocument(const v2::JobProgress& progress) {
  ordered_json summary = ordered_json::object();
  summary["status"] = StatusName(progress.summary().status());
  summary["progress"] = progress.summary().progress();
  summary["status_label"] = progress.summary().status_label();

  ordered_json stages = ordered_json::array();
  for (const v2::ProgressStage& stage : progress.stages()) {
    ordered_json params = ordered_json::array();
    for (const v2::StageParam& param : stage.params()) {
      ordered_json item = ordered_json::object();
      item["name"] = param.name();
      item["key"] = param.key();
      item["category"] = param.category();
      item["value"] = ValueToJson(param.value());
      params.push_back(std::move(item));
    }
    ordered_json item = ordered_json::object();
    item["status"] = StatusName(stage.status());
    item["progress"] = stage.progress();
    item["key"] = stage.key();
    item["name"] = stage.name();
    item["params"] = std::move(params);
    item["status_label"] = stage.status_label();
    stages.push_back(std::move(item));
  }

  ordered_json document = ordered_json::object();
  document["summary"] = std::move(summary);
  document["stages"] = std::move(stages);
  document["errors"] = Strings(progress.errors());
  document["logs"] = Strings(progress.logs());
  return document;
}

ordered_json LogsDocument(const v2::JobLogs& logs) {
  ordered_json document = ordered_json::object();
  document["stdout"] = Strings(logs.stdout());
  document["stderr"] = Strings(logs.stderr());
  return document;
}

ordered_json JobTypeDocument(const v2::JobType& job_type) {
  ordered_json document = ordered_json::object();
  document["name"] = job_type.name();
  document["key"] = job_type.key();
  return document;
}

// Appends "%XX"-escaped `text` as Python's urllib.parse.quote_plus does.
void AppendFormEncoded(absl::string_view text, std::string& out) {
  for (const char c : text) {
    if (absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-' ||
        c == '~') {
      out += c;
    } else if (c == ' ') {
      out += '+';
    } else {
      absl::StrAppendFormat(&out, "%%%02X", static_cast<unsigned char>(c));
    }
  }
}

// `collection_url` with `query` form-encoded in its order, or without a
// query when it is empty.
std::string UrlWithQuery(
    absl::string_view collection_url,
    const std::vector<std::pair<std::string, std::string>>& query) {
  std::string url(collection_url);
  bool first = true;
  for (const auto& [name, value] : query) {
    url += first ? '?' : '&';
    first = false;
    AppendFormEncoded(name, url);
    url += '=';
    AppendFormEncoded(value, url);
  }
  return url;
}

// The link to the page at `offset` (no offset parameter when absent):
// `query` without its limit and offset, plus the new ones, sorted by name.
// Values of a repeated name keep their order, as in DRF, which rebuilds
// the query with urlencode(sorted(parse_qs(query).items()), doseq=True).
std::string PageUrl(
    absl::string_view collection_url,
    const std::vector<std::pair<std::string, std::string>>& query,
    int64_t limit, std::optional<int64_t> offset) {
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& param : query) {
    if (param.first != "limit" && param.first != "offset") {
      params.push_back(param);
    }
  }
  params.emplace_back("limit", absl::StrCat(limit));
  if (offset.has_value()) params.emplace_back("offset", absl::StrCat(*offset));
  std::stable_sort(
      params.begin(), params.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  return UrlWithQuery(collection_url, params);
}

}  // namespace

// ---- Scalars ----

std::string PythonFloat(double value) {
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";

  // The shortest round-trip digits, in scientific form: "d[.ddd]e±XX".
  char buffer[64];
  const std::to_chars_result result = std::to_chars(
      buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  if (result.ec != std::errc()) return "null";
  const std::string_view text(buffer, result.ptr - buffer);
  const size_t e = text.find('e');

  std::string sign;
  std::string digits;
  for (const char c : text.substr(0, e)) {
    if (c == '-') {
      sign = "-";
    } else if (c != '.') {
      digits += c;
    }
  }
  const int exponent = std::atoi(std::string(text.substr(e + 1)).c_str());
  // Position of the decimal point relative to the first digit.
  const int point = exponent + 1;
  const int count = static_cast<int>(digits.size());

  // Python switches to exponent notation outside 1e-4 <= |x| < 1e16.
  if (point <= -4 || point > 16) {
    std::string mantissa = digits.substr(0, 1);
    if (count > 1) absl::StrAppend(&mantissa, ".", digits.substr(1));
    return absl::StrFormat("%s%se%c%02d", sign, mantissa,
                           exponent < 0 ? '-' : '+', std::abs(exponent));
  }
  if (point <= 0) {
    return absl::StrCat(sign, "0.", std::string(-point, '0'), digits);
  }
  if (point >= count) {
    return absl::StrCat(sign, digits, std::string(point - count, '0'), ".0");
  }
  return absl::StrCat(sign, digits.substr(0, point), ".", digits.substr(point));
}

std::string IsoDateTime(const google::protobuf::Timestamp& timestamp,
                        absl::TimeZone zone) {
  const absl::Time time = absl::FromUnixSeconds(timestamp.seconds()) +
                          absl::Nanoseconds(timestamp.nanos());
  const absl::TimeZone::CivilInfo civil = zone.At(time);
  const int64_t micros = absl::ToInt64Microseconds(civil.subsecond);
  std::string text = absl::StrFormat(
      "%04d-%02d-%02dT%02d:%02d:%02d", civil.cs.year(), civil.cs.month(),
      civil.cs.day(), civil.cs.hour(), civil.cs.minute(), civil.cs.second());
  if (micros != 0) absl::StrAppendFormat(&text, ".%06d", micros);
  return text;
}

std::string DurationText(const google::protobuf::Duration& duration) {
  // Python's timedelta.total_seconds(): whole microseconds / 10**6.
  const int64_t micros = duration.seconds() * 1000000 + duration.nanos() / 1000;
  return PythonFloat(static_cast<double>(micros) / 1e6);
}

ordered_json ValueToJson(const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNumberValue: {
      const double number = value.number_value();
      constexpr double kExactLimit = 9007199254740992.0;  // 2^53
      if (std::isfinite(number) && std::trunc(number) == number &&
          std::fabs(number) <= kExactLimit) {
        return static_cast<int64_t>(number);
      }
      return number;
    }
    case google::protobuf::Value::kStringValue:
      return value.string_value();
    case google::protobuf::Value::kBoolValue:
      return value.bool_value();
    case google::protobuf::Value::kStructValue: {
      // A protobuf map has no order; sort for stable text.
      const std::map<std::string, const google::protobuf::Value*> fields(
          [&value] {
            std::map<std::string, const google::protobuf::Value*> sorted;
            for (const auto& [key, field] : value.struct_value().fields()) {
              sorted.emplace(key, &field);
            }
            return sorted;
          }());
      ordered_json object = ordered_json::object();
      for (const auto& [key, field] : fields) object[key] = ValueToJson(*field);
      return object;
    }
    case google::protobuf::Value::kListValue: {
      ordered_json array = ordered_json::array();
      for (const google::protobuf::Value& element :
           value.list_value().values()) {
        array.push_back(ValueToJson(element));
      }
      return array;
    }
    case google::protobuf::Value::kNullValue:
    case google::protobuf::Value::KIND_NOT_SET:
      return nullptr;
  }
  return nullptr;
}

// ---- Documents ----

ordered_json ProjectDocument(const v2::Project& project,
                             const DocumentOptions& options) {
  ordered_json document = ordered_json::object();
  document["id"] = project.id();
  document["name"] = project.name();
  document["details"] =
      DetailsUrl(project.details(),
                 absl::StrCat("/api/v2/projects/", project.id(), "/"), options);
  document["user_permissions"] = Strings(project.user_permissions());
  return document;
}

ordered_json DeploymentDocument(const v2::Deployment& deployment,
                                const DocumentOptions& options) {
  ordered_json document = ordered_json::object();
  document["id"] = deployment.id();
  document["name"] = deployment.name();
  document["details"] = DetailsUrl(
      deployment.details(),
      absl::StrCat("/api/v2/deployments/", deployment.id(), "/"), options);
  document["user_permissions"] = Strings(deployment.user_permissions());
  return document;
}

ordered_json CaptureCollectionDocument(const v2::CaptureCollection& collection,
                                       const DocumentOptions& options) {
  ordered_json document = ordered_json::object();
  document["id"] = collection.id();
  document["name"] = collection.name();
  document["details"] = DetailsUrl(
      collection.details(),
      absl::StrCat("/api/v2/captures/collections/", collection.id(), "/"),
      options);
  document["method"] = collection.method();
  document["user_permissions"] = Strings(collection.user_permissions());
  return document;
}

ordered_json CaptureDocument(const v2::Capture& capture,
                             const DocumentOptions& options) {
  ordered_json document = ordered_json::object();
  document["id"] = capture.id();
  document["details"] =
      DetailsUrl(capture.details(),
                 absl::StrCat("/api/v2/captures/", capture.id(), "/"), options);
  document["url"] =
      capture.has_url() ? ordered_json(capture.url()) : ordered_json(nullptr);
  document["width"] = capture.has_width() ? ordered_json(capture.width())
                                          : ordered_json(nullptr);
  document["height"] = capture.has_height() ? ordered_json(capture.height())
                                            : ordered_json(nullptr);
  document["timestamp"] =
      Timestamp(capture.has_timestamp(), capture.timestamp(), options);
  document["event_id"] = capture.has_event_id()
                             ? ordered_json(capture.event_id())
                             : ordered_json(nullptr);
  document["user_permissions"] = Strings(capture.user_permissions());
  return document;
}

ordered_json PipelineDocument(const v2::Pipeline& pipeline,
                              const DocumentOptions& options) {
  ordered_json document = ordered_json::object();
  document["id"] = pipeline.id();
  document["details"] = DetailsUrl(
      pipeline.details(),
      absl::StrCat("/api/v2/ml/pipelines/", pipeline.id(), "/"), options);
  document["name"] = pipeline.name();
  document["slug"] = pipeline.slug();
  document["description"] = pipeline.description();
  document["version"] = pipeline.version();
  document["version_name"] = pipeline.version_name();
  document["created_at"] =
      Timestamp(pipeline.has_created_at(), pipeline.created_at(), options);
  document["updated_at"] =
      Timestamp(pipeline.has_updated_at(), pipeline.updated_at(), options);
  document["user_permissions"] = Strings(pipeline.user_permissions());
  return document;
}

ordered_json DataExportDocument(const v2::DataExport& data_export) {
  ordered_json document = ordered_json::object();
  document["id"] = data_export.id();
  document["user"] = data_export.user();
  document["project"] = data_export.project();
  document["format"] = data_export.format();
  document["filters"] = data_export.has_filters()
                            ? ValueToJson(data_export.filters())
                            : ordered_json(nullptr);
  document["file_url"] = data_export.has_file_url()
                             ? ordered_json(data_export.file_url())
                             : ordered_json(nullptr);
  return document;
}

ordered_json JobDocument(const v2::Job& job, JobView view,
                         const DocumentOptions& options) {
  ordered_json document = ordered_json::object();
  document["id"] = job.id();
  document["details"] = DetailsUrl(
      job.details(), absl::StrCat("/api/v2/jobs/", job.id(), "/"), options);
  document["name"] = job.name();
  document["delay"] = job.delay();
  document["limit"] =
      job.has_limit() ? ordered_json(job.limit()) : ordered_json(nullptr);
  document["shuffle"] = job.shuffle();

  // References: null when absent.
  document["project"] = job.has_project()
                            ? ProjectDocument(job.project(), options)
                            : ordered_json(nullptr);
  document["deployment"] = job.has_deployment()
                               ? DeploymentDocument(job.deployment(), options)
                               : ordered_json(nullptr);
  document["source_image_collection"] =
      job.has_source_image_collection()
          ? CaptureCollectionDocument(job.source_image_collection(), options)
          : ordered_json(nullptr);
  document["source_image_single"] =
      job.has_source_image_single()
          ? CaptureDocument(job.source_image_single(), options)
          : ordered_json(nullptr);
  document["pipeline"] = job.has_pipeline()
                             ? PipelineDocument(job.pipeline(), options)
                             : ordered_json(nullptr);

  // State and times.
  document["status"] = StatusName(job.status());
  document["created_at"] =
      Timestamp(job.has_created_at(), job.created_at(), options);
  document["updated_at"] =
      Timestamp(job.has_updated_at(), job.updated_at(), options);
  document["started_at"] =
      Timestamp(job.has_started_at(), job.started_at(), options);
  document["finished_at"] =
      Timestamp(job.has_finished_at(), job.finished_at(), options);
  document["duration"] = job.has_duration()
                             ? ordered_json(DurationText(job.duration()))
                             : ordered_json(nullptr);
  document["progress"] = ProgressDocument(job.progress());
  document["logs"] = LogsDocument(job.logs());
  document["job_type"] = JobTypeDocument(job.job_type());
  document["data_export"] = job.has_data_export()
                                ? DataExportDocument(job.data_export())
                                : ordered_json(nullptr);
  document["dispatch_mode"] = job.dispatch_mode();
  if (view == JobView::kDetail) {
    document["result"] =
        job.has_result() ? ValueToJson(job.result()) : ordered_json(nullptr);
  }
  document["user_permissions"] = Strings(job.user_permissions());
  return document;
}

ordered_json IdsOnlyItem(const v2::Job& job) {
  ordered_json document = ordered_json::object();
  document["id"] = job.id();
  document["pipeline_slug"] = job.has_pipeline()
                                  ? ordered_json(job.pipeline().slug())
                                  : ordered_json(nullptr);
  document["user_permissions"] = Strings(job.user_permissions());
  return document;
}

ordered_json JobListDocument(
    const google::protobuf::RepeatedPtrField<v2::Job>& results,
    const JobListEnvelope& envelope, bool ids_only,
    const DocumentOptions& options) {
  ordered_json items = ordered_json::array();
  for (const v2::Job& job : results) {
    items.push_back(ids_only ? IdsOnlyItem(job)
                             : JobDocument(job, JobView::kListItem, options));
  }
  ordered_json permissions = ordered_json::array();
  for (const std::string& permission : envelope.user_permissions) {
    permissions.push_back(permission);
  }

  ordered_json document = ordered_json::object();
  document["count"] = envelope.count;
  document["next"] = envelope.next.empty() ? ordered_json(nullptr)
                                           : ordered_json(envelope.next);
  document["previous"] = envelope.previous.empty()
                             ? ordered_json(nullptr)
                             : ordered_json(envelope.previous);
  document["results"] = std::move(items);
  document["user_permissions"] = std::move(permissions);
  return document;
}

// ---- Text ----

std::string ToJsonText(const ordered_json& document) {
  std::string text;
  AppendJson(document, text);
  return text;
}

std::string RenderJob(const v2::Job& job, const DocumentOptions& options) {
  return ToJsonText(JobDocument(job, JobView::kDetail, options));
}

// ---- Page links ----

PageLinks ListPageLinks(absl::string_view collection_url,
                        std::vector<std::pair<std::string, std::string>> query,
                        int64_t count, int64_t limit, int64_t offset) {
  PageLinks links;
  // Compared without overflow: offset + limit may not fit in 64 bits.
  if (offset < count && limit < count - offset) {
    links.next = PageUrl(collection_url, query, limit, offset + limit);
  }
  if (offset > 0) {
    links.previous =
        offset - limit <= 0
            ? PageUrl(collection_url, query, limit, std::nullopt)
            : PageUrl(collection_url, query, limit, offset - limit);
  }
  return links;
}

// ---- Text checks ----

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    size_t invalid = 0;
    const size_t length = Utf8SequenceAt(text, i, &invalid);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

}  // namespace jobline
