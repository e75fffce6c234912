// The tile ops that lower to the same scalar code on every target: the
// classifier, the key-range search, the route value, the sink logit, the
// statistics and the tile counts.
#include "Patterns.h"

#include "BlockSearch.h"
#include "IndexExpr.h"
#include "VariantRegions.h"

#include "dialects/attn/AttnTileOps.h"
#include "dialects/attn/TileMath.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace heed::attn;

namespace heed {

llvm::SmallVector<IndexExpr> spanOrigin(TileSpanOp span, IndexExpr seq, ValueRange coords) {
  ArrayRef<int64_t> grid = span.getTiling().getGrid();
  ArrayRef<int64_t> patch = span.getTiling().getPatch(span.getSide());
  if (coords.size() == 1)
    return tileOrigin(grid, patch, seq.with(coords[0]));
  SmallVector<IndexExpr> origin;
  for (auto [k, c] : llvm::enumerate(coords))
    origin.push_back(seq.with(c) * patch[k]);
  return origin;
}

namespace {

/// The variant an op names (its verifier made sure it exists).
VariantOp variantOf(Operation *op, FlatSymbolRefAttr name) { return lookupVariant(op, name); }

/// The blocks region of `variant` on the box [qLo, qHi] x [kvLo, kvHi].
Value classify(OpBuilder &b, Location loc, VariantOp variant, Value batch, Value head,
               ArrayRef<Value> box, ValueRange buffers, ValueRange summaries, Value route) {
  SmallVector<Value> leading = {batch, head};
  leading.append(box.begin(), box.end());
  SmallVector<Value> all(buffers);
  all.append(summaries.begin(), summaries.end());
  RegionInlining how;
  how.leading = leading;
  how.buffers = all;
  how.route = route;
  return inlineVariantRegion(b, loc, variant.getBlocks(), how);
}

struct ClassifyLowering : OpConversionPattern<TileClassifyOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileClassifyOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Value box[] = {adaptor.getQLo(), adaptor.getQHi(), adaptor.getKvLo(), adaptor.getKvHi()};
    rewriter.replaceOp(op, classify(rewriter, op.getLoc(), variantOf(op, op.getVariantAttr()),
                                    adaptor.getBatch(), adaptor.getHead(), box,
                                    adaptor.getBuffers(), adaptor.getSummaries(),
                                    adaptor.getRoute()));
    return success();
  }
};

struct KVRangeLowering : OpConversionPattern<TileKVRangeOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileKVRangeOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    ArrayRef<int64_t> grid = op.getTiling().getGrid(), patch = op.getTiling().getKv();
    size_t k = op.getDim();
    IndexExpr seq(rewriter, loc, adaptor.getSeq());
    IndexExpr rows = gridRows(grid, seq);
    // The last digit along dim m, and the patches along dim k.
    auto last = [&](size_t m) { return m == 0 ? rows - seq.constant(1) : seq.constant(grid[m - 1] - 1); };
    IndexExpr count = k == 0 ? ceilDiv(rows, patch[0]) : seq.constant(patchesAlong(grid, patch, k));
    VariantOp variant = variantOf(op, op.getVariantAttr());
    // Whether the box (outer dims: their patch; dim k: digits [from, to];
    // inner dims: whole) is EMPTY for the query box.
    auto isEmpty = [&](IndexExpr from, IndexExpr to) -> Value {
      SmallVector<IndexExpr> lo, hi;
      for (size_t m = 0; m < patch.size(); ++m) {
        if (m < k) {
          IndexExpr origin = seq.with(adaptor.getOuter()[m]) * patch[m];
          lo.push_back(origin);
          hi.push_back(min(origin + (patch[m] - 1), last(m)));
        } else if (m == k) {
          lo.push_back(from);
          hi.push_back(to);
        } else {
          lo.push_back(seq.constant(0));
          hi.push_back(last(m));
        }
      }
      Value box[] = {adaptor.getQLo(), adaptor.getQHi(), tokenOf<IndexExpr>(grid, lo),
                     tokenOf<IndexExpr>(grid, hi)};
      Value cls = classify(rewriter, loc, variant, adaptor.getBatch(), adaptor.getHead(), box,
                           adaptor.getBuffers(), adaptor.getSummaries(), adaptor.getRoute());
      return arith::CmpIOp::create(
          rewriter, loc, arith::CmpIPredicate::eq, cls,
          arith::ConstantIntOp::create(rewriter, loc, static_cast<int64_t>(BlockClass::Empty), 8));
    };
    Value one = arith::ConstantIntOp::create(rewriter, loc, 1, 1);
    Value first = searchFirst(rewriter, loc, seq.constant(0), count, [&](Value x) -> Value {
      IndexExpr to = min((seq.with(x) + 1) * patch[k] - seq.constant(1), last(k));
      return arith::XOrIOp::create(rewriter, loc, isEmpty(seq.constant(0), to), one);
    });
    Value end = searchFirst(rewriter, loc, first, count, [&](Value y) -> Value {
      return isEmpty(seq.with(y) * patch[k], last(k));
    });
    rewriter.replaceOp(op, {first, end});
    return success();
  }
};

