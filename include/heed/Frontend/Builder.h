// The C++ builder frontend: expression objects whose operators record the
// same spec::Expr trees as the .attn text frontend (symbolic tracing, as
// FlexAttention traces Python functions), and a VariantBuilder that collects
// params, buffers, the score modifier and the mask into a spec::Variant.
//
//   heed::build::VariantBuilder vb("alibi_window");
//   auto window = vb.param("window", int64_t(1024));
//   auto slopes = vb.buffer("slopes", heed::spec::ElemType::F32, {"H"});
//   vb.setScore(heed::build::lib::alibi(heed::build::score(), slopes));
//   vb.setMask(heed::build::lib::sinks(4) || heed::build::lib::sliding_window(window));
//   llvm::Expected<heed::spec::Variant> v = vb.build();
//
// Type errors do not throw: the first one travels with the expression and
// build() returns it as an llvm::Error.
//
// A call whose arguments are all C++ numbers, such as sqrt(2) or min(1, 2),
// resolves to the <cmath>/<algorithm> function and records only its result;
// write sqrt(Expr(2)) to record the call itself.
#ifndef HEED_FRONTEND_BUILDER_H
#define HEED_FRONTEND_BUILDER_H

#include "heed/Frontend/Spec.h"

#include "llvm/Support/Error.h"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace heed::build {

struct BuilderState;

/// A traced expression: a spec::Expr node, or the first error met on the way
/// to it. Operators on Exprs type-check like the spec language and record
/// nodes; an error propagates through every later operator.
class Expr {
public:
  /// Literals. A negative one records negation of its magnitude, as the text
  /// frontend does for `-8`, so both frontends give the same tree.
  Expr(int64_t v);
  /// Any other integer literal (int, unsigned, long long, ...) is an i64;
  /// values above INT64_MAX wrap.
  template <typename T, typename = std::enable_if_t<std::is_integral_v<T> &&
                                                    !std::is_same_v<T, bool>>>
  Expr(T v) : Expr(static_cast<int64_t>(v)) {}
  Expr(double v);
  /// A bool literal: its own constructor so `true` never becomes the int 1.
  Expr(bool v);
  /// A string would otherwise convert to bool.
  Expr(const char *) = delete;
  explicit Expr(spec::ExprPtr node);

  static Expr failure(std::string message);

  /// The recorded node; null when the expression failed.
  const spec::ExprPtr &node() const { return node_; }
  /// The first error recorded on the way to this expression, or "".
  const std::string &error() const;
  bool ok() const { return node_ != nullptr; }

private:
  friend struct ExprAccess;
  spec::ExprPtr node_;
  std::shared_ptr<const std::string> error_;
  /// Identifies the VariantBuilder whose buffers the expression reads (null
  /// if it reads none): buffer numbers mean nothing in another builder.
  std::shared_ptr<const int> owner_;
};

Expr b();
Expr h();
Expr q();
Expr kv();
/// The run-time sizes (the text form's B, H, Hkv, Sq, Skv): read from the
/// operands when the kernel runs, never compiled in.
Expr batches();
Expr heads();
Expr headsKV();
Expr seqQ();
Expr seqKV();
/// The incoming score (scale * q.k); only valid in the score modifier.
Expr score();

Expr operator+(Expr a, Expr c);
Expr operator-(Expr a, Expr c);
Expr operator*(Expr a, Expr c);
Expr operator/(Expr a, Expr c); ///< floor division on i64
Expr operator%(Expr a, Expr c); ///< floor remainder, i64 only
Expr operator-(Expr a);
Expr operator!(Expr a);
Expr operator==(Expr a, Expr c);
Expr operator!=(Expr a, Expr c);
Expr operator<(Expr a, Expr c);
Expr operator<=(Expr a, Expr c);
Expr operator>(Expr a, Expr c);
Expr operator>=(Expr a, Expr c);
/// Records `a && c`; both sides are always traced (no short-circuit).
Expr operator&&(Expr a, Expr c);
Expr operator||(Expr a, Expr c);
Expr min(Expr a, Expr c);
Expr max(Expr a, Expr c);
Expr abs(Expr a);
Expr exp(Expr a);
Expr log(Expr a);
Expr tanh(Expr a);
Expr sqrt(Expr a);
/// `cond ? a : c` of the spec language.
Expr select(Expr cond, Expr a, Expr c);
/// min(max(x, lo), hi).
Expr clamp(Expr x, Expr lo, Expr hi);
/// The casts f32(x) and i64(x): i64(f32) truncates toward zero.
Expr toF32(Expr a);
Expr toI64(Expr a);

