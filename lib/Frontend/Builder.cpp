// The C++ builder frontend: operators record spec::Expr trees with the same
// typing rules as the text frontend (spec::typed*), library calls inline the
// prelude (spec::callLibrary).
#include "heed/Frontend/Builder.h"

#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Library.h"

#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <limits>
#include <set>

namespace heed::build {

struct BuilderState {
  std::string name;
  std::vector<spec::Param> params;
  std::vector<spec::BufferDecl> buffers;
  std::set<std::string> names;
  std::string declError;
  /// What expressions reading this builder's buffers carry to name it. It is
  /// separate from the state so those expressions (held here as score and
  /// mask) do not keep the state alive in a cycle.
  std::shared_ptr<const int> token = std::make_shared<const int>(0);
  Expr score = Expr(spec::makeScore());
  Expr mask = Expr(spec::makeBool(true));
  std::optional<Expr> route;
  std::vector<RouteCase> routeCases;
  std::optional<Expr> gate;
  Normalize normalize;
};

/// The private parts of Expr and Buffer that the file-local helpers need.
struct ExprAccess {
  static const std::shared_ptr<const int> &owner(const Expr &e) { return e.owner_; }
  static Expr withOwner(Expr e, std::shared_ptr<const int> owner) {
    e.owner_ = std::move(owner);
    return e;
  }
  static const std::shared_ptr<BuilderState> &state(const Buffer &b) { return b.owner_; }
};

namespace {

const char *const MixedBuilders =
    "the expression reads buffers declared on two different VariantBuilders";

/// The result node of an operation on `args`: carries the builder the
/// arguments read buffers of, or fails if they name two.
Expr combine(spec::ExprPtr node, const std::string &error,
             std::initializer_list<const Expr *> args) {
  std::shared_ptr<const int> owner;
  for (const Expr *a : args) {
    const std::shared_ptr<const int> &o = ExprAccess::owner(*a);
    if (!o)
      continue;
    if (owner && owner != o)
      return Expr::failure(MixedBuilders);
    owner = o;
  }
  if (!node)
    return Expr::failure(error);
  return ExprAccess::withOwner(Expr(std::move(node)), std::move(owner));
}

Expr unary(spec::Op op, const Expr &a) {
  if (!a.ok())
    return a;
  std::string err;
  return combine(spec::typedUnary(op, a.node(), err), err, {&a});
}

Expr binary(spec::Op op, const Expr &a, const Expr &c) {
  if (!a.ok())
    return a;
  if (!c.ok())
    return c;
  std::string err;
  return combine(spec::typedBinary(op, a.node(), c.node(), err), err, {&a, &c});
}

Expr builtin(const std::string &name, std::initializer_list<const Expr *> args) {
  std::vector<spec::ExprPtr> nodes;
  for (const Expr *a : args) {
    if (!a->ok())
      return *a;
    nodes.push_back(a->node());
  }
  std::string err;
  bool known = false;
  spec::ExprPtr r = spec::typedBuiltin(name, std::move(nodes), err, known);
  return combine(std::move(r), err, args);
}

/// An argument of a library call: an expression or a buffer.
struct LibArg {
  LibArg(Expr e) : expr(std::move(e)) {}
  LibArg(const Buffer &b) : expr(0), buffer(&b) {}
  Expr expr;
  const Buffer *buffer = nullptr;
};

Expr library(const char *name, std::vector<LibArg> args) {
  std::vector<spec::CallArg> callArgs;
  std::shared_ptr<BuilderState> state;
  std::shared_ptr<const int> owner;
  auto claim = [&](const std::shared_ptr<const int> &o) {
    if (o && owner && o != owner)
      return false;
    if (o)
      owner = o;
    return true;
  };
  for (const LibArg &a : args) {
    if (a.buffer) {
      const std::shared_ptr<BuilderState> &s = ExprAccess::state(*a.buffer);
      if (!s || a.buffer->index() < 0)
        return Expr::failure(std::string(name) +
                             ": a buffer argument was not declared with VariantBuilder::buffer");
      if (!claim(s->token))
        return Expr::failure(MixedBuilders);
      state = s;
      callArgs.push_back(spec::CallArg::ofBuffer(a.buffer->index()));
      continue;
    }
    if (!a.expr.ok())
      return a.expr;
    if (!claim(ExprAccess::owner(a.expr)))
      return Expr::failure(MixedBuilders);
    callArgs.push_back(spec::CallArg::ofExpr(a.expr.node()));
  }
  llvm::ArrayRef<spec::BufferDecl> buffers;
  if (state)
    buffers = state->buffers;
  llvm::Expected<spec::ExprPtr> r = spec::callLibrary(name, callArgs, buffers);
  if (!r)
    return Expr::failure(llvm::toString(r.takeError()));
  return ExprAccess::withOwner(Expr(*r), owner);
}

bool readsScore(const spec::Expr &e) {
  if (e.kind == spec::ExprKind::Score)
    return true;
  for (const spec::ExprPtr &o : e.operands)
    if (readsScore(*o))
      return true;
  return false;
}

/// The dimensions the text frontend accepts (after substituting params).
bool validDim(const std::string &d) {
  if (d == "B" || d == "H" || d == "Hkv" || d == "Sq" || d == "Skv")
    return true;
  // No leading zero, and at most 18 digits so that the value fits int64.
  if (d.empty() || d.size() > 18 || d[0] == '0')
    return false;
  for (char c : d)
    if (c < '0' || c > '9')
      return false;
  return true;
}

/// Names must be identifiers, as in the text frontend: they become attribute
/// names in the IR and keys in the kernel cache.
bool isIdentifier(const std::string &s) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (s.empty() || !alpha(s[0]))
    return false;
  for (char c : s)
    if (!alpha(c) && !(c >= '0' && c <= '9'))
      return false;
  return true;
}

/// Records a declaration's name; the first bad one becomes the builder's error.
bool declare(BuilderState &s, const std::string &name, const char *what) {
  if (!s.declError.empty())
    return false;
  if (!isIdentifier(name)) {
    s.declError = std::string(what) + " name '" + name + "' is not an identifier";
    return false;
  }
  if (name == "b" || name == "h" || name == "q" || name == "kv" || name == "score" ||
      spec::isBuiltinName(name)) {
    s.declError = std::string(what) + " name '" + name + "' is reserved";
    return false;
  }
  if (!s.names.insert(name).second) {
    s.declError = "'" + name + "' is declared twice in variant '" + s.name + "'";
    return false;
  }
  return true;
}

} // namespace

