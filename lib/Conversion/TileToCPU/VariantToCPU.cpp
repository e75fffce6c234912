// CPU pattern for attn.tile.apply: the variant's score modifier and mask on
// a score tile, key by key, vectorized over the tile's rows (one lane per
// query row): the regions are inlined with every scalar widened to a vector,
// and buffer reads become bounds-checked gathers. FULL tiles (mask_if false)
// skip the mask.
#include "CPUPatterns.h"

#include "../TileCommon/VariantRegions.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {

/// A buffer as one flat memref (for gathers) and its dims, made once at the
/// function's entry.
std::pair<Value, SmallVector<Value>> flatten(OpBuilder &b, Operation *anchor, Value buffer) {
  OpBuilder::InsertionGuard guard(b);
  Location loc = anchor->getLoc();
  auto func = anchor->getParentOfType<FunctionOpInterface>();
  Block &entry = func.getFunctionBody().front();
  if (auto arg = dyn_cast<BlockArgument>(buffer); arg && arg.getOwner() == &entry)
    b.setInsertionPointToStart(&entry);
  else
    b.setInsertionPointAfterValue(buffer);
  auto type = cast<MemRefType>(buffer.getType());
  SmallVector<Value> dims;
  for (int64_t d = 0; d < type.getRank(); ++d)
    dims.push_back(memref::DimOp::create(b, loc, buffer, d));
  if (type.getRank() == 1 && type.getLayout().isIdentity())
    return {buffer, dims};
  if (type.getRank() == 0) // one element: a view of shape [1]
    return {memref::ReinterpretCastOp::create(b, loc, MemRefType::get({1}, type.getElementType()),
                                              buffer, 0, ArrayRef<int64_t>{1},
                                              ArrayRef<int64_t>{1}),
            dims};
  SmallVector<ReassociationIndices> all(1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    all[0].push_back(d);
  return {memref::CollapseShapeOp::create(b, loc, buffer, all), dims};
}

/// attn.load on vectors of indices: a masked gather from the flattened
/// buffer; lanes out of range read 0, and if any lane that is a real (row,
/// key) pair is out of range, `status` records the buffer's number.
Value gatherLoad(OpBuilder &b, Location loc, Operation *anchor, heed::attn::LoadOp load,
                 Value buffer, ValueRange indices, unsigned which, Value laneValid,
                 Value status) {
  auto [flat, dims] = flatten(b, anchor, buffer);
  auto laneType = cast<VectorType>(laneValid.getType());
  auto widen = [&](Type t) { return VectorType::get(laneType.getShape(), t); };
  VectorType idxType = widen(b.getIndexType());
  Value zeroIdx = arith::ConstantIndexOp::create(b, loc, 0);
  Value linear, inBounds;
  for (auto [d, i] : llvm::enumerate(indices)) {
    Value size = vector::BroadcastOp::create(b, loc, idxType, dims[d]);
    Value ok = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i,
                              vector::BroadcastOp::create(b, loc, idxType, zeroIdx)),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, size));
    inBounds = inBounds ? Value(arith::AndIOp::create(b, loc, inBounds, ok)) : ok;
    linear = linear ? Value(arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, linear, size), i))
                    : i;
  }
  if (!linear) { // rank 0
    linear = vector::BroadcastOp::create(b, loc, idxType, zeroIdx);
    inBounds = vector::BroadcastOp::create(b, loc, laneType, arith::ConstantIntOp::create(b, loc, 1, 1));
  }
  Type elt = cast<MemRefType>(buffer.getType()).getElementType();
  Value zero = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(widen(elt), b.getZeroAttr(elt)));
  Value got = vector::GatherOp::create(b, loc, widen(elt), flat, ValueRange{zeroIdx}, linear,
                                       inBounds, zero);
  if (status) {
    Value trueVec = vector::BroadcastOp::create(b, loc, laneType,
                                                arith::ConstantIntOp::create(b, loc, 1, 1));
    Value bad = arith::AndIOp::create(b, loc, arith::XOrIOp::create(b, loc, inBounds, trueVec),
                                      laneValid);
    Value any = vector::ReductionOp::create(b, loc, vector::CombiningKind::OR, bad);
    auto ifOp = scf::IfOp::create(b, loc, any, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    memref::StoreOp::create(b, loc, arith::ConstantIntOp::create(b, loc, which + 1, 32), status,
                            ValueRange{zeroIdx});
  }
  return extendLoaded(b, loc, got, load.getResult().getType());
}

bool isIdentityScore(VariantOp variant) {
  Block &block = variant.getScore().front();
  return cast<YieldOp>(block.getTerminator()).getValue() == block.getArgument(0);
}

bool isConstantTrueMask(VariantOp variant) {
  APInt value;
  Value yielded = cast<YieldOp>(variant.getMask().front().getTerminator()).getValue();
  return matchPattern(yielded, m_ConstantInt(&value)) && value.isOne();
}

