// Strict number parsing for configuration values and command-line flags: the whole text must be the
// number ("12x", "" and out-of-range values are refused), unlike std::stoll and std::stod alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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

inline std::optional<double> parse_number(const std::string& text) {
  size_t used = 0;
  try {
    const double value = std::stod(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace vt
