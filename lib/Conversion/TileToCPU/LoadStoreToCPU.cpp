// CPU patterns for the tile ops that move data: attn.tile.load (q transposed,
// k/v as f32 rows, holes as zero rows), attn.tile.fill, attn.tile.store
// (normalize, gate, write the real rows and their lse).
#include "CPUPatterns.h"

#include "../TileCommon/KeyRows.h"
#include "../TileCommon/Normalize.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cmath>

using namespace mlir;
using namespace heed::attn;

namespace heed::cpu {
namespace {

/// Keys ahead of the one being staged whose row is prefetched: the staging
/// loop reads K and V one row at a time, and without prefetches a decode
/// step (every key read once) waits on memory row by row (docs/decode.md).
constexpr int64_t kPrefetchKeys = 64;
/// The same for whole tiles read in place (InPlaceTiles), whose products
/// prefetch between their dot products: two tiles ahead measured best (63-65%
/// of the copy on this VM's slower memory placement, 64% on its faster one,
/// against 53-62% at 16 keys and 59-64% at 64 and 128; docs/benchmarks.md).
constexpr int64_t kInPlacePrefetchKeys = 32;

/// Where key token t of a batch entry lives in a K or V tensor: contiguous
/// ([batch][t]), or a paged cache ([page_table[batch, t / P]][t % P]).
class KeyRows {
public:
  KeyRows(OpBuilder &b, Location loc, Layout layout, Value tensor, Value table, Value batch)
      : b(b), loc(loc), layout(layout), tensor(tensor), table(table), batch(batch) {
    seqDim = layout == Layout::BSHD ? 1 : 2;
    if (table)
      pageSize = pageSizeOf(tensor, layout);
  }

  /// (the index of the batch entry or page, the position in it) of `token`.
  std::pair<Value, Value> locate(Value token, Value page = {}) {
    return keyRow(b, loc, table, pageSize, batch, token, page);
  }

  /// The pages of a flat tile of `keys` keys from `lo` and of the tile
  /// `ahead` keys after it, if pages hold whole tiles: one page-table read
  /// per tile instead of one per key; else null.
  std::pair<Value, Value> tilePages(TileLoadOp op, Value lo, int64_t keys, int64_t ahead) {
    auto span = op.getSpan().getDefiningOp<TileSpanOp>();
    if (!table || !span || span.getCoords().size() != 1 || pageSize % keys != 0 ||
        ahead % keys != 0)
      return {};
    Value last = arith::SubIOp::create(b, loc, memref::DimOp::create(b, loc, table, 1),
                                       index(b, loc, 1));
    auto pageOf = [&](Value token) {
      Value slot = arith::DivUIOp::create(b, loc, token, index(b, loc, pageSize));
      return lookup(arith::MinUIOp::create(b, loc, slot, last));
    };
    return {pageOf(lo),
            pageOf(arith::AddIOp::create(b, loc, lo, index(b, loc, ahead)))};
  }

  /// Prefetches the row of key `token + distance` (clamped to the last
  /// key the tensor or page table can hold; a page number read from the
  /// table clamped to the cache), one prefetch per 64-byte line. `page`:
  /// that key's page where the caller read it already.
  void prefetchAhead(Value head, Value token, int64_t width, Value page, int64_t distance) {
    Value capacity = memref::DimOp::create(b, loc, tensor, seqDim);
    if (table)
      capacity = arith::MulIOp::create(b, loc, memref::DimOp::create(b, loc, table, 1),
                                       index(b, loc, pageSize));
    Value last = arith::SubIOp::create(b, loc, capacity, index(b, loc, 1));
    Value ahead = arith::MinUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, token, index(b, loc, distance)), last);
    if (table) {
      if (!page)
        page = lookup(arith::DivUIOp::create(b, loc, ahead, index(b, loc, pageSize)));
      Value pages = memref::DimOp::create(b, loc, tensor, 0);
      page = arith::MinUIOp::create(b, loc, page,
                                    arith::SubIOp::create(b, loc, pages, index(b, loc, 1)));
    }
    auto [outer, pos] = locate(ahead, page);
    Type elt = cast<MemRefType>(tensor.getType()).getElementType();
    int64_t perLine = 64 * 8 / elt.getIntOrFloatBitWidth();
    for (int64_t d = 0; d < width; d += perLine)
      memref::PrefetchOp::create(b, loc, tensor, at(layout, outer, head, pos, index(b, loc, d)),
                                 /*isWrite=*/false, /*localityHint=*/3, /*isDataCache=*/true);
  }

private:
  /// page_table[batch, slot] (a negative entry, huge as an index, is
  /// clamped where only a prefetch reads it).
  Value lookup(Value slot) { return lookupPage(b, loc, table, batch, slot); }