// A negative literal is recorded as the text frontend records `-8`: negation
// applied to the literal 8 (neither frontend folds; attn-simplify does).
// INT64_MIN has no positive counterpart, and the text cannot write it either.
Expr::Expr(int64_t v)
    : node_(v < 0 && v != std::numeric_limits<int64_t>::min()
                ? spec::makeUnary(spec::Op::Neg, spec::makeInt(-v))
                : spec::makeInt(v)) {}
Expr::Expr(double v)
    : node_(std::signbit(v) && !std::isnan(v) ? spec::makeUnary(spec::Op::Neg, spec::makeFloat(-v))
                                              : spec::makeFloat(v)) {
  // As the text's `1e39`: an f32 literal that rounds to infinity is an error.
  if (spec::overflowsF32(v)) {
    node_.reset();
    error_ = std::make_shared<const std::string>(
        llvm::formatv("f32 literal {0:e} out of range (the largest f32 is 3.40282347e38)", v)
            .str());
  }
}
Expr::Expr(bool v) : node_(spec::makeBool(v)) {}
Expr::Expr(spec::ExprPtr node) : node_(std::move(node)) {
  if (!node_)
    error_ = std::make_shared<const std::string>("a null spec::ExprPtr was wrapped in an Expr");
}

Expr Expr::failure(std::string message) {
  Expr e(false);
  e.node_.reset();
  e.error_ = std::make_shared<const std::string>(std::move(message));
  return e;
}

const std::string &Expr::error() const {
  static const std::string none;
  return error_ ? *error_ : none;
}