/// A run-time buffer declared on a VariantBuilder; index it to read it:
/// `slopes[h()]`, `layout(h(), q() / 64, kv() / 64)` or `layout({...})`.
class Buffer {
public:
  Expr at(std::vector<Expr> indices) const;
  Expr operator[](Expr i) const { return at({std::move(i)}); }
  Expr operator()(std::initializer_list<Expr> indices) const { return at(indices); }
  template <typename... T> Expr operator()(T... indices) const {
    return at({Expr(indices)...});
  }
  /// The position in the variant's buffer list; -1 if the declaration failed.
  int index() const { return index_; }
  /// The buffers of the owning builder so far.
  const std::vector<spec::BufferDecl> &declarations() const;

private:
  friend class VariantBuilder;
  friend struct ExprAccess;
  std::shared_ptr<BuilderState> owner_;
  int index_ = -1;
};

/// One case of VariantBuilder::route; an unset score or mask is the
/// variant's own.
struct RouteCase {
  int64_t value = 0;
  std::optional<Expr> score, mask;
};

/// A row normalization for VariantBuilder::setNormalize (the spec's
/// `normalize` clause; see spec::Normalization).
struct Normalize {
  /// Plain softmax (the default).
  static Normalize softmax() { return {}; }
  /// Softmax with a sink logit per head: an f32 (or i64) expression of b, h
  /// and buffers, e.g. sinks({h()}).
  static Normalize softmax(Expr sink) { return {spec::Normalization::Softmax, std::move(sink)}; }
  /// Softmax with +1 in the denominator (a sink logit of 0).
  static Normalize softmaxOffByOne() { return softmax(Expr(0.0)); }
  /// Sigmoid weights 1 / (1 + e^-(s + bias)), rows not normalized; `bias` a
  /// constant (literals and params).
  static Normalize sigmoid(Expr bias = Expr(0.0)) {
    return {spec::Normalization::Sigmoid, std::move(bias)};
  }

  spec::Normalization kind = spec::Normalization::Softmax;
  /// The sink (softmax) or the bias (sigmoid), if any.
  std::optional<Expr> argument;
};

/// Collects one variant. Copies share the same variant under construction.
class VariantBuilder {
public:
  explicit VariantBuilder(std::string name);

  /// Compile-time params: recorded in the variant, returned as constants.
  Expr param(const std::string &name, int64_t value);
  Expr param(const std::string &name, int value) {
    return param(name, static_cast<int64_t>(value));
  }
  Expr param(const std::string &name, double value);
  Expr param(const std::string &name, bool value);
  Expr param(const std::string &name, const char *) = delete;
  /// A run-time buffer; dims are "B", "H", "Hkv", "Sq", "Skv" or positive
  /// decimal integers.
  Buffer buffer(const std::string &name, spec::ElemType elem, std::vector<std::string> shape);

  /// The score modifier (f32, or i64 converted); the default is `score()`.
  void setScore(Expr e);
  /// The mask (bool); the default is the constant true.
  void setMask(Expr e);
  /// Routes heads (DuoAttention, MoA): head h takes the case whose value is
  /// `selector` at (b, h) (an integer or bool of b, h and buffers, never q or
  /// kv); a head that matches no case sees no key. See spec::Variant::route.
  void route(Expr selector, std::vector<RouteCase> cases);
  /// Per-token head gating (MoH): a float buffer read at b, q and h, e.g.
  /// router({b(), q(), h()}). See spec::Variant::gate.
  void setGate(Expr gate);
  /// How rows are normalized; softmax unless set.
  void setNormalize(Normalize n);

  /// The variant, or the first error of any expression or declaration.
  llvm::Expected<spec::Variant> build() const;

private:
  std::shared_ptr<BuilderState> state_;
};

/// The named masks and modifiers of heed's prelude, inlined from their
/// spec-language definitions (see docs/spec-language.md); the option structs
/// hold the defaults of the optional parameters.
namespace lib {
Expr causal();
/// q + (Skv - Sq) >= kv: causal aligned to the end of the keys (decode).
Expr causal_bottom_right();
Expr sliding_window(Expr w);
Expr band(Expr left, Expr right);
Expr prefix_lm(Expr n);
Expr sinks(Expr n);
Expr document(const Buffer &doc);
Expr block_sparse(const Buffer &layout, Expr bq, Expr bk);
struct Neighborhood1D {
  Expr d = 1;
  Expr causal = false;
};
Expr neighborhood_1d(Expr n, Expr k, Neighborhood1D opts = {});
struct Neighborhood2D {
  Expr dh = 1, dw = 1;
  Expr causal_h = false, causal_w = false;
};
Expr neighborhood_2d(Expr h0, Expr w, Expr kh, Expr kw, Neighborhood2D opts = {});
struct Neighborhood3D {
  Expr dil0 = 1, dil1 = 1, dil2 = 1;
  Expr causal0 = false, causal1 = false, causal2 = false;
};
Expr neighborhood_3d(Expr d0, Expr d1, Expr d2, Expr k0, Expr k1, Expr k2,
                     Neighborhood3D opts = {});
Expr alibi(Expr s, const Buffer &slopes);
Expr softcap(Expr s, Expr c);
Expr relative_bias(Expr s, const Buffer &table, Expr r);
} // namespace lib

} // namespace heed::build

#endif // HEED_FRONTEND_BUILDER_H
