// --attn-pack-gqa: decode's schedule for grouped-query attention. When the
// queries of a whole GQA group fit one query tile (group * Sq <= rows), one
// work item per key/value head computes every query head of its group from
// one pass over the group's keys and values, instead of one pass per query
// head. Chosen at run time, so the kernel still serves any length:
//
//   scf.if (group > 1 && group * Sq <= rows) {
//     attn.tile.work over (B, Hkv, tiles of group * Sq) {
//       head = hkv * group                       (the group's first query head)
//       %rows = attn.tile.packed_span %Sq group %g [%t]
//       ... the item's code, unchanged ...
//     }
//   } else {
//     attn.tile.work over (B, H, tiles of Sq) { ... as before ... }
//   }
//
// With q_lens the choice is made on the capacity (group * capacity <= rows:
// one packed tile per item), and the packed span holds the item's entry's
// own queries; an entry with none is idle as before (its tile 0 is past
// its length).
//
// The item's code needs no other change: the key/value head it computes
// from its head is the group's, the query tile's lanes carry their heads'
// offsets (loads, stores and the variant's regions read them per lane), and
// the key-tile classifier, which sees one head per item, is required not to
// read the head.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SmallPtrSet.h"

namespace heed {
#define GEN_PASS_DEF_ATTNPACKGQA
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using namespace heed::attn;

namespace {

/// What packing a work loop needs from it; null members where it cannot be
/// packed.
struct Packable {
  TileSpanOp rows;   ///< the item's query tile
  NumTilesOp tiles;  ///< the loop's query tile count
  TileLoadOp key;    ///< a key tile load (its tensor gives Hkv)
  explicit operator bool() const { return rows && tiles && key; }
};

/// Can `v` change what its region yields? Conservatively yes where it flows
/// into a terminator, a region or an op with effects (a buffer read); no
/// where every value computed from it is unused (the analysis casts every
/// argument, used or not).
bool reachesYield(Value v) {
  SmallVector<Value> work = {v};
  llvm::SmallPtrSet<Operation *, 16> seen;
  while (!work.empty()) {
    Value x = work.pop_back_val();
    for (Operation *user : x.getUsers()) {
      if (user->hasTrait<OpTrait::IsTerminator>() || user->getNumRegions() != 0 ||
          !isMemoryEffectFree(user))
        return true;
      if (seen.insert(user).second)
        llvm::append_range(work, user->getResults());
    }
  }
  return false;
}

/// Does `variant`'s key-tile classifier read the head (its argument 1)?
bool classifierReadsHead(Operation *user, FlatSymbolRefAttr name) {
  auto variant = SymbolTable::lookupNearestSymbolFrom<VariantOp>(user, name);
  return !variant ||
         (!variant.getBlocks().empty() && reachesYield(variant.getBlocks().front().getArgument(1)));
}

/// Does `variant`'s sink logit read the head (a per-head sink, as gpt-oss's)?
/// attn.tile.sink computes one logit per work item, while a packed tile's
/// rows belong to several heads: such sinks become attn.tile.lane_sinks.
bool sinkReadsHead(Operation *user, FlatSymbolRefAttr name) {
  auto variant = SymbolTable::lookupNearestSymbolFrom<VariantOp>(user, name);
  return !variant ||
         (!variant.getSink().empty() && reachesYield(variant.getSink().front().getArgument(1)));
}

Packable analyze(TileWorkOp work) {
  Packable p;
  Block &body = work.getBody().front();
  p.tiles = work.getTiles().getDefiningOp<NumTilesOp>();
  bool ok = true;
  work.walk([&](Operation *op) {
    if (isa<TileRouteOp, TileRoutedSpanOp, TilePackedSpanOp>(op))
      ok = false;
    // Patch tiles (neighborhood masks on a token grid) are not packed: a
    // packed tile's rows are one token per head, not a patch of the grid.
    else if (auto span = dyn_cast<TileSpanOp>(op); span && span.getTiling().isPatched())
      ok = false;
    else if (auto cls = dyn_cast<TileClassifyOp>(op))
      ok &= !classifierReadsHead(op, cls.getVariantAttr());
    else if (auto range = dyn_cast<TileKVRangeOp>(op))
      ok &= !classifierReadsHead(op, range.getVariantAttr());
    else if (auto sink = dyn_cast<TileSinkOp>(op))
      // A per-head sink becomes per row (attn.tile.lane_sinks) where it
      // only feeds the store.
      ok &= !sinkReadsHead(op, sink.getVariantAttr()) ||
            llvm::all_of(sink->getUsers(), [](Operation *u) { return isa<TileStoreOp>(u); });
    else if (auto load = dyn_cast<TileLoadOp>(op);
             load && cast<TileType>(load.getResult().getType()).getRole() == TileRole::K)
      p.key = load;
    return ok ? WalkResult::advance() : WalkResult::interrupt();
  });
  if (!ok)
    return {};
  // The query tile: the flat span of the item's tile coordinate.
  for (TileSpanOp span : body.getOps<TileSpanOp>()) {
    if (span.getSide() != Side::Q)
      continue;
    if (p.rows || span.getCoords().size() != 1 || span.getCoords()[0] != body.getArgument(2))
      return {};
    p.rows = span;
  }
  return p;
}

/// Query tiles of `rows` rows in `packed`, the packed loop: the q, s, acc
/// and row tiles of its body (values and block arguments alike), its query
/// span and every tiling it carries (the packed count `tiles` included).
/// Key and value tiles, key spans and everything else keep their types.
void retileRows(TileWorkOp packed, TilePackedSpanOp span, NumTilesOp tiles, int64_t rows) {
  MLIRContext *ctx = packed.getContext();
  auto retype = [&](Value v) {
    auto tile = dyn_cast<TileType>(v.getType());
    if (!tile || tile.getRole() == TileRole::K || tile.getRole() == TileRole::V)
      return;
    SmallVector<int64_t> shape(tile.getShape());
    shape[0] = rows;
    v.setType(TileType::get(ctx, shape, tile.getElementType(), tile.getRole()));
  };
  auto retile = [&](Operation *op) {
    for (NamedAttribute a : op->getAttrs())
      if (auto t = dyn_cast<TilingAttr>(a.getValue()); t && !t.isPatched())
        op->setAttr(a.getName(), TilingAttr::getFlat(ctx, rows, t.getKv()[0]));
  };
  retile(tiles);
  packed.getBody().walk([&](Operation *op) {
    retile(op);
    for (Value r : op->getResults())
      retype(r);
    for (Region &region : op->getRegions())
      for (Block &block : region)
        for (BlockArgument arg : block.getArguments())
          retype(arg);
  });
  span.getResult().setType(SpanType::get(ctx, rows));
}

/// The packed tile's rows' per-head sinks (attn.tile.lane_sinks) and the
/// per-head statistics of a packed loop `packed` whose span is `packedRows`
/// and whose items hold `group` heads.
void packHeads(OpBuilder &b, Location loc, TileWorkOp packed, Value packedRows, Value group);

/// --attn-pack-gqa{one-loop}: the same loop for both, its sizes chosen at run
/// time (g heads an item: the group where it packs, else 1).
void packOneLoop(TileWorkOp work, Packable p, Value headsKV, Value group, Value choose) {
  OpBuilder b(work);
  Location loc = work.getLoc();
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value g = arith::SelectOp::create(b, loc, choose, group, one);
  Value heads = arith::SelectOp::create(b, loc, choose, headsKV, work.getHeads());
  Value seq = arith::MulIOp::create(b, loc, p.tiles.getSeq(), g);
  Value tiles = NumTilesOp::create(b, loc, b.getIndexType(), seq, p.tiles.getVariantAttr(),
                                   p.tiles.getSideAttr(), p.tiles.getTilingAttr());
  work.getHeadsMutable().assign(heads);
  work.getTilesMutable().assign(tiles);
  if (p.tiles->use_empty())
    p.tiles.erase();

  Block &body = work.getBody().front();
  BlockArgument item = body.getArgument(1);
  b.setInsertionPointToStart(&body);
  Value first = arith::MulIOp::create(b, loc, item, g);
  item.replaceAllUsesExcept(first, first.getDefiningOp());
  b.setInsertionPoint(p.rows);
  Value packedRows = TilePackedSpanOp::create(b, loc, p.rows.getResult().getType(),
                                              p.rows.getSeq(), g, p.rows.getCoords()[0],
                                              p.rows.getTilingAttr());
  p.rows.getResult().replaceAllUsesWith(packedRows);
  p.rows.erase();
  b.setInsertionPointAfterValue(packedRows);
  packHeads(b, loc, work, packedRows, g);
}

void pack(TileWorkOp work, Packable p, int64_t maxRows, bool oneLoop) {
  OpBuilder b(work);
  Location loc = work.getLoc();
  // Hkv from the key tensor, the group, and the run-time choice.
  Value keys = p.key.getTensor();
  // Packed keys (cu_seqlens_kv): the item's view of the tensor, whose heads
  // are the tensor's.
  if (auto view = keys.getDefiningOp<memref::ReinterpretCastOp>())
    keys = view.getSource();
  unsigned headDim = p.key.getLayout() == Layout::BSHD ? 2 : 1;
  Value headsKV = memref::DimOp::create(b, loc, keys, headDim);
  Value group = arith::DivUIOp::create(b, loc, work.getHeads(), headsKV);
  // The choice reads the loop's query length, the capacity where each batch
  // entry has its own (q_lens: the item's span reads that entry's length).
  Value packedSeq = arith::MulIOp::create(b, loc, p.tiles.getSeq(), group);
  // The packed tile's rows: at most the loop's (its tiles of group * Sq
  // hold a handful of real rows; see the pass's `rows`).
  int64_t rows = std::min(p.rows.getResult().getType().getSize(), maxRows);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value grouped = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt, group, one);
  Value fits = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, packedSeq,
                                     arith::ConstantIndexOp::create(b, loc, rows));
  Value choose = arith::AndIOp::create(b, loc, grouped, fits);
  if (oneLoop)
    return packOneLoop(work, p, headsKV, group, choose);
  auto ifOp = scf::IfOp::create(b, loc, choose, /*withElseRegion=*/true);

