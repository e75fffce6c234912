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
// build() returns it.
#ifndef HEED_FRONTEND_BUILDER_H
#define HEED_FRONTEND_BUILDER_H

#include "heed/Frontend/Spec.h"

#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace heed::build {

class Expr {
public:
  Expr(int v) : Expr(static_cast<int64_t>(v)) {}
  Expr(int64_t v);
  Expr(double v);
  Expr(spec::ExprPtr node) : node_(std::move(node)) {}

  static Expr failure(std::string message);

  const spec::ExprPtr &node() const { return node_; }
  /// The first error recorded on the way to this expression, or "".
  const std::string &error() const;
  bool ok() const { return node_ != nullptr; }

private:
  spec::ExprPtr node_;
  std::shared_ptr<const std::string> error_;
};

/// A bool literal (a bare `true` would convert to int).
Expr boolean(bool v);
Expr b();
Expr h();
Expr q();
Expr kv();
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
Expr operator&&(Expr a, Expr c);
Expr operator||(Expr a, Expr c);
Expr min(Expr a, Expr c);
Expr max(Expr a, Expr c);
Expr abs(Expr a);
Expr exp(Expr a);
Expr log(Expr a);
Expr tanh(Expr a);
Expr sqrt(Expr a);
Expr select(Expr cond, Expr a, Expr c);
Expr clamp(Expr x, Expr lo, Expr hi);
Expr toF32(Expr a);
Expr toI64(Expr a);

struct BuilderState;

/// A run-time buffer declared on a VariantBuilder; index it to read it.
class Buffer {
public:
  Expr at(std::vector<Expr> indices) const;
  Expr operator[](Expr i) const { return at({std::move(i)}); }
  template <typename... T> Expr operator()(T... indices) const {
    return at({Expr(indices)...});
  }
  int index() const { return index_; }
  const std::vector<spec::BufferDecl> &declarations() const;

private:
  friend class VariantBuilder;
  std::shared_ptr<BuilderState> owner_;
  int index_ = -1;
};

class VariantBuilder {
public:
  explicit VariantBuilder(std::string name);

  /// Compile-time params: recorded in the variant, returned as constants.
  Expr param(const std::string &name, int64_t value);
  Expr param(const std::string &name, int value) {
    return param(name, static_cast<int64_t>(value));
  }
  Expr param(const std::string &name, double value);
  Expr paramBool(const std::string &name, bool value);
  /// A run-time buffer; dims are "B", "H", "Hkv", "Sq", "Skv" or positive
  /// decimal integers.
  Buffer buffer(const std::string &name, spec::ElemType elem, std::vector<std::string> shape);

  void setScore(Expr e);
  void setMask(Expr e);

  /// The variant, or the first error of any expression or declaration.
  llvm::Expected<spec::Variant> build() const;

private:
  std::shared_ptr<BuilderState> state_;
};

/// The named masks and modifiers of heed's prelude, inlined from their
/// spec-language definitions (see docs/spec-language.md).
namespace lib {
Expr causal();
Expr sliding_window(Expr w);
Expr band(Expr left, Expr right);
Expr prefix_lm(Expr n);
Expr sinks(Expr n);
Expr document(const Buffer &doc);
Expr block_sparse(const Buffer &layout, Expr bq, Expr bk);
struct Neighborhood1D {
  Expr d = 1;
  Expr causal = boolean(false);
};
Expr neighborhood_1d(Expr n, Expr k, Neighborhood1D opts = {});
struct Neighborhood2D {
  Expr dh = 1, dw = 1;
  Expr causal_h = boolean(false), causal_w = boolean(false);
};
Expr neighborhood_2d(Expr h0, Expr w, Expr kh, Expr kw, Neighborhood2D opts = {});
struct Neighborhood3D {
  Expr dil0 = 1, dil1 = 1, dil2 = 1;
  Expr causal0 = boolean(false), causal1 = boolean(false), causal2 = boolean(false);
};
Expr neighborhood_3d(Expr d0, Expr d1, Expr d2, Expr k0, Expr k1, Expr k2,
                     Neighborhood3D opts = {});
Expr alibi(Expr s, const Buffer &slopes);
Expr softcap(Expr s, Expr c);
Expr relative_bias(Expr s, const Buffer &table, Expr r);
} // namespace lib

} // namespace heed::build

#endif // HEED_FRONTEND_BUILDER_H
