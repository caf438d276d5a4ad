// JSON output: the one string escaper for the JSON this node writes (e.g. /v0/status).
#pragma once
#include <string>
#include <string_view>

namespace kv {

// Appends s to *out as a JSON string literal, quotes included: '"' and '\\' are escaped, control
// bytes (below 0x20) become \b \f \n \r \t or \u00XX, every other byte is copied as it is.
// Caller guarantees s is UTF-8 if the result must be valid JSON (bytes above 0x7f pass through).
void AppendJsonString(std::string* out, std::string_view s);

// The same, as a new string.
std::string JsonString(std::string_view s);

}  // namespace kv
