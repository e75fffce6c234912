// The .attn spec language's syntax tree, the first error a stage reports, and
// the internal interface between the frontend's stages (parse, check
// definitions, elaborate, render diagnostics). Not installed.
#ifndef HEED_LIB_FRONTEND_AST_H
#define HEED_LIB_FRONTEND_AST_H

#include "Lexer.h"
#include "heed/Frontend/Parser.h"
#include "heed/Frontend/Spec.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/SMLoc.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace llvm {
class SourceMgr;
} // namespace llvm

namespace heed::spec::detail {

// Limits that keep hostile input from exhausting the stack or the time. Later
// stages (printing, the interpreter, the IR emitter) walk the elaborated trees
// recursively, so those are bounded too.

/// Nesting of parentheses, calls, operators and operator chains in the source.
constexpr unsigned kMaxNesting = 256;
/// Calls being inlined inside one another.
constexpr unsigned kMaxInlineDepth = 64;
/// Depth of an elaborated tree (and of the elaborator's recursion).
constexpr unsigned kMaxTreeDepth = 2048;
/// Nodes of an elaborated tree, a shared subtree counted at each use: inlining
/// can grow a tree exponentially (f(x) = g(x) + g(x), g(x) = h(x) + h(x), ...).
constexpr uint64_t kMaxTreeSize = uint64_t(1) << 18;

/// A node of the syntax tree; `loc`, `begin` and `end` point into the source.
struct Node {
  enum Kind { Int, Float, Bool, Name, Call, Index, Unary, Binary, Ternary };
  Kind kind = Int;
  llvm::SMLoc loc;        ///< where errors about this node point (name, operator)
  llvm::SMLoc begin, end; ///< the whole expression, for highlighted ranges
  unsigned height = 1;
  int64_t intValue = 0;
  double floatValue = 0;
  std::string name; ///< Name; Call callee; Index buffer
  Tok op = Tok::End;
  std::vector<std::unique_ptr<Node>> kids;
  std::vector<std::string> argNames; ///< Call: keyword per argument, "" if positional
  std::vector<llvm::SMLoc> argLocs;  ///< Call: where each argument (or its keyword) starts

