// The .attn spec language: a parser to a small AST, and the elaboration of
// that AST (name resolution, type checking, inlining of functions,
// substitution of params) into spec::Variant. The prelude's library functions
// go through the same code, for the spec files and for callLibrary().
#include "heed/Frontend/Parser.h"

#include "heed/Frontend/Evaluate.h"

#include "Lexer.h"
#include "heed/Frontend/Library.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>

namespace heed::spec {
namespace {

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

//===----------------------------------------------------------------------===//
// AST
//===----------------------------------------------------------------------===//

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
  enum Kind { Param, Buffer, Let, Score, Mask, Route, Gate };
  Kind kind = Let;
  llvm::SMLoc loc;                 ///< the statement's keyword
  llvm::SMLoc nameLoc;             ///< Param, Buffer, Let: the declared name
  std::string name;
  ParamKind type = ParamKind::I64; ///< Param
  ElemType elem = ElemType::F32;   ///< Buffer
  std::vector<std::pair<std::string, llvm::SMLoc>> dims; ///< Buffer
  NodePtr value;                                          ///< Route: the selector
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

/// Words that cannot name a function, parameter, buffer or let.
bool isReserved(llvm::StringRef n) {
  return n == "def" || n == "variant" || n == "param" || n == "buffer" || n == "let" ||
         n == "true" || n == "false" || n == "score" || n == "mask" || n == "b" || n == "h" ||
         n == "q" || n == "kv";
}

bool isBuiltin(llvm::StringRef n) { return isBuiltinName(n.str()); }

const std::vector<std::string> &builtinNames() {
  static const std::vector<std::string> names = {"min",  "max",    "abs",   "exp",
                                                 "log",  "tanh",   "sqrt",  "select",
                                                 "clamp", "f32",   "i64"};
  return names;
}

std::optional<IndexVar> indexVar(llvm::StringRef n) {
  if (n == "b")
    return IndexVar::B;
  if (n == "h")
    return IndexVar::H;
  if (n == "q")
    return IndexVar::Q;
  if (n == "kv")
    return IndexVar::KV;
  return std::nullopt;
}

const char *toString(ParamKind k) {
  switch (k) {
  case ParamKind::I64: return "i64";
  case ParamKind::F32: return "f32";
  case ParamKind::Bool: return "bool";
  case ParamKind::Buffer: return "buffer";
  }
  return "?";
}

ScalarType scalarOf(ParamKind k) {
  return k == ParamKind::F32 ? ScalarType::F32
         : k == ParamKind::Bool ? ScalarType::Bool
                                : ScalarType::I64;
}

/// Edit distance where swapping two adjacent characters costs 1, the most
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

/// "; did you mean 'x'?" for the closest candidate, or "". A candidate must be
/// closer than the name is long, so `x` is not taken for `q`.
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

//===----------------------------------------------------------------------===//
// Parser
//===----------------------------------------------------------------------===//

class Parser {
public:
  explicit Parser(llvm::StringRef text) : lexer(text), prevEnd(text.begin()) {
    tok = lexer.next();
  }

  /// Parses a whole file into `m`; the first syntax error, if any.
  std::optional<Failure> parseModule(Module &m);

private:
  /// Counts the parser's recursion (parentheses, arguments, branches).
  struct NestingGuard {
    explicit NestingGuard(Parser &p) : p(p) { ++p.nesting; }
    ~NestingGuard() { --p.nesting; }
    Parser &p;
  };

  void advance() {
    prevEnd = tok.text.end();
    tok = lexer.next();
  }
  llvm::SMLoc prevEndLoc() const { return llvm::SMLoc::getFromPointer(prevEnd); }
  bool isIdent(llvm::StringRef s) const { return tok.kind == Tok::Ident && tok.text == s; }

  bool fail(llvm::SMLoc loc, std::string msg, std::vector<Note> notes = {}) {
    if (!failure)
      failure = Failure{loc, std::move(msg), {}, std::move(notes)};
    return false;
  }
  /// "expected X, got Y" at the current token (or the lexer's own error).
  bool failHere(const std::string &expected) {
    if (tok.kind == Tok::Error)
      return fail(tok.loc(), tok.error);
    // A runaway token (a 10 kB name) is cut short in the message.
    std::string got = tok.kind == Tok::End      ? "end of file"
                      : tok.text.size() > 40 ? "'" + tok.text.take_front(40).str() + "...'"
                                              : "'" + tok.text.str() + "'";
    return fail(tok.loc(), "expected " + expected + ", got " + got);
  }
  bool expect(Tok kind, const char *what = nullptr) {
    if (tok.kind != kind)
      return failHere(what ? what : describe(kind));
    advance();
    return true;
  }
  bool name(std::string &out, llvm::SMLoc &loc, const char *what) {
    if (tok.kind != Tok::Ident)
      return failHere(what);
    out = tok.text.str();
    loc = tok.loc();
    advance();
    return true;
  }
  NodePtr tooDeep(llvm::SMLoc loc) {
    fail(loc, "expression nested too deeply (more than " + std::to_string(kMaxNesting) +
                  " levels)");
    return nullptr;
  }
  /// Sets the height of a node built from `kids`; null if it is too deep.
  NodePtr seal(NodePtr n) {
    for (const NodePtr &k : n->kids)
      n->height = std::max(n->height, k->height + 1);
    if (n->height > kMaxNesting)
      return tooDeep(n->loc);
    return n;
  }

  bool paramKind(ParamKind &out, bool allowBuffer);
  bool parseDef(Module &m);
  bool parseVariant(Module &m);
  bool parseStatement(VariantDecl &v);
  bool parseStatement(std::vector<Statement> &into, bool inRoute);
  bool parseRoute(Statement &s);
  bool parseBufferDecl(Statement &s);
  NodePtr expr();
  NodePtr binary(int minLevel);
  NodePtr unary();
  NodePtr postfix();
  NodePtr primary();
  bool callArguments(Node &call);

