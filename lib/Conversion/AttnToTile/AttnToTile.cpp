// --attn-to-tile: each attn.attention becomes its FlashAttention loop in
// tile ops. Per work item (batch b, query head h, query tile t):
//
//   %rows = attn.tile.span %Sq [%t]                (the tile's query tokens)
//   %q    = attn.tile.load %Q[%b, %h] span(%rows)
//   scf.for %kt over every key tile, carrying (acc, max, sum) {
//     %keys = attn.tile.span %Skv [%kt]
//     [%cls = attn.tile.classify ...; attn.tile.count]    (with a blocks region)
//     %k, %v = attn.tile.load ...
//     %s  = attn.tile.qk %q, %k
//     %s2 = attn.tile.apply @variant(%s) ... [mask_if(%cls == PARTIAL)]
//     %m2, %l2, %p, %alpha = attn.tile.softmax %s2, %max, %sum
//     %acc2 = attn.tile.pv %p, %v, %acc, %alpha
//   }
//   attn.tile.store %acc, %max, %sum to %O[%b, %h] span(%rows) [sink(%x)]
//
// A sigmoid variant's loop carries only acc: attn.tile.sigmoid makes the
// weights element by element, attn.tile.pv takes no rescale, and the store
// does not normalize. A sink logit (the head's, from attn.tile.sink, or a
// constant) enters only the store's normalization.
//
// Key tiles that are patches of a token grid are walked by one loop per grid
// dim. The loop visits every key tile: narrowing it to the tiles the mask can
// reach and skipping EMPTY ones is --attn-skip-tiles' business, specializing
// routed heads --attn-specialize-routes'. Gated variants take their query
// tiles from the routed-row lists; a tile past a head's routed rows stores
// zeros. Serving operands give each item its entry's lengths (kv_lens,
// q_lens) and, for packed sequences (cu_seqlens_q/kv), views of q, out, lse
// (k, v) from the entry's first row: memref.reinterpret_cast of the packed
// tensor, whose batch stride is 0; with entry_order, item b is entry
// entry_order[b].
#include "heed/Conversion/Passes.h"

#include "../TileCommon/IndexExpr.h"

#include "TileBuilding.h"
#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"
#include "dialects/attn/TileMath.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/SymbolTable.h"

#include <cmath>

namespace heed {
#define GEN_PASS_DEF_ATTNTOTILE
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;
using heed::IndexExpr;

namespace {

/// Builds the tile loop of one attention op.
class TileLoopBuilder : heed::attn_to_tile::TileBuilder {
public:
  TileLoopBuilder(AttentionOp op, VariantOp variant)
      : TileBuilder(op, op.isBSHD()), op(op), variant(variant), tiling(op.getTilingAttr()) {}

  void build();

private:
  IndexExpr expr(Value v) { return IndexExpr(b, loc, v); }
  Value classValue(BlockClass c) {
    return arith::ConstantIntOp::create(b, loc, static_cast<int64_t>(c), 8);
  }
  Value span(Value seq, ValueRange coords, Side side) {
    auto type = SpanType::get(b.getContext(), tiling.getTileSize(side));
    return TileSpanOp::create(b, loc, type, seq, coords, tiling, SideAttr::get(b.getContext(), side));
  }

  void buildItem(Value batch, Value head, Value tileIndex);
  bool readsShapes() { return TileBuilder::readsShapes(variant); }
  /// The keys the key tensor holds per batch entry: its length, or for a
  /// paged cache max_pages * page size.
  Value kvCapacity();
  /// Binds the item's sequence lengths where each entry has its own, and
  /// with packed sequences (cu_seqlens) the views of its rows.
  void bindItemLengths(Value tileIndex);
  /// The query span of a gated head's tile, and whether the tile is past
  /// the head's routed rows.
  std::pair<Value, Value> gatedRows(Value batch, Value head, Value tileIndex);
  /// The key loops (one per grid dim) around the key tile's code; returns
  /// the final (acc, max, sum).
  SmallVector<Value> buildKeyLoops(ValueRange init);
  SmallVector<Value> buildKeyTile(Value keys, ValueRange carried);
  void store(ValueRange state);
  /// The head's sink logit: a constant where the sink region yields one
  /// (softmax-off-by-one), else the region run by attn.tile.sink.
  Value sinkLogit();
  bool isSigmoid() { return variant.getNormalization() == Normalization::Sigmoid; }