  OpBuilder &b;
  Location loc;
  Layout layout;
  Value tensor, table, batch;
  unsigned seqDim = 2;
  int64_t pageSize = 0;
};

/// Side of the blocks a query tile is transposed by (16 f32 lanes: one
/// AVX-512 register per block row).
constexpr int64_t kBlock = 16;

/// Row `row` of `to` (f32) from `width` elements of `tensor` at `where`.
void stageRow(OpBuilder &b, Location loc, Value tensor, ValueRange where, Value to, Value row,
              Type elementType, int64_t width) {
  Value x = vector::LoadOp::create(b, loc, VectorType::get({width}, elementType), tensor, where);
  if (!elementType.isF32())
    x = arith::ExtFOp::create(b, loc, VectorType::get({width}, b.getF32Type()), x);
  vector::StoreOp::create(b, loc, x, to, ValueRange{row, index(b, loc, 0)});
}

/// to[d][i] = from[i][d] for a rows x width buffer, by 16 x 16 blocks: 4
/// stages of two-input shuffles in registers (64 per block), each swapping
/// the off-diagonal sub-blocks of side 8, 4, 2, 1 (a recursive block
/// transpose), where the scalar copy took a load and a store per element;
/// the backward loads two such tiles per block. (vector.transpose would
/// be canonicalized into per-element extracts and inserts.)
void transposeBlocks(OpBuilder &b, Location loc, Value from, Value to, int64_t rows,
                     int64_t width) {
  auto lineType = VectorType::get({kBlock}, b.getF32Type());
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t d0 = 0; d0 < width; d0 += kBlock) {
      SmallVector<Value> line;
      for (int64_t r = 0; r < kBlock; ++r)
        line.push_back(vector::LoadOp::create(
            b, loc, lineType, from, ValueRange{index(b, loc, r0 + r), index(b, loc, d0)}));
      for (int64_t side = kBlock / 2; side >= 1; side /= 2) {
        // Lane l of a group of 2 * side lanes at g: the first row keeps its
        // first half and takes the second row's first half; the second row
        // takes the first row's second half and keeps its own.
        SmallVector<int64_t> first, second;
        for (int64_t l = 0; l < kBlock; ++l) {
          int64_t g = l / (2 * side) * (2 * side), p = l % (2 * side);
          first.push_back(p < side ? g + p : kBlock + g + p - side);
          second.push_back(p < side ? g + side + p : kBlock + g + p);
        }
        for (int64_t i = 0; i < kBlock; ++i)
          if ((i & side) == 0) {
            Value a = line[i], c = line[i + side];
            line[i] = vector::ShuffleOp::create(b, loc, a, c, first);
            line[i + side] = vector::ShuffleOp::create(b, loc, a, c, second);
          }
      }
      for (int64_t d = 0; d < kBlock; ++d)
        vector::StoreOp::create(b, loc, line[d], to,
                                ValueRange{index(b, loc, d0 + d), index(b, loc, r0)});
    }
}

