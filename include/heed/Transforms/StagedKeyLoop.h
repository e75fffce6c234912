// The staging slots of a key loop pipelined by --attn-pipeline-kv: the one
// convention attn.tile.copy_kv's `stage` operand follows and a target that
// waits per slot (the wgmma kernel's mbarriers) must agree with.
//
// Tile t of a loop [lb, ub) step s takes slot (t / s) mod N of N: the
// loop's iterations in turn, whatever its step (split-KV's GPU parts stride
// by the part count, a run-time value that is 1 in an unsplit call).
#ifndef HEED_TRANSFORMS_STAGEDKEYLOOP_H
#define HEED_TRANSFORMS_STAGEDKEYLOOP_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace heed {

/// f(x / step) for `loop`'s step. A constant step 1 gives f(x); a run-time
/// step gives f(x) and f(x / step) behind a uniform branch on step == 1, so
/// that an unsplit call pays no 64-bit division per tile.
inline mlir::Value mapByStep(mlir::OpBuilder &b, mlir::Location loc, mlir::scf::ForOp loop,
                             mlir::Value x, llvm::function_ref<mlir::Value(mlir::Value)> f) {
  mlir::Value step = loop.getStep();
  if (mlir::getConstantIntValue(step) == 1)
    return f(x);
  mlir::Value one = mlir::arith::ConstantIndexOp::create(b, loc, 1);
  mlir::Value unit =
      mlir::arith::CmpIOp::create(b, loc, mlir::arith::CmpIPredicate::eq, step, one);
  auto ifOp = mlir::scf::IfOp::create(b, loc, mlir::TypeRange{b.getIndexType()}, unit,
                                      /*withElseRegion=*/true);
  mlir::OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  mlir::scf::YieldOp::create(b, loc, f(x));
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  mlir::scf::YieldOp::create(b, loc, f(mlir::arith::DivUIOp::create(b, loc, x, step)));
  return ifOp.getResult(0);
}

/// x / step of `loop` (mapByStep).
inline mlir::Value divideByStep(mlir::OpBuilder &b, mlir::Location loc, mlir::scf::ForOp loop,
                                mlir::Value x) {
  return mapByStep(b, loc, loop, x, [](mlir::Value q) { return q; });
}

/// The slot of tile `tile` of `loop` with `stages` slots: (tile / step) mod
/// stages.
inline mlir::Value stagedSlot(mlir::OpBuilder &b, mlir::Location loc, mlir::scf::ForOp loop,
                              mlir::Value tile, int64_t stages) {
  return mapByStep(b, loc, loop, tile, [&](mlir::Value q) -> mlir::Value {
    return mlir::arith::RemUIOp::create(b, loc, q,
                                        mlir::arith::ConstantIndexOp::create(b, loc, stages));
  });
}

} // namespace heed

#endif