  AttentionOp op;
  VariantOp variant;
  TilingAttr tiling;
  int64_t rows = 0, keys = 0, headDim = 0, valueDim = 0;
  Type storage;
  // Per work item.
  Value batch, head, headKV, queries, route, sink, qBox[2];
  Value q, seqQ, seqKV;
  // The tensors the item reads and writes: the op's, or with packed
  // sequences its entry's rows.
  Value query, key, value, out, lse;
};

void TileLoopBuilder::build() {
  rows = tiling.getTileSize(Side::Q);
  keys = tiling.getTileSize(Side::KV);
  auto qType = cast<MemRefType>(op.getQuery().getType());
  headDim = qType.getDimSize(3);
  valueDim = cast<MemRefType>(op.getValue().getType()).getDimSize(3);
  storage = qType.getElementType();
  query = op.getQuery(), key = op.getKey(), value = op.getValue();
  out = op.getOut(), lse = op.getLse();
  seqQ = dim(op.getQuery(), 2);
  seqKV = kvCapacity();
  Value batches = dim(op.getQuery(), 0), heads = dim(op.getQuery(), 1);
  Value tiles = NumTilesOp::create(b, loc, b.getIndexType(), seqQ, op.getVariantAttr(),
                                   SideAttr::get(b.getContext(), Side::Q), tiling);
  // Sizes the variant reads (attn.shape) are bound once, above the loop
  // (and again per work item where each batch entry has its own Skv).
  if (readsShapes())
    TileBindShapesOp::create(b, loc, batches, heads, dim(op.getKey(), 1), seqQ, seqKV);
  auto work = TileWorkOp::create(b, loc, batches, heads, tiles, op.getWorkBegin(),
                                 op.getWorkEnd(), op.getSplitPhase(), op.getSplitCount(),
                                 op.getSplitPartKeys(), op.getPartialAcc(),
                                 op.getPartialStats());
  Block *body = b.createBlock(&work.getBody(), {}, {b.getIndexType(), b.getIndexType(),
                                                   b.getIndexType()},
                              {loc, loc, loc});
  b.setInsertionPointToStart(body);
  buildItem(body->getArgument(0), body->getArgument(1), body->getArgument(2));
}

Value TileLoopBuilder::kvCapacity() {
  if (!op.getPageTable())
    return dim(op.getKey(), 2);
  Value pages = memref::DimOp::create(b, loc, op.getPageTable(), 1);
  int64_t pageSize = cast<MemRefType>(op.getKey().getType()).getDimSize(bshd ? 1 : 2);
  return arith::MulIOp::create(b, loc, pages, idx(pageSize));
}


void TileLoopBuilder::bindItemLengths(Value tileIndex) {
  Value cuQ = op.getCuSeqlensQ(), cuKV = op.getCuSeqlensKv();
  if (!op.getKvLens() && !op.getQLens() && !cuQ && !cuKV)
    return;
  unsigned seqDim = bshd ? 1 : 2;
  EntrySide keys = entrySide(op.getKvLens(), cuKV, batch, seqKV);
  seqKV = keys.length;
  if (keys.first) {
    key = rowsFrom(op.getKey(), keys.first, seqDim);
    value = rowsFrom(op.getValue(), keys.first, seqDim);
  }
  EntrySide queries = entrySide(op.getQLens(), cuQ, batch, seqQ);
  if (queries.first) {
    query = rowsFrom(op.getQuery(), queries.first, seqDim);
    out = rowsFrom(op.getOut(), queries.first, seqDim);
    if (lse)
      lse = rowsFrom(op.getLse(), queries.first, 2);
  }
  if (op.getQLens() || cuQ) {
    // The grid covers the query capacity; an item past its entry's queries
    // sees no keys, and its tile is all holes, so it writes nothing (the
    // split-KV phases keep their shape: no branch around the store).
    seqQ = queries.length;
    Value tiles = NumTilesOp::create(b, loc, b.getIndexType(), seqQ, op.getVariantAttr(),
                                     SideAttr::get(b.getContext(), Side::Q), tiling);
    Value past = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, tileIndex, tiles);
    seqKV = arith::SelectOp::create(b, loc, past, idx(0), seqKV);
  }
  if (readsShapes())
    TileBindShapesOp::create(b, loc, dim(op.getQuery(), 0), dim(op.getQuery(), 1),
                             dim(op.getKey(), 1), seqQ, seqKV);
}

std::pair<Value, Value> TileLoopBuilder::gatedRows(Value batch, Value head, Value tileIndex) {
  // The head's rows are listed routed first (ascending), then the others;
  // tile t takes list slots [t * rows, t * rows + lanes).
  Value heads = dim(op.getQuery(), 1);
  IndexExpr bh = expr(arith::MulIOp::create(b, loc, batch, heads)) + expr(head);
  IndexExpr slot0 = expr(tileIndex) * rows;
  Value offset = expr(arith::MulIOp::create(b, loc, bh, seqQ)) + slot0;
  Value lanes = heed::min(expr(idx(rows)), expr(seqQ) - slot0);
  Value count = arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      memref::LoadOp::create(b, loc, op.getGateCounts(), ValueRange{bh.value}).getResult());
  Value idle = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, slot0, count);
  // Routed lanes of a tile that has any: min(lanes, count - slot0).
  Value past = arith::SelectOp::create(b, loc, idle, slot0, count);
  Value routed = heed::min(expr(lanes), expr(past) - slot0);
  auto type = SpanType::get(b.getContext(), rows);
  Value span = TileRoutedSpanOp::create(b, loc, type, op.getGateRows(), offset, lanes, routed);
  return {span, idle};
}

