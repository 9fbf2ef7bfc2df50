// The strict JSON reader and writers. See json.h for what is accepted.
#include "autograd/json.h"

#include <limits>

#include "autograd/tensor.h"

namespace vt {

bool valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    const size_t length = lead >= 0xc2 && lead <= 0xdf ? 2 : (lead & 0xf0) == 0xe0 ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    uint32_t code = lead & (0xff >> (length + 1));
    for (size_t k = 1; k < length; ++k) {
      const auto continuation = static_cast<unsigned char>(text[i + k]);
      if ((continuation & 0xc0) != 0x80) return false;
      code = (code << 6) | (continuation & 0x3f);
    }
    if ((length == 3 && code < 0x800) || (length == 4 && code < 0x10000) || (code >= 0xd800 && code <= 0xdfff) ||
        code > 0x10ffff)
      return false;
    i += length;
  }
  return true;
}

static void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xc0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3f));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xe0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (code & 0x3f));
  }
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (byte < 0x20) {
      out += "\\u00";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
}

std::string json_string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, items[i]);
  }
  return out + "]";
}

// ---- JsonReader ----

void JsonReader::malformed(const std::string& problem) const {
  fail(op_, context_ + " at byte " + std::to_string(first_byte_ + position_) + ": " + problem);
}

std::string JsonReader::next_description() const {
  return at_end() ? std::string("the end of the text") : "'" + std::string(1, text_[position_]) + "'";
}

void JsonReader::skip_whitespace() {
  while (!at_end() && (text_[position_] == ' ' || text_[position_] == '\t' || text_[position_] == '\n' ||
                       text_[position_] == '\r'))
    ++position_;
}

bool JsonReader::consume(char c) {
  if (!next_is(c)) return false;
  ++position_;
  return true;
}

bool JsonReader::next_is(char c) {
  skip_whitespace();
  return !at_end() && text_[position_] == c;
}

void JsonReader::expect(char c, const char* where) {
  if (!consume(c)) malformed(std::string("expected '") + c + "' " + where + ", found " + next_description());
}

void JsonReader::expect_end() {
  skip_whitespace();
  if (!at_end()) malformed("unexpected text after the value");
}

uint32_t JsonReader::read_hex4() {
  if (position_ + 4 > text_.size()) malformed("truncated \\u escape");
  uint32_t code = 0;
  for (int k = 0; k < 4; ++k) {
    const char c = text_[position_++];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0) malformed("invalid hex digit in a \\u escape");
    code = code * 16 + static_cast<uint32_t>(digit);
  }
  return code;
}

std::string JsonReader::read_string() {
  skip_whitespace();
  if (at_end() || text_[position_] != '"') malformed("expected a string, found " + next_description());
  ++position_;
  std::string out;
  while (true) {
    if (at_end()) malformed("unterminated string");
    const char c = text_[position_++];
    if (c == '"') return out;
    if (static_cast<unsigned char>(c) < 0x20) malformed("unescaped control character in a string");
    if (c != '\\') {
      out += c;
      continue;
    }
    if (at_end()) malformed("unterminated string");
    const char escape = text_[position_++];
    switch (escape) {
      case '"': case '\\': case '/': out += escape; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t code = read_hex4();
        // Characters past U+FFFF are escaped as a UTF-16 surrogate pair.
        if (code >= 0xd800 && code <= 0xdbff) {
          if (text_.substr(position_, 2) != "\\u") malformed("high surrogate without a low surrogate");
          position_ += 2;
          const uint32_t low = read_hex4();
          if (low < 0xdc00 || low > 0xdfff) malformed("high surrogate without a low surrogate");
          code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        } else if (code >= 0xdc00 && code <= 0xdfff) {
          malformed("low surrogate without a high surrogate");
        }
        append_utf8(out, code);
        break;
      }
      default: malformed(std::string("invalid escape '\\") + escape + "'");
    }
  }
}

uint64_t JsonReader::read_unsigned() {
  skip_whitespace();
  if (!at_end() && text_[position_] == '-') malformed("negative number");
  const size_t start = position_;
  uint64_t value = 0;
  while (!at_end() && text_[position_] >= '0' && text_[position_] <= '9') {
    const auto digit = static_cast<uint64_t>(text_[position_] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) malformed("number too large");
    value = value * 10 + digit;
    ++position_;
  }
  if (position_ == start) malformed("expected a non-negative integer, found " + next_description());
  if (position_ - start > 1 && text_[start] == '0') malformed("number with a leading zero");
  if (!at_end() && (text_[position_] == '.' || text_[position_] == 'e' || text_[position_] == 'E'))
    malformed("expected an integer, found a fraction or an exponent");
  return value;
}

std::vector<uint64_t> JsonReader::read_unsigned_array() {
  expect('[', "to open an array");
  std::vector<uint64_t> values;
  if (consume(']')) return values;
  do {
    values.push_back(read_unsigned());
  } while (consume(','));
  expect(']', "to close an array");
  return values;
}

std::vector<std::string> JsonReader::read_string_array() {
  expect('[', "to open an array");
  std::vector<std::string> values;
  if (consume(']')) return values;
  do {
    values.push_back(read_string());
  } while (consume(','));
  expect(']', "to close an array");
  return values;
}

std::vector<std::string> parse_json_string_array(const char* op, const std::string& context, std::string_view text) {
  if (!valid_utf8(text)) fail(op, context + ": not valid UTF-8");
  JsonReader reader(op, context, text);
  std::vector<std::string> items = reader.read_string_array();
  reader.expect_end();
  return items;
}

}  // namespace vt