struct LoadLowering : OpConversionPattern<TileLoadOp> {
  LoadLowering(const CPUTypeConverter &converter, MLIRContext *ctx,
               const StreamingLoads &streaming, InPlaceTiles &inPlace)
      : OpConversionPattern(converter, ctx), streaming(streaming), inPlace(inPlace) {}
  const StreamingLoads &streaming;
  InPlaceTiles &inPlace;
  LogicalResult matchAndRewrite(TileLoadOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto type = cast<TileType>(op.getResult().getType());
    auto bufType = cast<MemRefType>(getTypeConverter()->convertType(type));
    Value buf = allocaAtEntry(rewriter, op, bufType);
    Value tensor = adaptor.getTensor().front();
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    Span span(adaptor.getSpan());
    int64_t width = type.getCols();
    Value table = adaptor.getPageTable().empty() ? Value() : adaptor.getPageTable().front();
    KeyRows keyRows(rewriter, loc, op.getLayout(), tensor, table, batch);
    auto flat = op.getSpan().getDefiningOp<TileSpanOp>();
    bool streamingFlat = streaming.contains(op) && flat && !flat.getTiling().isPatched();
    bool inPlaceTile = streamingFlat && inPlace.takes(op);
    // The distance in whole tiles, so that the tile ahead has one page
    // (tilePages) and is not the tile being read.
    int64_t tileKeys = type.getRows();
    int64_t ahead =
        llvm::divideCeil(inPlaceTile ? kInPlacePrefetchKeys : kPrefetchKeys, tileKeys) * tileKeys;
    auto [tilePage, aheadPage] = keyRows.tilePages(op, span.lo, tileKeys, ahead);
    // Streaming loads only: prefill's K/V tiles (read from cache by every
    // query tile) measured 3-6% slower staged this way (bf16 D=128 causal
    // S=2048: 313 against 335 GFLOP/s), for a reason not found yet.
    if (streamingFlat) {
      OpBuilder::InsertionGuard guard(rewriter);
      // Read in place where the tile is whole (InPlaceTiles): a paged cache
      // only where a tile lies in one page; staged only where it is not.
      if (inPlaceTile && (!table || tilePage)) {
        Value whole = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, span.lanes,
                                            index(rewriter, loc, tileKeys));
        auto [outer, pos0] = keyRows.locate(span.lo, tilePage);
        Layout layout = op.getLayout();
        Value lo = span.lo;
        InPlaceTile tile;
        tile.whole = whole;
        tile.tensor = tensor;
        tile.at = [=](OpBuilder &b, Location loc, Value key, int64_t d) {
          return at(layout, outer, head, arith::AddIOp::create(b, loc, pos0, key),
                    index(b, loc, d));
        };
        tile.prefetchAhead = [=](OpBuilder &b, Location loc, Value key) {
          KeyRows rows(b, loc, layout, tensor, table, batch);
          rows.prefetchAhead(head, arith::AddIOp::create(b, loc, lo, key), width, aheadPage,
                             ahead);
        };
        inPlace.add(op, std::move(tile));
        auto partial = scf::IfOp::create(
            rewriter, loc, arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::ne,
                                                 span.lanes, index(rewriter, loc, tileKeys)),
            /*withElseRegion=*/false);
        rewriter.setInsertionPointToStart(&partial.getThenRegion().front());
      }
      stageFlatKeys(rewriter, loc, op, keyRows, tensor, span, head, buf, tilePage, aheadPage,
                      ahead);
      rewriter.replaceOp(op, buf);
      return success();
    }
    auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                   index(rewriter, loc, type.getRows()), index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    Value token = extractAt(rewriter, loc, span.tokens, i);
    Value zero = index(rewriter, loc, 0);
    auto ifOp = scf::IfOp::create(rewriter, loc, extractAt(rewriter, loc, span.real, i),
                                  /*withElseRegion=*/true);
    int64_t rows = type.getRows();
    bool rowMajor = static_cast<bool>(packedQuery(op.getResult()));
    if (type.getRole() == TileRole::Q && !rowMajor && rows % kBlock == 0 && width % kBlock == 0) {
      // Transposed by blocks: the rows as vectors into a row-major buffer,
      // then 16 x 16 transposes into qT[d][i].
      auto rowsType = MemRefType::get({rows, width}, rewriter.getF32Type());
      Value staged = allocaAtEntry(rewriter, op, rowsType);
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value rowHead = laneHead(rewriter, loc, span, head, i);
      stageRow(rewriter, loc, tensor, at(op.getLayout(), batch, rowHead, token, zero), staged, i,
               type.getElementType(), width);
      rewriter.setInsertionPointToStart(&ifOp.getElseRegion().front());
      vector::StoreOp::create(rewriter, loc,
                              splat(rewriter, loc, VectorType::get({width}, rewriter.getF32Type()), 0),
                              staged, ValueRange{i, zero});
      rewriter.setInsertionPointAfter(loop);
      transposeBlocks(rewriter, loc, staged, buf, rows, width);
    } else if (type.getRole() == TileRole::Q) {
      // Transposed, element by element: qT[d][i] (head dims that are not a
      // multiple of 16); a packed GQA tile row-major instead (see
      // packedQuery).
      auto slot = [&](int64_t d) -> SmallVector<Value> {
        if (!rowMajor)
          return {index(rewriter, loc, d), i};
        Value chunk = arith::MulIOp::create(rewriter, loc, i, index(rewriter, loc, width / rows));
        return {arith::AddIOp::create(rewriter, loc, chunk, index(rewriter, loc, d / rows)),
                index(rewriter, loc, d % rows)};
      };
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      Value rowHead = laneHead(rewriter, loc, span, head, i);
      for (int64_t d = 0; d < width; ++d) {
        Value x = memref::LoadOp::create(rewriter, loc, tensor,
                                         at(op.getLayout(), batch, rowHead, token, index(rewriter, loc, d)));
        if (!x.getType().isF32())
          x = arith::ExtFOp::create(rewriter, loc, rewriter.getF32Type(), x);
        memref::StoreOp::create(rewriter, loc, x, buf, slot(d));
      }
      rewriter.setInsertionPointToStart(&ifOp.getElseRegion().front());
      Value f0 = arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(0));
      for (int64_t d = 0; d < width; ++d)
        memref::StoreOp::create(rewriter, loc, f0, buf, slot(d));
    } else {
      // A key's row as f32; holes are zero rows, so that 0 * garbage never
      // makes a NaN.
      auto f32Row = VectorType::get({width}, rewriter.getF32Type());
      rewriter.setInsertionPointToStart(&ifOp.getThenRegion().front());
      if (streaming.contains(op))
        keyRows.prefetchAhead(head, token, width, aheadPage, kPrefetchKeys);
      auto [outer, pos] = keyRows.locate(token, tilePage);
      stageRow(rewriter, loc, tensor, at(op.getLayout(), outer, head, pos, zero), buf, i,
               type.getElementType(), width);
      rewriter.setInsertionPointToStart(&ifOp.getElseRegion().front());
      vector::StoreOp::create(rewriter, loc, splat(rewriter, loc, f32Row, 0), buf,
                              ValueRange{i, zero});
    }
    rewriter.replaceOp(op, buf);
    return success();
  }

  /// K or V rows of a flat tile: its real keys are the prefix [0, lanes) of
  /// consecutive tokens from lo, so the rows are staged by one loop with no
  /// per-row test or token extraction (decode stages every key once), and
  /// the holes after them are zero rows.
  void stageFlatKeys(OpBuilder &b, Location loc, TileLoadOp op, KeyRows &keyRows, Value tensor,
                     const Span &span, Value head, Value buf, Value tilePage,
                     Value aheadPage, int64_t ahead) const {
    auto type = cast<TileType>(op.getResult().getType());
    int64_t width = type.getCols();
    Value zero = index(b, loc, 0), one = index(b, loc, 1);
    auto real = scf::ForOp::create(b, loc, zero, span.lanes, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(real.getBody());
      Value i = real.getInductionVar();
      Value token = arith::AddIOp::create(b, loc, span.lo, i);
      keyRows.prefetchAhead(head, token, width, aheadPage, ahead);
      auto [outer, pos] = keyRows.locate(token, tilePage);
      stageRow(b, loc, tensor, at(op.getLayout(), outer, head, pos, zero), buf, i,
               type.getElementType(), width);
    }
    auto holes = scf::ForOp::create(b, loc, span.lanes, index(b, loc, type.getRows()), one);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(holes.getBody());
    vector::StoreOp::create(b, loc, splat(b, loc, VectorType::get({width}, b.getF32Type()), 0),
                            buf, ValueRange{holes.getInductionVar(), zero});
  }
};

