// Command-line flags described once: a table of Flag entries drives parsing (Parse), the --help
// text (HelpText) and the markdown table in a README (MarkdownTable). The caller builds the table
// with setters that validate a value and store it in its own configuration.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace kv::flags {

// Validates and stores one flag's value (a switch gets ""). Returns "" when the value is taken,
// else the reason it is not ("expected 1..65535").
using Setter = std::function<std::string(const std::string& value)>;

struct Flag {
  std::string name;          // long name without the dashes: "port" for --port
  char short_name = 0;       // one-letter alias ('t' for -t), 0 for none
  std::string value;         // placeholder for the value ("N"); empty: a switch without value
  std::string default_text;  // shown as the default; empty: none shown
  std::string help;          // one text for --help and the README; `backticks` mark code
  Setter set;
};

enum class Outcome { kOk, kHelp, kHelpMarkdown, kError };

struct Error {
  enum class Kind {
    kUnknownFlag,      // not in the table
    kMissingValue,     // the last argument, and it needs a value
    kUnexpectedValue,  // --switch=value
    kBadValue,         // the setter refused the value
    kPositional,       // not a flag, and the caller takes no positional arguments
  };
  Kind kind = Kind::kUnknownFlag;
  std::string arg;     // the argument as written ("--bogus", "-x", "stray"; "--port" for a value)
  std::string name;    // the flag's long name when known ("port")
  std::string value;   // kBadValue: the value refused
  std::string reason;  // kBadValue: the setter's reason
};

// Parses argv[1..argc) in order and calls each flag's setter; stops at the first error or at a
// help flag. Accepted forms: --name value, --name=value, -x value, -xvalue, grouped one-letter
// switches (-Lt2 is -L -t 2), and "--", after which every argument is positional. --help and -h
// give kHelp, --help-markdown kHelpMarkdown. Arguments that are not flags are appended to
// *positional, or are an error (kPositional) when positional is null.
Outcome Parse(const std::vector<Flag>& table, int argc, char** argv,
              std::vector<std::string>* positional, Error* err);

// One line saying what is wrong, in ./node's words ("unknown flag --bogus (see --help)"; an
// unknown one-letter flag is an "unexpected argument").
std::string Describe(const Error& e);

// The option lines of --help: one entry per flag then --help and --help-markdown, help text
// wrapped at `width` columns, backticks removed, "(default: X)" appended where there is one.
std::string HelpText(const std::vector<Flag>& table, size_t width = 100);

// The same entries as a GitHub markdown table (flag | default | meaning), one line per flag.
std::string MarkdownTable(const std::vector<Flag>& table);

// "a, b or c": how a list of choices reads in a sentence.
std::string ListChoices(const std::vector<std::string>& names);

// A flag whose value is one of a fixed set of words, each standing for a value of *target. The
// placeholder lists the words ("a|b|c") and the default is the word of *target's current value.
template <typename T>
Flag Choice(std::string name, T* target, std::vector<std::pair<std::string, T>> choices,
            std::string help) {
  Flag f;
  f.name = std::move(name);
  f.help = std::move(help);
  std::vector<std::string> words;
  for (const auto& [word, v] : choices) {
    f.value += (words.empty() ? "" : "|") + word;
    if (v == *target) f.default_text = "`" + word + "`";
    words.push_back(word);
  }
  f.set = [target, choices, expected = "expected " + ListChoices(words)](const std::string& s) {
    for (const auto& [word, v] : choices) {
      if (word == s) {
        *target = v;
        return std::string();
      }
    }
    return expected;
  };
  return f;
}

}  // namespace kv::flags
