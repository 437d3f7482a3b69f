#include "client/catalog_file.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "client/json_shape.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace jobline {
namespace {

// The first line of a parser's message (it may go on with a line that
// marks the position).
std::string FirstLine(absl::string_view message) {
  return std::string(absl::StripAsciiWhitespace(
      message.substr(0, std::min(message.find('\n'), message.size()))));
}

}  // namespace

absl::StatusOr<v2::Catalog> ReadCatalogFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  }
  std::ostringstream read;
  read << file.rdbuf();
  if (file.bad() || std::filesystem::is_directory(path)) {
    return absl::ErrnoToStatus(file.bad() ? errno : EISDIR,
                               absl::StrCat("cannot read ", path));
  }
  const std::string text = read.str();
  auto not_a_catalogue = [&path](absl::string_view reason) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a catalogue in JSON: ", reason));
  };

  if (JsonNestedDeeperThan(text, kMaxJsonDepth)) {
    return not_a_catalogue(
        absl::StrCat("nested deeper than ", kMaxJsonDepth, " levels"));
  }
  v2::Catalog catalog;
  const nlohmann::ordered_json document =
      nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    // protobuf's parser says where the text stops being JSON.
    const auto parsed =
        google::protobuf::util::JsonStringToMessage(text, &catalog);
    return not_a_catalogue(parsed.ok()
                               ? "invalid JSON text"
                               : FirstLine(std::string(parsed.message())));
  }
  if (!document.is_object()) {
    return not_a_catalogue(ExpectedDictionaryMessage(document.type()));
  }
  if (const std::optional<JsonShapeError> error =
          CheckJsonShape(v2::Catalog::descriptor(), document)) {
    return not_a_catalogue(absl::StrCat(error->path, ": ", error->message));
  }
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(text, &catalog);
  if (!parsed.ok())
    return not_a_catalogue(FirstLine(std::string(parsed.message())));
  return catalog;
}

}  // namespace jobline