/// attn.tile.lane_sinks: the variant's sink region per lane, on the lane's
/// head, gathered into a row vector through the stack (holes: 0).
struct LaneSinksLowering : OpConversionPattern<TileLaneSinksOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileLaneSinksOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto rowType = cast<VectorType>(getTypeConverter()->convertType(op.getResult().getType()));
    int64_t lanes = rowType.getDimSize(0);
    Value buf = allocaAtEntry(rewriter, op, MemRefType::get({lanes}, rewriter.getF32Type()));
    Value zero = index(rewriter, loc, 0);
    vector::StoreOp::create(rewriter, loc, splat(rewriter, loc, rowType, 0), buf, ValueRange{zero});
    Span span(adaptor.getRows());
    Value batch = adaptor.getBatch().front(), head = adaptor.getHead().front();
    SmallVector<Value> buffers = firstValues(adaptor.getBuffers());
    auto variant = SymbolTable::lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr());
    forRealLanes(rewriter, loc, span, head, lanes, [&](Value i, Value laneHead, Value) {
      Value leading[] = {batch, laneHead};
      RegionInlining how;
      how.leading = leading;
      how.buffers = buffers;
      how.status = optionalValue(adaptor.getStatus());
      Value x = inlineVariantRegion(rewriter, loc, variant.getSink(), how);
      memref::StoreOp::create(rewriter, loc, x, buf, ValueRange{i});
    });
    rewriter.replaceOp(op, vector::LoadOp::create(rewriter, loc, rowType, buf, ValueRange{zero}));
    return success();
  }
};

