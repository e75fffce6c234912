// --attn-runtime-abi: gives each function holding an attention op the
// arguments heed's runtime passes beside the tensors, and the op the
// operands that read them. The frontend, the builder API and hand-written
// IR state only the math (q, k, v, the variant's buffers, out, lse); what the
// runtime adds -- the summaries of rank-1 or rank-2 integer buffers, a gated variant's
// routed rows, the status word, the block statistics and the work range --
// is one contract, written here once, not threaded through every producer:
//   (q, k, v, buffers..., summaries..., [gate_rows, gate_counts,] out, [lse,]
//    status, stats, begin, end[, phase, splits, part_keys, partial_acc,
//    partial_stats])
// The runtime (and the AOT loader) calls kernels with exactly this order.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace heed {
#define GEN_PASS_DEF_ATTNRUNTIMEABI
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// Whether `op` already has the runtime's operands (hand-written IR may).
bool hasABI(AttentionOp op) { return op.getStatus() || op.getStats() || op.getWorkBegin(); }

/// The argument number of `v` in `func`, if it is one.
std::optional<unsigned> argumentOf(func::FuncOp func, Value v) {
  auto arg = dyn_cast<BlockArgument>(v);
  if (!arg || arg.getOwner() != &func.getBody().front())
    return std::nullopt;
  return arg.getArgNumber();
}

LogicalResult addABI(func::FuncOp func, AttentionOp op, VariantOp variant, bool splitKV) {
  MLIRContext *ctx = func.getContext();
  Builder b(ctx);
  Location loc = op.getLoc();
  std::optional<unsigned> out = argumentOf(func, op.getOut());
  if (!out)
    return op.emitOpError() << "attn-runtime-abi: the output must be an argument of '"
                            << func.getSymName() << "' (the runtime passes it)";
  if (!op.getSummaries().empty() || op.getGateRows())
    return op.emitOpError() << "attn-runtime-abi: has summaries or gate rows but no status, "
                               "stats or work: give all of the runtime's operands or none";
  // Before `out`: a summary per rank-1 or rank-2 integer buffer, then the routed rows.
  int64_t dyn = ShapedType::kDynamic;
  SmallVector<Type> before(variant.getSummarizedBuffers().size(),
                           MemRefType::get({dyn, dyn, 2}, b.getI64Type()));
  unsigned summaries = before.size();
  if (variant.isGated())
    before.append(2, MemRefType::get({dyn}, b.getI32Type()));
  // At the end: status, stats, begin, end[, phase, splits, keys per part,
  // partial acc, partial stats].
  SmallVector<Type> after = {MemRefType::get({1}, b.getI32Type()),
                             MemRefType::get({3}, b.getI64Type()), b.getIndexType(),
                             b.getIndexType()};
  auto partialType = MemRefType::get({dyn, dyn, dyn, dyn, dyn}, b.getF32Type());
  if (splitKV)
    after.append({b.getIndexType(), b.getIndexType(), b.getIndexType(), partialType, partialType});
  unsigned end = func.getNumArguments() + before.size();
  SmallVector<unsigned> at(before.size(), *out);
  at.append(after.size(), func.getNumArguments());
  SmallVector<Type> types(before);
  types.append(after);
  SmallVector<DictionaryAttr> attrs(types.size(), DictionaryAttr::get(ctx));
  SmallVector<Location> locs(types.size(), loc);
  if (failed(func.insertArguments(at, types, attrs, locs)))
    return op.emitOpError() << "attn-runtime-abi: cannot extend '" << func.getSymName() << "'";
  auto arg = [&](unsigned i) -> Value { return func.getArgument(i); };
  SmallVector<Value> summaryArgs;
  for (unsigned i = 0; i < summaries; ++i)
    summaryArgs.push_back(arg(*out + i));
  op.getSummariesMutable().assign(summaryArgs);
  if (variant.isGated()) {
    op.getGateRowsMutable().assign(arg(*out + summaries));
    op.getGateCountsMutable().assign(arg(*out + summaries + 1));
  }
  op.getStatusMutable().assign(arg(end));
  op.getStatsMutable().assign(arg(end + 1));
  op.getWorkBeginMutable().assign(arg(end + 2));
  op.getWorkEndMutable().assign(arg(end + 3));
  if (splitKV) {
    op.getSplitPhaseMutable().assign(arg(end + 4));
    op.getSplitCountMutable().assign(arg(end + 5));
    op.getSplitPartKeysMutable().assign(arg(end + 6));
    op.getPartialAccMutable().assign(arg(end + 7));
    op.getPartialStatsMutable().assign(arg(end + 8));
  }
  return success();
}

struct AttnRuntimeABIPass : heed::impl::AttnRuntimeABIBase<AttnRuntimeABIPass> {
  using AttnRuntimeABIBase::AttnRuntimeABIBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto func : module.getOps<func::FuncOp>()) {
      SmallVector<AttentionOp> ops;
      func.walk([&](AttentionOp op) {
        if (!hasABI(op))
          ops.push_back(op);
      });
      if (ops.empty())
        continue;
      if (ops.size() > 1) {
        ops[1].emitOpError() << "attn-runtime-abi: '" << func.getSymName()
                             << "' holds more than one attention op; the runtime calls a "
                                "kernel with one";
        return signalPassFailure();
      }
      auto variant = SymbolTable::lookupNearestSymbolFrom<VariantOp>(ops[0],
                                                                    ops[0].getVariantAttr());
      if (!variant || failed(addABI(func, ops[0], variant, splitKV)))
        return signalPassFailure();
    }
  }
};

} // namespace