  Lexer lexer;
  Token tok;
  const char *prevEnd; ///< just past the last token consumed
  unsigned nesting = 0;
  std::optional<Failure> failure;
};

bool Parser::paramKind(ParamKind &out, bool allowBuffer) {
  if (isIdent("i64"))
    out = ParamKind::I64;
  else if (isIdent("f32"))
    out = ParamKind::F32;
  else if (isIdent("bool"))
    out = ParamKind::Bool;
  else if (allowBuffer && isIdent("buffer"))
    out = ParamKind::Buffer;
  else
    return failHere(allowBuffer ? "a type (i64, f32, bool or buffer)"
                                : "a type (i64, f32 or bool)");
  advance();
  return true;
}

std::optional<Failure> Parser::parseModule(Module &m) {
  while (tok.kind != Tok::End) {
    if (tok.kind == Tok::Semi) {
      advance();
      continue;
    }
    bool ok;
    if (isIdent("def"))
      ok = parseDef(m);
    else if (isIdent("variant"))
      ok = parseVariant(m);
    else
      ok = failHere("'def' or 'variant'");
    if (!ok)
      return failure;
  }
  m.endLoc = tok.loc();
  return failure;
}

bool Parser::parseDef(Module &m) {
  advance(); // def
  auto def = std::make_unique<Def>();
  if (!name(def->name, def->loc, "a function name") || !expect(Tok::LParen))
    return false;
  while (tok.kind != Tok::RParen) {
    DefParam p;
    if (!name(p.name, p.loc, "a parameter name or ')'") ||
        !expect(Tok::Colon, "':' and the parameter's type") || !paramKind(p.kind, true))
      return false;
    if (tok.kind == Tok::Assign) {
      if (p.kind == ParamKind::Buffer)
        return fail(tok.loc(), "a buffer parameter cannot have a default");
      advance();
      if (!(p.defaultValue = expr()))
        return false;
    }
    def->params.push_back(std::move(p));
    if (tok.kind != Tok::Comma)
      break;
    advance();
  }
  if (!expect(Tok::RParen, "',' or ')'") ||
      !expect(Tok::Assign, "'=' and the function's body"))
    return false;
  if (!(def->body = expr()))
    return false;
  m.defs.push_back(std::move(def));
  return true;
}

bool Parser::parseVariant(Module &m) {
  advance(); // variant
  VariantDecl v;
  if (!name(v.name, v.loc, "a variant name") || !expect(Tok::LBrace))
    return false;
  while (tok.kind != Tok::RBrace) {
    if (tok.kind == Tok::End)
      return fail(v.loc, "variant '" + v.name + "' is not closed: expected '}' before the end "
                                                "of the file");
    if (isIdent("variant") || isIdent("def"))
      return fail(tok.loc(),
                  "expected '}' to close variant '" + v.name + "' before '" + tok.text.str() +
                      "'",
                  {{v.loc, "variant '" + v.name + "' starts here"}});
    if (tok.kind == Tok::Semi) {
      advance();
      continue;
    }
    if (!parseStatement(v))
      return false;
  }
  advance();
  m.variants.push_back(std::move(v));
  return true;
}

bool Parser::parseStatement(VariantDecl &v) { return parseStatement(v.statements, false); }

/// route SELECTOR { case N { statements } ... }
bool Parser::parseRoute(Statement &s) {
  advance(); // route
  s.kind = Statement::Route;
  if (!(s.value = expr()) || !expect(Tok::LBrace, "'{' and the route's cases"))
    return false;
  while (tok.kind != Tok::RBrace) {
    if (tok.kind == Tok::Semi) {
      advance();
      continue;
    }
    if (!isIdent("case"))
      return failHere("'case' or '}'");
    RouteCaseDecl c;
    c.loc = tok.loc();
    advance();
    bool negative = tok.kind == Tok::Minus;
    if (negative)
      advance();
    if (tok.kind != Tok::Int)
      return failHere("the case's route value (an integer)");
    c.value = negative ? -tok.intValue : tok.intValue;
    advance();
    if (!expect(Tok::LBrace, "'{' and the case's statements"))
      return false;
    while (tok.kind != Tok::RBrace) {
      if (tok.kind == Tok::End)
        return fail(c.loc, "route case is not closed: expected '}'");
      if (tok.kind == Tok::Semi) {
        advance();
        continue;
      }
      if (!parseStatement(c.body, /*inRoute=*/true))
        return false;
    }
    advance();
    s.cases.push_back(std::move(c));
  }
  advance();
  return true;
}

bool Parser::parseStatement(std::vector<Statement> &into, bool inRoute) {
  Statement s;
  s.loc = tok.loc();
  if (inRoute && (isIdent("param") || isIdent("buffer") || isIdent("route"))) {
    return failHere("'let', 'score', 'mask' or '}' (params, buffers and routes are declared "
                    "outside route cases)");
  } else if (isIdent("route")) {
    if (!parseRoute(s))
      return false;
  } else if (isIdent("param")) {
    advance();
    s.kind = Statement::Param;
    if (!name(s.name, s.nameLoc, "a parameter name") ||
        !expect(Tok::Colon, "':' and the param's type") || !paramKind(s.type, false) ||
        !expect(Tok::Assign, "'=' and a default value"))
      return false;
    if (!(s.value = expr()))
      return false;
  } else if (isIdent("buffer")) {
    advance();
    s.kind = Statement::Buffer;
    if (!parseBufferDecl(s))
      return false;
  } else if (isIdent("let")) {
    advance();
    s.kind = Statement::Let;
    if (!name(s.name, s.nameLoc, "a name") || !expect(Tok::Assign))
      return false;
    if (!(s.value = expr()))
      return false;
  } else if (!inRoute && isIdent("gate")) {
    s.kind = Statement::Gate;
    advance();
    if (!expect(Tok::Assign))
      return false;
    if (!(s.value = expr()))
      return false;
  } else if (isIdent("score") || isIdent("mask")) {
    s.kind = isIdent("score") ? Statement::Score : Statement::Mask;
    advance();
    if (!expect(Tok::Assign))
      return false;
    if (!(s.value = expr()))
      return false;
  } else {
    std::string hint;
    if (tok.kind == Tok::Ident) {
      hint = didYouMean(tok.text, {"param", "buffer", "let", "score", "mask", "route", "gate"});
      // `x = ...` is most likely a let without its keyword.
      Lexer ahead = lexer;
      if (hint.empty() && ahead.next().kind == Tok::Assign)
        hint = "; did you mean 'let " + tok.text.str() + " = ...'?";
    }
    failHere(inRoute ? "'let', 'score', 'mask' or '}'"
                     : "'param', 'buffer', 'let', 'score', 'mask', 'route', 'gate' or '}'");
    failure->message += hint;
    return false;
  }
  into.push_back(std::move(s));
  return true;
}

bool Parser::parseBufferDecl(Statement &s) {
  if (!name(s.name, s.nameLoc, "a buffer name") ||
      !expect(Tok::Colon, "':' and the buffer's element type"))
    return false;
  static const std::pair<const char *, ElemType> elems[] = {
      {"f32", ElemType::F32}, {"f16", ElemType::F16}, {"bf16", ElemType::BF16},
      {"i8", ElemType::I8},   {"i32", ElemType::I32}, {"i64", ElemType::I64},
      {"bool", ElemType::Bool}};
  bool found = false;
  for (const auto &[n, e] : elems)
    if (isIdent(n)) {
      s.elem = e;
      found = true;
    }
  if (!found)
    return failHere("an element type (f32, f16, bf16, i8, i32, i64 or bool)");
  advance();
  if (!expect(Tok::LBracket, "'[' and the buffer's dimensions"))
    return false;
  while (true) {
    if (tok.kind == Tok::Int) {
      if (tok.intValue <= 0)
        return fail(tok.loc(), "buffer dimensions must be positive, got " + tok.text.str());
      // Normalized, so "007" and "7" describe the same shape.
      s.dims.emplace_back(std::to_string(tok.intValue), tok.loc());
    } else if (tok.kind == Tok::Ident) {
      s.dims.emplace_back(tok.text.str(), tok.loc());
    } else {
      return failHere("a dimension (B, H, Hkv, Sq, Skv, a positive integer or an i64 param)");
    }
    advance();
    if (tok.kind != Tok::Comma)
      break;
    advance();
  }
  return expect(Tok::RBracket, "',' or ']'");
}

NodePtr Parser::expr() {
  NestingGuard guard(*this);
  if (nesting > kMaxNesting)
    return tooDeep(tok.loc());
  NodePtr cond = binary(0);
  if (!cond || tok.kind != Tok::Question)
    return cond;
  auto n = std::make_unique<Node>();
  n->kind = Node::Ternary;
  n->loc = tok.loc();
  n->begin = cond->begin;
  advance();
  NodePtr a = expr();
  if (!a || !expect(Tok::Colon, "':' of the conditional expression"))
    return nullptr;
  NodePtr b = expr();
  if (!b)
    return nullptr;
  n->end = b->end;
  n->kids.push_back(std::move(cond));
  n->kids.push_back(std::move(a));
  n->kids.push_back(std::move(b));
  return seal(std::move(n));
}

/// Binding strength of binary operators (higher binds tighter), -1 for others.
int levelOf(Tok t) {
  switch (t) {
  case Tok::OrOr: return 0;
  case Tok::AndAnd: return 1;
  case Tok::EqEq: case Tok::Ne: return 2;
  case Tok::Lt: case Tok::Le: case Tok::Gt: case Tok::Ge: return 3;
  case Tok::Plus: case Tok::Minus: return 4;
  case Tok::Star: case Tok::Slash: case Tok::Percent: return 5;
  default: return -1;
  }
}

// Precedence climbing: all operators are left-associative.
NodePtr Parser::binary(int minLevel) {
  NodePtr lhs = unary();
  while (lhs) {
    int level = levelOf(tok.kind);
    if (level < 0 || level < minLevel)
      break;
    auto n = std::make_unique<Node>();
    n->kind = Node::Binary;
    n->op = tok.kind;
    n->loc = tok.loc();
    n->begin = lhs->begin;
    advance();
    NodePtr rhs = binary(level + 1);
    if (!rhs)
      return nullptr;
    n->end = rhs->end;
    n->kids.push_back(std::move(lhs));
    n->kids.push_back(std::move(rhs));
    lhs = seal(std::move(n));
  }
  return lhs;
}

NodePtr Parser::unary() {
  // Prefix operators are collected in a loop: `- - - ... x` must not recurse.
  std::vector<std::pair<Tok, llvm::SMLoc>> ops;
  while (tok.kind == Tok::Minus || tok.kind == Tok::Bang) {
    if (ops.size() >= kMaxNesting)
      return tooDeep(tok.loc());
    ops.emplace_back(tok.kind, tok.loc());
    advance();
  }
  NodePtr operand = postfix();
  while (operand && !ops.empty()) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Unary;
    n->op = ops.back().first;
    n->loc = n->begin = ops.back().second;
    n->end = operand->end;
    n->kids.push_back(std::move(operand));
    operand = seal(std::move(n));
    ops.pop_back();
  }
  return operand;
}

bool Parser::callArguments(Node &call) {
  advance(); // (
  while (tok.kind != Tok::RParen) {
    std::string keyword;
    llvm::SMLoc argLoc = tok.loc();
    if (tok.kind == Tok::Ident) {
      // `name = value` is a keyword argument: look one token ahead.
      Lexer ahead = lexer;
      if (ahead.next().kind == Tok::Assign) {
        keyword = tok.text.str();
        advance();
        advance();
      }
    }
    NodePtr arg = expr();
    if (!arg)
      return false;
    call.kids.push_back(std::move(arg));
    call.argNames.push_back(keyword);
    call.argLocs.push_back(argLoc);
    if (tok.kind != Tok::Comma)
      break;
    advance();
  }
  if (!expect(Tok::RParen, "',' or ')'"))
    return false;
  call.end = prevEndLoc();
  return true;
}

NodePtr Parser::postfix() {
  NodePtr n = primary();
  if (!n || n->kind != Node::Name)
    return n;
  if (tok.kind == Tok::LParen) {
    n->kind = Node::Call;
    if (!callArguments(*n))
      return nullptr;
    return seal(std::move(n));
  }
  if (tok.kind == Tok::LBracket) {
    n->kind = Node::Index;
    advance();
    while (true) {
      NodePtr i = expr();
      if (!i)
        return nullptr;
      n->kids.push_back(std::move(i));
      if (tok.kind != Tok::Comma)
        break;
      advance();
    }
    if (!expect(Tok::RBracket, "',' or ']'"))
      return nullptr;
    n->end = prevEndLoc();
    return seal(std::move(n));
  }
  return n;
}

NodePtr Parser::primary() {
  auto n = std::make_unique<Node>();
  n->loc = n->begin = tok.loc();
  n->end = tok.endLoc();
  switch (tok.kind) {
  case Tok::Int:
    n->kind = Node::Int;
    n->intValue = tok.intValue;
    advance();
    return n;
  case Tok::Float:
    n->kind = Node::Float;
    n->floatValue = tok.floatValue;
    advance();
    return n;
  case Tok::Ident:
    if (tok.text == "true" || tok.text == "false") {
      n->kind = Node::Bool;
      n->intValue = tok.text == "true";
    } else {
      n->kind = Node::Name;
      n->name = tok.text.str();
    }
    advance();
    return n;
  case Tok::LParen: {
    llvm::SMLoc open = tok.loc();
    advance();
    NodePtr inner = expr();
    if (!inner)
      return nullptr;
    if (tok.kind != Tok::RParen) {
      bool lexical = tok.kind == Tok::Error;
      failHere("')'");
      if (!lexical)
        failure->notes.push_back({open, "to match this '('"});
      return nullptr;
    }
    advance();
    // The parentheses belong to the range, which then reads naturally.
    inner->begin = open;
    inner->end = prevEndLoc();
    return inner;
  }
  default:
    failHere("an expression");
    return nullptr;
  }
}

//===----------------------------------------------------------------------===//
// Elaboration
//===----------------------------------------------------------------------===//

/// What a name stands for during elaboration.
struct Binding {
  ExprPtr expr;     ///< a value
  int buffer = -1;  ///< or a buffer (position in the variant's buffer list)
  bool let = false; ///< a variant's let (may read `score`)
};
using Scope = llvm::StringMap<Binding>;

/// Facts about an elaborated tree, a shared subtree counted at each use.
struct TreeInfo {
  unsigned depth = 1;
  uint64_t size = 1;
  bool readsScore = false;
  bool varies = false; ///< reads an index, the score or a buffer
  bool readsToken = false; ///< reads q or kv
};

/// One argument of a call, from the source (`node`) or from callLibrary
/// (`expr` or `buffer`).
struct Actual {
  std::string keyword;
  llvm::SMLoc loc;
  const Node *node = nullptr;
  ExprPtr expr;
  int buffer = -1;
};

class Elaborator {
public:
  explicit Elaborator(llvm::ArrayRef<const Module *> modules) {
    for (const Module *m : modules)
      for (const auto &d : m->defs)
        defs.try_emplace(d->name, d.get());
  }

