// SIMT patterns for the work items and the tile ops that move data:
// attn.tile.work (a thread past the query sequence leaves), attn.tile.load
// (the thread's query row into private memory; k/v tiles stay in global
// memory), attn.tile.fill, attn.tile.store (normalize, write the row and its
// lse), and split-KV's attn.tile.store_partial / merge_partials.
#include "SIMTPatterns.h"

#include "../TileCommon/Normalize.h"
#include "../TileCommon/VariantRegions.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::simt {
namespace {

/// A private buffer at the kernel's entry.
Value allocaAtEntry(OpBuilder &b, Operation *anchor, Type type) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&anchor->getParentOfType<gpu::GPUFuncOp>().getBody().front());
  return memref::AllocaOp::create(b, anchor->getLoc(), cast<MemRefType>(type));
}

/// A work item per thread block, as on every GPU target, but a thread whose
/// query row is past the sequence has nothing to do and, with no barrier to
/// reach, skips the item (the last query tile's spare warps would otherwise
/// walk every key). Takes precedence over the shared work pattern.
struct WorkLowering : OpConversionPattern<TileWorkOp> {
  WorkLowering(const TypeConverter &converter, MLIRContext *ctx)
      : OpConversionPattern(converter, ctx, /*benefit=*/2) {}
  LogicalResult matchAndRewrite(TileWorkOp op, OpAdaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (op.getPersistent())
      return op.emitOpError() << "is persistent (--attn-persistent-workers): the warp-specialized "
                                 "matrix-core schedule's";
    Location loc = op.getLoc();
    Block &body = op.getBody().front();
    // The item's query span: its tile and Sq (defined outside the item).
    // The tile is the item's t, or t / count under split-KV's parts
    // (--attn-split-kv{one-loop}).
    auto outside = [&](Value v) { return v.getParentRegion()->isProperAncestor(&op.getBody()); };
    Value parts;
    auto tileOfItem = [&](Value coord) {
      if (coord == body.getArgument(2))
        return true;
      auto div = coord.getDefiningOp<arith::DivUIOp>();
      if (!div || div.getLhs() != body.getArgument(2) || !outside(div.getRhs()))
        return false;
      parts = div.getRhs();
      return true;
    };
    TileSpanOp rows;
    for (auto span : body.getOps<TileSpanOp>())
      if (span.getSide() == Side::Q && span.getCoords().size() == 1 &&
          tileOfItem(span.getCoords()[0]) && outside(span.getSeq()))
        rows = span;
    if (!rows)
      return rewriter.notifyMatchFailure(op, "no query span");
    SmallVector<Value, 3> ids = gpu_tile::workItemIds(rewriter, loc);
    int64_t lanes = rows.getResult().getType().getSize();
    Value tile = parts ? arith::DivUIOp::create(rewriter, loc, ids[2], parts).getResult() : ids[2];
    Value first = arith::MulIOp::create(rewriter, loc, tile, index(rewriter, loc, lanes)), row;
    auto ifOp = ifRowInSequence(rewriter, loc, first, rows.getSeq(), row);
    rewriter.inlineBlockBefore(&body, ifOp.getThenRegion().front().getTerminator(), ids);
    rewriter.eraseOp(op);
    return success();
  }
};

struct LoadLowering : OpConversionPattern<TileLoadOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileLoadOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    ValueRange span = adaptor.getSpan();
    Value tensor = adaptor.getTensor().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    auto type = cast<TileType>(op.getResult().getType());
    if (type.getRole() != TileRole::Q) {
      // Nothing to stage: qk and pv read the rows where they are (a paged
      // cache's through its table).
      SmallVector<Value> key = {tensor, batch, head, span[0], span[1]};
      if (!adaptor.getPageTable().empty())
        key.push_back(adaptor.getPageTable().front());
      rewriter.replaceOpWithMultiple(op, {key});
      return success();
    }
    // The thread's row in f32; a row that is not real (a hole) reads zeros.
    Value buf = allocaAtEntry(rewriter, op, getTypeConverter()->convertType(type));
    auto rows = gpu_tile::QueryRows::of(op.getSpan(), span);
    Value thread = gpu_tile::threadId(rewriter, loc);
    Value real = rows.contains(rewriter, loc, thread);
    // Loaded only where real: a hole's row may lie past the tensor (the rows
    // after a short entry, a packed batch's end), which a GPU must not read.
    Value src = rows.token(rewriter, loc, thread, real);
    Value zero = f32(rewriter, loc, 0);
    auto ifReal = scf::IfOp::create(rewriter, loc, real, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPoint(ifReal.thenYield());
      forEach(rewriter, loc, type.getCols(), [&](Value d) {
        Value x = toF32(rewriter, loc,
                        memref::LoadOp::create(rewriter, loc, tensor,
                                               at(op.getLayout(), batch, head, src, d)));
        memref::StoreOp::create(rewriter, loc, x, buf, ValueRange{d});
      });
      rewriter.setInsertionPoint(ifReal.elseYield());
      forEach(rewriter, loc, type.getCols(), [&](Value d) {
        memref::StoreOp::create(rewriter, loc, zero, buf, ValueRange{d});
      });
    }
    rewriter.replaceOp(op, buf);
    return success();
  }
};

