// --attn-backward-to-tile: each attn.attention_backward becomes the
// KV-major loop of FlashAttention-2's backward in tile ops. Per work item
// (batch b, kv head hk, key tile kt):
//
//   %keys = attn.tile.span %Skv [%kt]
//   %k, %kv, %vk = K as keys, K as values, V as keys
//   for each query head h of hk's group, for each query tile qt, carrying (dK, dV):
//     [%cls = classify; EMPTY: skip; FULL: no mask]
//     %s  = attn.tile.qk %q, %k                   (raw scores)
//     %p  = attn.tile.probs @v(%s) lse(%lse)      (exp(score'(s) - lse))
//     dV += attn.tile.grad_kv %p, %dO_rows
//     %dp = attn.tile.qk %dO, %vk                 (dO V^T)
//     %ds = attn.tile.grad_scores @v_grad(%s, %p, %dp) delta(%delta)
//     dK += attn.tile.grad_kv %ds, %q_rows
//     attn.tile.write_rows (attn.tile.pv %ds, %kv) to dq accumulate {scale}
//   attn.tile.write_rows dK {scale}, dV
//   [sink logit reading buffers, key tile 0 only: for each query head h of
//    the group, for each query tile: attn.tile.grad_sink @v_grad lse, delta]
//
// A sigmoid variant's probs are sigmoid weights (no lse is read) and its
// grad_scores drop delta (rows are not normalized). A sink logit needs
// nothing in the block: the forward's lse includes it, so P and dS are
// softmax's; only the logit's own gradient is added, once per row.
//
// The item owns its dK and dV rows (summed over the group's heads in a
// fixed order), so only dq and the buffers' gradients are shared between
// items; their accumulations are plain adds that a caller makes
// deterministic by giving each thread its own (docs/backward.md).
//
// Ragged batches (kv_lens, q_lens, cu_seqlens) as in --attn-to-tile: each
// item sees its entry's lengths (and, packed, views of the tensors from its
// entry's first row); an item whose tile is past its entry's keys (or, in
// the dQ loop, queries) visits no block.
#include "heed/Conversion/Passes.h"

#include "TileBuilding.h"
#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/SymbolTable.h"

#include <cmath>

namespace heed {
#define GEN_PASS_DEF_ATTNBACKWARDTOTILE
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// Which loop the pass builds (the `kernel` option).
enum class BackwardLoop { Fused, DQ, DKDV };

class BackwardLoopBuilder : heed::attn_to_tile::TileBuilder {
public:
  BackwardLoopBuilder(AttentionBackwardOp op, VariantOp variant, VariantOp grad, TilingAttr tiling)
      : TileBuilder(op, op.getLayout() == Layout::BSHD), op(op), variant(variant), grad(grad),
        tiling(tiling) {}

  void build(BackwardLoop kernel);

private:
  Value span(Value seq, Value coord, Side side) {
    auto type = SpanType::get(b.getContext(), tiling.getTileSize(side));
    return TileSpanOp::create(b, loc, type, seq, coord, tiling, SideAttr::get(b.getContext(), side));
  }
  /// A tile of `tensor`; `part` names a q tile's buffer where a target
  /// keeps the item's rows (0: Q or K, D wide; 1: dO or V, Dv wide).
  Value load(Value tensor, Value head, Value span, int64_t rows, int64_t cols, TileRole role,
             int64_t part = 0) {
    Type elt = cast<MemRefType>(tensor.getType()).getElementType();
    return TileLoadOp::create(b, loc, tile(rows, cols, elt, role), tensor, batch, head, span,
                              /*stage=*/Value(), /*page_table=*/Value(), op.getLayoutAttr(),
                              b.getI64IntegerAttr(part), /*round=*/Value());
  }
  Value classValue(BlockClass c) {
    return arith::ConstantIntOp::create(b, loc, static_cast<int64_t>(c), 8);
  }