/// An op that runs one of the variant's per-head regions (route, sink) on
/// (b, h): attn.tile.route, attn.tile.sink.
template <typename HeadOp, Region &(VariantOp::*region)()>
struct HeadRegionLowering : OpConversionPattern<HeadOp> {
  using OpConversionPattern<HeadOp>::OpConversionPattern;
  LogicalResult matchAndRewrite(HeadOp op, typename HeadOp::Adaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Value leading[] = {adaptor.getBatch(), adaptor.getHead()};
    RegionInlining how;
    how.leading = leading;
    how.buffers = adaptor.getBuffers();
    how.status = adaptor.getStatus();
    VariantOp variant = variantOf(op, op.getVariantAttr());
    rewriter.replaceOp(op, inlineVariantRegion(rewriter, op.getLoc(), (variant.*region)(), how));
    return success();
  }
};
using RouteLowering = HeadRegionLowering<TileRouteOp, &VariantOp::getRoute>;
using SinkLowering = HeadRegionLowering<TileSinkOp, &VariantOp::getSink>;

struct CountLowering : OpConversionPattern<TileCountOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileCountOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value cls = adaptor.getBlockClass();
    auto is = [&](BlockClass c) {
      Value v = arith::ConstantIntOp::create(rewriter, loc, static_cast<int64_t>(c), 8);
      return arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, cls, v).getResult();
    };
    Value flags[] = {arith::ConstantIntOp::create(rewriter, loc, 1, 1), is(BlockClass::Full),
                     is(BlockClass::Partial)};
    for (auto [slot, flag] : llvm::enumerate(flags)) {
      Value at = arith::ConstantIndexOp::create(rewriter, loc, slot);
      Value old = memref::LoadOp::create(rewriter, loc, adaptor.getStats(), ValueRange{at});
      Value inc = arith::ExtUIOp::create(rewriter, loc, rewriter.getI64Type(), flag);
      memref::StoreOp::create(rewriter, loc, arith::AddIOp::create(rewriter, loc, old, inc),
                              adaptor.getStats(), ValueRange{at});
    }
    rewriter.eraseOp(op);
    return success();
  }
};

struct NumTilesLowering : OpConversionPattern<NumTilesOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(NumTilesOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    TilingAttr tiling = op.getTilingAttr();
    if (!tiling)
      return op.emitOpError() << "has no tiling: run --attn-choose-tiling first";
    IndexExpr seq(rewriter, op.getLoc(), adaptor.getSeq());
    rewriter.replaceOp(op, numTiles<IndexExpr>(tiling.getGrid(), tiling.getPatch(op.getSide()),
                                               seq).value);
    return success();
  }
};

} // namespace

void populateTileCommonPatterns(const TypeConverter &converter, RewritePatternSet &patterns,
                                bool statistics) {
  patterns.add<ClassifyLowering, KVRangeLowering, RouteLowering, SinkLowering, NumTilesLowering>(
      converter, patterns.getContext());
  if (statistics)
    patterns.add<CountLowering>(converter, patterns.getContext());
}

} // namespace heed
