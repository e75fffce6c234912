// The binary search both attention lowerings use to narrow a KV range with
// the mask analysis: a box that is EMPTY stays EMPTY when it shrinks, so
// "the prefix up to block t is not EMPTY" and "the suffix from block t is
// EMPTY" are monotone in t.
#ifndef HEED_LIB_CONVERSION_TILECOMMON_BLOCKSEARCH_H
#define HEED_LIB_CONVERSION_TILECOMMON_BLOCKSEARCH_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

namespace heed {

/// The first t in [lo, hi) where `pred(t)` (monotone: false ... false true
/// ... true) holds, or hi; an scf.while at the builder's insertion point.
inline mlir::Value searchFirst(mlir::OpBuilder &b, mlir::Location loc, mlir::Value lo,
                               mlir::Value hi,
                               llvm::function_ref<mlir::Value(mlir::Value)> pred) {
  using namespace mlir;
  Type idxType = b.getIndexType();
  auto loop = scf::WhileOp::create(b, loc, TypeRange{idxType, idxType}, ValueRange{lo, hi});
  OpBuilder::InsertionGuard guard(b);
  Block *before = b.createBlock(&loop.getBefore(), {}, {idxType, idxType}, {loc, loc});
  Value more =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, before->getArgument(0),
                            before->getArgument(1));
  scf::ConditionOp::create(b, loc, more, before->getArguments());
  Block *after = b.createBlock(&loop.getAfter(), {}, {idxType, idxType}, {loc, loc});
  Value l = after->getArgument(0), h = after->getArgument(1);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value mid = arith::DivUIOp::create(b, loc, arith::AddIOp::create(b, loc, l, h),
                                     arith::ConstantIndexOp::create(b, loc, 2));
  Value p = pred(mid);
  scf::YieldOp::create(
      b, loc,
      ValueRange{arith::SelectOp::create(b, loc, p, l, arith::AddIOp::create(b, loc, mid, one)),
                 arith::SelectOp::create(b, loc, p, mid, h)});
  return loop.getResult(0);
}

} // namespace heed

#endif
