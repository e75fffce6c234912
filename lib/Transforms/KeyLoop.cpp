// The key loop of the K/V staging schedules (heed/Transforms/KeyLoop.h).
#include "heed/Transforms/KeyLoop.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/SetVector.h"

using namespace mlir;
using namespace heed::attn;

namespace heed {

FailureOr<KeyLoop> matchKeyLoop(TileLoadOp k) {
  KeyLoop key;
  key.k = k;
  key.span = k.getSpan().getDefiningOp<TileSpanOp>();
  if (!key.span)
    return failure();
  // A flat tile's one coordinate, or a patch's digit along the innermost
  // grid dim (its loop is the staged one; the outer digits are fixed
  // around it).
  OperandRange coords = key.span.getCoords();
  bool patched = key.span.getTiling().isPatched();
  if (coords.empty() || (!patched && coords.size() != 1))
    return failure();
  auto iv = dyn_cast<BlockArgument>(coords.back());
  key.loop = iv ? dyn_cast<scf::ForOp>(iv.getOwner()->getParentOp()) : scf::ForOp();
  if (!key.loop || key.loop.getInductionVar() != iv)
    return failure();
  for (Value outer : coords.drop_back())
    if (key.loop->isAncestor(outer.getParentBlock()->getParentOp()))
      return failure();
  key.tensors[0] = k.getTensor();
  key.pages = k.getPageTable();
  for (Operation *user : key.span->getUsers()) {
    if (auto load = dyn_cast<TileLoadOp>(user)) {
      TileRole role = cast<TileType>(load.getResult().getType()).getRole();
      if (role == TileRole::Q)
        continue;
      if (load->getBlock() != k->getBlock() || load.getStage() ||
          load.getPageTable() != k.getPageTable()) // one copy reads K and V
        return failure();
      Value t = load.getTensor();
      if (t != key.tensors[0] && key.tensors[1] && t != key.tensors[1])
        return failure(); // a slot holds two tensors
      if (t != key.tensors[0])
        key.tensors[1] = t;
      key.loads.push_back(load);
    }
    if (auto box = dyn_cast<TileSpanBoxOp>(user))
      for (Operation *boxUser : box->getUsers())
        if (auto cls = dyn_cast<TileClassifyOp>(boxUser))
          key.classify = cls;
  }
  if (!key.tensors[1]) // one tensor as K and V: it fills both parts
    key.tensors[1] = key.tensors[0];
  // The slot is computed before the first of the loads.
  key.firstUse = nullptr;
  for (TileLoadOp load : key.loads) {
    Operation *at = key.loop.getBody()->findAncestorOpInBlock(*load);
    if (!key.firstUse || at->isBeforeInBlock(key.firstUse))
      key.firstUse = at;
  }
  return key;
}

void cloneTileSlice(OpBuilder &b, KeyLoop key, Value tile, ValueRange values,
                    IRMapping &map) {
  llvm::SetVector<Operation *> slice;
  SmallVector<Operation *> work;
  for (Value v : values)
    if (Operation *def = v.getDefiningOp())
      work.push_back(def);
  Block *body = key.loop.getBody();
  while (!work.empty()) {
    Operation *op = work.pop_back_val();
    if (op->getBlock() != body || !slice.insert(op))
      continue;
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp())
        work.push_back(def);
  }
  map.map(key.loop.getInductionVar(), tile);
  for (Operation &op : *body)
    if (slice.contains(&op))
      b.clone(op, map);
}

void copyKV(OpBuilder &b, KeyLoop key, Value span, Value stage, int64_t stages,
            bool async, const IRMapping *map) {
  auto at = [&](Value v) { return map && v ? map->lookupOrDefault(v) : v; };
  TileCopyKVOp::create(b, key.k.getLoc(), at(key.tensors[0]), at(key.tensors[1]),
                       at(key.k.getBatch()), at(key.k.getHead()), span, stage, at(key.pages),
                       b.getI64IntegerAttr(stages),
                       async ? b.getUnitAttr() : UnitAttr(), key.k.getLayoutAttr());
}

void readFromSlot(KeyLoop key, Value stage) {
  for (TileLoadOp load : key.loads) {
    load.getStageMutable().assign(stage);
    load.getPageTableMutable().clear(); // the copy reads through the table
    bool v = cast<TileType>(load.getResult().getType()).getRole() == TileRole::V;
    bool first = load.getTensor() == key.tensors[0] && (key.tensors[0] != key.tensors[1] || !v);
    load.setPart(first ? 0 : 1);
  }
}

} // namespace heed