  // The loop as it was, when the group's queries do not fit one tile.
  work->moveBefore(ifOp.elseBlock()->getTerminator());

  b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
  Value tiles = NumTilesOp::create(b, loc, b.getIndexType(), packedSeq,
                                   p.tiles.getVariantAttr(), p.tiles.getSideAttr(),
                                   p.tiles.getTilingAttr());
  IRMapping map;
  auto packed = cast<TileWorkOp>(b.clone(*work, map));
  packed.getHeadsMutable().assign(headsKV);
  packed.getTilesMutable().assign(tiles);

  Block &body = packed.getBody().front();
  BlockArgument item = body.getArgument(1);
  b.setInsertionPointToStart(&body);
  // The work item's head becomes the group's first query head.
  Value first = arith::MulIOp::create(b, loc, item, group);
  item.replaceAllUsesExcept(first, first.getDefiningOp());

  auto span = cast<TileSpanOp>(map.lookup(p.rows.getOperation()));
  b.setInsertionPoint(span);
  Value packedRows = TilePackedSpanOp::create(b, loc, span.getResult().getType(),
                                              span.getSeq(), group, span.getCoords()[0],
                                              span.getTilingAttr());
  span.getResult().replaceAllUsesWith(packedRows);
  span.erase();
  if (rows != cast<SpanType>(packedRows.getType()).getSize())
    retileRows(packed, packedRows.getDefiningOp<TilePackedSpanOp>(),
               tiles.getDefiningOp<NumTilesOp>(), rows);
  packHeads(b, loc, packed, packedRows, group);
}

