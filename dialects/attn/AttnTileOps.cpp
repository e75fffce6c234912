// Verifiers and interfaces of the attn dialect's tile-level ops.
#include "dialects/attn/AttnTileOps.h"
#include "dialects/attn/AttnOps.h"
#include "dialects/attn/TileMath.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace heed::attn;

#define GET_OP_CLASSES
#include "dialects/attn/AttnTileOps.cpp.inc"

namespace {

using Effects = SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>;

void addReads(Effects &effects, MutableOperandRange operands) {
  for (OpOperand &operand : operands)
    effects.emplace_back(MemoryEffects::Read::get(), &operand,
                         SideEffects::DefaultResource::get());
}

void addWrites(Effects &effects, MutableOperandRange operands) {
  for (OpOperand &operand : operands)
    effects.emplace_back(MemoryEffects::Write::get(), &operand,
                         SideEffects::DefaultResource::get());
}

/// The variant `name` refers to, or an error on `op`.
FailureOr<VariantOp> lookupVariant(Operation *op, FlatSymbolRefAttr name,
                                   SymbolTableCollection &symbols) {
  auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(op, name);
  if (!variant)
    return op->emitOpError() << "refers to an unknown variant " << name;
  return variant;
}

LogicalResult needsBlocks(Operation *op, FlatSymbolRefAttr name, SymbolTableCollection &symbols) {
  FailureOr<VariantOp> variant = lookupVariant(op, name, symbols);
  if (failed(variant))
    return failure();
  if (variant->getBlocks().empty())
    return op->emitOpError() << "needs the blocks region of " << name
                             << " (run --attn-analyze-mask)";
  return success();
}

/// The variant `name` must have the per-head region `has` checks for (route,
/// sink); `lacks` says what it is otherwise.
LogicalResult needsHeadRegion(Operation *op, FlatSymbolRefAttr name,
                              SymbolTableCollection &symbols, bool (VariantOp::*has)(),
                              StringRef lacks) {
  FailureOr<VariantOp> variant = lookupVariant(op, name, symbols);
  if (failed(variant))
    return failure();
  if (!((*variant).*has)())
    return op->emitOpError() << name << " " << lacks;
  return success();
}

/// The variant `name` refers to, checked to take `buffers` buffers.
FailureOr<VariantOp> variantTaking(Operation *op, FlatSymbolRefAttr name, size_t buffers,
                                   SymbolTableCollection &symbols) {
  FailureOr<VariantOp> variant = lookupVariant(op, name, symbols);
  if (failed(variant))
    return failure();
  if (variant->getNumBuffers() != buffers)
    return op->emitOpError() << "takes " << variant->getNumBuffers() << " buffers for " << name;
  return variant;
}

} // namespace

LogicalResult TileWorkOp::verify() {
  Block &body = getBody().front();
  if (!llvm::all_of(body.getArgumentTypes(), [](Type t) { return t.isIndex(); }))
    return emitOpError() << "body must take index arguments";
  if (getPersistent()) {
    if (body.getNumArguments() != 2)
      return emitOpError() << "persistent body must take two index arguments (worker, workers)";
    if (getBegin() || getEnd() || getSplitPhase() || getSplitCount() || getSplitPartKeys() ||
        getPartialAcc() || getPartialStats())
      return emitOpError() << "persistent work takes no range and no split";
    return success();
  }
  if (body.getNumArguments() != 3)
    return emitOpError() << "body must take three index arguments (batch, head, tile)";
  if (static_cast<bool>(getBegin()) != static_cast<bool>(getEnd()))
    return emitOpError() << "range needs both a begin and an end";
  if (static_cast<bool>(getSplitPhase()) != static_cast<bool>(getPartialStats()))
    return emitOpError() << "split needs its phase, count and partials together";
  if (getSplitPartKeys() && !getSplitPhase())
    return emitOpError() << "part_keys needs a split";
  return success();
}