Expr b() { return Expr(spec::makeIndex(spec::IndexVar::B)); }
Expr h() { return Expr(spec::makeIndex(spec::IndexVar::H)); }
Expr q() { return Expr(spec::makeIndex(spec::IndexVar::Q)); }
Expr kv() { return Expr(spec::makeIndex(spec::IndexVar::KV)); }
Expr batches() { return Expr(spec::makeIndex(spec::IndexVar::NumB)); }
Expr heads() { return Expr(spec::makeIndex(spec::IndexVar::NumH)); }
Expr headsKV() { return Expr(spec::makeIndex(spec::IndexVar::NumHkv)); }
Expr seqQ() { return Expr(spec::makeIndex(spec::IndexVar::Sq)); }
Expr seqKV() { return Expr(spec::makeIndex(spec::IndexVar::Skv)); }
Expr score() { return Expr(spec::makeScore()); }

Expr operator+(Expr a, Expr c) { return binary(spec::Op::Add, a, c); }
Expr operator-(Expr a, Expr c) { return binary(spec::Op::Sub, a, c); }
Expr operator*(Expr a, Expr c) { return binary(spec::Op::Mul, a, c); }
Expr operator/(Expr a, Expr c) { return binary(spec::Op::Div, a, c); }
Expr operator%(Expr a, Expr c) { return binary(spec::Op::Rem, a, c); }
Expr operator-(Expr a) { return unary(spec::Op::Neg, a); }
Expr operator!(Expr a) { return unary(spec::Op::Not, a); }
Expr operator==(Expr a, Expr c) { return binary(spec::Op::Eq, a, c); }
Expr operator!=(Expr a, Expr c) { return binary(spec::Op::Ne, a, c); }
Expr operator<(Expr a, Expr c) { return binary(spec::Op::Lt, a, c); }
Expr operator<=(Expr a, Expr c) { return binary(spec::Op::Le, a, c); }
Expr operator>(Expr a, Expr c) { return binary(spec::Op::Gt, a, c); }
Expr operator>=(Expr a, Expr c) { return binary(spec::Op::Ge, a, c); }
Expr operator&&(Expr a, Expr c) { return binary(spec::Op::And, a, c); }
Expr operator||(Expr a, Expr c) { return binary(spec::Op::Or, a, c); }
Expr min(Expr a, Expr c) { return builtin("min", {&a, &c}); }
Expr max(Expr a, Expr c) { return builtin("max", {&a, &c}); }
Expr abs(Expr a) { return builtin("abs", {&a}); }
Expr exp(Expr a) { return builtin("exp", {&a}); }
Expr log(Expr a) { return builtin("log", {&a}); }
Expr tanh(Expr a) { return builtin("tanh", {&a}); }
Expr sqrt(Expr a) { return builtin("sqrt", {&a}); }
Expr select(Expr cond, Expr a, Expr c) { return builtin("select", {&cond, &a, &c}); }
Expr clamp(Expr x, Expr lo, Expr hi) { return builtin("clamp", {&x, &lo, &hi}); }
Expr toF32(Expr a) { return builtin("f32", {&a}); }
Expr toI64(Expr a) { return builtin("i64", {&a}); }

const std::vector<spec::BufferDecl> &Buffer::declarations() const {
  static const std::vector<spec::BufferDecl> none;
  return owner_ ? owner_->buffers : none;
}

Expr Buffer::at(std::vector<Expr> indices) const {
  if (!owner_ || index_ < 0)
    return Expr::failure("a buffer was indexed that no VariantBuilder declared");
  const spec::BufferDecl &decl = owner_->buffers[index_];
  if (indices.size() != decl.shape.size())
    return Expr::failure("buffer '" + decl.name + "' has rank " +
                         std::to_string(decl.shape.size()) + " but is indexed with " +
                         std::to_string(indices.size()) + " index" +
                         (indices.size() == 1 ? "" : "es"));
  std::vector<spec::ExprPtr> nodes;
  for (const Expr &i : indices) {
    if (!i.ok())
      return i;
    const std::shared_ptr<const int> &o = ExprAccess::owner(i);
    if (o && o != owner_->token)
      return Expr::failure(MixedBuilders);
    if (i.node()->type != spec::ScalarType::I64)
      return Expr::failure("indices of buffer '" + decl.name + "' must be i64, got " +
                           spec::toString(i.node()->type));
    if (std::string err = spec::constantIndexError(decl, nodes.size(), *i.node()); !err.empty())
      return Expr::failure(err);
    nodes.push_back(i.node());
  }
  return ExprAccess::withOwner(
      Expr(spec::makeLoad(index_, spec::loadType(decl.elem), std::move(nodes))), owner_->token);
}

