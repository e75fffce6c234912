// The parser of the .attn spec language: tokens to the syntax tree (AST.h),
// with nesting bounded so hostile input cannot exhaust the stack.
#include "AST.h"

#include <algorithm>

namespace heed::spec::detail {
namespace {

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
  bool parseNormalize(Statement &s);
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

/// normalize = softmax | softmax(sink = EXPR) | softmax_off_by_one
///           | sigmoid | sigmoid(EXPR) | sigmoid(bias = EXPR)
bool Parser::parseNormalize(Statement &s) {
  advance(); // normalize
  s.kind = Statement::Normalize;
  if (!expect(Tok::Assign, "'=' and a normalization"))
    return false;
  const std::vector<std::string> names = {"softmax", "sigmoid", "softmax_off_by_one"};
  if (tok.kind != Tok::Ident)
    return failHere("a normalization (softmax, softmax_off_by_one or sigmoid)");
  if (std::find(names.begin(), names.end(), tok.text.str()) == names.end()) {
    std::string hint = didYouMean(tok.text, names);
    return fail(tok.loc(), "unknown normalization '" + tok.text.str() +
                               "' (expected softmax, softmax_off_by_one or sigmoid)" + hint);
  }
  s.name = tok.text.str();
  s.nameLoc = tok.loc();
  advance();
  if (tok.kind != Tok::LParen)
    return true;
  if (s.name == "softmax_off_by_one")
    return failHere("the end of the statement (softmax_off_by_one takes no arguments)");
  advance();
  const char *keyword = s.name == "softmax" ? "sink" : "bias";
  Lexer ahead = lexer;
  if (tok.kind == Tok::Ident && ahead.next().kind == Tok::Assign) {
    if (tok.text != keyword)
      return fail(tok.loc(), "unknown argument '" + tok.text.str() + "' of " + s.name +
                                 " (it takes '" + keyword + " = ...')");
    s.argName = keyword;
    advance();
    advance();
  } else if (s.name == "softmax") {
    return failHere("'sink = ' and the sink logit (e.g. softmax(sink = sinks[h]))");
  }
  if (!(s.value = expr()))
    return false;
  return expect(Tok::RParen, s.name == "softmax" ? "')' (softmax takes one argument, the sink)"
                                                 : "')' (sigmoid takes one argument, the bias)");
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
  } else if (!inRoute && isIdent("normalize")) {
    if (!parseNormalize(s))
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
      hint = didYouMean(tok.text, {"param", "buffer", "let", "score", "mask", "route", "gate",
                                   "normalize"});
      // `x = ...` is most likely a let without its keyword.
      Lexer ahead = lexer;
      if (hint.empty() && ahead.next().kind == Tok::Assign)
        hint = "; did you mean 'let " + tok.text.str() + " = ...'?";
    }
    failHere(inRoute ? "'let', 'score', 'mask' or '}'"
                     : "'param', 'buffer', 'let', 'score', 'mask', 'route', 'gate', "
                       "'normalize' or '}'");
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
    if (tok.kind != Tok::Int && tok.kind != Tok::Ident && tok.kind != Tok::LParen)
      return failHere("a dimension (B, H, Hkv, Sq, Skv, a positive integer, an i64 param or "
                      "an expression of them)");
    // A dimension is an expression (cdiv(Sq, 128)); a lone name or integer
    // is kept as its text.
    llvm::SMLoc loc = tok.loc();
    NodePtr dim = expr();
    if (!dim)
      return false;
    if (dim->kind == Node::Int) {
      if (dim->intValue <= 0)
        return fail(loc, "buffer dimensions must be positive, got " + std::to_string(dim->intValue));
      // Normalized, so "007" and "7" describe the same shape.
      s.dims.emplace_back(std::to_string(dim->intValue), loc);
      s.dimExprs.push_back(nullptr);
    } else {
      s.dims.emplace_back(dim->kind == Node::Name ? dim->name : std::string(), loc);
      s.dimExprs.push_back(dim->kind == Node::Name ? nullptr : std::move(dim));
    }
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

} // namespace

std::optional<Failure> parseModule(llvm::StringRef text, Module &m) {
  return Parser(text).parseModule(m);
}

} // namespace heed::spec::detail
