// Command-line arguments: `vt COMMAND [positional ...] [--flag value | --switch] [key=value ...]`.
// Every flag must be consumed by the command; leftovers are reported as unknown, so typos fail loudly.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace vt {

class Args {
 public:
  // `switches` are the flags that take no value.
  Args(int argc, char** argv, int first, const std::set<std::string>& switches);

  std::string get(const std::string& flag, const std::string& fallback);
  std::string require(const std::string& flag);
  int64_t get_int(const std::string& flag, int64_t fallback);
  double get_double(const std::string& flag, double fallback);
  bool has(const std::string& flag);  // a switch was given (or a flag with a value)
  std::vector<std::string> positional() const { return positional_; }
  const std::vector<std::pair<std::string, std::string>>& overrides() const { return overrides_; }  // key=value
  void finish() const;  // throws on flags that no one asked for

 private:
  std::map<std::string, std::string> flags_;
  std::set<std::string> used_;
  std::vector<std::string> positional_;
  std::vector<std::pair<std::string, std::string>> overrides_;
};

}  // namespace vt
