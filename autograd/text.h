// Numbers as text for configuration values, flags and metadata. Parsing is strict: the whole text must be the
// number ("12x" and "" are refused, and integers out of range), unlike std::stoll and std::stod alone; printing gives
// the shortest text that reads back as the same double ("1e-05", not "1.0000000000000001e-05"). Lists of names
// (class names, models) are checked for repeats here too.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace vt {

inline std::optional<int64_t> parse_integer(const std::string& text) {
  size_t used = 0;
  try {
    const int64_t value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// strtod, not std::stod: stod throws on an underflow, so 1e-320 read as "not a number". An underflow (to a tiny
// value or 0) or an overflow (to inf) goes on to the caller's range check, which names the actual problem.
inline std::optional<double> parse_number(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) return std::nullopt;
  return value;
}

// The first name in `names` that an earlier one repeats, or null.
inline const std::string* first_repeat(const std::vector<std::string>& names) {
  for (auto it = names.begin(); it != names.end(); ++it)
    if (std::find(names.begin(), it, *it) != it) return &*it;
  return nullptr;
}

inline std::string shortest_text(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

}  // namespace vt
