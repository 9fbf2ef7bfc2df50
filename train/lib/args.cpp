// Argument parsing for the vt command line.
#include "train/lib/args.h"

#include "autograd/tensor.h"
#include "autograd/text.h"

namespace vt {

Args::Args(int argc, char** argv, int first, const std::set<std::string>& switches) {
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) {
      const std::string name = arg.substr(2);
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        flags_[name.substr(0, eq)] = name.substr(eq + 1);
      } else if (switches.count(name)) {
        flags_[name] = "1";
      } else {
        if (i + 1 >= argc) fail("arguments", std::string("--") + name + " needs a value");
        flags_[name] = argv[++i];
      }
    } else if (arg.find('=') != std::string::npos) {
      overrides_.emplace_back(arg.substr(0, arg.find('=')), arg.substr(arg.find('=') + 1));
    } else {
      positional_.push_back(arg);
    }
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) {
  used_.insert(flag);
  const auto it = flags_.find(flag);
  return it == flags_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& flag) {
  used_.insert(flag);
  const auto it = flags_.find(flag);
  if (it == flags_.end()) fail("arguments", std::string("--") + flag + " is required");
  return it->second;
}

int64_t Args::get_int(const std::string& flag, int64_t fallback) {
  const std::string value = get(flag, "");
  if (value.empty()) return fallback;
  const std::optional<int64_t> v = parse_integer(value);
  if (!v) fail("arguments", std::string("--") + flag + " " + value + " is not an integer");
  return *v;
}

double Args::get_double(const std::string& flag, double fallback) {
  const std::string value = get(flag, "");
  if (value.empty()) return fallback;
  const std::optional<double> v = parse_number(value);
  if (!v) fail("arguments", std::string("--") + flag + " " + value + " is not a number");
  return *v;
}

bool Args::has(const std::string& flag) {
  used_.insert(flag);
  return flags_.count(flag) > 0;
}

void Args::finish() const {
  for (const auto& [name, value] : flags_)
    if (!used_.count(name)) fail("arguments", "unknown option --" + name);
}

}  // namespace vt