  void buildItem(Value headKV, Value keyTile);
  /// keySpan (and its box, where classified) of key tile `keyTile`.
  void setKeySpan(Value keyTile);
  /// An item of key tile `keyTile` (fused, dK/dV): its keys and the count
  /// of query tiles.
  void beginKeyItem(Value keyTile);
  /// dK and dV accumulators, zero; written at the item's end.
  SmallVector<Value> zeroKeyGradients();
  void writeKeyGradients(ValueRange grads, Value headKV);
  /// Head `head`'s route value, or null for a variant that is not routed.
  Value routeOf(Value head);
  /// Whether the derivative's sink logit adds a buffer gradient.
  bool sinkHasGradient() {
    return grad.hasSink() && !grad.getSink().front().getOps<GradAddOp>().empty();
  }
  /// The GPUs' kernels (`kernel=dq`, `kernel=dkdv`): an item's loop.
  void buildDQItem(Value head, Value queryTile);
  void buildDKDVItem(Value headKV, Value keyTile);
  /// Visits the block of `rowSpan` x `keySpan` unless EMPTY (`kvBox` the
  /// keys' box when classified; counted in the statistics where `count`):
  /// `body(maskIf)` gives the updated `carried`.
  SmallVector<Value> ifVisible(Value head, Value route, Value rowSpan, ValueRange carried,
                               bool count, function_ref<SmallVector<Value>(Value)> body);
  /// lse and delta of a span's rows as `role` tiles (row or col); a
  /// sigmoid variant has neither (zeros).
  std::pair<Value, Value> rowStatistics(Value head, Value rowSpan, TileRole role);
  /// A (query head, query tile) block, skipped where EMPTY: returns the
  /// updated (dK, dV).
  SmallVector<Value> visitBlock(Value head, Value route, Value rowSpan, ValueRange carried);
  /// The sink logit's gradient, on the items of key tile 0.
  void buildSinkGradient(Value headKV, Value keyTile);
  /// head = hk * group + g for g in the group (with its route where
  /// `withRoute` and the variant is routed), then the query tiles:
  /// `body(head, route, rows, carried)` inside, carrying `init`; returns
  /// the results.
  using QueryTileBody = function_ref<SmallVector<Value>(Value, Value, Value, ValueRange)>;
  ValueRange forEachQueryTile(Value headKV, ValueRange init, bool withRoute, QueryTileBody body);
  SmallVector<Value> buffersAndGradients() {
    SmallVector<Value> all(op.getBuffers());
    all.append(op.getGradients().begin(), op.getGradients().end());
    return all;
  }
  /// One (query head, query tile) block: returns the updated (dK, dV).
  SmallVector<Value> buildBlock(Value head, Value rows, Value route, Value maskIf,
                                ValueRange carried);