LogicalResult TileSpanOp::verify() {
  ArrayRef<int64_t> patch = getTiling().getPatch(getSide());
  if (getCoords().size() != 1 && getCoords().size() != patch.size())
    return emitOpError() << "takes one tile number or " << patch.size()
                         << " patch coordinates, got " << getCoords().size();
  if (getResult().getType().getSize() != tileSize(patch))
    return emitOpError() << "span size " << getResult().getType().getSize()
                         << " differs from the tile's " << tileSize(patch) << " lanes";
  return success();
}

void TileLoadOp::getEffects(Effects &effects) {
  addReads(effects, getTensorMutable());
  if (getPageTable())
    addReads(effects, getPageTableMutable());
  if (getStage()) // the staging slots attn.tile.copy_kv writes
    effects.emplace_back(MemoryEffects::Read::get(), SideEffects::DefaultResource::get());
}

LogicalResult TileLoadOp::verify() {
  auto tensor = cast<MemRefType>(getTensor().getType());
  auto tile = cast<TileType>(getResult().getType());
  if (tile.getRole() != TileRole::Q && tile.getRole() != TileRole::K &&
      tile.getRole() != TileRole::V)
    return emitOpError() << "loads q, k or v tiles";
  if (tensor.getRank() != 4 || tensor.isDynamicDim(3))
    return emitOpError() << "needs a rank-4 tensor with a static head dim";
  if (tile.getCols() != tensor.getDimSize(3) || tile.getElementType() != tensor.getElementType())
    return emitOpError() << "tile " << tile << " does not match the tensor's head dim and type";
  if (tile.getRows() != getSpan().getType().getSize())
    return emitOpError() << "tile rows differ from the span's lanes";
  if (getRound() && tile.getRole() != TileRole::Q)
    return emitOpError() << "takes a round for q tiles only";
  if (getPageTable()) {
    if (tile.getRole() == TileRole::Q || getStage())
      return emitOpError() << "reads pages for k and v tiles loaded from the tensor only";
    unsigned seqDim = getLayout() == Layout::BSHD ? 1 : 2;
    if (tensor.isDynamicDim(seqDim))
      return emitOpError() << "needs a paged tensor whose page size (dim " << seqDim
                           << ") is static";
  }
  return success();
}

LogicalResult TileWaitKVOp::verify() {
  if (static_cast<bool>(getStage()) != static_cast<bool>(getRound()))
    return emitOpError() << "takes a stage and a round together";
  if (getStage() && getPending() != 0)
    return emitOpError() << "waits for one slot's fill (stage, round) or for copy groups "
                            "(pending), not both";
  if (std::optional<int64_t> part = getPart(); part && (!getStage() || *part < 0 || *part > 1))
    return emitOpError() << "waits for part 0 or 1 of a slot's fill (with stage and round)";
  return success();
}

void TileCopyKVOp::getEffects(Effects &effects) {
  addReads(effects, getKeyMutable());
  addReads(effects, getValueMutable());
  // Writes the staging slots: a resource of its own is not modelled, so the
  // op is kept in order with the waits and loads around it.
  effects.emplace_back(MemoryEffects::Write::get(), SideEffects::DefaultResource::get());
}

LogicalResult TileQKOp::verify() {
  auto q = cast<TileType>(getQ().getType()), k = cast<TileType>(getK().getType());
  auto s = cast<TileType>(getResult().getType());
  if (q.getCols() != k.getCols() || s.getRows() != q.getRows() || s.getCols() != k.getRows())
    return emitOpError() << "needs q [R x D], k [N x D] and a result [R x N]";
  return success();
}

LogicalResult TileApplyOp::verifySymbolUses(SymbolTableCollection &symbols) {
  FailureOr<VariantOp> variant =
      variantTaking(*this, getVariantAttr(), getBuffers().size(), symbols);
  if (failed(variant))
    return failure();
  if (variant->isRouted() != static_cast<bool>(getRoute()))
    return emitOpError() << "takes a route value exactly when its variant is routed";
  return success();
}

void TileApplyOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getStatusMutable());
}

/// The matrix units' queue of asynchronous products (wgmma's groups): an
/// async attn.tile.qk / pv writes it, attn.tile.mma_wait too, so that none
/// of them moves across another (the waits count the products in order).
namespace heed::attn {
struct MatrixUnits : SideEffects::Resource::Base<MatrixUnits> {
  StringRef getName() override { return "attn.matrix_units"; }
};
} // namespace heed::attn

namespace {
void addAsyncProduct(Effects &effects, bool async) {
  if (async)
    effects.emplace_back(MemoryEffects::Write::get(), MatrixUnits::get());
}
} // namespace

void TileQKOp::getEffects(Effects &effects) { addAsyncProduct(effects, getAsync()); }
Speculation::Speculatability TileQKOp::getSpeculatability() {
  return getAsync() ? Speculation::NotSpeculatable : Speculation::Speculatable;
}
void TilePVOp::getEffects(Effects &effects) { addAsyncProduct(effects, getAsync()); }
Speculation::Speculatability TilePVOp::getSpeculatability() {
  return getAsync() ? Speculation::NotSpeculatable : Speculation::Speculatable;
}
void TileMMAWaitOp::getEffects(Effects &effects) { addAsyncProduct(effects, true); }

LogicalResult TileMMAWaitOp::verify() {
  if (getTiles().getTypes() != getResults().getTypes())
    return emitOpError() << "returns its operands' types";
  if (getPending() < 0)
    return emitOpError() << "needs a pending count >= 0";
  for (Value t : getTiles()) {
    auto qk = t.getDefiningOp<TileQKOp>();
    auto pv = t.getDefiningOp<TilePVOp>();
    if (!(qk && qk.getAsync()) && !(pv && pv.getAsync()))
      return emitOpError() << "waits for results of async attn.tile.qk / attn.tile.pv only";
  }
  return success();
}

LogicalResult TileConvertOp::verify() {
  auto from = cast<TileType>(getSource().getType()), to = cast<TileType>(getResult().getType());
  if (from.getShape() != to.getShape())
    return emitOpError() << "converts a tile's elements, not its shape";
  Type a = from.getElementType(), b = to.getElementType();
  if (a != b && !a.isF32() && !b.isF32())
    return emitOpError() << "converts between f32 and a 16-bit type, not " << a << " to " << b;
  return success();
}

LogicalResult TilePVOp::verify() {
  auto p = cast<TileType>(getProbs().getType()), v = cast<TileType>(getV().getType());
  auto acc = cast<TileType>(getAcc().getType());
  bool alphaFits = !getAlpha() || cast<TileType>(getAlpha().getType()).getRows() == p.getRows();
  if (p.getCols() != v.getRows() || acc.getRows() != p.getRows() ||
      acc.getCols() != v.getCols() || !alphaFits ||
      getResult().getType() != acc)
    return emitOpError() << "needs p [R x N], v [N x Dv], acc [R x Dv] and alpha [R]";
  if (!p.getElementType().isF32() && p.getElementType() != v.getElementType())
    return emitOpError() << "takes p in f32 or in v's type (" << v.getElementType() << ")";
  return success();
}

void TileStorePartialOp::getEffects(Effects &effects) {
  addWrites(effects, getPartialAccMutable());
  addWrites(effects, getPartialStatsMutable());
}

void TileMergePartialsOp::getEffects(Effects &effects) {
  addReads(effects, getPartialAccMutable());
  addReads(effects, getPartialStatsMutable());
}

void TileStoreOp::getEffects(Effects &effects) {
  addWrites(effects, getOutMutable());
  addWrites(effects, getLseMutable());
  addReads(effects, getGateMutable());
}