void TileLoopBuilder::buildItem(Value itemBatch, Value itemHead, Value tileIndex) {
  batch = itemBatch;
  if (Value order = op.getEntryOrder()) {
    // The runtime's order of the entries (longest first): item b computes
    // entry order[b], clamped into the batch.
    Value entry = memref::LoadOp::create(b, loc, order, ValueRange{itemBatch});
    entry = arith::IndexCastUIOp::create(b, loc, b.getIndexType(), entry);
    Value last = arith::SubIOp::create(b, loc, dim(op.getQuery(), 0), idx(1));
    batch = arith::MinUIOp::create(b, loc, entry, last);
  }
  head = itemHead;
  bindItemLengths(tileIndex);
  Value group = arith::DivUIOp::create(b, loc, dim(op.getQuery(), 1), dim(op.getKey(), 1));
  headKV = arith::DivUIOp::create(b, loc, head, group);
  Value idle;
  if (variant.isGated())
    std::tie(queries, idle) = gatedRows(batch, head, tileIndex);
  else
    queries = span(seqQ, tileIndex, Side::Q);
  if (variant.isRouted())
    route = TileRouteOp::create(b, loc, b.getI64Type(), op.getVariantAttr(), batch, head,
                                op.getBuffers(), op.getStatus());
  if (variant.hasSink())
    sink = sinkLogit();
  TileType accType = tile(rows, valueDim, b.getF32Type(), TileRole::Acc);
  TileType rowType = tile(rows, 1, b.getF32Type(), TileRole::Row);
  auto emptyState = [&]() -> SmallVector<Value> {
    return {fill(accType, 0), fill(rowType, -INFINITY), fill(rowType, 0)};
  };
  OpBuilder::InsertionGuard guard(b);
  if (idle) {
    // A tile past the routed rows: every row's output is 0 and lse -inf.
    auto ifOp = scf::IfOp::create(b, loc, idle, /*withElseRegion=*/true);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    store(emptyState());
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  }
  if (!variant.getBlocks().empty()) {
    auto box = TileSpanBoxOp::create(b, loc, b.getIndexType(), b.getIndexType(), queries);
    qBox[0] = box.getLo();
    qBox[1] = box.getHi();
  }
  q = TileLoadOp::create(b, loc, tile(rows, headDim, storage, TileRole::Q), query,
                         batch, head, queries, /*stage=*/Value(), /*page_table=*/Value(),
                         op.getLayoutAttr(), b.getI64IntegerAttr(0), /*round=*/Value());
  if (!isSigmoid()) {
    store(buildKeyLoops(emptyState()));
    return;
  }
  // Sigmoid rows have no statistics: the store reads neither max nor sum.
  SmallVector<Value> state = emptyState();
  state[0] = buildKeyLoops(state[0]).front();
  store(state);
}