VariantBuilder::VariantBuilder(std::string name) : state_(std::make_shared<BuilderState>()) {
  state_->name = std::move(name);
}

Expr VariantBuilder::param(const std::string &name, int64_t value) {
  if (declare(*state_, name, "param"))
    state_->params.push_back({name, spec::ScalarType::I64, value, 0});
  // The value itself, even when negative: the text frontend binds a param to
  // one constant node, not to the literal that wrote its default.
  return Expr(spec::makeInt(value));
}

Expr VariantBuilder::param(const std::string &name, double value) {
  if (declare(*state_, name, "param"))
    state_->params.push_back({name, spec::ScalarType::F32, 0, spec::roundToF32(value)});
  // The text frontend's rule for a param's value.
  if ((!std::isfinite(value) || spec::overflowsF32(value)) && state_->declError.empty())
    state_->declError = "param '" + name + "' is not a finite f32";
  return Expr(spec::makeFloat(value));
}

Expr VariantBuilder::param(const std::string &name, bool value) {
  if (declare(*state_, name, "param"))
    state_->params.push_back({name, spec::ScalarType::Bool, value ? 1 : 0, 0});
  return Expr(value);
}

Buffer VariantBuilder::buffer(const std::string &name, spec::ElemType elem,
                              std::vector<std::string> shape) {
  Buffer buf;
  buf.owner_ = state_;
  if (!declare(*state_, name, "buffer"))
    return buf;
  if (shape.empty())
    state_->declError = "buffer '" + name + "' needs at least one dimension";
  for (const std::string &d : shape)
    if (!validDim(d) && state_->declError.empty())
      state_->declError = "buffer '" + name + "' has dimension '" + d +
                          "'; expected B, H, Hkv, Sq, Skv or a positive integer";
  buf.index_ = static_cast<int>(state_->buffers.size());
  state_->buffers.push_back({name, elem, std::move(shape)});
  return buf;
}

void VariantBuilder::setScore(Expr e) { state_->score = std::move(e); }
void VariantBuilder::setMask(Expr e) { state_->mask = std::move(e); }
void VariantBuilder::setGate(Expr gate) { state_->gate = std::move(gate); }

void VariantBuilder::setNormalize(Normalize n) { state_->normalize = std::move(n); }
void VariantBuilder::route(Expr selector, std::vector<RouteCase> cases) {
  state_->route = std::move(selector);
  state_->routeCases = std::move(cases);
}