  AttentionBackwardOp op;
  VariantOp variant, grad;
  TilingAttr tiling;
  int64_t rows = 0, keys = 0, headDim = 0, valueDim = 0;
  Value batch, seqQ, seqKV, keySpan, kvBox[2], group, qTiles;
  /// The tensors an item reads and writes: the op's, or with packed
  /// sequences (cu_seqlens) its entry's rows.
  struct EntryTensors {
    Value query, key, value, dout, out, lse, delta, dq, dk, dv;
  } ent;
  /// Ragged batches: whether the item's tile is past its entry's tiles
  /// (it then visits no block), and the entry's query tiles (key-major
  /// items: qTiles is 0 past the entry's keys).
  Value pastEntry, entryQTiles;
  /// Binds the item's entry: its lengths (kv_lens, q_lens, cu_seqlens)
  /// and, packed, the views of its rows; `itemTile` is the item's query
  /// tile (`queryMajor`) or key tile.
  void bindEntry(Value itemTile, bool queryMajor);
  bool classify = false;
  Value k, kAsV, vAsK;
};

void BackwardLoopBuilder::build(BackwardLoop kernel) {
  rows = tiling.getTileSize(Side::Q);
  keys = tiling.getTileSize(Side::KV);
  headDim = cast<MemRefType>(op.getQuery().getType()).getDimSize(3);
  valueDim = cast<MemRefType>(op.getValue().getType()).getDimSize(3);
  seqQ = dim(op.getQuery(), 2);
  seqKV = dim(op.getKey(), 2);
  Value batches = dim(op.getQuery(), 0), headsKV = dim(op.getKey(), 1);
  bool queryMajor = kernel == BackwardLoop::DQ;
  Value tiles = NumTilesOp::create(b, loc, b.getIndexType(), queryMajor ? seqQ : seqKV,
                                   op.getVariantAttr(),
                                   SideAttr::get(b.getContext(), queryMajor ? Side::Q : Side::KV),
                                   tiling);
  // Sizes the variant or its derivative reads (decode's bottom-right
  // causal mask: Skv - Sq), bound once above the loop.
  if (readsShapes(variant) || readsShapes(grad))
    TileBindShapesOp::create(b, loc, batches, dim(op.getQuery(), 1), headsKV, seqQ, seqKV);
  auto work = TileWorkOp::create(b, loc, batches, queryMajor ? dim(op.getQuery(), 1) : headsKV,
                                 tiles, op.getWorkBegin(),
                                 op.getWorkEnd(), /*split_phase=*/Value(),
                                 /*split_count=*/Value(), /*split_part_keys=*/Value(),
                                 /*partial_acc=*/Value(),
                                 /*partial_stats=*/Value());
  Block *body = b.createBlock(&work.getBody(), {}, {b.getIndexType(), b.getIndexType(),
                                                   b.getIndexType()},
                              {loc, loc, loc});
  b.setInsertionPointToStart(body);
  batch = body->getArgument(0);
  group = arith::DivUIOp::create(b, loc, dim(op.getQuery(), 1), headsKV);
  classify = !variant.getBlocks().empty();
  ent = {op.getQuery(), op.getKey(), op.getValue(), op.getDout(), op.getOut(),
         op.getLse(),   op.getDelta(), op.getDq(),  op.getDk(),    op.getDv()};
  bindEntry(body->getArgument(2), queryMajor);
  switch (kernel) {
  case BackwardLoop::Fused:
    return buildItem(body->getArgument(1), body->getArgument(2));
  case BackwardLoop::DQ:
    return buildDQItem(body->getArgument(1), body->getArgument(2));
  case BackwardLoop::DKDV:
    return buildDKDVItem(body->getArgument(1), body->getArgument(2));
  }
}

void BackwardLoopBuilder::bindEntry(Value itemTile, bool queryMajor) {
  Value cuQ = op.getCuSeqlensQ(), cuKV = op.getCuSeqlensKv();
  if (!op.getKvLens() && !op.getQLens() && !cuQ && !cuKV)
    return;
  unsigned seqDim = bshd ? 1 : 2;
  EntrySide keys = entrySide(op.getKvLens(), cuKV, batch, seqKV);
  seqKV = keys.length;
  if (keys.first)
    for (Value *t : {&ent.key, &ent.value, &ent.dk, &ent.dv})
      *t = rowsFrom(*t, keys.first, seqDim);
  EntrySide queries = entrySide(op.getQLens(), cuQ, batch, seqQ);
  seqQ = queries.length;
  if (queries.first) {
    for (Value *t : {&ent.query, &ent.dout, &ent.out, &ent.dq})
      if (*t)
        *t = rowsFrom(*t, queries.first, seqDim);
    ent.lse = rowsFrom(ent.lse, queries.first, 2);
    ent.delta = rowsFrom(ent.delta, queries.first, 2);
  }
  Value tiles = NumTilesOp::create(b, loc, b.getIndexType(), queryMajor ? seqQ : seqKV,
                                   op.getVariantAttr(),
                                   SideAttr::get(b.getContext(), queryMajor ? Side::Q : Side::KV),
                                   tiling);
  pastEntry = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, itemTile, tiles);
  // The entry's own Sq and Skv where the variant reads them.
  if (readsShapes(variant) || readsShapes(grad))
    TileBindShapesOp::create(b, loc, dim(op.getQuery(), 0), dim(op.getQuery(), 1),
                             dim(op.getKey(), 1), seqQ, seqKV);
}

void BackwardLoopBuilder::setKeySpan(Value keyTile) {
  keySpan = span(seqKV, keyTile, Side::KV);
  if (classify) {
    auto box = TileSpanBoxOp::create(b, loc, b.getIndexType(), b.getIndexType(), keySpan);
    kvBox[0] = box.getLo();
    kvBox[1] = box.getHi();
  }
}