Value TileLoopBuilder::sinkLogit() {
  auto yield = cast<YieldOp>(variant.getSink().front().getTerminator());
  FloatAttr constant;
  if (matchPattern(yield.getValue(), m_Constant(&constant)))
    return arith::ConstantOp::create(b, loc, cast<TypedAttr>(constant));
  return TileSinkOp::create(b, loc, b.getF32Type(), op.getVariantAttr(), batch, head,
                            op.getBuffers(), op.getStatus());
}

SmallVector<Value> TileLoopBuilder::buildKeyLoops(ValueRange init) {
  ArrayRef<int64_t> grid = tiling.getGrid(), patch = tiling.getKv();
  // Patch coordinates along each dim: ceil(rows / P_0) bands, then
  // ceil(E_k / P_k) patches along inner dim k.
  SmallVector<Value> counts = {heed::ceilDiv(gridRows(grid, expr(seqKV)), patch[0]).value};
  for (size_t k = 1; k < patch.size(); ++k)
    counts.push_back(idx(patchesAlong(grid, patch, k)));
  SmallVector<Value> coords;
  std::function<SmallVector<Value>(size_t, ValueRange)> nest = [&](size_t k, ValueRange carried) {
    auto loop = scf::ForOp::create(b, loc, idx(0), counts[k], idx(1), carried);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    coords.push_back(loop.getInductionVar());
    SmallVector<Value> next =
        k + 1 < counts.size()
            ? nest(k + 1, loop.getRegionIterArgs())
            : buildKeyTile(span(seqKV, coords, Side::KV), loop.getRegionIterArgs());
    coords.pop_back();
    scf::YieldOp::create(b, loc, next);
    return SmallVector<Value>(loop.getResults());
  };
  return nest(0, init);
}