  /// The buffers of the variant being elaborated.
  const std::vector<BufferDecl> *buffers = nullptr;
  /// Names the variant declares after the statement being elaborated.
  const llvm::StringSet<> *declaredLater = nullptr;
  /// Messages for callLibrary(): "name: ..." instead of "in call to 'name': ...".
  bool libraryMode = false;
  std::optional<Failure> failure;
  llvm::StringMap<const Def *> defs;

  /// Elaborates `n` with the names in `scope`; `scoreAllowed` says whether
  /// `score` may be read (the score statement and the lets feeding it).
  ExprPtr elaborate(const Node &n, const Scope &scope, bool scoreAllowed);

  /// Binds `args` to the parameters of `d` and inlines its body. `site` is the
  /// call (invalid for callLibrary, whose argument errors name the function).
  ExprPtr callDef(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                  const Scope &scope, bool scoreAllowed);

  TreeInfo info(const ExprPtr &e);

  ExprPtr fail(llvm::SMLoc loc, std::string msg, std::vector<llvm::SMRange> ranges = {});

private:
  struct Frame {
    const Def *def;
    llvm::SMLoc site;
  };
  struct DepthGuard {
    explicit DepthGuard(unsigned &d) : d(d) { ++d; }
    ~DepthGuard() { --d; }
    unsigned &d;
  };

