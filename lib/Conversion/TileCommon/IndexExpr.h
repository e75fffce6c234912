// Index arithmetic with operators, so that the tiling formulas of
// dialects/attn/TileMath.h, written for integers, emit the same arithmetic
// as IR (unsigned: tokens, tiles and coordinates are never negative).
#ifndef HEED_LIB_CONVERSION_TILECOMMON_INDEXEXPR_H
#define HEED_LIB_CONVERSION_TILECOMMON_INDEXEXPR_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"

namespace heed {

/// An index value being built at a builder's insertion point.
struct IndexExpr {
  mlir::OpBuilder *b;
  mlir::Location loc;
  mlir::Value value;

  IndexExpr(mlir::OpBuilder &b, mlir::Location loc, mlir::Value value)
      : b(&b), loc(loc), value(value) {}
  operator mlir::Value() const { return value; }
  IndexExpr constant(int64_t c) const {
    return {*b, loc, mlir::arith::ConstantIndexOp::create(*b, loc, c)};
  }
  IndexExpr with(mlir::Value v) const { return {*b, loc, v}; }
};

inline IndexExpr operator+(IndexExpr a, IndexExpr c) {
  return a.with(mlir::arith::AddIOp::create(*a.b, a.loc, a.value, c.value));
}
inline IndexExpr operator+(IndexExpr a, int64_t c) {
  return c == 0 ? a : a + a.constant(c);
}
inline IndexExpr operator-(IndexExpr a, IndexExpr c) {
  return a.with(mlir::arith::SubIOp::create(*a.b, a.loc, a.value, c.value));
}
inline IndexExpr operator*(IndexExpr a, int64_t c) {
  return c == 1 ? a : a.with(mlir::arith::MulIOp::create(*a.b, a.loc, a.value, a.constant(c)));
}
inline IndexExpr operator/(IndexExpr a, int64_t c) {
  return c == 1 ? a : a.with(mlir::arith::DivUIOp::create(*a.b, a.loc, a.value, a.constant(c)));
}
inline IndexExpr operator%(IndexExpr a, int64_t c) {
  return a.with(mlir::arith::RemUIOp::create(*a.b, a.loc, a.value, a.constant(c)));
}
inline IndexExpr ceilDiv(IndexExpr a, int64_t c) {
  return c == 1 ? a : a.with(mlir::arith::CeilDivUIOp::create(*a.b, a.loc, a.value, a.constant(c)));
}
inline IndexExpr min(IndexExpr a, IndexExpr c) {
  return a.with(mlir::arith::MinUIOp::create(*a.b, a.loc, a.value, c.value));
}

} // namespace heed

#endif
