// Request-target helpers: split path and query, percent-decode parameters, percent-encode keys.
// Pure functions over caller-owned bytes; nothing here allocates except the output strings.
#pragma once
#include <string>
#include <string_view>

namespace kv::net {

// Splits "/path?query" into path and query (query empty when there is no '?').
void SplitTarget(std::string_view target, std::string_view* path, std::string_view* query);

// Decodes %XX escapes into *out. '+' stays '+' (RFC 3986 query, not HTML forms).
// Returns false on a malformed escape ('%' not followed by two hex digits).
bool PercentDecode(std::string_view in, std::string* out);

// Appends `in` with every byte outside [A-Za-z0-9-._~] escaped as %XX.
void PercentEncode(std::string_view in, std::string* out);

// Finds parameter `name` in a raw query ("a=1&b=2") and decodes its value into *out.
// Returns 1 if found, 0 if absent, -1 if present but malformed. A parameter given without '='
// has an empty value. The first occurrence wins.
int QueryParam(std::string_view query, std::string_view name, std::string* out);

// QueryParam for n names in one pass over the query: found[i] and out[i] as QueryParam's result
// and output for names[i].
void QueryParams(std::string_view query, const std::string_view* names, size_t n, std::string* out,
                 int* found);

// ASCII case-insensitive equality (HTTP header names and tokens).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Parses a decimal unsigned integer that fits in uint64; no sign, no spaces, no empty string.
bool ParseU64(std::string_view s, uint64_t* out);

}  // namespace kv::net