void BackwardLoopBuilder::beginKeyItem(Value keyTile) {
  setKeySpan(keyTile);
  qTiles = entryQTiles = NumTilesOp::create(b, loc, b.getIndexType(), seqQ, op.getVariantAttr(),
                                            SideAttr::get(b.getContext(), Side::Q), tiling);
  // A key tile past its entry's keys visits no block.
  if (pastEntry)
    qTiles = arith::SelectOp::create(b, loc, pastEntry, idx(0), qTiles);
}

SmallVector<Value> BackwardLoopBuilder::zeroKeyGradients() {
  // dK from +0 and dV from -0: equal types must not make them one value
  // (accumulators are updated in place on the CPU).
  return {fill(tile(keys, headDim, b.getF32Type(), TileRole::Acc), 0),
          fill(tile(keys, valueDim, b.getF32Type(), TileRole::Acc), -0.0)};
}

void BackwardLoopBuilder::writeKeyGradients(ValueRange grads, Value headKV) {
  TileWriteRowsOp::create(b, loc, grads[0], ent.dk, batch, headKV, keySpan,
                          /*accumulate=*/UnitAttr(), op.getScaleAttr(), op.getLayoutAttr());
  TileWriteRowsOp::create(b, loc, grads[1], ent.dv, batch, headKV, keySpan,
                          /*accumulate=*/UnitAttr(), b.getF32FloatAttr(1), op.getLayoutAttr());
}

Value BackwardLoopBuilder::routeOf(Value head) {
  if (!variant.isRouted())
    return {};
  return TileRouteOp::create(b, loc, b.getI64Type(), op.getVariantAttr(), batch, head,
                             op.getBuffers(), op.getStatus());
}

SmallVector<Value> BackwardLoopBuilder::ifVisible(Value head, Value route, Value rowSpan,
                                                  ValueRange carried, bool count,
                                                  function_ref<SmallVector<Value>(Value)> body) {
  Value stats = count ? op.getStats() : Value();
  if (!classify) {
    if (stats)
      TileCountOp::create(b, loc, stats, classValue(BlockClass::Partial));
    return body(Value());
  }
  auto box = TileSpanBoxOp::create(b, loc, b.getIndexType(), b.getIndexType(), rowSpan);
  Value cls = TileClassifyOp::create(b, loc, b.getI8Type(), op.getVariantAttr(), batch, head,
                                     box.getLo(), box.getHi(), kvBox[0], kvBox[1],
                                     op.getBuffers(), op.getSummaries(), route);
  Value visit = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, cls,
                                      classValue(BlockClass::Empty));
  Value partial = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cls,
                                        classValue(BlockClass::Partial));
  auto ifOp = scf::IfOp::create(b, loc, carried.getTypes(), visit, /*withElseRegion=*/true);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  if (stats)
    TileCountOp::create(b, loc, stats, cls);
  scf::YieldOp::create(b, loc, body(partial));
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(b, loc, carried);
  b.setInsertionPointAfter(ifOp);
  return ifOp.getResults();
}

std::pair<Value, Value> BackwardLoopBuilder::rowStatistics(Value head, Value rowSpan,
                                                           TileRole role) {
  TileType type = tile(rows, 1, b.getF32Type(), role);
  if (variant.getNormalization() == Normalization::Sigmoid) {
    Value zero = fill(type, 0);
    return {zero, zero};
  }
  Value lse = TileLoadRowsOp::create(b, loc, type, ent.lse, batch, head, rowSpan);
  // The dQ kernel computes delta itself where it is given out.
  if (op.getOut() && role == TileRole::Row)
    return {lse, Value()};
  return {lse, TileLoadRowsOp::create(b, loc, type, ent.delta, batch, head, rowSpan)};
}

