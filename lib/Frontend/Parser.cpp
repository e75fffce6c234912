// The .attn spec language: parser to a small AST, and elaboration of the AST
// (type checking, inlining of functions, substitution of params) into
// spec::Variant. The prelude's library functions go through the same code.
#include "heed/Frontend/Parser.h"

#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Library.h"
#include "Lexer.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

namespace heed::spec {
namespace {

//===----------------------------------------------------------------------===//
// AST
//===----------------------------------------------------------------------===//

struct Node {
  enum Kind { Int, Float, Bool, Name, Call, Index, Unary, Binary, Ternary } kind;
  llvm::SMLoc loc;   ///< where errors about this node point (an operator's position)
  llvm::SMLoc begin; ///< where the whole expression starts
  int64_t intValue = 0;
  double floatValue = 0;
  std::string name; ///< Name / Call callee / Index buffer
  Tok op = Tok::End;
  std::vector<std::unique_ptr<Node>> kids;
  std::vector<std::string> argNames; ///< Call: keyword per argument, "" if positional
  std::vector<llvm::SMLoc> argLocs;
};
using NodePtr = std::unique_ptr<Node>;

enum class ParamKind { I64, F32, Bool, Buffer };

struct DefParam {
  std::string name;
  ParamKind kind = ParamKind::I64;
  NodePtr defaultValue;
  llvm::SMLoc loc;
};

struct Def {
  std::string name;
  llvm::SMLoc loc;
  std::vector<DefParam> params;
  NodePtr body;
  bool fromPrelude = false;
};

struct Statement {
  enum Kind { Param, Buffer, Let, Score, Mask } kind;
  llvm::SMLoc loc;
  std::string name;
  ParamKind type = ParamKind::I64; ///< Param
  ElemType elem = ElemType::F32;   ///< Buffer
  std::vector<std::pair<std::string, llvm::SMLoc>> dims; ///< Buffer
  NodePtr value;
};

struct VariantDecl {
  std::string name;
  llvm::SMLoc loc;
  std::vector<Statement> statements;
};

struct Module {
  std::vector<std::unique_ptr<Def>> defs;
  std::vector<VariantDecl> variants;
};

/// The first error of a parse or elaboration: a location and a message.
struct Failure {
  llvm::SMLoc loc;
  std::string message;
};

bool isBuiltin(llvm::StringRef n) { return isBuiltinName(n.str()); }

bool isKeyword(llvm::StringRef n) {
  return n == "def" || n == "variant" || n == "param" || n == "buffer" || n == "let" ||
         n == "true" || n == "false";
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

//===----------------------------------------------------------------------===//
// Parser
//===----------------------------------------------------------------------===//

class Parser {
public:
  explicit Parser(llvm::StringRef text) : lexer(text) { tok = lexer.next(); }

  std::optional<Failure> parseModule(Module &m);

private:
  static constexpr int kMaxDepth = 256;

  void advance() { tok = lexer.next(); }
  bool isIdent(llvm::StringRef s) const { return tok.kind == Tok::Ident && tok.text == s; }
  bool fail(llvm::SMLoc loc, std::string msg) {
    if (!failure)
      failure = Failure{loc, std::move(msg)};
    return false;
  }
  bool failHere(std::string expected) {
    if (tok.kind == Tok::Error)
      return fail(tok.loc(), tok.error);
    std::string got = tok.kind == Tok::End ? "end of file" : "'" + tok.text.str() + "'";
    return fail(tok.loc(), "expected " + expected + ", got " + got);
  }
  bool expect(Tok kind, const char *what = nullptr) {
    if (tok.kind != kind)
      return failHere(what ? what : describe(kind));
    advance();
    return true;
  }
  bool name(std::string &out, const char *what) {
    if (tok.kind != Tok::Ident)
      return failHere(what);
    out = tok.text.str();
    advance();
    return true;
  }
  bool paramKind(ParamKind &out, bool allowBuffer);
  bool parseDef(Module &m);
  bool parseVariant(Module &m);
  bool parseStatement(VariantDecl &v);
  NodePtr expr(int depth = 0);
  NodePtr binary(int level, int depth);
  NodePtr unary(int depth);
  NodePtr postfix(int depth);
  NodePtr primary(int depth);

  Lexer lexer;
  Token tok;
  std::optional<Failure> failure;
};

bool Parser::paramKind(ParamKind &out, bool allowBuffer) {
  if (isIdent("i64")) out = ParamKind::I64;
  else if (isIdent("f32")) out = ParamKind::F32;
  else if (isIdent("bool")) out = ParamKind::Bool;
  else if (allowBuffer && isIdent("buffer")) out = ParamKind::Buffer;
  else
    return failHere(allowBuffer ? "a type (i64, f32, bool or buffer)" : "a type (i64, f32 or bool)");
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
  return failure;
}

bool Parser::parseDef(Module &m) {
  advance(); // def
  auto def = std::make_unique<Def>();
  def->loc = tok.loc();
  if (!name(def->name, "a function name") || !expect(Tok::LParen))
    return false;
  while (tok.kind != Tok::RParen) {
    DefParam p;
    p.loc = tok.loc();
    if (!name(p.name, "a parameter name") || !expect(Tok::Colon) || !paramKind(p.kind, true))
      return false;
    if (tok.kind == Tok::Assign) {
      advance();
      if (p.kind == ParamKind::Buffer)
        return fail(p.loc, "a buffer parameter cannot have a default");
      if (!(p.defaultValue = expr()))
        return false;
    }
    def->params.push_back(std::move(p));
    if (tok.kind != Tok::Comma)
      break;
    advance();
  }
  if (!expect(Tok::RParen) || !expect(Tok::Assign))
    return false;
  if (!(def->body = expr()))
    return false;
  m.defs.push_back(std::move(def));
  return true;
}

bool Parser::parseVariant(Module &m) {
  advance(); // variant
  VariantDecl v;
  v.loc = tok.loc();
  if (!name(v.name, "a variant name") || !expect(Tok::LBrace))
    return false;
  while (tok.kind != Tok::RBrace) {
    if (tok.kind == Tok::End)
      return fail(v.loc, "variant '" + v.name + "' is not closed: expected '}'");
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

bool Parser::parseStatement(VariantDecl &v) {
  Statement s;
  s.loc = tok.loc();
  if (isIdent("param")) {
    advance();
    s.kind = Statement::Param;
    if (!name(s.name, "a parameter name") || !expect(Tok::Colon) || !paramKind(s.type, false) ||
        !expect(Tok::Assign, "'=' and a default value"))
      return false;
    if (!(s.value = expr()))
      return false;
  } else if (isIdent("buffer")) {
    advance();
    s.kind = Statement::Buffer;
    if (!name(s.name, "a buffer name") || !expect(Tok::Colon))
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
    if (!expect(Tok::LBracket))
      return false;
    while (true) {
      if (tok.kind != Tok::Ident && tok.kind != Tok::Int)
        return failHere("a dimension (B, H, Hkv, Sq, Skv, an integer or an i64 param)");
      s.dims.emplace_back(tok.text.str(), tok.loc());
      advance();
      if (tok.kind != Tok::Comma)
        break;
      advance();
    }
    if (!expect(Tok::RBracket))
      return false;
  } else if (isIdent("let")) {
    advance();
    s.kind = Statement::Let;
    if (!name(s.name, "a name") || !expect(Tok::Assign))
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
    return failHere("'param', 'buffer', 'let', 'score', 'mask' or '}'");
  }
  v.statements.push_back(std::move(s));
  return true;
}

NodePtr Parser::expr(int depth) {
  if (depth > kMaxDepth) {
    fail(tok.loc(), "expression nested too deeply (more than 256 levels)");
    return nullptr;
  }
  NodePtr cond = binary(0, depth + 1);
  if (!cond || tok.kind != Tok::Question)
    return cond;
  auto n = std::make_unique<Node>();
  n->kind = Node::Ternary;
  n->loc = tok.loc();
  n->begin = cond->begin;
  advance();
  NodePtr a = expr(depth + 1);
  if (!a || !expect(Tok::Colon, "':' of the conditional expression"))
    return nullptr;
  NodePtr b = expr(depth + 1);
  if (!b)
    return nullptr;
  n->kids.push_back(std::move(cond));
  n->kids.push_back(std::move(a));
  n->kids.push_back(std::move(b));
  return n;
}

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

NodePtr Parser::binary(int level, int depth) {
  if (level > 5)
    return unary(depth);
  NodePtr lhs = binary(level + 1, depth);
  while (lhs && levelOf(tok.kind) == level) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Binary;
    n->op = tok.kind;
    n->loc = tok.loc();
    n->begin = lhs->begin;
    advance();
    NodePtr rhs = binary(level + 1, depth);
    if (!rhs)
      return nullptr;
    n->kids.push_back(std::move(lhs));
    n->kids.push_back(std::move(rhs));
    lhs = std::move(n);
  }
  return lhs;
}

NodePtr Parser::unary(int depth) {
  if (depth > kMaxDepth) {
    fail(tok.loc(), "expression nested too deeply (more than 256 levels)");
    return nullptr;
  }
  if (tok.kind == Tok::Minus || tok.kind == Tok::Bang) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Unary;
    n->op = tok.kind;
    n->loc = n->begin = tok.loc();
    advance();
    NodePtr operand = unary(depth + 1);
    if (!operand)
      return nullptr;
    n->kids.push_back(std::move(operand));
    return n;
  }
  return postfix(depth);
}

NodePtr Parser::postfix(int depth) {
  NodePtr n = primary(depth);
  if (!n || n->kind != Node::Name)
    return n;
  if (tok.kind == Tok::LParen) {
    n->kind = Node::Call;
    advance();
    while (tok.kind != Tok::RParen) {
      std::string keyword;
      llvm::SMLoc argLoc = tok.loc();
      if (tok.kind == Tok::Ident) {
        // `name = value` is a keyword argument; look one token ahead.
        Lexer save = lexer;
        Token saveTok = tok;
        advance();
        if (tok.kind == Tok::Assign) {
          keyword = saveTok.text.str();
          advance();
        } else {
          lexer = save;
          tok = saveTok;
        }
      }
      NodePtr arg = expr(depth + 1);
      if (!arg)
        return nullptr;
      n->kids.push_back(std::move(arg));
      n->argNames.push_back(keyword);
      n->argLocs.push_back(argLoc);
      if (tok.kind != Tok::Comma)
        break;
      advance();
    }
    if (!expect(Tok::RParen, "',' or ')'"))
      return nullptr;
  } else if (tok.kind == Tok::LBracket) {
    n->kind = Node::Index;
    advance();
    while (true) {
      NodePtr i = expr(depth + 1);
      if (!i)
        return nullptr;
      n->kids.push_back(std::move(i));
      if (tok.kind != Tok::Comma)
        break;
      advance();
    }
    if (!expect(Tok::RBracket, "',' or ']'"))
      return nullptr;
  }
  return n;
}

NodePtr Parser::primary(int depth) {
  auto n = std::make_unique<Node>();
  n->loc = n->begin = tok.loc();
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
    advance();
    NodePtr inner = expr(depth + 1);
    if (!inner || !expect(Tok::RParen))
      return nullptr;
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
  ExprPtr expr;   ///< a value
  int buffer = -1; ///< or a buffer (position in the variant)
};

class Elaborator {
public:
  Elaborator(const std::vector<const Module *> &modules) {
    for (const Module *m : modules)
      for (const auto &d : m->defs)
        defs[d->name] = d.get();
  }

  std::optional<Failure> failure;
  const std::vector<BufferDecl> *buffers = nullptr;

  /// Elaborates `n` with the names in `scope`; `scoreAllowed` says whether
  /// `score` may be read.
  ExprPtr elaborate(const Node &n, const llvm::StringMap<Binding> &scope, bool scoreAllowed);

  /// Inlines def `d` with bound arguments; `site` is where errors are reported
  /// for library functions.
  ExprPtr inlineDef(const Def &d, std::vector<Binding> args, llvm::SMLoc site);

  /// Checks and binds call arguments of `d` (positional then keywords).
  bool bindArgs(const Def &d, const Node *call, std::vector<Binding> &bound,
                const llvm::StringMap<Binding> &scope, bool scoreAllowed);

  llvm::StringMap<const Def *> defs;

private:
  ExprPtr fail(llvm::SMLoc loc, std::string msg) {
    if (!failure) {
      // Errors inside library bodies are reported at the user's call.
      if (!librarySites.empty())
        failure = Failure{librarySites.front(), "in call to '" + libraryNames.front() + "': " + msg};
      else
        failure = Failure{loc, std::move(msg)};
    }
    return nullptr;
  }
  ExprPtr promoteTo(ExprPtr e, ScalarType t) {
    if (e->type == t)
      return e;
    return makeCast(t, std::move(e));
  }
  ExprPtr call(const Node &n, const llvm::StringMap<Binding> &scope, bool scoreAllowed);
  ExprPtr builtin(const Node &n, std::vector<ExprPtr> args);

  std::vector<std::string> callStack;
  std::vector<llvm::SMLoc> librarySites;
  std::vector<std::string> libraryNames;
};

std::string suggestion(llvm::StringRef name, const std::vector<std::string> &candidates) {
  std::string best;
  unsigned bestDist = 3;
  for (const std::string &c : candidates) {
    unsigned d = name.edit_distance(c, true, bestDist);
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best.empty() ? "" : "; did you mean '" + best + "'?";
}

ExprPtr Elaborator::builtin(const Node &n, std::vector<ExprPtr> a) {
  std::string error;
  bool known = false;
  ExprPtr r = typedBuiltin(n.name, std::move(a), error, known);
  if (!known)
    return fail(n.loc, "unknown function '" + n.name + "'");
  return r ? r : fail(n.loc, error);
}

bool Elaborator::bindArgs(const Def &d, const Node *call, std::vector<Binding> &bound,
                          const llvm::StringMap<Binding> &scope, bool scoreAllowed) {
  bound.assign(d.params.size(), Binding{});
  std::vector<bool> given(d.params.size(), false);
  size_t positional = 0;
  for (size_t i = 0; i < call->kids.size(); ++i) {
    size_t slot;
    llvm::SMLoc at = call->argLocs[i];
    if (call->argNames[i].empty()) {
      if (positional >= d.params.size()) {
        fail(at, "'" + d.name + "' takes at most " + std::to_string(d.params.size()) +
                     " argument(s), got " + std::to_string(call->kids.size()));
        return false;
      }
      slot = positional++;
    } else {
      auto it = std::find_if(d.params.begin(), d.params.end(),
                             [&](const DefParam &p) { return p.name == call->argNames[i]; });
      if (it == d.params.end()) {
        std::vector<std::string> names;
        for (const DefParam &p : d.params)
          names.push_back(p.name);
        fail(at, "'" + d.name + "' has no parameter '" + call->argNames[i] + "'" +
                     suggestion(call->argNames[i], names));
        return false;
      }
      slot = it - d.params.begin();
    }
    if (given[slot]) {
      fail(at, "parameter '" + d.params[slot].name + "' of '" + d.name + "' is given twice");
      return false;
    }
    given[slot] = true;
    const DefParam &p = d.params[slot];
    const Node &argNode = *call->kids[i];
    if (p.kind == ParamKind::Buffer) {
      auto it = argNode.kind == Node::Name ? scope.find(argNode.name) : scope.end();
      if (it == scope.end() || it->second.buffer < 0) {
        fail(at, "argument '" + p.name + "' of '" + d.name + "' must be a buffer");
        return false;
      }
      bound[slot] = it->second;
      continue;
    }
    ExprPtr v = elaborate(argNode, scope, scoreAllowed);
    if (!v)
      return false;
    ScalarType want = p.kind == ParamKind::F32 ? ScalarType::F32
                      : p.kind == ParamKind::Bool ? ScalarType::Bool
                                                  : ScalarType::I64;
    if (want == ScalarType::F32 && v->type == ScalarType::I64)
      v = makeCast(ScalarType::F32, v);
    if (v->type != want) {
      fail(at, "argument '" + p.name + "' of '" + d.name + "' must be " + toString(want) +
                   ", got " + toString(v->type));
      return false;
    }
    bound[slot].expr = v;
  }
  for (size_t i = 0; i < d.params.size(); ++i) {
    if (given[i])
      continue;
    if (!d.params[i].defaultValue) {
      fail(call->loc, "'" + d.name + "' needs argument '" + d.params[i].name + "'");
      return false;
    }
    ExprPtr v = elaborate(*d.params[i].defaultValue, {}, false);
    if (!v)
      return false;
    if (d.params[i].kind == ParamKind::F32)
      v = promoteTo(v, ScalarType::F32);
    bound[i].expr = v;
  }
  return true;
}

ExprPtr Elaborator::inlineDef(const Def &d, std::vector<Binding> args, llvm::SMLoc site) {
  if (std::find(callStack.begin(), callStack.end(), d.name) != callStack.end())
    return fail(site, "'" + d.name + "' calls itself (recursion is not allowed)");
  llvm::StringMap<Binding> scope;
  for (size_t i = 0; i < d.params.size(); ++i)
    scope[d.params[i].name] = args[i];
  callStack.push_back(d.name);
  if (d.fromPrelude) {
    librarySites.push_back(site);
    libraryNames.push_back(d.name);
  }
  ExprPtr r = elaborate(*d.body, scope, /*scoreAllowed=*/false);
  if (d.fromPrelude) {
    librarySites.pop_back();
    libraryNames.pop_back();
  }
  callStack.pop_back();
  return r;
}

ExprPtr Elaborator::call(const Node &n, const llvm::StringMap<Binding> &scope, bool scoreAllowed) {
  if (isBuiltin(n.name)) {
    for (const std::string &k : n.argNames)
      if (!k.empty())
        return fail(n.loc, "'" + n.name + "' takes no keyword arguments");
    std::vector<ExprPtr> args;
    for (const NodePtr &k : n.kids) {
      ExprPtr e = elaborate(*k, scope, scoreAllowed);
      if (!e)
        return nullptr;
      args.push_back(e);
    }
    return builtin(n, std::move(args));
  }
  auto it = defs.find(n.name);
  if (it == defs.end()) {
    std::vector<std::string> names = {"min", "max", "abs", "exp", "log", "tanh",
                                      "sqrt", "select", "clamp", "f32", "i64"};
    for (const auto &d : defs)
      names.push_back(d.getKey().str());
    return fail(n.loc, "unknown function '" + n.name + "'" + suggestion(n.name, names));
  }
  std::vector<Binding> bound;
  if (!bindArgs(*it->second, &n, bound, scope, scoreAllowed))
    return nullptr;
  return inlineDef(*it->second, std::move(bound), n.loc);
}

ExprPtr Elaborator::elaborate(const Node &n, const llvm::StringMap<Binding> &scope,
                              bool scoreAllowed) {
  if (failure)
    return nullptr;
  switch (n.kind) {
  case Node::Int:
    return makeInt(n.intValue);
  case Node::Float:
    return makeFloat(n.floatValue);
  case Node::Bool:
    return makeBool(n.intValue != 0);
  case Node::Name: {
    auto it = scope.find(n.name);
    if (it != scope.end()) {
      if (it->second.buffer >= 0)
        return fail(n.loc, "buffer '" + n.name + "' must be indexed, as in " + n.name + "[...]");
      return it->second.expr;
    }
    if (n.name == "b") return makeIndex(IndexVar::B);
    if (n.name == "h") return makeIndex(IndexVar::H);
    if (n.name == "q") return makeIndex(IndexVar::Q);
    if (n.name == "kv") return makeIndex(IndexVar::KV);
    if (n.name == "score") {
      if (!scoreAllowed)
        return fail(n.loc, "'score' is only available in the score modifier");
      return makeScore();
    }
    std::vector<std::string> names = {"b", "h", "q", "kv"};
    if (scoreAllowed)
      names.push_back("score");
    for (const auto &e : scope)
      names.push_back(e.getKey().str());
    if (defs.count(n.name) || isBuiltin(n.name))
      return fail(n.loc, "'" + n.name + "' is a function: call it as " + n.name + "(...)");
    return fail(n.loc, "unknown name '" + n.name + "'" + suggestion(n.name, names));
  }
  case Node::Call:
    return call(n, scope, scoreAllowed);
  case Node::Index: {
    auto it = scope.find(n.name);
    if (it == scope.end() || it->second.buffer < 0) {
      if (it == scope.end() && n.name != "b" && n.name != "h" && n.name != "q" && n.name != "kv")
        return fail(n.loc, "unknown buffer '" + n.name + "'");
      return fail(n.loc, "'" + n.name + "' is not a buffer and cannot be indexed");
    }
    const BufferDecl &buf = (*buffers)[it->second.buffer];
    if (n.kids.size() != buf.shape.size())
      return fail(n.loc, "buffer '" + buf.name + "' has rank " + std::to_string(buf.shape.size()) +
                             " but is indexed with " + std::to_string(n.kids.size()) +
                             " index" + (n.kids.size() == 1 ? "" : "es"));
    std::vector<ExprPtr> indices;
    for (const NodePtr &k : n.kids) {
      ExprPtr i = elaborate(*k, scope, scoreAllowed);
      if (!i)
        return nullptr;
      if (i->type != ScalarType::I64)
        return fail(k->loc, std::string("buffer indices must be i64, got ") + toString(i->type));
      indices.push_back(i);
    }
    return makeLoad(it->second.buffer, loadType(buf.elem), std::move(indices));
  }
  case Node::Unary: {
    ExprPtr a = elaborate(*n.kids[0], scope, scoreAllowed);
    if (!a)
      return nullptr;
    std::string error;
    ExprPtr r = typedUnary(n.op == Tok::Bang ? Op::Not : Op::Neg, a, error);
    return r ? r : fail(n.loc, error);
  }
  case Node::Binary: {
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
    std::string error;
    ExprPtr r = typedBinary(op, a, b, error);
    return r ? r : fail(n.loc, error);
  }
  case Node::Ternary: {
    ExprPtr c = elaborate(*n.kids[0], scope, scoreAllowed);
    if (!c)
      return nullptr;
    if (c->type != ScalarType::Bool)
      return fail(n.kids[0]->loc, std::string("the condition of '?:' must be bool, got ") +
                                      toString(c->type));
    ExprPtr a = elaborate(*n.kids[1], scope, scoreAllowed);
    if (!a)
      return nullptr;
    ExprPtr b = elaborate(*n.kids[2], scope, scoreAllowed);
    if (!b)
      return nullptr;
    std::string error;
    ExprPtr r = typedSelect(c, a, b, error);
    return r ? r : fail(n.loc, "in '?:', " + error);
  }
  }
  return nullptr;
}

/// True if `e` reads nothing that varies (no index, score or buffer).
bool isConstantExpr(const Expr &e) {
  if (e.kind == ExprKind::Index || e.kind == ExprKind::Score || e.kind == ExprKind::Load)
    return false;
  for (const ExprPtr &o : e.operands)
    if (!isConstantExpr(*o))
      return false;
  return true;
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
    if (f) {
      // The prelude ships with heed: a failure here is a bug in heed itself.
      llvm::report_fatal_error(llvm::Twine("heed prelude does not parse: ") + f->message);
    }
    for (auto &d : module.defs)
      d->fromPrelude = true;
  });
  return module;
}

llvm::Error diagnose(llvm::SourceMgr &sm, const Failure &f) {
  std::string text;
  llvm::raw_string_ostream os(text);
  sm.PrintMessage(os, f.loc, llvm::SourceMgr::DK_Error, f.message);
  return llvm::createStringError(llvm::inconvertibleErrorCode(), text);
}

llvm::Error plainError(const llvm::Twine &msg) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), msg.str());
}