Value visibleLanes(OpBuilder &b, Location loc, VariantOp variant, RegionInlining &how,
                   ValueRange leading, Value laneValid, ValueRange maskIf) {
  if (isConstantTrueMask(variant))
    return laneValid;
  how.leading = leading;
  auto masked = [&]() {
    return arith::AndIOp::create(b, loc, laneValid,
                                 inlineVariantRegion(b, loc, variant.getMask(), how))
        .getResult();
  };
  if (maskIf.empty())
    return masked();
  // FULL tiles skip the mask: every pair of the box is visible.
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{laneValid.getType()}, maskIf.front(),
                                /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{masked()});
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{laneValid});
  return ifOp.getResult(0);
}

namespace {

struct ApplyLowering : OpConversionPattern<TileApplyOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileApplyOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    VariantOp variant = lookupVariant(op, op.getVariantAttr());
    Location loc = op.getLoc();
    Value sT = adaptor.getScores().front();
    Span rows(adaptor.getRows()), cols(adaptor.getCols());
    auto sType = cast<MemRefType>(sT.getType());
    int64_t keys = sType.getDimSize(0), lanes = sType.getDimSize(1);
    auto laneType = VectorType::get({lanes}, rewriter.getF32Type());
    auto maskType = VectorType::get({lanes}, rewriter.getI1Type());
    auto idxType = VectorType::get({lanes}, rewriter.getIndexType());
    Value c0 = index(rewriter, loc, 0);
    Value bV = vector::BroadcastOp::create(rewriter, loc, idxType, adaptor.getBatch().front());
    Value hV = arith::AddIOp::create(
        rewriter, loc, vector::BroadcastOp::create(rewriter, loc, idxType, adaptor.getHead().front()),
        rows.heads);
    Value route;
    if (!adaptor.getRoute().empty())
      route = vector::BroadcastOp::create(rewriter, loc, VectorType::get({lanes}, rewriter.getI64Type()),
                                          adaptor.getRoute().front());
    Value status = adaptor.getStatus().empty() ? Value() : adaptor.getStatus().front();
    SmallVector<Value> buffers;
    for (ValueRange b : adaptor.getBuffers())
      buffers.push_back(b.front());
    auto loop = scf::ForOp::create(rewriter, loc, c0, index(rewriter, loc, keys),
                                   index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    Value j = loop.getInductionVar();
    Value kv = vector::BroadcastOp::create(
        rewriter, loc, idxType, vector::ExtractOp::create(rewriter, loc, cols.tokens, ArrayRef<OpFoldResult>{j}));
    Value keyReal = vector::ExtractOp::create(rewriter, loc, cols.real, ArrayRef<OpFoldResult>{j});
    Value laneValid = arith::AndIOp::create(rewriter, loc, rows.real,
                                            vector::BroadcastOp::create(rewriter, loc, maskType, keyReal));
    RegionInlining how;
    how.buffers = buffers;
    how.route = route;
    how.width = lanes;
    how.load = [&](OpBuilder &b, heed::attn::LoadOp load, Value buffer, ValueRange indices,
                   unsigned which) {
      return gatherLoad(b, loc, op, load, buffer, indices, which, laneValid, status);
    };
    Value s = vector::LoadOp::create(rewriter, loc, laneType, sT, ValueRange{j, c0});
    if (!isIdentityScore(variant)) {
      Value leading[] = {s, bV, hV, rows.tokens, kv};
      how.leading = leading;
      s = inlineVariantRegion(rewriter, loc, variant.getScore(), how);
    }
    Value leading[] = {bV, hV, rows.tokens, kv};
    Value visible = visibleLanes(rewriter, loc, variant, how, leading, laneValid,
                                 adaptor.getMaskIf());
    s = arith::SelectOp::create(rewriter, loc, visible, s, splat(rewriter, loc, laneType, -INFINITY));
    vector::StoreOp::create(rewriter, loc, s, sT, ValueRange{j, c0});
    rewriter.replaceOp(op, sT);
    return success();
  }
};

} // namespace

LogicalResult checkSupported(TileApplyOp op) {
  VariantOp variant = lookupVariant(op, op.getVariantAttr());
  for (auto [region, name] : {std::pair<Region *, const char *>{&variant.getScore(), "score"},
                              {&variant.getMask(), "mask"}})
    for (Operation &inner : region->front()) {
      if (isa<YieldOp, heed::attn::LoadOp, heed::attn::RouteOp, heed::attn::ShapeOp,
              arith::ConstantOp>(inner))
        continue;
      // Only elementwise ops can be widened to vectors over the rows.
      bool elementwise = inner.hasTrait<OpTrait::Elementwise>() || isa<arith::SelectOp>(inner);
      if (!elementwise || inner.getNumRegions() != 0)
        return inner.emitOpError()
               << "in the '" << name
               << "' region cannot be lowered to the CPU: only elementwise arith/math ops, "
                  "constants and attn.load are supported";
    }
  for (Value buffer : op.getBuffers()) {
    auto type = cast<MemRefType>(buffer.getType());
    if (type.getRank() >= 1 && !type.getLayout().isIdentity())
      return op.emitOpError() << "needs contiguous (identity layout) buffers on the CPU";
  }
  return success();
}

void populateVariantPatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<ApplyLowering>(converter, patterns.getContext());
}

} // namespace heed::cpu