llvm::Expected<spec::Variant> VariantBuilder::build() const {
  const BuilderState &s = *state_;
  auto fail = [&](const std::string &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "variant '" + s.name + "': " + msg);
  };
  if (!isIdentifier(s.name))
    return fail("the variant name is not an identifier");
  if (!s.declError.empty())
    return fail(s.declError);
  if (!s.score.ok())
    return fail("score: " + s.score.error());
  if (!s.mask.ok())
    return fail("mask: " + s.mask.error());
  for (const Expr *e : {&s.score, &s.mask}) {
    const std::shared_ptr<const int> &o = ExprAccess::owner(*e);
    if (o && o != s.token)
      return fail(std::string(e == &s.score ? "score" : "mask") +
                  ": reads a buffer declared on another VariantBuilder");
  }
  spec::ExprPtr score = s.score.node(), mask = s.mask.node();
  if (score->type == spec::ScalarType::I64)
    score = spec::makeCast(spec::ScalarType::F32, score);
  if (score->type != spec::ScalarType::F32)
    return fail(std::string("the score must be a number, got ") + spec::toString(score->type));
  if (mask->type != spec::ScalarType::Bool)
    return fail(std::string("the mask must be bool, got ") + spec::toString(mask->type));
  if (readsScore(*mask))
    return fail("'score' is only available in the score modifier, not in the mask");
  spec::Variant v;
  v.name = s.name;
  v.params = s.params;
  v.buffers = s.buffers;
  v.score = std::move(score);
  v.mask = std::move(mask);
  if (s.route) {
    std::vector<const Expr *> all = {&*s.route};
    for (const RouteCase &c : s.routeCases)
      for (const std::optional<Expr> *e : {&c.score, &c.mask})
        if (*e)
          all.push_back(&**e);
    for (const Expr *e : all) {
      if (!e->ok())
        return fail("route: " + e->error());
      const std::shared_ptr<const int> &o = ExprAccess::owner(*e);
      if (o && o != s.token)
        return fail("route: reads a buffer declared on another VariantBuilder");
    }
    std::vector<spec::RouteCase> cases;
    for (const RouteCase &c : s.routeCases) {
      spec::RouteCase sc{c.value, nullptr, nullptr};
      if (c.score) {
        sc.score = c.score->node();
        if (sc.score->type == spec::ScalarType::I64)
          sc.score = spec::makeCast(spec::ScalarType::F32, sc.score);
        if (sc.score->type != spec::ScalarType::F32)
          return fail("route case " + std::to_string(c.value) + ": the score must be a number");
      }
      if (c.mask) {
        sc.mask = c.mask->node();
        if (sc.mask->type != spec::ScalarType::Bool)
          return fail("route case " + std::to_string(c.value) + ": the mask must be bool");
        if (readsScore(*sc.mask))
          return fail("route case " + std::to_string(c.value) +
                      ": 'score' is only available in the score modifier");
      }
      cases.push_back(sc);
    }
    if (readsScore(*s.route->node()))
      return fail("route: a route cannot read the score");
    if (std::string err = spec::applyRoute(v, s.route->node(), cases); !err.empty())
      return fail("route: " + err);
  }
  if (s.gate) {
    if (!s.gate->ok())
      return fail("gate: " + s.gate->error());
    const std::shared_ptr<const int> &o = ExprAccess::owner(*s.gate);
    if (o && o != s.token)
      return fail("gate: reads a buffer declared on another VariantBuilder");
    if (std::string err = spec::applyGate(v, s.gate->node()); !err.empty())
      return fail("gate: " + err);
  }
  const std::optional<Expr> &arg = s.normalize.argument;
  if (arg) {
    if (!arg->ok())
      return fail("normalize: " + arg->error());
    const std::shared_ptr<const int> &o = ExprAccess::owner(*arg);
    if (o && o != s.token)
      return fail("normalize: reads a buffer declared on another VariantBuilder");
  }
  spec::ExprPtr node = arg ? arg->node() : nullptr;
  std::string err = s.normalize.kind == spec::Normalization::Sigmoid ? spec::applySigmoid(v, node)
                                                                      : spec::applySink(v, node);
  if (!err.empty())
    return fail("normalize: " + err);
  return v;
}

namespace lib {
Expr causal() { return library("causal", {}); }
Expr causal_bottom_right() { return library("causal_bottom_right", {}); }
Expr sliding_window(Expr w) { return library("sliding_window", {w}); }
Expr band(Expr left, Expr right) { return library("band", {left, right}); }
Expr prefix_lm(Expr n) { return library("prefix_lm", {n}); }
Expr sinks(Expr n) { return library("sinks", {n}); }
Expr document(const Buffer &doc) { return library("document", {doc}); }
Expr block_sparse(const Buffer &layout, Expr bq, Expr bk) {
  return library("block_sparse", {layout, bq, bk});
}
Expr neighborhood_1d(Expr n, Expr k, Neighborhood1D o) {
  return library("neighborhood_1d", {n, k, o.d, o.causal});
}
Expr neighborhood_2d(Expr h0, Expr w, Expr kh, Expr kw, Neighborhood2D o) {
  return library("neighborhood_2d", {h0, w, kh, kw, o.dh, o.dw, o.causal_h, o.causal_w});
}
Expr neighborhood_3d(Expr d0, Expr d1, Expr d2, Expr k0, Expr k1, Expr k2, Neighborhood3D o) {
  return library("neighborhood_3d", {d0, d1, d2, k0, k1, k2, o.dil0, o.dil1, o.dil2, o.causal0,
                                     o.causal1, o.causal2});
}
Expr alibi(Expr s, const Buffer &slopes) { return library("alibi", {s, slopes}); }
Expr softcap(Expr s, Expr c) { return library("softcap", {s, c}); }
Expr relative_bias(Expr s, const Buffer &table, Expr r) {
  return library("relative_bias", {s, table, r});
}
} // namespace lib

} // namespace heed::build