struct FillLowering : OpConversionPattern<TileFillOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileFillOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    double value = op.getValue().convertToDouble();
    Type type = getTypeConverter()->convertType(op.getResult().getType());
    if (auto vec = dyn_cast<VectorType>(type)) {
      rewriter.replaceOp(op, splat(rewriter, loc, vec, value));
      return success();
    }
    auto bufType = cast<MemRefType>(type);
    Value buf = allocaAtEntry(rewriter, op, bufType);
    auto rowType = VectorType::get({bufType.getDimSize(1)}, rewriter.getF32Type());
    Value row = splat(rewriter, loc, rowType, value);
    auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                   index(rewriter, loc, bufType.getDimSize(0)),
                                   index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    vector::StoreOp::create(rewriter, loc, row, buf,
                            ValueRange{loop.getInductionVar(), index(rewriter, loc, 0)});
    rewriter.replaceOp(op, buf);
    return success();
  }
};

struct StoreLowering : OpConversionPattern<TileStoreOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileStoreOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value acc = adaptor.getAcc().front(), m = adaptor.getMax().front(), l = adaptor.getSum().front();
    Value out = adaptor.getOut().front(), batch = adaptor.getBatch().front();
    Value head = adaptor.getHead().front();
    Span span(adaptor.getSpan());
    auto laneType = cast<VectorType>(l.getType());
    int64_t width = cast<MemRefType>(acc.getType()).getDimSize(1);
    auto rowType = VectorType::get({width}, rewriter.getF32Type());
    Value sink = !adaptor.getSink().empty()        ? adaptor.getSink().front()
                 : !adaptor.getLaneSinks().empty() ? adaptor.getLaneSinks().front()
                                                   : Value();
    RowFinish finish = finishRow(rewriter, loc, m, l, sink, op.isSigmoid(), cpuExp, cpuLog);
    Value inv = finish.scale, lseVec = finish.lse;
    auto loop = scf::ForOp::create(rewriter, loc, index(rewriter, loc, 0),
                                   index(rewriter, loc, laneType.getDimSize(0)),
                                   index(rewriter, loc, 1));
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(loop.getBody());
    Value i = loop.getInductionVar();
    Value token = extractAt(rewriter, loc, span.tokens, i);
    auto real = scf::IfOp::create(rewriter, loc, extractAt(rewriter, loc, span.real, i), false);
    rewriter.setInsertionPointToStart(&real.getThenRegion().front());
    head = laneHead(rewriter, loc, span, head, i);
    Value scale = extractAt(rewriter, loc, inv, i);
    Value gate;
    if (op.getGate()) {
      // Scaled by the row's gate; a row not routed (gate 0) is 0 with lse -inf.
      ArrayRef<int64_t> dims = *op.getGateDims();
      Value index3[3];
      index3[dims[0]] = batch, index3[dims[1]] = token, index3[dims[2]] = head;
      gate = memref::LoadOp::create(rewriter, loc, adaptor.getGate().front(),
                                    ValueRange{index3[0], index3[1], index3[2]});
      if (!gate.getType().isF32())
        gate = arith::ExtFOp::create(rewriter, loc, rewriter.getF32Type(), gate);
      scale = arith::MulFOp::create(rewriter, loc, scale, gate);
    }
    Value zero = index(rewriter, loc, 0);
    Value row = vector::LoadOp::create(rewriter, loc, rowType, acc, ValueRange{i, zero});
    row = arith::MulFOp::create(rewriter, loc, row,
                                vector::BroadcastOp::create(rewriter, loc, rowType, scale));
    Type outElt = cast<MemRefType>(out.getType()).getElementType();
    if (!outElt.isF32())
      row = arith::TruncFOp::create(rewriter, loc, VectorType::get({width}, outElt), row);
    vector::StoreOp::create(rewriter, loc, row, out, at(op.getLayout(), batch, head, token, zero));
    if (!adaptor.getLse().empty()) {
      Value value = extractAt(rewriter, loc, lseVec, i);
      if (gate)
        value = arith::SelectOp::create(
            rewriter, loc,
            arith::CmpFOp::create(rewriter, loc, arith::CmpFPredicate::OEQ, gate,
                                  arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(0))),
            arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(-INFINITY)), value);
      memref::StoreOp::create(rewriter, loc, value, adaptor.getLse().front(),
                              ValueRange{batch, head, token});
    }
    rewriter.eraseOp(op);
    return success();
  }
};

} // namespace

LogicalResult checkHeadDimContiguous(Operation *op, Value tensor) {
  auto type = cast<MemRefType>(tensor.getType());
  SmallVector<int64_t> strides;
  int64_t offset;
  if (failed(type.getStridesAndOffset(strides, offset)) || strides.back() != 1)
    return op->emitOpError() << "needs tensors whose head dimension is contiguous";
  return success();
}

void populateLoadStorePatterns(const CPUTypeConverter &converter, RewritePatternSet &patterns,
                               const StreamingLoads &streaming, InPlaceTiles &inPlace) {
  patterns.add<LoadLowering>(converter, patterns.getContext(), streaming, inPlace);
  patterns.add<FillLowering, StoreLowering, LaneSinksLowering>(converter, patterns.getContext());
}

} // namespace heed::cpu