void packHeads(OpBuilder &b, Location loc, TileWorkOp packed, Value packedRows, Value group) {
  // Per-head sinks: one logit per row, each for its row's head.
  SmallVector<TileSinkOp> sinks;
  packed.walk([&](TileSinkOp sink) {
    if (sinkReadsHead(sink, sink.getVariantAttr()))
      sinks.push_back(sink);
  });
  for (TileSinkOp sink : sinks) {
    b.setInsertionPoint(sink);
    auto rowType = TileType::get(b.getContext(), {cast<SpanType>(packedRows.getType()).getSize()},
                                 b.getF32Type(), TileRole::Row);
    Value perRow = TileLaneSinksOp::create(b, loc, rowType, sink.getVariantAttr(),
                                           sink.getBatch(), sink.getHead(), packedRows,
                                           sink.getBuffers(), sink.getStatus());
    for (Operation *user : llvm::make_early_inc_range(sink->getUsers())) {
      auto store = cast<TileStoreOp>(user);
      store.getSinkMutable().clear();
      store.getLaneSinksMutable().assign(perRow);
    }
    sink.erase();
  }

  // A visited key tile serves every head of the group: it counts once per head,
  // as the per-head brute-force census counts it.
  SmallVector<TileCountOp> counts;
  packed.walk([&](TileCountOp count) { counts.push_back(count); });
  for (TileCountOp count : counts) {
    b.setInsertionPoint(count);
    auto perHead = scf::ForOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, 0), group,
                                      arith::ConstantIndexOp::create(b, loc, 1));
    count->moveBefore(perHead.getBody()->getTerminator());
  }
}

struct AttnPackGQAPass : heed::impl::AttnPackGQABase<AttnPackGQAPass> {
  using Base::Base;

  void runOnOperation() override {
    if (rows < 1) {
      getOperation().emitError() << "attn-pack-gqa: rows must be at least 1";
      return signalPassFailure();
    }
    SmallVector<TileWorkOp> works;
    getOperation().walk([&](TileWorkOp work) { works.push_back(work); });
    bool packed = false;
    int64_t tileRows = rows;
    for (TileWorkOp work : works)
      if (Packable p = analyze(work)) {
        if (oneLoop) // (one loop: the loop's own tile)
          tileRows = p.rows.getResult().getType().getSize();
        pack(work, p, rows, oneLoop);
        packed = true;
      }
    // What the runtime's scheduling reads (KernelInfo::packedRows): whether
    // this kernel packs at all, and with which tile.
    if (packed)
      getOperation()->setAttr(heed::kPackedRowsAttr,
                              IntegerAttr::get(IntegerType::get(&getContext(), 64), tileRows));
  }
};

} // namespace