struct FillLowering : OpConversionPattern<TileFillOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileFillOp op, OpAdaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = cast<TileType>(op.getResult().getType());
    Value value = f32(rewriter, loc, op.getValue().convertToDouble());
    switch (type.getRole()) {
    case TileRole::S:
      rewriter.replaceOpWithMultiple(op, {SmallVector<Value>(type.getCols(), value)});
      return success();
    case TileRole::Row:
      rewriter.replaceOp(op, value);
      return success();
    case TileRole::Acc: {
      Value buf = allocaAtEntry(rewriter, op, getTypeConverter()->convertType(type));
      forEach(rewriter, loc, type.getCols(),
              [&](Value d) { memref::StoreOp::create(rewriter, loc, value, buf, ValueRange{d}); });
      rewriter.replaceOp(op, buf);
      return success();
    }
    default:
      return rewriter.notifyMatchFailure(op, "q, k and v tiles are loaded, not filled");
    }
  }
};

/// out[row] = acc / l (0 where l = 0: every key masked) and lse = m + log l
/// (-inf there), for a thread whose row is real; with a sink or for sigmoid
/// as finishRow says; with a gate, the row times its gate (lse -inf where the
/// gate is 0).
struct StoreLowering : OpConversionPattern<TileStoreOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileStoreOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (op.getLaneSinks()) // --attn-pack-gqa's per-row sinks: a CPU schedule
      return rewriter.notifyMatchFailure(op, "per-row sink logits are lowered on the CPU only");
    Location loc = op.getLoc();
    ValueRange span = adaptor.getSpan();
    Value out = adaptor.getOut().front(), acc = adaptor.getAcc().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    Value m = adaptor.getMax().front(), l = adaptor.getSum().front();
    Type outElt = cast<MemRefType>(out.getType()).getElementType();
    auto rows = gpu_tile::QueryRows::of(op.getSpan(), span);
    Value thread = gpu_tile::threadId(rewriter, loc);
    auto ifOp = scf::IfOp::create(rewriter, loc, rows.contains(rewriter, loc, thread),
                                  /*withElseRegion=*/false);
    rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
    Value row = rows.token(rewriter, loc, thread);
    RowFinish finish = finishRow(rewriter, loc, m, l,
                                 optionalValue(adaptor.getSink()),
                                 op.isSigmoid(), mathExp, mathLog);
    Value inv = finish.scale, lse = finish.lse;
    if (Value gate = gpu_tile::rowGate(rewriter, loc, op, adaptor.getGate(), batch, head, row)) {
      inv = arith::MulFOp::create(rewriter, loc, inv, gate);
      Value notRouted = arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::OEQ, gate,
                                              f32(rewriter, loc, 0));
      lse = arith::SelectOp::create(rewriter, loc, notRouted, f32(rewriter, loc, -INFINITY), lse);
    }
    forEach(rewriter, loc, cast<MemRefType>(acc.getType()).getDimSize(0), [&](Value d) {
      Value x = arith::MulFOp::create(rewriter, loc,
                                      memref::LoadOp::create(rewriter, loc, acc, ValueRange{d}), inv);
      if (!outElt.isF32())
        x = arith::TruncFOp::create(rewriter, loc, outElt, x);
      memref::StoreOp::create(rewriter, loc, x, out, at(op.getLayout(), batch, head, row, d));
    });
    if (!adaptor.getLse().empty()) {
      memref::StoreOp::create(rewriter, loc, lse, adaptor.getLse().front(),
                              ValueRange{batch, head, row});
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// Split-KV's partial phase: the thread's row's unnormalized accumulator,
/// max and sum at [split, batch, head, row] of the workspace.
struct StorePartialLowering : OpConversionPattern<TileStorePartialOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileStorePartialOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value acc = adaptor.getAcc().front();
    Value pacc = adaptor.getPartialAcc().front(), pstats = adaptor.getPartialStats().front();
    Value split = adaptor.getSplit().front(), batch = adaptor.getBatch().front();
    Value head = adaptor.getHead().front();
    auto rows = gpu_tile::QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value thread = gpu_tile::threadId(rewriter, loc);
    auto ifOp = scf::IfOp::create(rewriter, loc, rows.contains(rewriter, loc, thread), false);
    rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
    Value row = rows.token(rewriter, loc, thread);
    forEach(rewriter, loc, cast<MemRefType>(acc.getType()).getDimSize(0), [&](Value d) {
      memref::StoreOp::create(rewriter, loc,
                              memref::LoadOp::create(rewriter, loc, acc, ValueRange{d}), pacc,
                              ValueRange{split, batch, head, row, d});
    });
    gpu_tile::storeRowStats(rewriter, loc, pstats, {split, batch, head, row},
                            adaptor.getMax().front(), adaptor.getSum().front());
    rewriter.eraseOp(op);
    return success();
  }
};