  llvm::SMRange range() const { return {begin, end}; }
};
using NodePtr = std::unique_ptr<Node>;

enum class ParamKind { I64, F32, Bool, Buffer };

struct DefParam {
  std::string name;
  ParamKind kind = ParamKind::I64;
  llvm::SMLoc loc;
  NodePtr defaultValue;
  ExprPtr defaultExpr; ///< defaultValue elaborated (once, when defs are checked)
};

struct Def {
  std::string name;
  llvm::SMLoc loc;
  std::vector<DefParam> params;
  NodePtr body;
  bool fromPrelude = false;
};

struct Statement;

/// One case of a route statement: the heads whose route value is `value`
/// take the score and mask its statements set.
struct RouteCaseDecl {
  int64_t value = 0;
  llvm::SMLoc loc;
  std::vector<Statement> body; ///< Let, Score and Mask statements
};

struct Statement {
  enum Kind { Param, Buffer, Let, Score, Mask, Route, Gate, Normalize };
  Kind kind = Let;
  llvm::SMLoc loc;                 ///< the statement's keyword
  llvm::SMLoc nameLoc;             ///< Param, Buffer, Let: the declared name;
                                   ///< Normalize: the normalization's name
  std::string name;
  ParamKind type = ParamKind::I64; ///< Param
  ElemType elem = ElemType::F32;   ///< Buffer
  std::vector<std::pair<std::string, llvm::SMLoc>> dims; ///< Buffer
  /// Buffer: per dimension, its expression where it is more than a name or
  /// an integer (cdiv(Sq, 128)), else null.
  std::vector<NodePtr> dimExprs;
  NodePtr value;  ///< Route: the selector; Normalize: the argument, if any
  std::string argName; ///< Normalize: the argument's keyword ("sink", "bias")
  std::vector<RouteCaseDecl> cases;                       ///< Route
};

struct VariantDecl {
  std::string name;
  llvm::SMLoc loc;
  std::vector<Statement> statements;
};

struct Module {
  std::vector<std::unique_ptr<Def>> defs;
  std::vector<VariantDecl> variants;
  llvm::SMLoc endLoc;
};

struct Note {
  llvm::SMLoc loc;
  std::string message;
};

/// The first error of a parse or elaboration. An invalid `loc` means the
/// error has no place in the source (command-line overrides, callLibrary).
struct Failure {
  llvm::SMLoc loc;
  std::string message;
  std::vector<llvm::SMRange> ranges;
  std::vector<Note> notes;
};

//===----------------------------------------------------------------------===//
// Names of the language
//===----------------------------------------------------------------------===//

/// Words that cannot name a function, parameter, buffer or let.
inline bool isReserved(llvm::StringRef n) {
  return n == "def" || n == "variant" || n == "param" || n == "buffer" || n == "let" ||
         n == "true" || n == "false" || n == "score" || n == "mask" || n == "b" || n == "h" ||
         n == "q" || n == "kv" || n == "B" || n == "H" || n == "Hkv" || n == "Sq" || n == "Skv";
}

inline bool isBuiltin(llvm::StringRef n) { return isBuiltinName(n.str()); }

inline const std::vector<std::string> &builtinNames() {
  static const std::vector<std::string> names = {"min",  "max",    "abs",   "exp",
                                                 "log",  "tanh",   "sqrt",  "select",
                                                 "clamp", "f32",   "i64"};
  return names;
}

inline std::optional<IndexVar> indexVar(llvm::StringRef n) {
  static const std::pair<const char *, IndexVar> names[] = {
      {"b", IndexVar::B},        {"h", IndexVar::H},     {"q", IndexVar::Q},
      {"kv", IndexVar::KV},      {"B", IndexVar::NumB},  {"H", IndexVar::NumH},
      {"Hkv", IndexVar::NumHkv}, {"Sq", IndexVar::Sq},   {"Skv", IndexVar::Skv}};
  for (const auto &[name, var] : names)
    if (n == name)
      return var;
  return std::nullopt;
}

inline const char *toString(ParamKind k) {
  switch (k) {
  case ParamKind::I64: return "i64";
  case ParamKind::F32: return "f32";
  case ParamKind::Bool: return "bool";
  case ParamKind::Buffer: return "buffer";
  }
  return "?";
}

inline ScalarType scalarOf(ParamKind k) {
  return k == ParamKind::F32 ? ScalarType::F32
         : k == ParamKind::Bool ? ScalarType::Bool
                                : ScalarType::I64;
}

/// Edit distance where swapping two adjacent characters costs 1, the most

//===----------------------------------------------------------------------===//
// The stages
//===----------------------------------------------------------------------===//

/// Parses a whole file into `m` (Parser.cpp); the first syntax error, if any.
std::optional<Failure> parseModule(llvm::StringRef text, Module &m);

/// Checks the definitions of `m` (with `others` visible, e.g. the prelude):
/// names, parameters and their defaults, the names in bodies, recursion
/// (CheckDefs.cpp).
std::optional<Failure> checkDefs(Module &m, const Module *others);

/// The prelude, parsed and checked once (Prelude.cpp).
const Module &preludeModule();

class Elaborator;

/// Elaborates one variant; params take overrides where given; the names of
/// the overrides used are added to `usedOverrides` (ElaborateVariant.cpp).
std::optional<Failure> elaborateVariant(Elaborator &el, const VariantDecl &decl,
                                        const ParamOverrides &overrides,
                                        llvm::StringSet<> &usedOverrides, Variant &out);

// Diagnostics (Diagnostics.cpp).

/// "; did you mean 'x'?" for the closest candidate, or "".
std::string didYouMean(llvm::StringRef name, llvm::ArrayRef<std::string> candidates);
/// "1 call", "2 calls".
std::string plural(size_t n, const char *word);
/// `f` as a compiler prints it: file:line:col, the message, the source line
/// and a caret, then its notes.
std::string render(llvm::SourceMgr &sm, llvm::StringRef filename, const Failure &f);
llvm::Error plainError(const llvm::Twine &msg);

} // namespace heed::spec::detail

#endif // HEED_LIB_FRONTEND_AST_H