/// Elaborates one variant; params take overrides where given.
std::optional<Failure> elaborateVariant(Elaborator &el, const VariantDecl &decl,
                                        const ParamOverrides &overrides,
                                        llvm::StringSet<> &usedOverrides, Variant &out,
                                        std::string &overrideError) {
  out.name = decl.name;
  llvm::StringMap<Binding> scope;
  el.buffers = &out.buffers;
  llvm::StringSet<> declared;
  auto fail = [&](llvm::SMLoc loc, std::string msg) {
    return std::optional<Failure>(Failure{loc, std::move(msg)});
  };
  bool haveScore = false, haveMask = false;
  out.score = makeScore();
  out.mask = makeBool(true);
  for (const Statement &s : decl.statements) {
    if (s.kind == Statement::Param || s.kind == Statement::Buffer || s.kind == Statement::Let) {
      if (!declared.insert(s.name).second)
        return fail(s.loc, "'" + s.name + "' is declared twice in variant '" + decl.name + "'");
      if (s.name == "b" || s.name == "h" || s.name == "q" || s.name == "kv" || s.name == "score" ||
          isKeyword(s.name) || isBuiltin(s.name) || el.defs.count(s.name))
        return fail(s.loc, "'" + s.name + "' is a reserved name");
    }
    switch (s.kind) {
    case Statement::Param: {
      ExprPtr v = el.elaborate(*s.value, scope, false);
      if (!v)
        return el.failure;
      if (!isConstantExpr(*v))
        return fail(s.value->begin, "the default of param '" + s.name + "' must be a constant");
      ScalarType want = s.type == ParamKind::F32 ? ScalarType::F32
                        : s.type == ParamKind::Bool ? ScalarType::Bool
                                                    : ScalarType::I64;
      if (want == ScalarType::F32 && v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != want)
        return fail(s.value->begin, "param '" + s.name + "' is " + toString(want) +
                                      " but its default is " + toString(v->type));
      double value = evaluate(*v, {}, {});
      Param p;
      p.name = s.name;
      p.type = want;
      for (const auto &[name, text] : overrides) {
        if (name != s.name)
          continue;
        usedOverrides.insert(name);
        llvm::StringRef t(text);
        if (want == ScalarType::I64) {
          long long i;
          if (t.getAsInteger(10, i)) {
            overrideError = "--param " + name + "=" + text + ": '" + name + "' is i64, expected an integer";
            return fail(s.loc, overrideError);
          }
          value = static_cast<double>(i);
        } else if (want == ScalarType::F32) {
          double f;
          if (t.getAsDouble(f)) {
            overrideError = "--param " + name + "=" + text + ": '" + name + "' is f32, expected a number";
            return fail(s.loc, overrideError);
          }
          value = f;
        } else {
          if (t != "true" && t != "false") {
            overrideError = "--param " + name + "=" + text + ": '" + name + "' is bool, expected true or false";
            return fail(s.loc, overrideError);
          }
          value = t == "true";
        }
      }
      if (want == ScalarType::F32) {
        p.floatValue = value;
        scope[s.name] = Binding{makeFloat(value), -1};
      } else if (want == ScalarType::Bool) {
        p.intValue = value != 0;
        scope[s.name] = Binding{makeBool(value != 0), -1};
      } else {
        // A literal default keeps its exact value; evaluate() works in double.
        bool overridden = false;
        for (const auto &o : overrides)
          overridden |= o.first == s.name;
        p.intValue = (!overridden && v->kind == ExprKind::Const) ? v->intValue
                                                                  : static_cast<int64_t>(value);
        scope[s.name] = Binding{makeInt(p.intValue), -1};
      }
      out.params.push_back(p);
      break;
    }
    case Statement::Buffer: {
      BufferDecl buf;
      buf.name = s.name;
      buf.elem = s.elem;
      for (const auto &[dim, loc] : s.dims) {
        if (dim == "B" || dim == "H" || dim == "Hkv" || dim == "Sq" || dim == "Skv") {
          buf.shape.push_back(dim);
          continue;
        }
        llvm::StringRef d(dim);
        unsigned long long v;
        if (!d.getAsInteger(10, v)) {
          if (v == 0)
            return fail(loc, "buffer dimensions must be positive");
          buf.shape.push_back(dim);
          continue;
        }
        auto it = scope.find(dim);
        const Param *param = nullptr;
        for (const Param &p : out.params)
          if (p.name == dim)
            param = &p;
        if (it == scope.end() || !param || param->type != ScalarType::I64)
          return fail(loc, "unknown dimension '" + dim +
                               "': expected B, H, Hkv, Sq, Skv, a positive integer or an i64 param" +
                               suggestion(dim, {"B", "H", "Hkv", "Sq", "Skv"}));
        if (param->intValue <= 0)
          return fail(loc, "dimension '" + dim + "' is " + std::to_string(param->intValue) +
                               ", but buffer dimensions must be positive");
        buf.shape.push_back(std::to_string(param->intValue));
      }
      scope[s.name] = Binding{nullptr, static_cast<int>(out.buffers.size())};
      out.buffers.push_back(std::move(buf));
      break;
    }
    case Statement::Let: {
      // A let may read score; whether that is allowed is checked where it is used.
      ExprPtr v = el.elaborate(*s.value, scope, true);
      if (!v)
        return el.failure;
      scope[s.name] = Binding{v, -1};
      break;
    }
    case Statement::Score:
    case Statement::Mask: {
      bool isScore = s.kind == Statement::Score;
      if ((isScore ? haveScore : haveMask))
        return fail(s.loc, std::string("'") + (isScore ? "score" : "mask") +
                               "' is set twice in variant '" + decl.name + "'");
      (isScore ? haveScore : haveMask) = true;
      ExprPtr v = el.elaborate(*s.value, scope, isScore);
      if (!v)
        return el.failure;
      if (isScore) {
        if (v->type == ScalarType::I64)
          v = makeCast(ScalarType::F32, v);
        if (v->type != ScalarType::F32)
          return fail(s.value->begin, std::string("the score must be a number, got ") + toString(v->type));
        out.score = v;
      } else {
        if (v->type != ScalarType::Bool)
          return fail(s.value->begin, std::string("the mask must be bool, got ") + toString(v->type));
        // A let that reads score cannot feed the mask.
        std::function<bool(const Expr &)> readsScore = [&](const Expr &e) {
          if (e.kind == ExprKind::Score)
            return true;
          for (const ExprPtr &o : e.operands)
            if (readsScore(*o))
              return true;
          return false;
        };
        if (readsScore(*v))
          return fail(s.value->begin, "'score' is only available in the score modifier");
        out.mask = v;
      }
      break;
    }
    }
  }
  return std::nullopt;
}