/// Split-KV's merge phase: the splits' states of the thread's row read
/// back (a row that is not real reads nothing) and merged as online-softmax
/// steps (summed for sigmoid).
struct MergePartialsLowering : OpConversionPattern<TileMergePartialsOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileMergePartialsOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Type accType = getTypeConverter()->convertType(op.getAcc().getType());
    int64_t width = cast<MemRefType>(accType).getDimSize(0);
    Value pacc = adaptor.getPartialAcc().front(), pstats = adaptor.getPartialStats().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    auto rows = gpu_tile::QueryRows::of(op.getSpan(), adaptor.getSpan());
    Value thread = gpu_tile::threadId(rewriter, loc);
    Value real = rows.contains(rewriter, loc, thread);
    Value row = rows.token(rewriter, loc, thread, real);
    Value negInf = f32(rewriter, loc, -INFINITY), zero = f32(rewriter, loc, 0);
    Value acc = allocaAtEntry(rewriter, op, accType);
    forEach(rewriter, loc, width,
            [&](Value d) { memref::StoreOp::create(rewriter, loc, zero, acc, ValueRange{d}); });
    Type f32Type = rewriter.getF32Type();
    auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                   adaptor.getCount().front(), index(rewriter, loc, 1),
                                   ValueRange{negInf, zero});
    {
      OpBuilder::InsertionGuard guard(rewriter);
      rewriter.setInsertionPointToStart(loop.getBody());
      Value split = loop.getInductionVar();
      Value m = loop.getRegionIterArgs()[0], l = loop.getRegionIterArgs()[1];
      auto read = scf::IfOp::create(rewriter, loc, TypeRange{f32Type, f32Type}, real, true);
      {
        OpBuilder::InsertionGuard inner(rewriter);
        rewriter.setInsertionPointToStart(&read.getThenRegion().front());
        auto [ms, ls] = gpu_tile::loadRowStats(rewriter, loc, pstats, {split, batch, head, row});
        scf::YieldOp::create(rewriter, loc, ValueRange{ms, ls});
        rewriter.setInsertionPointToStart(&read.getElseRegion().front());
        scf::YieldOp::create(rewriter, loc, ValueRange{negInf, zero});
      }
      Value ms = read.getResult(0), ls = read.getResult(1);
      auto [mNew, a, as] = mergeFactors(rewriter, loc, m, ms, op.getSigmoid(), mathExp);
      auto update = scf::IfOp::create(rewriter, loc, real, false);
      {
        OpBuilder::InsertionGuard inner(rewriter);
        rewriter.setInsertionPointToStart(&update.getThenRegion().front());
        forEach(rewriter, loc, width, [&](Value d) {
          Value x = memref::LoadOp::create(rewriter, loc, acc, ValueRange{d});
          Value y = memref::LoadOp::create(rewriter, loc, pacc, ValueRange{split, batch, head, row, d});
          memref::StoreOp::create(
              rewriter, loc,
              arith::AddFOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, x, a),
                                    arith::MulFOp::create(rewriter, loc, y, as)),
              acc, ValueRange{d});
        });
      }
      Value lNew = arith::AddFOp::create(rewriter, loc, arith::MulFOp::create(rewriter, loc, l, a),
                                         arith::MulFOp::create(rewriter, loc, ls, as));
      scf::YieldOp::create(rewriter, loc, ValueRange{mNew, lNew});
    }
    rewriter.replaceOpWithMultiple(op, {{acc}, {loop.getResult(0)}, {loop.getResult(1)}});
    return success();
  }
};

} // namespace

void populateLoadStorePatterns(const SIMTTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<WorkLowering, LoadLowering, FillLowering, StoreLowering, StorePartialLowering,
               MergePartialsLowering>(converter, patterns.getContext());
}

} // namespace heed::simt
