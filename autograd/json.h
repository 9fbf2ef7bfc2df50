// The JSON the project reads and writes: safetensors headers and small metadata values (class names). A strict
// reader that accepts exactly JSON's strings, non-negative integers, arrays and objects (what those formats use),
// refusing everything else with the byte where it went wrong, and the matching writers.
// Conventions: text is UTF-8; overlong forms, surrogates and code points past U+10FFFF are refused, as the
// reference safetensors reader (serde_json) refuses them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vt {

bool valid_utf8(std::string_view text);

// JSON string literal: quotes, backslashes and control characters escaped; other UTF-8 bytes kept as they are.
void append_json_string(std::string& out, std::string_view text);
// ["a","b,c"]: a list of strings as one JSON array.
std::string json_string_array(const std::vector<std::string>& items);

// A cursor over JSON text. Every error throws through vt::fail as "`op`: `context` at byte N: problem", with N
// counted from `first_byte` (the text's position in its file).
class JsonReader {
 public:
  JsonReader(const char* op, std::string context, std::string_view text, size_t first_byte = 0)
      : op_(op), context_(std::move(context)), text_(text), first_byte_(first_byte) {}

  [[noreturn]] void malformed(const std::string& problem) const;
  bool at_end() const { return position_ >= text_.size(); }
  void skip_whitespace();
  bool consume(char c);                  // skips whitespace, then takes c if it comes next
  void expect(char c, const char* where);  // consume or fail
  bool next_is(char c);                  // skips whitespace, then peeks
  std::string read_string();
  uint64_t read_unsigned();
  std::vector<uint64_t> read_unsigned_array();
  std::vector<std::string> read_string_array();
  void expect_end();                     // only whitespace may follow

 private:
  std::string next_description() const;
  uint32_t read_hex4();

  const char* op_;
  std::string context_;
  std::string_view text_;
  size_t first_byte_;
  size_t position_ = 0;
};

// The whole of `text` as a JSON array of strings.
std::vector<std::string> parse_json_string_array(const char* op, const std::string& context, std::string_view text);

}  // namespace vt