llvm::Expected<std::vector<Variant>> parseAndElaborate(llvm::StringRef text,
                                                       llvm::StringRef filename,
                                                       const ParamOverrides &overrides) {
  llvm::SourceMgr sm;
  sm.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(text, filename), llvm::SMLoc());
  llvm::StringRef buffer = sm.getMemoryBuffer(1)->getBuffer();
  Module module;
  Parser parser(buffer);
  if (std::optional<Failure> f = parser.parseModule(module))
    return diagnose(sm, *f);

  const Module &prelude = preludeModule();
  llvm::StringSet<> seenDefs;
  for (const auto &d : module.defs) {
    if (isBuiltin(d->name) || isKeyword(d->name))
      return diagnose(sm, {d->loc, "'" + d->name + "' is a reserved name"});
    if (std::any_of(prelude.defs.begin(), prelude.defs.end(),
                    [&](const auto &p) { return p->name == d->name; }))
      return diagnose(sm, {d->loc, "'" + d->name + "' redefines a library function"});
    if (!seenDefs.insert(d->name).second)
      return diagnose(sm, {d->loc, "function '" + d->name + "' is defined twice"});
    llvm::StringSet<> params;
    for (const DefParam &p : d->params)
      if (!params.insert(p.name).second)
        return diagnose(sm, {p.loc, "parameter '" + p.name + "' is declared twice"});
  }
  if (module.variants.empty())
    return plainError(filename + ": no variant in the file (expected 'variant NAME { ... }')");

  Elaborator el({&prelude, &module});
  llvm::StringSet<> variantNames, usedOverrides;
  std::vector<Variant> variants;
  for (const VariantDecl &decl : module.variants) {
    if (!variantNames.insert(decl.name).second)
      return diagnose(sm, {decl.loc, "variant '" + decl.name + "' is defined twice"});
    Variant v;
    std::string overrideError;
    if (std::optional<Failure> f =
            elaborateVariant(el, decl, overrides, usedOverrides, v, overrideError)) {
      if (!overrideError.empty())
        return plainError(overrideError);
      return diagnose(sm, *f);
    }
    variants.push_back(std::move(v));
  }
  for (const auto &[name, value] : overrides)
    if (!usedOverrides.contains(name))
      return plainError("--param " + name + "=" + value + ": no variant in " + filename +
                        " declares a param '" + name + "'");
  return variants;
}

} // namespace