void BackwardLoopBuilder::buildDQItem(Value head, Value queryTile) {
  Value rowSpan = span(seqQ, queryTile, Side::Q);
  Value headKV = arith::DivUIOp::create(b, loc, head, group);
  Value route = routeOf(head);
  Value q = load(ent.query, head, rowSpan, rows, headDim, TileRole::Q);
  Value dO = load(ent.dout, head, rowSpan, rows, valueDim, TileRole::Q, /*part=*/1);
  auto [lse, delta] = rowStatistics(head, rowSpan, TileRole::Row);
  // delta = rowsum(dout * out) computed here and written for the dK/dV
  // kernel that runs after this one (sigmoid rows have none).
  if (op.getOut() && variant.getNormalization() != Normalization::Sigmoid) {
    delta = TileRowDeltaOp::create(b, loc, tile(rows, 1, b.getF32Type(), TileRole::Row),
                                   ent.out, ent.dout, batch, head, rowSpan,
                                   op.getLayoutAttr());
    TileStoreRowsOp::create(b, loc, delta, ent.delta, batch, head, rowSpan);
  }
  Value kTiles = NumTilesOp::create(b, loc, b.getIndexType(), seqKV, op.getVariantAttr(),
                                    SideAttr::get(b.getContext(), Side::KV), tiling);
  // A query tile past its entry's queries visits no block.
  if (pastEntry)
    kTiles = arith::SelectOp::create(b, loc, pastEntry, idx(0), kTiles);
  TileType dqType = tile(rows, headDim, b.getF32Type(), TileRole::Acc);
  auto loop = scf::ForOp::create(b, loc, idx(0), kTiles, idx(1), ValueRange{fill(dqType, 0)});
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    setKeySpan(loop.getInductionVar());
    SmallVector<Value> next = ifVisible(
        head, route, rowSpan, loop.getRegionIterArgs(), /*count=*/false,
        [&](Value maskIf) -> SmallVector<Value> {
          // K first: the slot's part 0 (D wide) is K, part 1 V.
          Value kT = load(ent.key, headKV, keySpan, keys, headDim, TileRole::K);
          Value vT = load(ent.value, headKV, keySpan, keys, valueDim, TileRole::K);
          Value kV = load(ent.key, headKV, keySpan, keys, headDim, TileRole::V);
          TileType sType = tile(rows, keys, b.getF32Type(), TileRole::S);
          Value s = TileQKOp::create(b, loc, sType, q, kT, op.getScaleAttr());
          Value p = TileProbsOp::create(b, loc, sType, op.getVariantAttr(), s, lse, batch, head,
                                        rowSpan, keySpan, op.getBuffers(), route, op.getStatus(),
                                        maskIf, /*transposed=*/UnitAttr());
          Value dp = TileQKOp::create(b, loc, sType, dO, vT, b.getF32FloatAttr(1));
          auto ds = TileGradScoresOp::create(
              b, loc, sType, FlatSymbolRefAttr::get(grad.getSymNameAttr()), s, p, dp, delta,
              batch, head, rowSpan, keySpan, buffersAndGradients(), route,
              /*transposed=*/UnitAttr(), /*no_buffer_grads=*/UnitAttr());
          return {TilePVOp::create(b, loc, dqType, ds, kV, loop.getRegionIterArgs()[0],
                                   /*alpha=*/Value(), rowSpan)};
        });
    scf::YieldOp::create(b, loc, next);
  }
  TileWriteRowsOp::create(b, loc, loop.getResult(0), ent.dq, batch, head, rowSpan,
                          /*accumulate=*/UnitAttr(), op.getScaleAttr(), op.getLayoutAttr());
  // A sink logit read from buffers: its gradient over the item's rows
  // (each row is in one dQ item).
  if (sinkHasGradient())
    TileGradSinkOp::create(b, loc, FlatSymbolRefAttr::get(grad.getSymNameAttr()), lse, delta,
                           batch, head, rowSpan, buffersAndGradients());
}

