#include "common/flags.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace kv::flags;

namespace {

enum class Color { kRed, kGreen, kBlue, kPurple };

// A small table over local values: --count (1..9), --color (a choice), -v (a switch), -n.
struct Fixture {
  int count = 3;
  Color color = Color::kGreen;
  bool verbose = false;
  std::string name;
  std::vector<std::string> positional;
  Error err;

  std::vector<Flag> Table() {
    return {
        {"count", 'c', "N", std::to_string(count), "how many, from 1 to 9",
         [this](const std::string& v) {
           if (v.size() != 1 || v[0] < '1' || v[0] > '9') return std::string("expected 1..9");
           count = v[0] - '0';
           return std::string();
         }},
        Choice("color", &color,
               {{"red", Color::kRed},
                {"green", Color::kGreen},
                {"blue", Color::kBlue},
                {"purple", Color::kPurple}},
               "the colour of the `thing`"),
        {"verbose", 'v', "", "", "say more",
         [this](const std::string&) {
           verbose = true;
           return std::string();
         }},
        {"name", 'n', "S", "", "a name",
         [this](const std::string& v) {
           name = v;
           return std::string();
         }},
    };
  }

  Outcome Run(std::vector<std::string> args, bool take_positional = false) {
    args.insert(args.begin(), "prog");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return Parse(Table(), static_cast<int>(argv.size()), argv.data(),
                 take_positional ? &positional : nullptr, &err);
  }
};

}  // namespace

TEST_CASE("flags: both value forms, short forms and grouped switches set the values") {
  Fixture f;
  REQUIRE(f.Run({"--count", "5", "--color=blue", "-v", "--name=a=b"}) == Outcome::kOk);
  CHECK(f.count == 5);
  CHECK(f.color == Color::kBlue);
  CHECK(f.verbose);
  CHECK(f.name == "a=b");

  Fixture g;
  REQUIRE(g.Run({"-vc7", "-n", "x"}) == Outcome::kOk);
  CHECK(g.verbose);
  CHECK(g.count == 7);
  CHECK(g.name == "x");

  Fixture h;  // a value may look like a flag: it is taken as the value
  REQUIRE(h.Run({"--name", "--count"}) == Outcome::kOk);
  CHECK(h.name == "--count");
  CHECK(h.count == 3);
}

TEST_CASE("flags: positional arguments, anywhere, and everything after --") {
  Fixture f;
  REQUIRE(f.Run({"one", "--count", "2", "two", "--", "--color", "-"}, true) == Outcome::kOk);
  CHECK(f.count == 2);
  CHECK(f.positional == std::vector<std::string>{"one", "two", "--color", "-"});

  Fixture g;
  REQUIRE(g.Run({"--count", "2", "stray"}) == Outcome::kError);
  CHECK(g.err.kind == Error::Kind::kPositional);
  CHECK(Describe(g.err) == "unexpected argument 'stray' (see --help)");
}

TEST_CASE("flags: help stops parsing where it stands") {
  Fixture f;
  CHECK(f.Run({"--count", "2", "--help", "--bogus"}) == Outcome::kHelp);
  CHECK(f.count == 2);
  CHECK(Fixture().Run({"-h"}) == Outcome::kHelp);
  CHECK(Fixture().Run({"-vh"}) == Outcome::kHelp);
  CHECK(Fixture().Run({"--help-markdown"}) == Outcome::kHelpMarkdown);
  Fixture g;  // an error before --help wins
  CHECK(g.Run({"--bogus", "--help"}) == Outcome::kError);
}

TEST_CASE("flags: each error says which argument and why, in one line") {
  struct Case {
    std::vector<std::string> args;
    Error::Kind kind;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--bogus"}, Error::Kind::kUnknownFlag, "unknown flag --bogus (see --help)"},
      {{"--bogus=1"}, Error::Kind::kUnknownFlag, "unknown flag --bogus (see --help)"},
      {{"-x"}, Error::Kind::kUnknownFlag, "unexpected argument '-x' (see --help)"},
      {{"--count"}, Error::Kind::kMissingValue, "flag --count needs a value"},
      {{"-c"}, Error::Kind::kMissingValue, "flag -c needs a value"},
      {{"--verbose=yes"},
       Error::Kind::kUnexpectedValue,
       "flag --verbose takes no value (see --help)"},
      {{"--count", "0"}, Error::Kind::kBadValue, "bad value '0' for --count: expected 1..9"},
      {{"-c0"}, Error::Kind::kBadValue, "bad value '0' for --count: expected 1..9"},
      {{"--count="}, Error::Kind::kBadValue, "bad value '' for --count: expected 1..9"},
      {{"--color", "red", "--color", "pink"},
       Error::Kind::kBadValue,
       "bad value 'pink' for --color: expected red, green, blue or purple"},
  };
  for (const Case& c : cases) {
    Fixture f;
    CAPTURE(c.message);
    REQUIRE(f.Run(c.args) == Outcome::kError);
    CHECK(f.err.kind == c.kind);
    CHECK(Describe(f.err) == c.message);
  }
}

TEST_CASE("flags: --help text lists every flag with its default, wrapped") {
  Fixture f;
  const std::string text = HelpText(f.Table(), 60);
  CHECK(text ==
        "  -c, --count N        how many, from 1 to 9 (default: 3)\n"
        "      --color red|green|blue|purple\n"
        "                       the colour of the thing (default:\n"
        "                       green)\n"
        "  -v, --verbose        say more\n"
        "  -n, --name S         a name\n"
        "      --help           list the flags and exit\n"
        "      --help-markdown  print the flags as a markdown table\n"
        "                       and exit\n");
}

TEST_CASE("flags: the markdown table has one row per flag, pipes escaped") {
  Fixture f;
  const std::string md = MarkdownTable(f.Table());
  CHECK(md.rfind("| flag | default | meaning |\n|---|---|---|\n", 0) == 0);
  CHECK(md.find("| `-c`, `--count N` | 3 | how many, from 1 to 9 |\n") != std::string::npos);
  CHECK(md.find(
            "| `--color red\\|green\\|blue\\|purple` | `green` | the colour of the `thing` |\n") !=
        std::string::npos);
  CHECK(md.find("| `--help` |  | list the flags and exit |\n") != std::string::npos);
  size_t lines = 0;
  for (char c : md) lines += c == '\n';
  CHECK(lines == 2 + 4 + 2);
}

TEST_CASE("flags: ListChoices reads as a sentence") {
  CHECK(ListChoices({"a"}) == "a");
  CHECK(ListChoices({"a", "b"}) == "a or b");
  CHECK(ListChoices({"a", "b", "c"}) == "a, b or c");
}