LogicalResult TileStoreOp::verify() {
  if (cast<TileType>(getAcc().getType()).getRows() != getSpan().getType().getSize())
    return emitOpError() << "accumulator rows differ from the span's lanes";
  if (static_cast<bool>(getGate()) != getGateDims().has_value())
    return emitOpError() << "a gate needs gate_dims and gate_dims a gate";
  if (getSink() && getLaneSinks())
    return emitOpError() << "takes one sink logit per tile or one per row, not both";
  if (getGateDims() && getGateDims()->size() != 3)
    return emitOpError() << "gate_dims lists the gate's dims of b, q and h";
  if (getSink() && isSigmoid())
    return emitOpError() << "a sink logit needs softmax, not sigmoid";
  return success();
}

LogicalResult TileClassifyOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return needsBlocks(*this, getVariantAttr(), symbols);
}

void TileClassifyOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addReads(effects, getSummariesMutable());
}

LogicalResult TileKVRangeOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return needsBlocks(*this, getVariantAttr(), symbols);
}

void TileKVRangeOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addReads(effects, getSummariesMutable());
}

LogicalResult TileKVRangeOp::verify() {
  int64_t dims = getTiling().getKv().size();
  if (getDim() < 0 || getDim() >= dims)
    return emitOpError() << "dim must be in [0, " << dims << ")";
  if (static_cast<int64_t>(getOuter().size()) != getDim())
    return emitOpError() << "takes the coordinates of the " << getDim() << " outer dim(s)";
  return success();
}

LogicalResult TileRouteOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return needsHeadRegion(*this, getVariantAttr(), symbols, &VariantOp::isRouted, "is not routed");
}

void TileRouteOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getStatusMutable());
}

LogicalResult TileSinkOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return needsHeadRegion(*this, getVariantAttr(), symbols, &VariantOp::hasSink,
                         "has no sink logit");
}

void TileSinkOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getStatusMutable());
}

LogicalResult TileLaneSinksOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return needsHeadRegion(*this, getVariantAttr(), symbols, &VariantOp::hasSink,
                         "has no sink logit");
}

void TileLaneSinksOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getStatusMutable());
}

void TileBindShapesOp::getEffects(Effects &effects) {
  // An unspecified write keeps the binding until the target pass erases it.
  effects.emplace_back(MemoryEffects::Write::get());
}

void TileCountOp::getEffects(Effects &effects) {
  addReads(effects, getStatsMutable());
  addWrites(effects, getStatsMutable());
}

void GradAddOp::getEffects(Effects &effects) {
  addReads(effects, getGradientMutable());
  addWrites(effects, getGradientMutable());
}

LogicalResult GradAddOp::verify() {
  auto type = cast<MemRefType>(getGradient().getType());
  if (!type.getElementType().isF32())
    return emitOpError() << "accumulates into an f32 gradient, got " << type;
  if (type.getRank() != static_cast<int64_t>(getIndices().size()))
    return emitOpError() << "takes " << type.getRank() << " indices for " << type;
  return success();
}

LogicalResult AttentionBackwardOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return variantTaking(*this, getVariantAttr(), getBuffers().size(), symbols);
}

void AttentionBackwardOp::getEffects(Effects &effects) {
  using Range = MutableOperandRange;
  for (Range r : {Range(getQueryMutable()), Range(getKeyMutable()), Range(getValueMutable()),
                  Range(getDoutMutable()), Range(getLseMutable()), Range(getDeltaMutable()),
                  getBuffersMutable(), getSummariesMutable(), getOutMutable(),
                  getKvLensMutable(), getQLensMutable(), getCuSeqlensQMutable(),
                  getCuSeqlensKvMutable()})
    addReads(effects, r);
  if (getOut()) // delta is written
    addWrites(effects, getDeltaMutable());
  for (Range r : {Range(getDqMutable()), getGradientsMutable(), getStatsMutable()}) {
    addReads(effects, r);
    addWrites(effects, r);
  }
  for (Range r : {Range(getDkMutable()), Range(getDvMutable()), getStatusMutable()})
    addWrites(effects, r);
}