void BackwardLoopBuilder::buildDKDVItem(Value headKV, Value keyTile) {
  beginKeyItem(keyTile);
  // The item's keys as the kernel's operand rows: S^T = K Q^T, dP^T = V dO^T.
  Value kRows = load(ent.key, headKV, keySpan, keys, headDim, TileRole::Q);
  Value vRows = load(ent.value, headKV, keySpan, keys, valueDim, TileRole::Q, /*part=*/1);
  ValueRange grads = forEachQueryTile(
      headKV, zeroKeyGradients(), /*withRoute=*/true,
      [&](Value head, Value route, Value rowSpan, ValueRange carried) {
        return ifVisible(head, route, rowSpan, carried, /*count=*/true,
                         [&](Value maskIf) -> SmallVector<Value> {
          // Q first: the slot's part 0 (D wide) is Q, part 1 dO.
          Value qT = load(ent.query, head, rowSpan, rows, headDim, TileRole::K);
          Value dOT = load(ent.dout, head, rowSpan, rows, valueDim, TileRole::K);
          Value qV = load(ent.query, head, rowSpan, rows, headDim, TileRole::V);
          Value dOV = load(ent.dout, head, rowSpan, rows, valueDim, TileRole::V);
          auto [lse, delta] = rowStatistics(head, rowSpan, TileRole::Col);
          TileType sType = tile(keys, rows, b.getF32Type(), TileRole::S);
          Value sT = TileQKOp::create(b, loc, sType, kRows, qT, op.getScaleAttr());
          Value pT = TileProbsOp::create(b, loc, sType, op.getVariantAttr(), sT, lse, batch,
                                         head, rowSpan, keySpan, op.getBuffers(), route,
                                         op.getStatus(), maskIf, /*transposed=*/b.getUnitAttr());
          Value dv = TilePVOp::create(b, loc, carried[1].getType(), pT, dOV, carried[1],
                                      /*alpha=*/Value(), /*rows=*/Value());
          Value dpT = TileQKOp::create(b, loc, sType, vRows, dOT, b.getF32FloatAttr(1));
          Value dsT = TileGradScoresOp::create(
              b, loc, sType, FlatSymbolRefAttr::get(grad.getSymNameAttr()), sT, pT, dpT, delta,
              batch, head, rowSpan, keySpan, buffersAndGradients(), route,
              /*transposed=*/b.getUnitAttr(), /*no_buffer_grads=*/b.getUnitAttr());
          Value dk = TilePVOp::create(b, loc, carried[0].getType(), dsT, qV, carried[0],
                                      /*alpha=*/Value(), /*rows=*/Value());
          return {dk, dv};
        });
      });
  writeKeyGradients(grads, headKV);
}

void BackwardLoopBuilder::buildItem(Value headKV, Value keyTile) {
  beginKeyItem(keyTile);
  k = load(ent.key, headKV, keySpan, keys, headDim, TileRole::K);
  kAsV = load(ent.key, headKV, keySpan, keys, headDim, TileRole::V);
  vAsK = load(ent.value, headKV, keySpan, keys, valueDim, TileRole::K);
  ValueRange grads = forEachQueryTile(
      headKV, zeroKeyGradients(), /*withRoute=*/true,
      [&](Value head, Value route, Value rowSpan, ValueRange carried) {
        return visitBlock(head, route, rowSpan, carried);
      });
  writeKeyGradients(grads, headKV);
  // (Every query row of the entry, whatever its keys: an entry without
  // keys still has its rows' sink.)
  qTiles = entryQTiles;
  if (sinkHasGradient())
    buildSinkGradient(headKV, keyTile);
}

SmallVector<Value> BackwardLoopBuilder::visitBlock(Value head, Value route, Value rowSpan,
                                                   ValueRange carried) {
  // EMPTY blocks are never visited; FULL ones skip the mask.
  return ifVisible(head, route, rowSpan, carried, /*count=*/true, [&](Value maskIf) {
    return buildBlock(head, rowSpan, route, maskIf, carried);
  });
}

ValueRange BackwardLoopBuilder::forEachQueryTile(Value headKV, ValueRange init, bool withRoute,
                                                 QueryTileBody body) {
  auto heads = scf::ForOp::create(b, loc, idx(0), group, idx(1), init);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(heads.getBody());
  Value head = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, headKV, group),
                                     heads.getInductionVar());
  Value route = withRoute ? routeOf(head) : Value();
  auto qLoop = scf::ForOp::create(b, loc, idx(0), qTiles, idx(1), heads.getRegionIterArgs());
  // A loop without results comes with its (empty) yield.
  if (!init.empty())
    scf::YieldOp::create(b, loc, qLoop.getResults());
  b.setInsertionPointToStart(qLoop.getBody());
  Value rowSpan = span(seqQ, qLoop.getInductionVar(), Side::Q);
  SmallVector<Value> next = body(head, route, rowSpan, qLoop.getRegionIterArgs());
  if (!init.empty())
    scf::YieldOp::create(b, loc, next);
  return heads.getResults();
}