SmallVector<Value> TileLoopBuilder::buildKeyTile(Value keySpan, ValueRange carried) {
  Value acc = carried[0];
  Value maskIf;
  if (!variant.getBlocks().empty()) {
    auto box = TileSpanBoxOp::create(b, loc, b.getIndexType(), b.getIndexType(), keySpan);
    Value cls = TileClassifyOp::create(b, loc, b.getI8Type(), op.getVariantAttr(), batch, head,
                                       qBox[0], qBox[1], box.getLo(), box.getHi(),
                                       op.getBuffers(), op.getSummaries(), route);
    maskIf = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cls,
                                   classValue(BlockClass::Partial));
    if (Value stats = op.getStats())
      TileCountOp::create(b, loc, stats, cls);
  } else if (Value stats = op.getStats()) {
    TileCountOp::create(b, loc, stats, classValue(BlockClass::Partial));
  }
  Value k = TileLoadOp::create(b, loc, tile(keys, headDim, storage, TileRole::K), key,
                               batch, headKV, keySpan, /*stage=*/Value(), op.getPageTable(),
                               op.getLayoutAttr(), b.getI64IntegerAttr(0), /*round=*/Value());
  Value v = TileLoadOp::create(b, loc, tile(keys, valueDim, storage, TileRole::V),
                               value, batch, headKV, keySpan, /*stage=*/Value(),
                               op.getPageTable(), op.getLayoutAttr(), b.getI64IntegerAttr(0),
                               /*round=*/Value());
  TileType sType = tile(rows, keys, b.getF32Type(), TileRole::S);
  Value s = TileQKOp::create(b, loc, sType, q, k, op.getScaleAttr());
  s = TileApplyOp::create(b, loc, sType, op.getVariantAttr(), s, batch, head, queries, keySpan,
                          op.getBuffers(), route, op.getStatus(), maskIf);
  if (isSigmoid()) {
    Value p = TileSigmoidOp::create(b, loc, sType, s, variant.getSigmoidBiasAttr()
                                                          ? variant.getSigmoidBiasAttr()
                                                          : b.getF32FloatAttr(0));
    return {TilePVOp::create(b, loc, acc.getType(), p, v, acc, /*alpha=*/Value(), queries)};
  }
  Value max = carried[1], sum = carried[2];
  auto softmax = TileSoftmaxOp::create(b, loc, max.getType(), sum.getType(), sType,
                                       max.getType(), s, max, sum);
  Value next = TilePVOp::create(b, loc, acc.getType(), softmax.getProbs(), v, acc,
                                softmax.getAlpha(), queries);
  return {next, softmax.getNewMax(), softmax.getNewSum()};
}

void TileLoopBuilder::store(ValueRange state) {
  Value gate;
  DenseI64ArrayAttr gateDims;
  if (std::optional<ArrayRef<int64_t>> g = variant.getGate()) {
    gate = op.getBuffers()[(*g)[0]];
    gateDims = b.getDenseI64ArrayAttr(g->drop_front());
  }
  NormalizationAttr normalize;
  if (isSigmoid())
    normalize = NormalizationAttr::get(b.getContext(), Normalization::Sigmoid);
  TileStoreOp::create(b, loc, state[0], state[1], state[2], out, batch, head, queries,
                      lse, gate, sink, /*lane_sinks=*/Value(), gateDims, normalize,
                      op.getLayoutAttr());
}

struct AttnToTilePass : heed::impl::AttnToTileBase<AttnToTilePass> {
  void runOnOperation() override {
    SymbolTableCollection symbols;
    SmallVector<AttentionOp> ops;
    getOperation().walk([&](AttentionOp op) { ops.push_back(op); });
    for (AttentionOp op : ops) {
      auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr());
      if (!variant) {
        op.emitOpError() << "refers to an unknown variant";
        return signalPassFailure();
      }
      if (!op.getTilingAttr()) {
        op.emitOpError() << "has no tiling: run --attn-choose-tiling first";
        return signalPassFailure();
      }
      if (failed(heed::attn_to_tile::checkTilingMatchesGrid(op, op.getTilingAttr(), variant)))
        return signalPassFailure();
      if (!variant.getBlocks().empty() && op.getSummaries().size() !=
                                               variant.getSummarizedBuffers().size()) {
        op.emitOpError() << "needs the summaries of the variant's rank-1 integer buffers for "
                            "its block classifier (run --attn-runtime-abi, or run without --attn-analyze-mask)";
        return signalPassFailure();
      }
      if (variant.isGated() && !op.getGateRows()) {
        op.emitOpError() << "needs gate_rows and gate_counts: variant '" << op.getVariant()
                         << "' is gated (run --attn-runtime-abi)";
        return signalPassFailure();
      }
      if (variant.isGated() && (op.getQLens() || op.getCuSeqlensQ())) {
        op.emitOpError() << "cannot take q_lens or cu_seqlens_q: variant '" << op.getVariant()
                         << "' is gated (its routed rows are listed over the whole Sq)";
        return signalPassFailure();
      }
      TileLoopBuilder(op, variant).build();
      op.erase();
    }
  }
};

} // namespace