  ExprPtr elaborateNode(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr name(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr call(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr index(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr unary(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr binary(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr ternary(const Node &n, const Scope &scope, bool scoreAllowed);
  bool bindArgs(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                const Scope &scope, bool scoreAllowed, std::vector<Binding> &bound);
  /// `e`, or null after an error at `loc` if it is too deep or too large.
  ExprPtr checkTree(ExprPtr e, llvm::SMLoc loc);

  std::vector<Frame> frames;
  unsigned depth = 0;
  llvm::DenseMap<const Expr *, TreeInfo> infos;
  std::vector<ExprPtr> measured; ///< keeps the keys of `infos` alive
};

ExprPtr Elaborator::fail(llvm::SMLoc loc, std::string msg, std::vector<llvm::SMRange> ranges) {
  if (failure)
    return nullptr;
  Failure f;
  // An error inside the library is reported at the user's outermost call into
  // it: the prelude's text is not the user's.
  auto lib = std::find_if(frames.begin(), frames.end(),
                          [](const Frame &fr) { return fr.def->fromPrelude; });
  if (lib != frames.end()) {
    f.loc = lib->site;
    f.message = (libraryMode ? lib->def->name + ": " : "in call to '" + lib->def->name + "': ") +
                msg;
  } else {
    f.loc = loc;
    f.message = std::move(msg);
    f.ranges = std::move(ranges);
  }
  for (auto it = std::make_reverse_iterator(lib); it != frames.rend(); ++it)
    f.notes.push_back({it->site, "in this call to '" + it->def->name + "'"});
  // Like a compiler's backtrace: the innermost calls and the outermost one.
  constexpr size_t kShownNotes = 6;
  if (f.notes.size() > kShownNotes) {
    size_t skipped = f.notes.size() - kShownNotes;
    Note outermost = f.notes.back();
    f.notes.resize(kShownNotes - 1);
    outermost.message += " (" + plural(skipped, "call") + " in between not shown)";
    f.notes.push_back(std::move(outermost));
  }
  failure = std::move(f);
  return nullptr;
}

TreeInfo Elaborator::info(const ExprPtr &root) {
  auto found = infos.find(root.get());
  if (found != infos.end())
    return found->second;
  // Iterative post-order: expressions from callLibrary may be arbitrarily deep.
  std::vector<std::pair<ExprPtr, bool>> stack = {{root, false}};
  while (!stack.empty()) {
    auto [e, childrenDone] = stack.back();
    stack.pop_back();
    if (infos.count(e.get()))
      continue;
    if (!childrenDone) {
      stack.emplace_back(e, true);
      for (const ExprPtr &o : e->operands)
        if (!infos.count(o.get()))
          stack.emplace_back(o, false);
      continue;
    }
    TreeInfo t;
    t.readsScore = e->kind == ExprKind::Score;
    t.varies = e->kind == ExprKind::Index || e->kind == ExprKind::Score ||
               e->kind == ExprKind::Load;
    t.readsToken = e->kind == ExprKind::Index &&
                   (e->index == IndexVar::Q || e->index == IndexVar::KV);
    for (const ExprPtr &o : e->operands) {
      const TreeInfo &c = infos.find(o.get())->second;
      t.depth = std::max(t.depth, c.depth + 1);
      t.size = std::min(t.size + c.size, kMaxTreeSize + 1);
      t.readsScore |= c.readsScore;
      t.varies |= c.varies;
      t.readsToken |= c.readsToken;
    }
    infos[e.get()] = t;
    measured.push_back(e);
  }
  return infos.find(root.get())->second;
}

ExprPtr Elaborator::checkTree(ExprPtr e, llvm::SMLoc loc) {
  if (!e)
    return nullptr;
  TreeInfo t = info(e);
  if (t.depth > kMaxTreeDepth)
    return fail(loc, "expression nested too deeply after inlining functions (more than " +
                         std::to_string(kMaxTreeDepth) + " levels)");
  if (t.size > kMaxTreeSize)
    return fail(loc, "expression too large after inlining functions (more than " +
                         std::to_string(kMaxTreeSize) + " nodes)");
  return e;
}

ExprPtr Elaborator::elaborate(const Node &n, const Scope &scope, bool scoreAllowed) {
  if (failure)
    return nullptr;
  DepthGuard guard(depth);
  if (depth > kMaxTreeDepth)
    return fail(n.loc, "expression nested too deeply after inlining functions (more than " +
                           std::to_string(kMaxTreeDepth) + " levels)");
  return checkTree(elaborateNode(n, scope, scoreAllowed), n.loc);
}

ExprPtr Elaborator::elaborateNode(const Node &n, const Scope &scope, bool scoreAllowed) {
  switch (n.kind) {
  case Node::Int:
    return makeInt(n.intValue);
  case Node::Float:
    return makeFloat(n.floatValue);
  case Node::Bool:
    return makeBool(n.intValue != 0);
  case Node::Name:
    return name(n, scope, scoreAllowed);
  case Node::Call:
    return call(n, scope, scoreAllowed);
  case Node::Index:
    return index(n, scope, scoreAllowed);
  case Node::Unary:
    return unary(n, scope, scoreAllowed);
  case Node::Binary:
    return binary(n, scope, scoreAllowed);
  case Node::Ternary:
    return ternary(n, scope, scoreAllowed);
  }
  return nullptr;
}

ExprPtr Elaborator::name(const Node &n, const Scope &scope, bool scoreAllowed) {
  auto it = scope.find(n.name);
  if (it != scope.end()) {
    const Binding &b = it->second;
    if (b.buffer >= 0)
      return fail(n.loc, "buffer '" + n.name + "' must be indexed, as in " + n.name + "[...]",
                  {n.range()});
    if (b.let && !scoreAllowed && info(b.expr).readsScore)
      return fail(n.loc, "'score' is only available in the score modifier (let '" + n.name +
                             "' reads it)",
                  {n.range()});
    return b.expr;
  }
  if (std::optional<IndexVar> v = indexVar(n.name))
    return makeIndex(*v);
  if (n.name == "score") {
    if (scoreAllowed)
      return makeScore();
    if (!frames.empty() && !frames.back().def->fromPrelude)
      return fail(n.loc, "function '" + frames.back().def->name +
                             "' cannot read 'score'; pass it as an f32 parameter",
                  {n.range()});
    return fail(n.loc, "'score' is only available in the score modifier", {n.range()});
  }
  if (defs.count(n.name) || isBuiltin(n.name))
    return fail(n.loc, "'" + n.name + "' is a function: call it as " + n.name + "(...)",
                {n.range()});
  if (declaredLater && declaredLater->contains(n.name))
    return fail(n.loc, "'" + n.name + "' is used before its declaration", {n.range()});
  std::vector<std::string> names;
  for (const auto &e : scope)
    if (e.getValue().buffer < 0)
      names.push_back(e.getKey().str());
  for (const char *v : {"q", "kv", "h", "b"})
    names.push_back(v);
  if (scoreAllowed)
    names.push_back("score");
  return fail(n.loc, "unknown name '" + n.name + "'" + didYouMean(n.name, names), {n.range()});
}

ExprPtr Elaborator::call(const Node &n, const Scope &scope, bool scoreAllowed) {
  if (isBuiltin(n.name)) {
    for (size_t i = 0; i < n.kids.size(); ++i)
      if (!n.argNames[i].empty())
        return fail(n.argLocs[i], "built-in function '" + n.name +
                                      "' takes no keyword arguments");
    std::vector<ExprPtr> args;
    for (const NodePtr &k : n.kids) {
      ExprPtr e = elaborate(*k, scope, scoreAllowed);
      if (!e)
        return nullptr;
      args.push_back(e);
    }
    std::string error;
    bool known = false;
    ExprPtr r = typedBuiltin(n.name, std::move(args), error, known);
    return r ? r : fail(n.loc, error, {n.range()});
  }
  auto it = defs.find(n.name);
  if (it == defs.end()) {
    auto bound = scope.find(n.name);
    if (bound != scope.end() && bound->second.buffer >= 0)
      return fail(n.loc, "'" + n.name + "' is a buffer: index it as " + n.name + "[...]",
                  {n.range()});
    if (bound != scope.end() || indexVar(n.name) || n.name == "score")
      return fail(n.loc, "'" + n.name + "' is not a function", {n.range()});
    std::vector<std::string> names = builtinNames();
    for (const auto &d : defs)
      names.push_back(d.getKey().str());
    return fail(n.loc, "unknown function '" + n.name + "'" + didYouMean(n.name, names),
                {llvm::SMRange(n.begin, llvm::SMLoc::getFromPointer(n.begin.getPointer() +
                                                                    n.name.size()))});
  }
  std::vector<Actual> args;
  for (size_t i = 0; i < n.kids.size(); ++i) {
    Actual a;
    a.keyword = n.argNames[i];
    a.loc = n.argLocs[i];
    a.node = n.kids[i].get();
    args.push_back(std::move(a));
  }
  return callDef(*it->second, args, n.loc, scope, scoreAllowed);
}

bool Elaborator::bindArgs(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                          const Scope &scope, bool scoreAllowed, std::vector<Binding> &bound) {
  // callLibrary has no source: its messages name the function instead.
  bool library = !site.isValid();
  auto callError = [&](llvm::SMLoc loc, const std::string &msg) {
    fail(loc, library ? d.name + ": " + msg : msg);
    return false;
  };
  auto argError = [&](llvm::SMLoc loc, const DefParam &p, const std::string &rest,
                      std::vector<llvm::SMRange> ranges = {}) {
    if (library)
      fail(loc, d.name + ": argument '" + p.name + "' " + rest);
    else
      fail(loc, "argument '" + p.name + "' of '" + d.name + "' " + rest, std::move(ranges));
    return false;
  };

  bound.assign(d.params.size(), Binding{});
  std::vector<bool> given(d.params.size(), false);
  size_t positional = 0;
  bool sawKeyword = false;
  for (const Actual &a : args) {
    size_t slot;
    if (a.keyword.empty()) {
      if (sawKeyword)
        return callError(a.loc, "positional argument after a keyword argument");
      if (positional >= d.params.size()) {
        size_t required = std::count_if(d.params.begin(), d.params.end(),
                                        [](const DefParam &p) { return !p.defaultValue; });
        std::string takes = required == d.params.size()
                                ? plural(d.params.size(), "argument")
                                : std::to_string(required) + " to " +
                                      plural(d.params.size(), "argument");
        return callError(a.loc, "'" + d.name + "' takes " + takes + ", got " +
                                    std::to_string(args.size()));
      }
      slot = positional++;
    } else {
      sawKeyword = true;
      auto it = std::find_if(d.params.begin(), d.params.end(),
                             [&](const DefParam &p) { return p.name == a.keyword; });
      if (it == d.params.end()) {
        std::vector<std::string> names;
        for (const DefParam &p : d.params)
          names.push_back(p.name);
        return callError(a.loc, "'" + d.name + "' has no parameter '" + a.keyword + "'" +
                                    didYouMean(a.keyword, names));
      }
      slot = it - d.params.begin();
    }
    const DefParam &p = d.params[slot];
    if (given[slot])
      return argError(a.loc, p, "is given twice");
    given[slot] = true;

    // The buffer an argument names, if it names one.
    int buffer = a.buffer;
    const Node *node = a.node;
    if (node && node->kind == Node::Name) {
      auto it = scope.find(node->name);
      if (it != scope.end())
        buffer = it->second.buffer;
    }
    if (p.kind == ParamKind::Buffer) {
      if (node && node->kind == Node::Name && !scope.count(node->name) &&
          !indexVar(node->name) && node->name != "score") {
        std::vector<std::string> names;
        for (const auto &e : scope)
          if (e.getValue().buffer >= 0)
            names.push_back(e.getKey().str());
        fail(node->loc, "unknown buffer '" + node->name + "'" + didYouMean(node->name, names),
             {node->range()});
        return false;
      }
      if (buffer < 0 || !buffers || static_cast<size_t>(buffer) >= buffers->size())
        return argError(node ? node->begin : a.loc, p, "must be a buffer",
                        node ? std::vector<llvm::SMRange>{node->range()}
                             : std::vector<llvm::SMRange>{});
      bound[slot].buffer = buffer;
      continue;
    }
    if (buffer >= 0)
      return argError(node ? node->begin : a.loc, p,
                      std::string("must be ") + toString(p.kind) + ", got a buffer",
                      node ? std::vector<llvm::SMRange>{node->range()}
                           : std::vector<llvm::SMRange>{});
    ExprPtr v = a.expr;
    if (node && !(v = elaborate(*node, scope, scoreAllowed)))
      return false;
    if (!v)
      return argError(a.loc, p, "has no value");
    ScalarType want = scalarOf(p.kind);
    if (want == ScalarType::F32 && v->type == ScalarType::I64)
      v = makeCast(ScalarType::F32, v);
    if (v->type != want)
      return argError(node ? node->begin : a.loc, p,
                      std::string("must be ") + toString(want) + ", got " + toString(v->type),
                      node ? std::vector<llvm::SMRange>{node->range()}
                           : std::vector<llvm::SMRange>{});
    bound[slot].expr = v;
  }
  for (size_t i = 0; i < d.params.size(); ++i) {
    if (given[i])
      continue;
    if (!d.params[i].defaultExpr)
      return callError(site, "missing argument '" + d.params[i].name + "' in call to '" +
                                 d.name + "'");
    bound[i].expr = d.params[i].defaultExpr;
  }
  return true;
}

ExprPtr Elaborator::callDef(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                            const Scope &scope, bool scoreAllowed) {
  std::vector<Binding> bound;
  if (!bindArgs(d, args, site, scope, scoreAllowed, bound))
    return nullptr;
  // Recursion is rejected before elaboration (checkDefs); this is a safeguard.
  for (const Frame &f : frames)
    if (f.def == &d)
      return fail(site, "'" + d.name + "' calls itself (recursion is not allowed)");
  if (frames.size() >= kMaxInlineDepth)
    return fail(site, "calls nested too deeply (more than " + std::to_string(kMaxInlineDepth) +
                          " functions inlined inside one another)");
  Scope body;
  for (size_t i = 0; i < d.params.size(); ++i)
    body[d.params[i].name] = bound[i];
  frames.push_back({&d, site});
  ExprPtr r = elaborate(*d.body, body, /*scoreAllowed=*/false);
  frames.pop_back();
  return r;
}

ExprPtr Elaborator::index(const Node &n, const Scope &scope, bool scoreAllowed) {
  auto it = scope.find(n.name);
  llvm::SMRange nameRange(n.begin,
                          llvm::SMLoc::getFromPointer(n.begin.getPointer() + n.name.size()));
  if (it == scope.end() || it->second.buffer < 0) {
    if (it != scope.end() || indexVar(n.name) || n.name == "score")
      return fail(n.loc, "'" + n.name + "' is not a buffer and cannot be indexed", {nameRange});
    std::vector<std::string> names;
    for (const auto &e : scope)
      if (e.getValue().buffer >= 0)
        names.push_back(e.getKey().str());
    return fail(n.loc, "unknown buffer '" + n.name + "'" + didYouMean(n.name, names),
                {nameRange});
  }
  const BufferDecl &buf = (*buffers)[it->second.buffer];
  if (n.kids.size() != buf.shape.size())
    return fail(n.loc,
                "buffer '" + buf.name + "' has rank " + std::to_string(buf.shape.size()) +
                    " but is indexed with " + std::to_string(n.kids.size()) + " index" +
                    (n.kids.size() == 1 ? "" : "es"),
                {n.range()});
  std::vector<ExprPtr> indices;
  for (const NodePtr &k : n.kids) {
    ExprPtr i = elaborate(*k, scope, scoreAllowed);
    if (!i)
      return nullptr;
    if (i->type != ScalarType::I64)
      return fail(k->begin, std::string("buffer indices must be i64, got ") + toString(i->type),
                  {k->range()});
    indices.push_back(i);
  }
  return makeLoad(it->second.buffer, loadType(buf.elem), std::move(indices));
}

ExprPtr Elaborator::unary(const Node &n, const Scope &scope, bool scoreAllowed) {
  ExprPtr a = elaborate(*n.kids[0], scope, scoreAllowed);
  if (!a)
    return nullptr;
  std::string error;
  ExprPtr r = typedUnary(n.op == Tok::Bang ? Op::Not : Op::Neg, a, error);
  return r ? r : fail(n.loc, error, {n.kids[0]->range()});
}

ExprPtr Elaborator::binary(const Node &n, const Scope &scope, bool scoreAllowed) {
  ExprPtr a = elaborate(*n.kids[0], scope, scoreAllowed);
  if (!a)
    return nullptr;
  ExprPtr b = elaborate(*n.kids[1], scope, scoreAllowed);
  if (!b)
    return nullptr;
  Op op = Op::None;
  switch (n.op) {
  case Tok::OrOr: op = Op::Or; break;
  case Tok::AndAnd: op = Op::And; break;
  case Tok::EqEq: op = Op::Eq; break;
  case Tok::Ne: op = Op::Ne; break;
  case Tok::Lt: op = Op::Lt; break;
  case Tok::Le: op = Op::Le; break;
  case Tok::Gt: op = Op::Gt; break;
  case Tok::Ge: op = Op::Ge; break;
  case Tok::Plus: op = Op::Add; break;
  case Tok::Minus: op = Op::Sub; break;
  case Tok::Star: op = Op::Mul; break;
  case Tok::Slash: op = Op::Div; break;
  case Tok::Percent: op = Op::Rem; break;
  default: return fail(n.loc, std::string("unsupported operator ") + describe(n.op));
  }
  std::vector<llvm::SMRange> ranges = {n.kids[0]->range(), n.kids[1]->range()};
  std::string error;
  ExprPtr r = typedBinary(op, a, b, error);
  if (!r)
    return fail(n.loc, error, ranges);
  // A remainder by zero would silently be 0 (as x / 0 is rejected by typedBinary).
  const Expr &rhs = *r->operands[1];
  if (op == Op::Rem && rhs.kind == ExprKind::Const && rhs.intValue == 0)
    return fail(n.loc, "integer remainder by zero", ranges);
  return r;
}

ExprPtr Elaborator::ternary(const Node &n, const Scope &scope, bool scoreAllowed) {
  ExprPtr c = elaborate(*n.kids[0], scope, scoreAllowed);
  if (!c)
    return nullptr;
  if (c->type != ScalarType::Bool)
    return fail(n.kids[0]->begin,
                std::string("the condition of '?:' must be bool, got ") + toString(c->type),
                {n.kids[0]->range()});
  ExprPtr a = elaborate(*n.kids[1], scope, scoreAllowed);
  if (!a)
    return nullptr;
  ExprPtr b = elaborate(*n.kids[2], scope, scoreAllowed);
  if (!b)
    return nullptr;
  std::string error;
  ExprPtr r = typedSelect(c, a, b, error);
  return r ? r : fail(n.loc, "in '?:', " + error, {n.kids[1]->range(), n.kids[2]->range()});
}

//===----------------------------------------------------------------------===//
// Constant folding of param defaults (semantics of Spec.h)
//===----------------------------------------------------------------------===//

struct ConstValue {
  int64_t i = 0; ///< I64 and Bool
  double f = 0;  ///< F32
};


int64_t wrap(uint64_t v) { return static_cast<int64_t>(v); }

/// Folds a tree that reads no index, score or buffer (depth is bounded by
/// kMaxTreeDepth, so recursion is safe).
ConstValue fold(const Expr &e) {
  auto at = [&](size_t i) { return fold(*e.operands[i]); };
  switch (e.kind) {
  case ExprKind::Const:
    return {e.intValue, e.floatValue};
  case ExprKind::Cast: {
    ConstValue a = at(0);
    ScalarType from = e.operands[0]->type;
    if (e.type == ScalarType::F32)
      return {0, from == ScalarType::F32 ? a.f : static_cast<double>(a.i)};
    if (from != ScalarType::F32)
      return {e.type == ScalarType::Bool ? int64_t(a.i != 0) : a.i, 0};
    if (e.type == ScalarType::Bool)
      return {a.f != 0, 0};
    if (std::isnan(a.f))
      return {0, 0};
    if (a.f >= 9.2233720368547758e18)
      return {std::numeric_limits<int64_t>::max(), 0};
    if (a.f <= -9.2233720368547758e18)
      return {std::numeric_limits<int64_t>::min(), 0};
    return {static_cast<int64_t>(a.f), 0};
  }
  case ExprKind::Select:
    return at(0).i ? at(1) : at(2);
  case ExprKind::Unary: {
    ConstValue a = at(0);
    bool isFloat = e.operands[0]->type == ScalarType::F32;
    switch (e.op) {
    case Op::Neg: return isFloat ? ConstValue{0, -a.f} : ConstValue{wrap(-uint64_t(a.i)), 0};
    case Op::Not: return {!a.i, 0};
    case Op::Abs:
      return isFloat ? ConstValue{0, std::fabs(a.f)}
                     : ConstValue{a.i < 0 ? wrap(-uint64_t(a.i)) : a.i, 0};
    case Op::Exp: return {0, std::exp(a.f)};
    case Op::Log: return {0, std::log(a.f)};
    case Op::Tanh: return {0, std::tanh(a.f)};
    case Op::Sqrt: return {0, std::sqrt(a.f)};
    default: return {};
    }
  }
  case ExprKind::Binary: {
    ConstValue a = at(0), c = at(1);
    if (e.op == Op::And)
      return {a.i && c.i, 0};
    if (e.op == Op::Or)
      return {a.i || c.i, 0};
    if (e.operands[0]->type == ScalarType::F32) {
      switch (e.op) {
      case Op::Add: return {0, a.f + c.f};
      case Op::Sub: return {0, a.f - c.f};
      case Op::Mul: return {0, a.f * c.f};
      case Op::Div: return {0, a.f / c.f};
      case Op::Min: return {0, std::fmin(a.f, c.f)};
      case Op::Max: return {0, std::fmax(a.f, c.f)};
      case Op::Eq: return {a.f == c.f, 0};
      case Op::Ne: return {a.f != c.f, 0};
      case Op::Lt: return {a.f < c.f, 0};
      case Op::Le: return {a.f <= c.f, 0};
      case Op::Gt: return {a.f > c.f, 0};
      case Op::Ge: return {a.f >= c.f, 0};
      default: return {};
      }
    }
    switch (e.op) {
    case Op::Add: return {wrap(uint64_t(a.i) + uint64_t(c.i)), 0};
    case Op::Sub: return {wrap(uint64_t(a.i) - uint64_t(c.i)), 0};
    case Op::Mul: return {wrap(uint64_t(a.i) * uint64_t(c.i)), 0};
    case Op::Div: return {floorDiv(a.i, c.i), 0};
    case Op::Rem: return {floorRem(a.i, c.i), 0};
    case Op::Min: return {std::min(a.i, c.i), 0};
    case Op::Max: return {std::max(a.i, c.i), 0};
    case Op::Eq: return {a.i == c.i, 0};
    case Op::Ne: return {a.i != c.i, 0};
    case Op::Lt: return {a.i < c.i, 0};
    case Op::Le: return {a.i <= c.i, 0};
    case Op::Gt: return {a.i > c.i, 0};
    case Op::Ge: return {a.i >= c.i, 0};
    default: return {};
    }
  }
  default:
    return {};
  }
}

//===----------------------------------------------------------------------===//
// Checks of definitions, before any variant is elaborated
//===----------------------------------------------------------------------===//

/// Resolves the names in the body of `d` without elaborating it, so that a
/// typo in a function that no variant calls is still reported. Types are
/// checked where the function is called (a buffer's rank and element type come
/// from the caller).
void resolveBody(const Node &n, const Def &d, const llvm::StringMap<const Def *> &defs,
                 Elaborator &el, std::vector<std::pair<const Def *, const Node *>> &calls) {
  if (el.failure)
    return;
  auto param = [&](llvm::StringRef name) -> const DefParam * {
    for (const DefParam &p : d.params)
      if (p.name == name)
        return &p;
    return nullptr;
  };
  auto names = [&] {
    std::vector<std::string> out;
    for (const DefParam &p : d.params)
      if (p.kind != ParamKind::Buffer)
        out.push_back(p.name);
    for (const char *v : {"q", "kv", "h", "b"})
      out.push_back(v);
    return out;
  };
  switch (n.kind) {
  case Node::Name:
    if (const DefParam *p = param(n.name)) {
      if (p->kind == ParamKind::Buffer)
        el.fail(n.loc, "buffer '" + n.name + "' must be indexed, as in " + n.name + "[...]",
                {n.range()});
    } else if (n.name == "score") {
      el.fail(n.loc, "function '" + d.name + "' cannot read 'score'; pass it as an f32 parameter",
              {n.range()});
    } else if (defs.count(n.name) || isBuiltin(n.name)) {
      el.fail(n.loc, "'" + n.name + "' is a function: call it as " + n.name + "(...)",
              {n.range()});
    } else if (!indexVar(n.name)) {
      el.fail(n.loc, "unknown name '" + n.name + "'" + didYouMean(n.name, names()),
              {n.range()});
    }
    break;
  case Node::Call:
    if (!isBuiltin(n.name)) {
      auto it = defs.find(n.name);
      if (it != defs.end()) {
        calls.emplace_back(it->second, &n);
      } else if (param(n.name) || indexVar(n.name) || n.name == "score") {
        el.fail(n.loc, "'" + n.name + "' is not a function", {n.range()});
      } else {
        std::vector<std::string> fns = builtinNames();
        for (const auto &e : defs)
          fns.push_back(e.getKey().str());
        el.fail(n.loc, "unknown function '" + n.name + "'" + didYouMean(n.name, fns));
      }
    }
    break;
  case Node::Index: {
    const DefParam *p = param(n.name);
    if (!p && !indexVar(n.name) && n.name != "score")
      el.fail(n.loc, "unknown buffer '" + n.name + "'");
    else if (!p || p->kind != ParamKind::Buffer)
      el.fail(n.loc, "'" + n.name + "' is not a buffer and cannot be indexed");
    break;
  }
  default:
    break;
  }
  for (const NodePtr &k : n.kids) {
    // A buffer passed on to a function is fine; the call checks the parameter.
    const DefParam *p = k->kind == Node::Name ? param(k->name) : nullptr;
    if (n.kind == Node::Call && p && p->kind == ParamKind::Buffer)
      continue;
    resolveBody(*k, d, defs, el, calls);
  }
}

/// Checks the definitions of `m` (with `others` visible, e.g. the prelude):
/// names, parameters and their defaults, the names in bodies, recursion.
std::optional<Failure> checkDefs(Module &m, const Module *others) {
  Elaborator el(others ? std::vector<const Module *>{others, &m}
                       : std::vector<const Module *>{&m});
  llvm::StringMap<const Def *> seen;
  for (const auto &d : m.defs) {
    if (isReserved(d->name))
      return Failure{d->loc, "'" + d->name + "' is a reserved word and cannot name a function"};
    if (isBuiltin(d->name))
      return Failure{d->loc, "'" + d->name + "' is a built-in function and cannot be redefined"};
    if (others && std::any_of(others->defs.begin(), others->defs.end(),
                              [&](const auto &p) { return p->name == d->name; }))
      return Failure{d->loc, "'" + d->name + "' is already defined by the library"};
    auto [it, inserted] = seen.try_emplace(d->name, d.get());
    if (!inserted)
      return Failure{d->loc, "function '" + d->name + "' is defined twice", {},
                     {{it->second->loc, "first defined here"}}};
    llvm::StringMap<llvm::SMLoc> params;
    for (DefParam &p : d->params) {
      if (isReserved(p.name))
        return Failure{p.loc, "'" + p.name + "' is a reserved word and cannot name a parameter"};
      auto [pit, fresh] = params.try_emplace(p.name, p.loc);
      if (!fresh)
        return Failure{p.loc, "parameter '" + p.name + "' is declared twice", {},
                       {{pit->second, "first declared here"}}};
      if (!p.defaultValue)
        continue;
      ExprPtr v = el.elaborate(*p.defaultValue, {}, /*scoreAllowed=*/false);
      if (!v)
        return el.failure;
      if (el.info(v).varies)
        return Failure{p.defaultValue->begin,
                       "the default of parameter '" + p.name + "' must be a constant",
                       {p.defaultValue->range()}};
      ScalarType want = scalarOf(p.kind);
      if (want == ScalarType::F32 && v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != want)
        return Failure{p.defaultValue->begin,
                       "the default of parameter '" + p.name + "' must be " + toString(want) +
                           ", got " + toString(v->type),
                       {p.defaultValue->range()}};
      p.defaultExpr = v;
    }
  }

  // Names in bodies, and the call graph for the recursion check.
  llvm::DenseMap<const Def *, std::vector<std::pair<const Def *, const Node *>>> graph;
  for (const auto &d : m.defs) {
    resolveBody(*d->body, *d, el.defs, el, graph[d.get()]);
    if (el.failure)
      return el.failure;
  }
  // Depth-first search for a cycle; 0 unvisited, 1 on the path, 2 done.
  llvm::DenseMap<const Def *, int> state;
  std::vector<const Def *> path;
  std::optional<Failure> cycle;
  std::function<void(const Def *)> visit = [&](const Def *d) {
    state[d] = 1;
    path.push_back(d);
    for (const auto &[callee, node] : graph[d]) {
      if (cycle)
        break;
      if (state[callee] == 1) {
        std::string chain;
        auto from = std::find(path.begin(), path.end(), callee);
        for (auto it = from; it != path.end(); ++it)
          chain += "'" + (*it)->name + "' -> ";
        chain += "'" + callee->name + "'";
        cycle = Failure{node->loc,
                        callee == d ? "'" + d->name + "' calls itself (recursion is not allowed)"
                                    : "recursive calls " + chain + " (recursion is not allowed)",
                        {}};
      } else if (state[callee] == 0) {
        visit(callee);
      }
    }
    path.pop_back();
    state[d] = 2;
  };
  for (const auto &d : m.defs)
    if (!cycle && state[d.get()] == 0)
      visit(d.get());
  return cycle;
}

//===----------------------------------------------------------------------===//
// The prelude (parsed once) and diagnostics
//===----------------------------------------------------------------------===//

const Module &preludeModule() {
  static Module module;
  static std::once_flag once;
  std::call_once(once, [] {
    Parser parser(preludeText());
    std::optional<Failure> f = parser.parseModule(module);
    for (auto &d : module.defs)
      d->fromPrelude = true;
    if (!f)
      f = checkDefs(module, nullptr);
    // The prelude ships with heed: a failure here is a bug in heed, not in
    // the user's input (and ParserTest parses it).
    if (f)
      llvm::report_fatal_error(llvm::Twine("heed prelude is invalid: ") + f->message);
  });
  return module;
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

/// Parses an override's text as a value of `type`; an error message if it is not one.
std::optional<std::string> parseOverride(ScalarType type, llvm::StringRef text, Param &p) {
  switch (type) {
  case ScalarType::I64: {
    int64_t v;
    if (text.getAsInteger(10, v))
      return std::string("expected an integer");
    p.intValue = v;
    return std::nullopt;
  }
  case ScalarType::F32: {
    double v;
    if (text.getAsDouble(v) || !std::isfinite(v))
      return std::string("expected a finite number");
    p.floatValue = v;
    return std::nullopt;
  }
  case ScalarType::Bool:
    if (text != "true" && text != "false")
      return std::string("expected true or false");
    p.intValue = text == "true";
    return std::nullopt;
  }
  return std::nullopt;
}

bool isSymbolDim(llvm::StringRef d) {
  return d == "B" || d == "H" || d == "Hkv" || d == "Sq" || d == "Skv";
}

/// Elaborates one variant; params take overrides where given.
std::optional<Failure> elaborateVariant(Elaborator &el, const VariantDecl &decl,
                                        const ParamOverrides &overrides,
                                        llvm::StringSet<> &usedOverrides, Variant &out) {
  out.name = decl.name;
  Scope scope;
  el.buffers = &out.buffers;
  auto fail = [](llvm::SMLoc loc, std::string msg, std::vector<llvm::SMRange> ranges = {},
                 std::vector<Note> notes = {}) {
    return std::optional<Failure>(Failure{loc, std::move(msg), std::move(ranges),
                                          std::move(notes)});
  };
  // Every name the variant declares, and which are still to come.
  llvm::StringSet<> later;
  for (const Statement &s : decl.statements)
    if (s.kind == Statement::Param || s.kind == Statement::Buffer || s.kind == Statement::Let)
      later.insert(s.name);
  el.declaredLater = &later;

  llvm::StringMap<llvm::SMLoc> declared;
  const Statement *scoreStmt = nullptr, *maskStmt = nullptr, *routeStmt = nullptr,
                  *gateStmt = nullptr;
  out.score = makeScore();
  out.mask = makeBool(true);
  ExprPtr route;
  llvm::SMLoc routeLoc;
  std::vector<RouteCase> cases;
  // A score or mask statement, checked and stored in `slot`.
  auto output = [&](const Statement &s, const Scope &sc,
                    ExprPtr &slot) -> std::optional<Failure> {
    bool isScore = s.kind == Statement::Score;
    ExprPtr v = el.elaborate(*s.value, sc, isScore);
    if (!v)
      return el.failure;
    if (isScore) {
      if (v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != ScalarType::F32)
        return fail(s.value->begin,
                    std::string("the score must be a number, got ") + toString(v->type),
                    {s.value->range()});
    } else {
      if (v->type != ScalarType::Bool)
        return fail(s.value->begin,
                    std::string("the mask must be bool, got ") + toString(v->type),
                    {s.value->range()});
      // Names are checked as they are read; this catches any other path.
      if (el.info(v).readsScore)
        return fail(s.value->begin, "'score' is only available in the score modifier",
                    {s.value->range()});
    }
    slot = v;
    return std::nullopt;
  };
  for (const Statement &s : decl.statements) {
    if (s.kind == Statement::Param || s.kind == Statement::Buffer || s.kind == Statement::Let) {
      if (isReserved(s.name))
        return fail(s.nameLoc, "'" + s.name + "' is a reserved word and cannot be declared");
      auto [it, fresh] = declared.try_emplace(s.name, s.nameLoc);
      if (!fresh)
        return fail(s.nameLoc, "'" + s.name + "' is declared twice in variant '" + decl.name + "'",
                    {}, {{it->second, "first declared here"}});
      later.erase(s.name);
    }
    switch (s.kind) {
    case Statement::Param: {
      ExprPtr v = el.elaborate(*s.value, scope, /*scoreAllowed=*/false);
      if (!v)
        return el.failure;
      if (el.info(v).varies)
        return fail(s.value->begin, "the default of param '" + s.name + "' must be a constant",
                    {s.value->range()});
      ScalarType want = scalarOf(s.type);
      if (want == ScalarType::F32 && v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != want)
        return fail(s.value->begin,
                    "param '" + s.name + "' is " + toString(want) + " but its default is " +
                        toString(v->type),
                    {s.value->range()});
      Param p;
      p.name = s.name;
      p.type = want;
      ConstValue c = fold(*v);
      p.intValue = c.i;
      p.floatValue = c.f;
      if (want == ScalarType::F32 && !std::isfinite(p.floatValue))
        return fail(s.value->begin, "the default of param '" + s.name + "' is not finite",
                    {s.value->range()});
      for (const auto &[name, text] : overrides) {
        if (name != s.name)
          continue;
        usedOverrides.insert(name);
        if (std::optional<std::string> err = parseOverride(want, text, p))
          return fail(s.nameLoc, "--param " + name + "=" + text + ": '" + name + "' is " +
                                     toString(want) + ", " + *err);
      }
      ExprPtr value = want == ScalarType::F32    ? makeFloat(p.floatValue)
                      : want == ScalarType::Bool ? makeBool(p.intValue != 0)
                                                 : makeInt(p.intValue);
      scope[s.name] = Binding{value, -1, false};
      out.params.push_back(p);
      break;
    }
    case Statement::Buffer: {
      BufferDecl buf;
      buf.name = s.name;
      buf.elem = s.elem;
      for (const auto &[dim, loc] : s.dims) {
        if (isSymbolDim(dim) || std::isdigit(static_cast<unsigned char>(dim[0]))) {
          buf.shape.push_back(dim);
          continue;
        }
        llvm::SMRange range(loc, llvm::SMLoc::getFromPointer(loc.getPointer() + dim.size()));
        auto param = std::find_if(out.params.begin(), out.params.end(),
                                  [&](const Param &p) { return p.name == dim; });
        if (param == out.params.end())
          return fail(loc,
                      "unknown dimension '" + dim +
                          "': expected B, H, Hkv, Sq, Skv, a positive integer or an i64 param" +
                          didYouMean(dim, {"B", "H", "Hkv", "Skv", "Sq"}),
                      {range});
        if (param->type != ScalarType::I64)
          return fail(loc,
                      "dimension '" + dim + "' is a param of type " + toString(param->type) +
                          ", but a dimension must be an i64 param",
                      {range});
        if (param->intValue <= 0)
          return fail(loc,
                      "dimension '" + dim + "' is " + std::to_string(param->intValue) +
                          ", but buffer dimensions must be positive",
                      {range});
        buf.shape.push_back(std::to_string(param->intValue));
      }
      scope[s.name] = Binding{nullptr, static_cast<int>(out.buffers.size()), false};
      out.buffers.push_back(std::move(buf));
      break;
    }
    case Statement::Let: {
      // A let may read score; whether that is allowed is checked where it is used.
      ExprPtr v = el.elaborate(*s.value, scope, /*scoreAllowed=*/true);
      if (!v)
        return el.failure;
      scope[s.name] = Binding{v, -1, true};
      break;
    }
    case Statement::Score:
    case Statement::Mask: {
      bool isScore = s.kind == Statement::Score;
      const Statement *&first = isScore ? scoreStmt : maskStmt;
      if (first)
        return fail(s.loc,
                    std::string("'") + (isScore ? "score" : "mask") +
                        "' is set twice in variant '" + decl.name + "'",
                    {}, {{first->loc, "first set here"}});
      first = &s;
      if (auto f = output(s, scope, isScore ? out.score : out.mask))
        return f;
      break;
    }
    case Statement::Gate: {
      if (gateStmt)
        return fail(s.loc, "'gate' is set twice in variant '" + decl.name + "'", {},
                    {{gateStmt->loc, "first set here"}});
      gateStmt = &s;
      ExprPtr g = el.elaborate(*s.value, scope, /*scoreAllowed=*/false);
      if (!g)
        return el.failure;
      if (std::string err = applyGate(out, g); !err.empty())
        return fail(s.value->begin, err, {s.value->range()});
      break;
    }
    case Statement::Route: {
      if (routeStmt)
        return fail(s.loc, "variant '" + decl.name + "' has two routes",
                    {}, {{routeStmt->loc, "first route here"}});
      routeStmt = &s;
      ExprPtr r = el.elaborate(*s.value, scope, /*scoreAllowed=*/false);
      if (!r)
        return el.failure;
      if (el.info(r).readsToken)
        return fail(s.value->begin,
                    "a route may depend on the batch and head only (b, h, buffers read at "
                    "them), not on q or kv: it picks one variant per head",
                    {s.value->range()});
      if (r->type != ScalarType::I64 && r->type != ScalarType::Bool)
        return fail(s.value->begin,
                    std::string("a route selects by an integer (or bool), got ") +
                        toString(r->type),
                    {s.value->range()});
      routeLoc = s.value->begin;
      route = r;
      llvm::DenseMap<int64_t, llvm::SMLoc> seen;
      for (const RouteCaseDecl &c : s.cases) {
        auto [it, fresh] = seen.try_emplace(c.value, c.loc);
        if (!fresh)
          return fail(c.loc, "route case " + std::to_string(c.value) + " appears twice", {},
                      {{it->second, "first here"}});
        RouteCase co{c.value, nullptr, nullptr};
        Scope caseScope = scope;
        const Statement *caseScore = nullptr, *caseMask = nullptr;
        for (const Statement &cs : c.body) {
          if (cs.kind == Statement::Let) {
            if (isReserved(cs.name))
              return fail(cs.nameLoc,
                          "'" + cs.name + "' is a reserved word and cannot be declared");
            if (declared.count(cs.name) || caseScope.count(cs.name))
              return fail(cs.nameLoc, "'" + cs.name + "' is already declared");
            ExprPtr v = el.elaborate(*cs.value, caseScope, /*scoreAllowed=*/true);
            if (!v)
              return el.failure;
            caseScope[cs.name] = Binding{v, -1, true};
            continue;
          }
          bool isScore = cs.kind == Statement::Score;
          const Statement *&first = isScore ? caseScore : caseMask;
          if (first)
            return fail(cs.loc,
                        std::string("'") + (isScore ? "score" : "mask") +
                            "' is set twice in route case " + std::to_string(c.value),
                        {}, {{first->loc, "first set here"}});
          first = &cs;
          if (auto f = output(cs, caseScope, isScore ? co.score : co.mask))
            return f;
        }
        cases.push_back(co);
      }
      if (cases.empty())
        return fail(s.loc, "a route needs at least one case");
      break;
    }
    }
  }
  if (route)
    if (std::string err = applyRoute(out, route, cases); !err.empty())
      return fail(routeLoc, err);
  el.declaredLater = nullptr;
  return std::nullopt;
}

llvm::Expected<std::vector<Variant>> parseAndElaborate(llvm::StringRef text,
                                                       llvm::StringRef filename,
                                                       const ParamOverrides &overrides) {
  llvm::SourceMgr sm;
  unsigned id =
      sm.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(text, filename), llvm::SMLoc());
  llvm::StringRef buffer = sm.getMemoryBuffer(id)->getBuffer();
  auto error = [&](const Failure &f) {
    return plainError(render(sm, filename, f));
  };

  Module module;
  Parser parser(buffer);
  if (std::optional<Failure> f = parser.parseModule(module))
    return error(*f);
  const Module &prelude = preludeModule();
  if (std::optional<Failure> f = checkDefs(module, &prelude))
    return error(*f);
  if (module.variants.empty())
    return error({module.endLoc, "no variant in the file (expected 'variant NAME { ... }')"});

  Elaborator el({&prelude, &module});
  llvm::StringMap<llvm::SMLoc> variantNames;
  llvm::StringSet<> usedOverrides;
  std::vector<Variant> variants;
  for (const VariantDecl &decl : module.variants) {
    auto [it, fresh] = variantNames.try_emplace(decl.name, decl.loc);
    if (!fresh)
      return error({decl.loc, "variant '" + decl.name + "' is defined twice", {},
                    {{it->second, "first defined here"}}});
    Variant v;
    if (std::optional<Failure> f = elaborateVariant(el, decl, overrides, usedOverrides, v))
      return error(*f);
    variants.push_back(std::move(v));
  }
  for (const auto &[name, value] : overrides) {
    if (usedOverrides.contains(name))
      continue;
    std::vector<std::string> declared;
    for (const Variant &v : variants)
      for (const Param &p : v.params)
        declared.push_back(p.name);
    return error({llvm::SMLoc(),
                  "--param " + name + "=" + value + ": no variant in " + filename.str() +
                      " declares a param '" + name + "'" + didYouMean(name, declared)});
  }
  return variants;
}

} // namespace

llvm::Expected<std::vector<Variant>> parseSpec(llvm::StringRef text, llvm::StringRef filename,
                                               const ParamOverrides &overrides) {
  return parseAndElaborate(text, filename, overrides);
}

llvm::Expected<ParamOverrides> parseParamAssignments(llvm::ArrayRef<std::string> settings) {
  ParamOverrides overrides;
  for (const std::string &p : settings) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                     "--param expects name=value, got '" + p + "'");
    overrides.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  return overrides;
}

llvm::Expected<std::vector<Variant>> parseSpecFile(llvm::StringRef path,
                                                   const ParamOverrides &overrides) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return plainError("error: cannot read '" + path + "': " + buffer.getError().message() +
                      "\n");
  return parseSpec((*buffer)->getBuffer(), path, overrides);
}

llvm::Expected<Variant> selectVariant(std::vector<Variant> variants, llvm::StringRef name) {
  if (variants.empty())
    return plainError("no variant to choose from");
  std::string names;
  std::vector<std::string> candidates;
  for (const Variant &v : variants) {
    names += (names.empty() ? "" : ", ") + v.name;
    candidates.push_back(v.name);
  }
  if (name.empty()) {
    if (variants.size() == 1)
      return std::move(variants.front());
    return plainError("the file defines " + std::to_string(variants.size()) + " variants (" +
                      names + "): choose one with --variant");
  }
  for (Variant &v : variants)
    if (v.name == name)
      return std::move(v);
  return plainError("no variant '" + name + "'" + didYouMean(name, candidates) +
                    " (the file defines: " + names + ")");
}

llvm::Expected<ExprPtr> callLibrary(llvm::StringRef name, llvm::ArrayRef<CallArg> args,
                                    llvm::ArrayRef<BufferDecl> buffers) {
  const Module &prelude = preludeModule();
  const Def *def = nullptr;
  std::vector<std::string> names;
  for (const auto &d : prelude.defs) {
    names.push_back(d->name);
    if (d->name == name)
      def = d.get();
  }
  if (!def)
    return plainError("unknown library function '" + name + "'" + didYouMean(name, names));
  std::vector<BufferDecl> bufferList(buffers.begin(), buffers.end());
  const Module *modules[] = {&prelude};
  Elaborator el(modules);
  el.buffers = &bufferList;
  el.libraryMode = true;
  std::vector<Actual> actuals;
  for (const CallArg &a : args) {
    Actual act;
    act.expr = a.expr;
    act.buffer = a.buffer;
    actuals.push_back(std::move(act));
  }
  ExprPtr r = el.callDef(*def, actuals, llvm::SMLoc(), {}, /*scoreAllowed=*/true);
  if (!r)
    return plainError(el.failure ? el.failure->message : name.str() + ": elaboration failed");
  return r;
}

} // namespace heed::spec