void BackwardLoopBuilder::buildSinkGradient(Value headKV, Value keyTile) {
  // The logit is per row, not per key: one key tile's items add it.
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, keyTile, idx(0));
  auto ifOp = scf::IfOp::create(b, loc, first, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  TileType rowType = tile(rows, 1, b.getF32Type(), TileRole::Row);
  SmallVector<Value> buffers = buffersAndGradients();
  forEachQueryTile(headKV, {}, /*withRoute=*/false, [&](Value head, Value, Value rowSpan,
                                                       ValueRange) {
    Value lse = TileLoadRowsOp::create(b, loc, rowType, ent.lse, batch, head, rowSpan);
    Value delta = TileLoadRowsOp::create(b, loc, rowType, ent.delta, batch, head, rowSpan);
    TileGradSinkOp::create(b, loc, FlatSymbolRefAttr::get(grad.getSymNameAttr()), lse, delta,
                           batch, head, rowSpan, buffers);
    return SmallVector<Value>{};
  });
}

SmallVector<Value> BackwardLoopBuilder::buildBlock(Value head, Value rowSpan, Value route,
                                                   Value maskIf, ValueRange carried) {
  Value dk = carried[0], dv = carried[1];
  Value q = load(ent.query, head, rowSpan, rows, headDim, TileRole::Q);
  Value qRows = load(ent.query, head, rowSpan, rows, headDim, TileRole::K);
  Value dO = load(ent.dout, head, rowSpan, rows, valueDim, TileRole::Q);
  Value dORows = load(ent.dout, head, rowSpan, rows, valueDim, TileRole::K);
  TileType rowType = tile(rows, 1, b.getF32Type(), TileRole::Row);
  // Sigmoid rows have no lse (the forward writes NaN) and no delta.
  bool sigmoid = variant.getNormalization() == Normalization::Sigmoid;
  Value lse = sigmoid ? fill(rowType, 0)
                      : TileLoadRowsOp::create(b, loc, rowType, ent.lse, batch, head, rowSpan);
  Value delta = sigmoid
                    ? lse
                    : TileLoadRowsOp::create(b, loc, rowType, ent.delta, batch, head, rowSpan);
  TileType sType = tile(rows, keys, b.getF32Type(), TileRole::S);
  Value s = TileQKOp::create(b, loc, sType, q, k, op.getScaleAttr());
  Value p = TileProbsOp::create(b, loc, sType, op.getVariantAttr(), s, lse, batch, head, rowSpan,
                                keySpan, op.getBuffers(), route, op.getStatus(), maskIf);
  dv = TileGradKVOp::create(b, loc, dv.getType(), p, dORows, dv);
  Value dp = TileQKOp::create(b, loc, sType, dO, vAsK, b.getF32FloatAttr(1));
  SmallVector<Value> buffers = buffersAndGradients();
  Value ds = TileGradScoresOp::create(b, loc, sType, FlatSymbolRefAttr::get(grad.getSymNameAttr()),
                                      s, p, dp, delta, batch, head, rowSpan, keySpan, buffers,
                                      route);
  dk = TileGradKVOp::create(b, loc, dk.getType(), ds, qRows, dk);
  TileType dqType = tile(rows, headDim, b.getF32Type(), TileRole::Acc);
  Value dq = TilePVOp::create(b, loc, dqType, ds, kAsV, fill(dqType, 0), fill(rowType, 1), rowSpan);
  TileWriteRowsOp::create(b, loc, dq, ent.dq, batch, head, rowSpan, b.getUnitAttr(),
                          op.getScaleAttr(), op.getLayoutAttr());
  return {dk, dv};
}

