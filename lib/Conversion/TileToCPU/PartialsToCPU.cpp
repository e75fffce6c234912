// CPU patterns for the split-KV schedule's ops (--attn-split-kv):
//   attn.tile.store_partial: a split's unnormalized accumulator rows, max and
//     sum into the workspace, per real lane (its head and token);
//   attn.tile.merge_partials: the splits' states read back and merged lane
//     by lane as online-softmax steps (sums of accumulators for sigmoid).
#include "CPUPatterns.h"

#include "../TileCommon/Normalize.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {
namespace {

struct StorePartialLowering : OpConversionPattern<TileStorePartialOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileStorePartialOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value acc = adaptor.getAcc().front(), m = adaptor.getMax().front();
    Value l = adaptor.getSum().front();
    Value pacc = adaptor.getPartialAcc().front(), pstats = adaptor.getPartialStats().front();
    Value split = adaptor.getSplit().front(), batch = adaptor.getBatch().front();
    Span span(adaptor.getSpan());
    auto accType = cast<MemRefType>(acc.getType());
    auto rowType = VectorType::get({accType.getDimSize(1)}, rewriter.getF32Type());
    Value c0 = index(rewriter, loc, 0), c1 = index(rewriter, loc, 1);
    forRealLanes(rewriter, loc, span, adaptor.getHead().front(), accType.getDimSize(0),
                 [&](Value i, Value head, Value token) {
                   Value row = vector::LoadOp::create(rewriter, loc, rowType, acc,
                                                      ValueRange{i, c0});
                   vector::StoreOp::create(rewriter, loc, row, pacc,
                                           ValueRange{split, batch, head, token, c0});
                   memref::StoreOp::create(rewriter, loc, extractAt(rewriter, loc, m, i), pstats,
                                           ValueRange{split, batch, head, token, c0});
                   memref::StoreOp::create(rewriter, loc, extractAt(rewriter, loc, l, i), pstats,
                                           ValueRange{split, batch, head, token, c1});
                 });
    rewriter.eraseOp(op);
    return success();
  }
};

struct MergePartialsLowering : OpConversionPattern<TileMergePartialsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileMergePartialsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto accType = cast<MemRefType>(getTypeConverter()->convertType(op.getAcc().getType()));
    auto laneType = cast<VectorType>(getTypeConverter()->convertType(op.getMax().getType()));
    int64_t lanes = accType.getDimSize(0), width = accType.getDimSize(1);
    auto rowType = VectorType::get({width}, rewriter.getF32Type());
    Value pacc = adaptor.getPartialAcc().front(), pstats = adaptor.getPartialStats().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    Span span(adaptor.getSpan());
    Value c0 = index(rewriter, loc, 0), c1 = index(rewriter, loc, 1);
    // The empty state: zero rows, max -inf, sum 0.
    Value acc = allocaAtEntry(rewriter, op, accType);
    auto zeroRows = scf::ForOp::create(rewriter, loc, c0, index(rewriter, loc, lanes), c1);
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(zeroRows.getBody());
      vector::StoreOp::create(rewriter, loc, splat(rewriter, loc, rowType, 0), acc,
                              ValueRange{zeroRows.getInductionVar(), c0});
    }
    // Each split's max and sum per lane (holes: -inf and 0), via the stack.
    auto statType = MemRefType::get({lanes}, rewriter.getF32Type());
    Value maxes = allocaAtEntry(rewriter, op, statType), sums = allocaAtEntry(rewriter, op, statType);
    Value m0 = splat(rewriter, loc, laneType, -INFINITY), l0 = splat(rewriter, loc, laneType, 0);
    auto splits = scf::ForOp::create(rewriter, loc, c0, adaptor.getCount().front(), c1,
                                     ValueRange{m0, l0});
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(splits.getBody());
      Value s = splits.getInductionVar();
      Value m = splits.getRegionIterArgs()[0], l = splits.getRegionIterArgs()[1];
      vector::StoreOp::create(rewriter, loc, m0, maxes, ValueRange{c0});
      vector::StoreOp::create(rewriter, loc, l0, sums, ValueRange{c0});
      forRealLanes(rewriter, loc, span, head, lanes, [&](Value i, Value h, Value token) {
        for (auto [buf, at] : {std::pair{maxes, c0}, std::pair{sums, c1}})
          memref::StoreOp::create(
              rewriter, loc,
              memref::LoadOp::create(rewriter, loc, pstats, ValueRange{s, batch, h, token, at}),
              buf, ValueRange{i});
      });
      Value ms = vector::LoadOp::create(rewriter, loc, laneType, maxes, ValueRange{c0});
      Value ls = vector::LoadOp::create(rewriter, loc, laneType, sums, ValueRange{c0});
      // One online-softmax step (mergeFactors).
      auto [mNew, a, as] = mergeFactors(rewriter, loc, m, ms, op.getSigmoid(), cpuExp);
      forRealLanes(rewriter, loc, span, head, lanes, [&](Value i, Value h, Value token) {
        Value mine = vector::LoadOp::create(rewriter, loc, rowType, acc, ValueRange{i, c0});
        Value theirs = vector::LoadOp::create(rewriter, loc, rowType, pacc,
                                              ValueRange{s, batch, h, token, c0});
        auto scaled = [&](Value row, Value by) {
          return arith::MulFOp::create(
              rewriter, loc, row,
              vector::BroadcastOp::create(rewriter, loc, rowType, extractAt(rewriter, loc, by, i)));
        };
        vector::StoreOp::create(rewriter, loc,
                                arith::AddFOp::create(rewriter, loc, scaled(mine, a),
                                                      scaled(theirs, as)),
                                acc, ValueRange{i, c0});
      });
      Value lNew = arith::AddFOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, l, a),
                                         arith::MulFOp::create(rewriter, loc, ls, as));
      if (op.getSigmoid()) // no statistics: the store reads neither
        scf::YieldOp::create(rewriter, loc, ValueRange{m, l});
      else
        scf::YieldOp::create(rewriter, loc, ValueRange{mNew, lNew});
    }
    rewriter.replaceOp(op, {acc, splits.getResult(0), splits.getResult(1)});
    return success();
  }
};

} // namespace

void populatePartialPatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<StorePartialLowering, MergePartialsLowering>(converter, patterns.getContext());
}

} // namespace heed::cpu
