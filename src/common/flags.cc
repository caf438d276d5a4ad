#include "common/flags.h"

#include <string_view>

namespace kv::flags {

namespace {

// The flags every table gets: they are handled by Parse itself and listed last.
const std::vector<Flag>& BuiltIns() {
  static const std::vector<Flag> kBuiltIns = {
      {"help", 0, "", "", "list the flags and exit", nullptr},
      {"help-markdown", 0, "", "", "print the flags as a markdown table and exit", nullptr},
  };
  return kBuiltIns;
}

const Flag* FindLong(const std::vector<Flag>& table, std::string_view name) {
  for (const Flag& f : table) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const Flag* FindShort(const std::vector<Flag>& table, char c) {
  for (const Flag& f : table) {
    if (f.short_name != 0 && f.short_name == c) return &f;
  }
  return nullptr;
}

Outcome Fail(Error* err, Error::Kind kind, const std::string& arg, const std::string& name = "") {
  *err = Error{kind, arg, name, "", ""};
  return Outcome::kError;
}

// Gives f its value: `attached` (after '=' or after the letter) when the argument carried one,
// else, for a flag that takes a value, the next argument (*i moves past it); then calls the setter.
// False, with *err filled, when the value is missing, not wanted or refused.
bool SetFlag(const Flag& f, const std::string& arg, const std::string* attached, int argc,
             char** argv, int* i, Error* err) {
  std::string value;
  if (f.value.empty()) {
    if (attached != nullptr) {
      Fail(err, Error::Kind::kUnexpectedValue, arg, f.name);
      return false;
    }
  } else if (attached != nullptr) {
    value = *attached;
  } else if (*i + 1 < argc) {
    value = argv[++*i];
  } else {
    Fail(err, Error::Kind::kMissingValue, arg, f.name);
    return false;
  }
  std::string reason = f.set(value);
  if (reason.empty()) return true;
  *err = Error{Error::Kind::kBadValue, arg, f.name, value, reason};
  return false;
}

std::string WithoutBackticks(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '`') out += c;
  }
  return out;
}

std::string EscapePipes(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string LongForm(const Flag& f) {
  return "--" + f.name + (f.value.empty() ? "" : " " + f.value);
}

// Appends `text` to *out word by word, starting at column `col` (the current line's length so far)
// and continuing on new lines indented to `indent`, none longer than `width` where words allow.
void AppendWrapped(std::string_view text, size_t col, size_t indent, size_t width,
                   std::string* out) {
  bool first = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    if (!first && col + 1 + word.size() > width) {
      *out += '\n' + std::string(indent, ' ');
      col = indent;
    } else if (!first) {
      *out += ' ';
      ++col;
    }
    *out += word;
    col += word.size();
    first = false;
  }
  *out += '\n';
}

}  // namespace

Outcome Parse(const std::vector<Flag>& table, int argc, char** argv,
              std::vector<std::string>* positional, Error* err) {
  using Kind = Error::Kind;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (flags_ended || a.size() < 2 || a[0] != '-') {
      if (positional == nullptr) return Fail(err, Kind::kPositional, a);
      positional->push_back(a);
      continue;
    }
    if (a == "--") {
      flags_ended = true;
      continue;
    }
    if (a[1] == '-') {  // --name or --name=value
      const size_t eq = a.find('=');
      const std::string name = a.substr(2, eq == std::string::npos ? eq : eq - 2);
      if (eq == std::string::npos && name == "help") return Outcome::kHelp;
      if (eq == std::string::npos && name == "help-markdown") return Outcome::kHelpMarkdown;
      const Flag* f = FindLong(table, name);
      if (f == nullptr) return Fail(err, Kind::kUnknownFlag, a);
      const std::string attached = eq == std::string::npos ? "" : a.substr(eq + 1);
      if (!SetFlag(*f, a, eq == std::string::npos ? nullptr : &attached, argc, argv, &i, err)) {
        return Outcome::kError;
      }
      continue;
    }
    // One-letter flags: switches may be grouped, and the first that takes a value takes the rest
    // of the argument, or the next argument when nothing is left.
    for (size_t k = 1; k < a.size(); ++k) {
      if (a[k] == 'h') return Outcome::kHelp;
      const Flag* f = FindShort(table, a[k]);
      if (f == nullptr) return Fail(err, Kind::kUnknownFlag, a);
      const std::string rest = a.substr(k + 1);
      const bool attached = !f->value.empty() && !rest.empty();
      if (!SetFlag(*f, a, attached ? &rest : nullptr, argc, argv, &i, err)) return Outcome::kError;
      if (!f->value.empty()) break;
    }
  }
  return Outcome::kOk;
}

std::string Describe(const Error& e) {
  switch (e.kind) {
    case Error::Kind::kUnknownFlag:  // "-x": ./node has no one-letter flags but -h
      if (e.arg.rfind("--", 0) != 0) break;
      return "unknown flag " + e.arg.substr(0, e.arg.find('=')) + " (see --help)";
    case Error::Kind::kMissingValue:
      return "flag " + e.arg + " needs a value";
    case Error::Kind::kUnexpectedValue:
      return "flag --" + e.name + " takes no value (see --help)";
    case Error::Kind::kBadValue:
      return "bad value '" + e.value + "' for --" + e.name + ": " + e.reason;
    case Error::Kind::kPositional:
      break;
  }
  return "unexpected argument '" + e.arg + "' (see --help)";
}

std::string HelpText(const std::vector<Flag>& table, size_t width) {
  constexpr size_t kIndent = 2, kGap = 2, kMaxLeft = 28;  // a longer left side: text below it
  bool shorts = false;
  for (const Flag& f : table) shorts = shorts || f.short_name != 0;
  std::vector<std::pair<std::string, const Flag*>> rows;
  for (const auto* list : {&table, &BuiltIns()}) {
    for (const Flag& f : *list) {
      std::string left = f.short_name ? std::string("-") + f.short_name + ", " : "";
      if (shorts && f.short_name == 0) left = "    ";
      rows.emplace_back(left + LongForm(f), &f);
    }
  }
  size_t left_width = 0;
  for (const auto& [left, f] : rows) {
    if (left.size() <= kMaxLeft && left.size() > left_width) left_width = left.size();
  }
  const size_t col = kIndent + left_width + kGap;
  std::string out;
  for (const auto& [left, f] : rows) {
    out += std::string(kIndent, ' ') + left;
    if (left.size() > left_width) {
      out += '\n' + std::string(col, ' ');
    } else {
      out += std::string(col - kIndent - left.size(), ' ');
    }
    std::string text = WithoutBackticks(f->help);
    if (!f->default_text.empty()) text += " (default: " + WithoutBackticks(f->default_text) + ")";
    AppendWrapped(text, col, col, width, &out);
  }
  return out;
}

std::string MarkdownTable(const std::vector<Flag>& table) {
  std::string out = "| flag | default | meaning |\n|---|---|---|\n";
  for (const auto* list : {&table, &BuiltIns()}) {
    for (const Flag& f : *list) {
      std::string name = "`" + LongForm(f) + "`";
      if (f.short_name != 0) name = std::string("`-") + f.short_name + "`, " + name;
      out += "| " + EscapePipes(name) + " | " + EscapePipes(f.default_text) + " | " +
             EscapePipes(f.help) + " |\n";
    }
  }
  return out;
}

std::string ListChoices(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

}  // namespace kv::flags