llvm::Expected<std::vector<Variant>> parseSpec(llvm::StringRef text, llvm::StringRef filename,
                                               const ParamOverrides &overrides) {
  return parseAndElaborate(text, filename, overrides);
}

llvm::Expected<std::vector<Variant>> parseSpecFile(llvm::StringRef path,
                                                   const ParamOverrides &overrides) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return plainError("cannot read '" + path + "': " + buffer.getError().message());
  return parseSpec((*buffer)->getBuffer(), path, overrides);
}

llvm::Expected<Variant> selectVariant(std::vector<Variant> variants, llvm::StringRef name) {
  std::string names;
  for (const Variant &v : variants)
    names += (names.empty() ? "" : ", ") + v.name;
  if (name.empty()) {
    if (variants.size() == 1)
      return std::move(variants.front());
    return plainError("the file defines " + std::to_string(variants.size()) +
                      " variants (" + names + "): choose one with --variant");
  }
  for (Variant &v : variants)
    if (v.name == name)
      return std::move(v);
  return plainError("no variant '" + name + "' (the file defines: " + names + ")");
}

llvm::Expected<ExprPtr> callLibrary(llvm::StringRef name, llvm::ArrayRef<CallArg> args,
                                    llvm::ArrayRef<BufferDecl> buffers) {
  const Module &prelude = preludeModule();
  const Def *def = nullptr;
  for (const auto &d : prelude.defs)
    if (d->name == name)
      def = d.get();
  if (!def)
    return plainError("unknown library function '" + name + "'");
  if (args.size() > def->params.size())
    return plainError(name + ": takes at most " + std::to_string(def->params.size()) +
                      " arguments, got " + std::to_string(args.size()));
  std::vector<BufferDecl> bufferList(buffers.begin(), buffers.end());
  Elaborator el({&prelude});
  el.buffers = &bufferList;
  std::vector<Binding> bound(def->params.size());
  for (size_t i = 0; i < def->params.size(); ++i) {
    const DefParam &p = def->params[i];
    if (i >= args.size()) {
      if (!p.defaultValue)
        return plainError(name + ": needs argument '" + p.name + "'");
      ExprPtr v = el.elaborate(*p.defaultValue, {}, false);
      if (p.kind == ParamKind::F32)
        v = v->type == ScalarType::F32 ? v : makeCast(ScalarType::F32, v);
      bound[i].expr = v;
      continue;
    }
    const CallArg &a = args[i];
    if (p.kind == ParamKind::Buffer) {
      if (a.buffer < 0 || static_cast<size_t>(a.buffer) >= buffers.size())
        return plainError(name + ": argument '" + p.name + "' must be a buffer");
      bound[i].buffer = a.buffer;
      continue;
    }
    if (!a.expr)
      return plainError(name + ": argument '" + p.name + "' must be " + toString(p.kind) +
                        ", got a buffer");
    ExprPtr v = a.expr;
    ScalarType want = p.kind == ParamKind::F32 ? ScalarType::F32
                      : p.kind == ParamKind::Bool ? ScalarType::Bool
                                                  : ScalarType::I64;
    if (want == ScalarType::F32 && v->type == ScalarType::I64)
      v = makeCast(ScalarType::F32, v);
    if (v->type != want)
      return plainError(name + ": argument '" + p.name + "' must be " + toString(want) +
                        ", got " + toString(v->type));
    bound[i].expr = v;
  }
  // Library bodies report errors at the call site; here there is none.
  ExprPtr r = el.inlineDef(*def, std::move(bound), llvm::SMLoc());
  if (!r)
    return plainError(el.failure ? el.failure->message : name.str() + ": elaboration failed");
  return r;
}

} // namespace heed::spec