void TileLoadRowsOp::getEffects(Effects &effects) { addReads(effects, getTensorMutable()); }

void TileRowDeltaOp::getEffects(Effects &effects) {
  addReads(effects, getOutMutable());
  addReads(effects, getDoutMutable());
}

void TileStoreRowsOp::getEffects(Effects &effects) { addWrites(effects, getTensorMutable()); }

LogicalResult TileLoadRowsOp::verify() {
  auto tile = cast<TileType>(getResult().getType());
  if (tile.getRole() != TileRole::Row && tile.getRole() != TileRole::Col)
    return emitOpError() << "loads a row or col tile";
  if (tile.getRows() != getSpan().getType().getSize())
    return emitOpError() << "tile lanes differ from the span's";
  return success();
}

/// A score tile and its per-query statistic: a row tile of its rows, or,
/// `transposed` (key-major), a col tile of its columns.
static LogicalResult verifyStatistic(Operation *op, Value scores, Value stat, bool transposed) {
  auto s = cast<TileType>(scores.getType()), t = cast<TileType>(stat.getType());
  TileRole want = transposed ? TileRole::Col : TileRole::Row;
  int64_t queries = transposed ? s.getCols() : s.getRows();
  if (t.getRole() != want || t.getRows() != queries)
    return op->emitOpError() << "needs a " << stringifyTileRole(want) << " tile of " << queries
                             << " lanes (one per query of the "
                             << (transposed ? "transposed " : "") << "score tile), not " << t;
  return success();
}

LogicalResult TileProbsOp::verify() {
  return verifyStatistic(*this, getScores(), getLse(), getTransposed());
}

LogicalResult TileGradScoresOp::verify() {
  return verifyStatistic(*this, getScores(), getDelta(), getTransposed());
}

LogicalResult TileProbsOp::verifySymbolUses(SymbolTableCollection &symbols) {
  return lookupVariant(*this, getVariantAttr(), symbols);
}

void TileProbsOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getStatusMutable());
}

LogicalResult TileGradScoresOp::verifySymbolUses(SymbolTableCollection &symbols) {
  FailureOr<VariantOp> variant =
      variantTaking(*this, getVariantAttr(), getBuffers().size(), symbols);
  if (failed(variant))
    return failure();
  if (!(*variant)->hasAttr("derivative_of"))
    return emitOpError() << getVariantAttr()
                         << " is not a derivative variant (run --attn-differentiate)";
  return success();
}

void TileGradScoresOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getBuffersMutable());
}

LogicalResult TileGradSinkOp::verifySymbolUses(SymbolTableCollection &symbols) {
  FailureOr<VariantOp> variant =
      variantTaking(*this, getVariantAttr(), getBuffers().size(), symbols);
  if (failed(variant))
    return failure();
  if (!(*variant)->hasAttr("derivative_of") || !variant->hasSink())
    return emitOpError() << getVariantAttr()
                         << " is not the derivative variant of one with a sink logit";
  return success();
}

void TileGradSinkOp::getEffects(Effects &effects) {
  addReads(effects, getBuffersMutable());
  addWrites(effects, getBuffersMutable());
}

LogicalResult TileGradKVOp::verify() {
  auto x = cast<TileType>(getX().getType()), y = cast<TileType>(getY().getType());
  auto acc = cast<TileType>(getAcc().getType());
  if (x.getRows() != y.getRows() || acc.getRows() != x.getCols() || acc.getCols() != y.getCols())
    return emitOpError() << "needs x [R x N], y [R x D] and acc [N x D]";
  return success();
}

void TileWriteRowsOp::getEffects(Effects &effects) {
  if (getAccumulate())
    addReads(effects, getTensorMutable());
  addWrites(effects, getTensorMutable());
}
