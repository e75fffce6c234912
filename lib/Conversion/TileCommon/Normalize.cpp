// The row normalizations of the attn dialect (see Normalize.h).
#include "Normalize.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>
#include <limits>

using namespace mlir;

namespace heed {

Value mathExp(OpBuilder &b, Location loc, Value x) { return math::ExpOp::create(b, loc, x); }
Value mathLog(OpBuilder &b, Location loc, Value x) { return math::LogOp::create(b, loc, x); }

Value f32Like(OpBuilder &b, Location loc, Type type, double value) {
  auto attr = b.getF32FloatAttr(static_cast<float>(value));
  if (auto vec = dyn_cast<VectorType>(type))
    return arith::ConstantOp::create(b, loc, DenseElementsAttr::get(vec, attr));
  return arith::ConstantOp::create(b, loc, attr);
}

Value exponentBase(OpBuilder &b, Location loc, Value m) {
  Type type = m.getType();
  Value none = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, m,
                                     f32Like(b, loc, type, -INFINITY));
  return arith::SelectOp::create(b, loc, none, f32Like(b, loc, type, 0), m);
}

MergeFactors mergeFactors(OpBuilder &b, Location loc, Value m, Value ms, bool sigmoid,
                          const UnaryMath &exp) {
  Type type = m.getType();
  if (sigmoid) {
    Value one = f32Like(b, loc, type, 1);
    return {m, one, one};
  }
  Value negInf = f32Like(b, loc, type, -INFINITY), zero = f32Like(b, loc, type, 0);
  Value mNew = arith::MaximumFOp::create(b, loc, m, ms);
  Value none = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, mNew, negInf);
  auto factor = [&](Value from) {
    Value e = exp(b, loc, arith::SubFOp::create(b, loc, from, mNew));
    return arith::SelectOp::create(b, loc, none, zero, e).getResult();
  };
  return {mNew, factor(m), factor(ms)};
}

RowFinish finishRow(OpBuilder &b, Location loc, Value m, Value l, Value sink, bool sigmoid,
                    const UnaryMath &exp, const UnaryMath &log) {
  Type type = l.getType();
  auto c = [&](double v) { return f32Like(b, loc, type, v); };
  if (sigmoid)
    return {c(1), c(std::numeric_limits<double>::quiet_NaN())};
  if (sink) {
    if (auto vec = dyn_cast<VectorType>(type); vec && sink.getType() != vec)
      sink = vector::BroadcastOp::create(b, loc, vec, sink); // else a logit per row
    // m = -inf (nothing visible) gives c = 0: the sink takes the whole row.
    Value top = arith::MaximumFOp::create(b, loc, m, sink);
    Value carry = exp(b, loc, arith::SubFOp::create(b, loc, m, top));
    l = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, l, carry),
                              exp(b, loc, arith::SubFOp::create(b, loc, sink, top)));
    Value lse = arith::AddFOp::create(b, loc, top, log(b, loc, l));
    return {arith::DivFOp::create(b, loc, carry, l), lse};
  }
  Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, l, c(0));
  Value scale = arith::SelectOp::create(b, loc, empty, c(0),
                                        arith::DivFOp::create(b, loc, c(1), l));
  Value lse = arith::AddFOp::create(b, loc, m, log(b, loc, l));
  return {scale, arith::SelectOp::create(b, loc, empty, c(-INFINITY), lse)};
}

Value sigmoid(OpBuilder &b, Location loc, Value x, double bias, const UnaryMath &exp) {
  Type type = x.getType();
  Value z = arith::AddFOp::create(b, loc, x, f32Like(b, loc, type, bias));
  Value e = exp(b, loc, arith::NegFOp::create(b, loc, math::AbsFOp::create(b, loc, z)));
  Value up = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE, z, f32Like(b, loc, type, 0));
  Value num = arith::SelectOp::create(b, loc, up, f32Like(b, loc, type, 1), e);
  return arith::DivFOp::create(b, loc, num,
                               arith::AddFOp::create(b, loc, f32Like(b, loc, type, 1), e));
}

} // namespace heed