struct AttnBackwardToTilePass : heed::impl::AttnBackwardToTileBase<AttnBackwardToTilePass> {
  using AttnBackwardToTileBase::AttnBackwardToTileBase;

  void runOnOperation() override {
    BackwardLoop which;
    if (kernel == "fused")
      which = BackwardLoop::Fused;
    else if (kernel == "dq")
      which = BackwardLoop::DQ;
    else if (kernel == "dkdv")
      which = BackwardLoop::DKDV;
    else {
      getOperation().emitError() << "attn-backward-to-tile: kernel must be fused, dq or dkdv, not '"
                                 << kernel << "'";
      return signalPassFailure();
    }
    SymbolTableCollection symbols;
    SmallVector<AttentionBackwardOp> ops;
    getOperation().walk([&](AttentionBackwardOp op) { ops.push_back(op); });
    for (AttentionBackwardOp op : ops) {
      auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr());
      if (!variant) {
        op.emitOpError() << "refers to an unknown variant";
        return signalPassFailure();
      }
      auto grad = symbols.lookupNearestSymbolFrom<VariantOp>(
          op, StringAttr::get(&getContext(), op.getVariant() + "_grad"));
      if (!grad || !grad->hasAttr("derivative_of")) {
        op.emitOpError() << "needs the derivative variant @" << op.getVariant()
                         << "_grad (run --attn-differentiate first)";
        return signalPassFailure();
      }
      // A gated variant's rows are computed as the ungated ones: the caller
      // scales dout by each row's gate and gives the rows not routed lse
      // -inf (heed::BackwardLoop::run; docs/backward.md, "Gated variants").
      if (grad.getNumBuffers() != op.getBuffers().size() + op.getGradients().size()) {
        op.emitOpError() << "takes one gradient buffer per buffer @" << op.getVariant()
                         << "_grad differentiates";
        return signalPassFailure();
      }
      if (op.getOut() && which != BackwardLoop::DQ) {
        op.emitOpError() << "computes delta from `out` only in kernel=dq (whose dK/dV kernel "
                            "runs after it); the other loops read delta";
        return signalPassFailure();
      }
      TilingAttr tiling = op.getTilingAttr();
      if (!tiling)
        tiling = TilingAttr::getFlat(&getContext(), blockQ ? int64_t(blockQ) : heed::kBackwardQueryRows,
                                     blockKV ? int64_t(blockKV) : heed::kBackwardKeys);
      // Patches (--attn-choose-tiling on a neighborhood mask): items are
      // patches (key patches in the one loop and kernel=dkdv, query patches
      // in kernel=dq), the inner loop walks the other side's patches by
      // number.
      if (failed(heed::attn_to_tile::checkTilingMatchesGrid(op, tiling, variant)))
        return signalPassFailure();
      bool ragged = op.getKvLens() || op.getQLens() || op.getCuSeqlensQ() || op.getCuSeqlensKv();
      if ((op.getQLens() && op.getCuSeqlensQ()) || (op.getKvLens() && op.getCuSeqlensKv())) {
        op.emitOpError() << "takes an entry's lengths either as lengths (q_lens, kv_lens) or "
                            "as packed offsets (cu_seqlens_q, cu_seqlens_kv), not both";
        return signalPassFailure();
      }
      if (ragged && variant.isGated() && (op.getQLens() || op.getCuSeqlensQ())) {
        op.emitOpError() << "cannot take q_lens or cu_seqlens_q: variant '" << op.getVariant()
                         << "' gates its rows (as attn.attention)";
        return signalPassFailure();
      }
      if (ragged && tiling.isPatched()) {
        op.emitOpError() << "takes flat tiles with entries of their own lengths (kv_lens, "
                            "q_lens, cu_seqlens); patches only for one length";
        return signalPassFailure();
      }
      if (!variant.getBlocks().empty() &&
          op.getSummaries().size() != variant.getSummarizedBuffers().size()) {
        op.emitOpError() << "needs the summaries of the variant's rank-1 integer buffers for "
                            "its block classifier";
        return signalPassFailure();
      }
      BackwardLoopBuilder(op, variant, grad, tiling).build(which);
      op.erase();
    }
  }
};

} // namespace
