// Diagnostics of the spec frontend: compiler-style rendering with a caret,
// and "did you mean" suggestions.
#include "AST.h"

#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

namespace heed::spec::detail {
namespace {

/// common typo ("dco" for "doc"); names are short.
unsigned typoDistance(llvm::StringRef a, llvm::StringRef b) {
  std::vector<std::vector<unsigned>> d(a.size() + 1, std::vector<unsigned>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i)
    d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j)
    d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

} // namespace

/// A candidate must be closer than the name is long, so `x` is not taken for
/// `q`.
std::string didYouMean(llvm::StringRef name, llvm::ArrayRef<std::string> candidates) {
  if (name.size() > 64)
    return "";
  std::string best;
  unsigned bestDist = (name.size() + 2) / 3 + 1;
  for (const std::string &c : candidates) {
    if (c == name || c.size() > 64)
      continue;
    unsigned d = name.equals_insensitive(c) ? 0 : typoDistance(name, c);
    if (d < bestDist && d < name.size()) {
      bestDist = d;
      best = c;
    }
  }
  return best.empty() ? "" : "; did you mean '" + best + "'?";
}

std::string plural(size_t n, const char *word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

std::string render(llvm::SourceMgr &sm, llvm::StringRef filename, const Failure &f) {
  std::string text;
  llvm::raw_string_ostream os(text);
  if (f.loc.isValid())
    sm.PrintMessage(os, f.loc, llvm::SourceMgr::DK_Error, f.message, f.ranges);
  else
    llvm::SMDiagnostic(filename, llvm::SourceMgr::DK_Error, f.message).print(nullptr, os);
  for (const Note &n : f.notes)
    if (n.loc.isValid())
      sm.PrintMessage(os, n.loc, llvm::SourceMgr::DK_Note, n.message);
  return os.str();
}

llvm::Error plainError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg.str());
}

} // namespace heed::spec::detail
