// The C++ builder frontend: operators record spec::Expr trees with the same
// typing rules as the text frontend (spec::typed*), library calls inline the
// prelude (spec::callLibrary).
#include "heed/Frontend/Builder.h"

#include "heed/Frontend/Library.h"

#include <functional>
#include <set>

namespace heed::build {

struct BuilderState {
  std::string name;
  std::vector<spec::Param> params;
  std::vector<spec::BufferDecl> buffers;
  std::set<std::string> names;
  std::string declError;
  Expr score = Expr(spec::makeScore());
  Expr mask = Expr(spec::makeBool(true));
};

namespace {

const std::string &noError() {
  static const std::string empty;
  return empty;
}

Expr unary(spec::Op op, const Expr &a) {
  if (!a.ok())
    return a;
  std::string err;
  spec::ExprPtr r = spec::typedUnary(op, a.node(), err);
  return r ? Expr(r) : Expr::failure(err);
}

Expr binary(spec::Op op, const Expr &a, const Expr &c) {
  if (!a.ok())
    return a;
  if (!c.ok())
    return c;
  std::string err;
  spec::ExprPtr r = spec::typedBinary(op, a.node(), c.node(), err);
  return r ? Expr(r) : Expr::failure(err);
}

Expr builtin(const std::string &name, std::vector<Expr> args) {
  std::vector<spec::ExprPtr> nodes;
  for (const Expr &a : args) {
    if (!a.ok())
      return a;
    nodes.push_back(a.node());
  }
  std::string err;
  bool known = false;
  spec::ExprPtr r = spec::typedBuiltin(name, std::move(nodes), err, known);
  return r ? Expr(r) : Expr::failure(err);
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
  std::vector<spec::BufferDecl> buffers;
  for (const LibArg &a : args) {
    if (a.buffer) {
      if (a.buffer->index() < 0)
        return Expr::failure(std::string(name) + ": a buffer argument was not declared "
                                                 "with VariantBuilder::buffer");
      buffers = a.buffer->declarations();
      callArgs.push_back(spec::CallArg::ofBuffer(a.buffer->index()));
      continue;
    }
    if (!a.expr.ok())
      return a.expr;
    callArgs.push_back(spec::CallArg::ofExpr(a.expr.node()));
  }
  llvm::Expected<spec::ExprPtr> r = spec::callLibrary(name, callArgs, buffers);
  if (!r)
    return Expr::failure(llvm::toString(r.takeError()));
  return Expr(*r);
}

bool readsScore(const spec::Expr &e) {
  if (e.kind == spec::ExprKind::Score)
    return true;
  for (const spec::ExprPtr &o : e.operands)
    if (readsScore(*o))
      return true;
  return false;
}

bool validDim(const std::string &d) {
  if (d == "B" || d == "H" || d == "Hkv" || d == "Sq" || d == "Skv")
    return true;
  if (d.empty() || d.size() > 18 || d[0] == '0')
    return false;
  for (char c : d)
    if (c < '0' || c > '9')
      return false;
  return true;
}

} // namespace

Expr::Expr(int64_t v) : node_(spec::makeInt(v)) {}
Expr::Expr(double v) : node_(spec::makeFloat(v)) {}

Expr Expr::failure(std::string message) {
  Expr e{spec::ExprPtr()};
  e.error_ = std::make_shared<const std::string>(std::move(message));
  return e;
}

const std::string &Expr::error() const { return error_ ? *error_ : noError(); }

Expr boolean(bool v) { return Expr(spec::makeBool(v)); }
Expr b() { return Expr(spec::makeIndex(spec::IndexVar::B)); }
Expr h() { return Expr(spec::makeIndex(spec::IndexVar::H)); }
Expr q() { return Expr(spec::makeIndex(spec::IndexVar::Q)); }
Expr kv() { return Expr(spec::makeIndex(spec::IndexVar::KV)); }
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
Expr min(Expr a, Expr c) { return builtin("min", {a, c}); }
Expr max(Expr a, Expr c) { return builtin("max", {a, c}); }
Expr abs(Expr a) { return builtin("abs", {a}); }
Expr exp(Expr a) { return builtin("exp", {a}); }
Expr log(Expr a) { return builtin("log", {a}); }
Expr tanh(Expr a) { return builtin("tanh", {a}); }
Expr sqrt(Expr a) { return builtin("sqrt", {a}); }
Expr select(Expr cond, Expr a, Expr c) { return builtin("select", {cond, a, c}); }
Expr clamp(Expr x, Expr lo, Expr hi) { return builtin("clamp", {x, lo, hi}); }
Expr toF32(Expr a) { return builtin("f32", {a}); }
Expr toI64(Expr a) { return builtin("i64", {a}); }

const std::vector<spec::BufferDecl> &Buffer::declarations() const {
  static const std::vector<spec::BufferDecl> none;
  return owner_ ? owner_->buffers : none;
}

Expr Buffer::at(std::vector<Expr> indices) const {
  if (!owner_ || index_ < 0)
    return Expr::failure("a buffer was indexed that no VariantBuilder declared");
  const spec::BufferDecl &decl = owner_->buffers[index_];
  if (indices.size() != decl.shape.size())
    return Expr::failure("buffer '" + decl.name + "' has rank " + std::to_string(decl.shape.size()) +
                         " but is indexed with " + std::to_string(indices.size()) + " index" +
                         (indices.size() == 1 ? "" : "es"));
  std::vector<spec::ExprPtr> nodes;
  for (const Expr &i : indices) {
    if (!i.ok())
      return i;
    if (i.node()->type != spec::ScalarType::I64)
      return Expr::failure("indices of buffer '" + decl.name + "' must be i64, got " +
                           spec::toString(i.node()->type));
    nodes.push_back(i.node());
  }
  return Expr(spec::makeLoad(index_, spec::loadType(decl.elem), std::move(nodes)));
}

VariantBuilder::VariantBuilder(std::string name) : state_(std::make_shared<BuilderState>()) {
  state_->name = std::move(name);
}

namespace {
bool declare(BuilderState &s, const std::string &name, const char *what) {
  if (!s.declError.empty())
    return false;
  if (name.empty() || name == "b" || name == "h" || name == "q" || name == "kv" ||
      name == "score" || spec::isBuiltinName(name)) {
    s.declError = std::string(what) + " name '" + name + "' is reserved or empty";
    return false;
  }
  if (!s.names.insert(name).second) {
    s.declError = "'" + name + "' is declared twice in variant '" + s.name + "'";
    return false;
  }
  return true;
}
} // namespace

Expr VariantBuilder::param(const std::string &name, int64_t value) {
  declare(*state_, name, "param");
  state_->params.push_back({name, spec::ScalarType::I64, value, 0});
  return Expr(value);
}

Expr VariantBuilder::param(const std::string &name, double value) {
  declare(*state_, name, "param");
  state_->params.push_back({name, spec::ScalarType::F32, 0, value});
  return Expr(value);
}

Expr VariantBuilder::paramBool(const std::string &name, bool value) {
  declare(*state_, name, "param");
  state_->params.push_back({name, spec::ScalarType::Bool, value ? 1 : 0, 0});
  return boolean(value);
}

Buffer VariantBuilder::buffer(const std::string &name, spec::ElemType elem,
                              std::vector<std::string> shape) {
  Buffer buf;
  buf.owner_ = state_;
  if (!declare(*state_, name, "buffer"))
    return buf;
  if (shape.empty() && state_->declError.empty())
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

llvm::Expected<spec::Variant> VariantBuilder::build() const {
  auto fail = [&](const std::string &msg) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "variant '" + state_->name + "': " + msg);
  };
  if (!state_->declError.empty())
    return fail(state_->declError);
  if (!state_->score.ok())
    return fail("score: " + state_->score.error());
  if (!state_->mask.ok())
    return fail("mask: " + state_->mask.error());
  spec::ExprPtr score = state_->score.node(), mask = state_->mask.node();
  if (score->type == spec::ScalarType::I64)
    score = spec::makeCast(spec::ScalarType::F32, score);
  if (score->type != spec::ScalarType::F32)
    return fail(std::string("the score must be a number, got ") + spec::toString(score->type));
  if (mask->type != spec::ScalarType::Bool)
    return fail(std::string("the mask must be bool, got ") + spec::toString(mask->type));
  if (readsScore(*mask))
    return fail("'score' is only available in the score modifier");
  spec::Variant v;
  v.name = state_->name;
  v.params = state_->params;
  v.buffers = state_->buffers;
  v.score = score;
  v.mask = mask;
  return v;
}

namespace lib {
Expr causal() { return library("causal", {}); }
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
