#include "client/json_shape.h"

#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace jobline {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using Json = nlohmann::ordered_json;

// Whether `value` can be an integer field's: a whole number or a string
// of digits.
bool FitsInteger(const Json& value) {
  if (value.is_number_integer()) return true;
  if (value.is_number_float()) {
    const double number = value.get<double>();
    return number >= -9.2e18 && number <= 9.2e18 &&
           number == static_cast<double>(static_cast<int64_t>(number));
  }
  return value.is_string() && IsDecimalInteger(value.get<std::string>());
}

}  // namespace

bool JsonNestedDeeperThan(absl::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

bool IsDecimalInteger(absl::string_view text) {
  if (absl::StartsWith(text, "-") || absl::StartsWith(text, "+")) {
    text.remove_prefix(1);
  }
  if (text.empty()) return false;
  for (const char c : text) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

std::string PythonTypeName(nlohmann::json::value_t type) {
  switch (type) {
    case nlohmann::json::value_t::object:
      return "dict";
    case nlohmann::json::value_t::array:
      return "list";
    case nlohmann::json::value_t::string:
      return "str";
    case nlohmann::json::value_t::boolean:
      return "bool";
    case nlohmann::json::value_t::number_float:
      return "float";
    case nlohmann::json::value_t::null:
      return "NoneType";
    default:
      return "int";
  }
}

std::string ExpectedDictionaryMessage(nlohmann::json::value_t type) {
  return absl::StrCat("Invalid data. Expected a dictionary, but got ",
                      PythonTypeName(type), ".");
}

std::string ExpectedListMessage(nlohmann::json::value_t type) {
  return absl::StrCat("Expected a list of items but got type \"",
                      PythonTypeName(type), "\".");
}

const FieldDescriptor* FindJsonField(const Descriptor* descriptor,
                                     absl::string_view name) {
  const FieldDescriptor* field = descriptor->FindFieldByName(std::string(name));
  if (field != nullptr) return field;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    if (descriptor->field(i)->json_name() == name) return descriptor->field(i);
  }
  return nullptr;
}

std::optional<JsonShapeError> CheckJsonValue(const FieldDescriptor* field,
                                             const Json& value,
                                             const std::string& path) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Descriptor* type = field->message_type();
      if (type->file()->package() == "google.protobuf") return std::nullopt;
      if (!value.is_object()) {
        return JsonShapeError{path, ExpectedDictionaryMessage(value.type())};
      }
      return CheckJsonShape(type, value, path);
    }
    case FieldDescriptor::CPPTYPE_STRING:
      if (value.is_string()) return std::nullopt;
      return JsonShapeError{path, kNotAStringMessage};
    case FieldDescriptor::CPPTYPE_BOOL:
      if (value.is_boolean()) return std::nullopt;
      return JsonShapeError{path, kNotABooleanMessage};
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      if (value.is_number() || value.is_string()) return std::nullopt;
      return JsonShapeError{path, kNotANumberMessage};
    case FieldDescriptor::CPPTYPE_ENUM:
      if (value.is_string() || value.is_number_integer()) return std::nullopt;
      return JsonShapeError{path, "Not a valid choice."};
    default:  // The integer types.
      if (FitsInteger(value)) return std::nullopt;
      return JsonShapeError{path, kNotAnIntegerMessage};
  }
}

std::optional<JsonShapeError> CheckJsonMember(const FieldDescriptor* field,
                                              const Json& value,
                                              const std::string& path) {
  if (value.is_null()) return std::nullopt;
  // A map is a JSON object, left to the parser.
  if (field->is_map()) return std::nullopt;
  if (!field->is_repeated()) return CheckJsonValue(field, value, path);
  if (!value.is_array()) {
    return JsonShapeError{path, ExpectedListMessage(value.type())};
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string element = absl::StrCat(path, "[", i, "]");
    if (value[i].is_null()) {
      return JsonShapeError{element, kNotNullMessage};
    }
    if (auto error = CheckJsonValue(field, value[i], element)) return error;
  }
  return std::nullopt;
}

std::optional<JsonShapeError> CheckJsonShape(const Descriptor* descriptor,
                                             const Json& value,
                                             const std::string& path) {
  for (const auto& [name, member] : value.items()) {
    const FieldDescriptor* field = FindJsonField(descriptor, name);
    if (field == nullptr) continue;
    const std::string member_path =
        path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
    if (auto error = CheckJsonMember(field, member, member_path)) return error;
  }
  return std::nullopt;
}

}  // namespace jobline
