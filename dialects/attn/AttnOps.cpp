// Verifiers and interfaces of the attn dialect's ops.
#include "dialects/attn/AttnOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/StringSet.h"

#include <cmath>
#include <set>

using namespace mlir;
using namespace heed::attn;

#define GET_OP_CLASSES
#include "dialects/attn/AttnOps.cpp.inc"

namespace {

bool isBufferElementType(Type t) {
  return t.isF32() || t.isF16() || t.isBF16() || t.isInteger(8) ||
         t.isInteger(32) || t.isInteger(64) || t.isInteger(1);
}

bool isStorageFloat(Type t) { return t.isF32() || t.isF16() || t.isBF16(); }

bool isDimSymbol(StringRef s) {
  if (s == "B" || s == "H" || s == "Hkv" || s == "Sq" || s == "Skv")
    return true;
  unsigned long long v;
  return !s.empty() && !s.getAsInteger(10, v) && v > 0;
}

/// A dimension as the frontends write it: a size, a positive integer, or an
/// expression of sizes and integers with + - * / % ( ) and cdiv, min, max
/// (docs/spec-language.md; the runtime evaluates it per call).
bool isDim(StringRef s) {
  if (isDimSymbol(s))
    return true;
  int depth = 0;
  bool operand = false, combined = false;
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    if (llvm::isAlnum(c)) {
      size_t end = i;
      while (end < s.size() && llvm::isAlnum(s[end]))
        ++end;
      StringRef word = s.slice(i, end);
      unsigned long long v;
      if (!isDimSymbol(word) && word != "cdiv" && word != "min" && word != "max" &&
          word.getAsInteger(10, v))
        return false;
      operand = true;
      i = end;
      continue;
    }
    if (c == '(')
      ++depth;
    else if (c == ')')
      --depth;
    else if (!StringRef(" +-*/%,").contains(c))
      return false;
    if (depth < 0)
      return false;
    combined |= c != ' ';
    ++i;
  }
  // A lone word is a size or a positive integer (isDimSymbol), nothing else.
  return depth == 0 && operand && combined;
}

/// Checks the leading argument types and the terminator of a variant region.
LogicalResult verifyRegion(VariantOp op, Region &region, StringRef name,
                           ArrayRef<Type> leading, Type yielded) {
  Block &block = region.front();
  unsigned expected = leading.size() + op.getNumBuffers();
  if (block.getNumArguments() != expected)
    return op.emitOpError() << "'" << name << "' region must have " << expected
                            << " arguments (" << leading.size()
                            << " index/score arguments and one per buffer), got "
                            << block.getNumArguments();
  for (auto [i, t] : llvm::enumerate(leading))
    if (block.getArgument(i).getType() != t)
      return op.emitOpError() << "'" << name << "' region argument #" << i
                              << " must be " << t << ", got "
                              << block.getArgument(i).getType();
  for (auto [i, t] : llvm::enumerate(op.getBufferTypes()))
    if (block.getArgument(leading.size() + i).getType() !=
        cast<TypeAttr>(t).getValue())
      return op.emitOpError() << "'" << name << "' region argument #"
                              << leading.size() + i
                              << " must have the type of buffer #" << i;
  auto yield = dyn_cast<YieldOp>(block.getTerminator());
  if (!yield)
    return op.emitOpError() << "'" << name
                            << "' region must end with attn.yield";
  if (yield.getValue().getType() != yielded)
    return yield.emitOpError() << "in the '" << name << "' region must yield "
                               << yielded << ", got "
                               << yield.getValue().getType();
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// VariantOp
//===----------------------------------------------------------------------===//

LogicalResult VariantOp::verify() {
  size_t n = getBufferTypes().size();
  if (getBufferNames().size() != n || getBufferShapes().size() != n)
    return emitOpError() << "needs one name and one shape per buffer: "
                         << n << " types, " << getBufferNames().size()
                         << " names, " << getBufferShapes().size() << " shapes";
  llvm::StringSet<> seen;
  for (size_t i = 0; i < n; ++i) {
    auto name = cast<StringAttr>(getBufferNames()[i]).getValue();
    if (!seen.insert(name).second)
      return emitOpError() << "buffer name '" << name << "' is used twice";
    auto type = dyn_cast<MemRefType>(cast<TypeAttr>(getBufferTypes()[i]).getValue());
    if (!type)
      return emitOpError() << "buffer '" << name << "' must be a memref";
    if (!isBufferElementType(type.getElementType()))
      return emitOpError() << "buffer '" << name
                           << "' has unsupported element type "
                           << type.getElementType()
                           << " (expected f32, f16, bf16, i1, i8, i32 or i64)";
    auto shape = dyn_cast<ArrayAttr>(getBufferShapes()[i]);
    if (!shape || shape.size() != static_cast<size_t>(type.getRank()))
      return emitOpError() << "buffer '" << name << "' of rank "
                           << type.getRank()
                           << " needs a shape with as many dimensions";
    for (Attribute dim : shape) {
      auto s = dyn_cast<StringAttr>(dim);
      if (!s || !isDim(s.getValue()))
        return emitOpError() << "buffer '" << name << "' has dimension " << dim
                             << "; expected \"B\", \"H\", \"Hkv\", \"Sq\", "
                                "\"Skv\" or a positive integer, or an expression of them";
    }
  }
  return success();
}

SmallVector<unsigned> VariantOp::getSummarizedBuffers() {
  SmallVector<unsigned> out;
  for (auto [i, t] : llvm::enumerate(getBufferTypes())) {
    auto type = cast<MemRefType>(cast<TypeAttr>(t).getValue());
    if ((type.getRank() == 1 || type.getRank() == 2) && isa<IntegerType>(type.getElementType()))
      out.push_back(i);
  }
  return out;
}

static MemRefType summaryType(MLIRContext *ctx) {
  return MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic, 2},
                         IntegerType::get(ctx, 64));
}

LogicalResult VariantOp::verifyRegions() {
  Builder b(getContext());
  Type idx = b.getIndexType(), f32 = b.getF32Type();
  if (failed(verifyRegion(*this, getScore(), "score", {f32, idx, idx, idx, idx},
                          f32)))
    return failure();
  if (failed(verifyRegion(*this, getMask(), "mask", {idx, idx, idx, idx},
                          b.getI1Type())))
    return failure();
  if (isRouted()) {
    if (failed(verifyRegion(*this, getRoute(), "route", {idx, idx}, b.getI64Type())))
      return failure();
    std::optional<ArrayRef<int64_t>> cases = getRouteCases();
    if (!cases || cases->empty())
      return emitOpError() << "has a 'route' region but no route_cases";
    // Any i64 is a case value, the largest two included (a DenseSet reserves them).
    std::set<int64_t> values;
    for (int64_t v : *cases)
      if (!values.insert(v).second)
        return emitOpError() << "lists route case " << v << " twice";
    WalkResult nested = getRoute().walk([&](RouteOp r) {
      r.emitOpError() << "cannot appear in the 'route' region it reads";
      return WalkResult::interrupt();
    });
    if (nested.wasInterrupted())
      return failure();
  } else if (getRouteCases()) {
    return emitOpError() << "has route_cases but no 'route' region";
  }
  if (failed(verifyNormalization()))
    return failure();
  if (std::optional<ArrayRef<int64_t>> gate = getGate()) {
    if (gate->size() != 4)
      return emitOpError() << "gate must be [buffer, dim_b, dim_q, dim_h]";
    int64_t buf = (*gate)[0];
    if (buf < 0 || buf >= int64_t(getNumBuffers()))
      return emitOpError() << "gate reads buffer #" << buf << ", but the variant has "
                           << getNumBuffers();
    auto type = cast<MemRefType>(cast<TypeAttr>(getBufferTypes()[buf]).getValue());
    if (type.getRank() != 3 || !isa<FloatType>(type.getElementType()))
      return emitOpError() << "gate buffer #" << buf << " must be a rank-3 float buffer, got "
                           << type;
    llvm::SmallDenseSet<int64_t> dims;
    for (int64_t d : gate->drop_front())
      if (d < 0 || d > 2 || !dims.insert(d).second)
        return emitOpError() << "gate dims must be a permutation of 0, 1, 2";
  }
  if (getBlocks().empty())
    return success();
  // The blocks region takes the buffers' summaries after the buffers.
  Block &block = getBlocks().front();
  unsigned summaries = getSummarizedBuffers().size();
  unsigned expected = kBlocksIndexArgs + getNumBuffers() + summaries;
  if (block.getNumArguments() != expected)
    return emitOpError() << "'blocks' region must have " << expected
                         << " arguments (6 index arguments, one per buffer and one "
                            "per buffer summary), got "
                         << block.getNumArguments();
  for (unsigned i = expected - summaries; i < expected; ++i)
    if (block.getArgument(i).getType() != summaryType(getContext()))
      return emitOpError() << "'blocks' region argument #" << i
                           << " must be a buffer summary " << summaryType(getContext());
  SmallVector<Type> leading = {idx, idx, idx, idx, idx, idx};
  for (unsigned i = 0; i < getNumBuffers(); ++i)
    leading.push_back(cast<TypeAttr>(getBufferTypes()[i]).getValue());
  for (auto [i, t] : llvm::enumerate(leading))
    if (block.getArgument(i).getType() != t)
      return emitOpError() << "'blocks' region argument #" << i << " must be " << t;
  auto yield = dyn_cast<YieldOp>(block.getTerminator());
  if (!yield || !yield.getValue().getType().isInteger(8))
    return emitOpError() << "'blocks' region must yield an i8 block class";
  return success();
}

LogicalResult VariantOp::verifyNormalization() {
  bool sigmoid = getNormalization() == Normalization::Sigmoid;
  if (getSigmoidBias() && !sigmoid)
    return emitOpError() << "has a sigmoid_bias but normalizes by softmax";
  if (!hasSink())
    return success();
  if (sigmoid)
    return emitOpError() << "has a 'sink' region, but a sink logit needs softmax";
  Type idx = IndexType::get(getContext());
  if (failed(verifyRegion(*this, getSink(), "sink", {idx, idx}, Float32Type::get(getContext()))))
    return failure();
  WalkResult routed = getSink().walk([&](RouteOp r) {
    r.emitOpError() << "cannot appear in the 'sink' region (a sink is per head, not per route)";
    return WalkResult::interrupt();
  });
  return failure(routed.wasInterrupted());
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

LogicalResult RouteOp::verify() {
  auto variant = (*this)->getParentOfType<VariantOp>();
  if (!variant || !variant.isRouted())
    return emitOpError() << "must be inside a variant with a 'route' region";
  return success();
}

//===----------------------------------------------------------------------===//
// ShapeOp
//===----------------------------------------------------------------------===//

LogicalResult ShapeOp::verify() {
  if (!(*this)->getParentOfType<VariantOp>())
    return emitOpError() << "must be inside a variant's region";
  return success();
}

//===----------------------------------------------------------------------===//
// LoadOp
//===----------------------------------------------------------------------===//

LogicalResult LoadOp::verify() {
  auto type = cast<MemRefType>(getBuffer().getType());
  if (static_cast<int64_t>(getIndices().size()) != type.getRank())
    return emitOpError() << "needs " << type.getRank()
                         << " indices for a buffer of rank " << type.getRank()
                         << ", got " << getIndices().size();
  Type elt = type.getElementType();
  Type expected = isa<FloatType>(elt) ? Type(Float32Type::get(getContext()))
                                      : Type(IntegerType::get(getContext(), 64));
  if (getResult().getType() != expected)
    return emitOpError() << "reading " << elt << " must produce " << expected;
  return success();
}

void LoadOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>> &effects) {
  effects.emplace_back(MemoryEffects::Read::get(), &getBufferMutable(),
                       SideEffects::DefaultResource::get());
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto variant =
      symbolTable.lookupNearestSymbolFrom<VariantOp>(*this, getVariantAttr());
  if (!variant)
    return emitOpError() << "refers to '" << getVariant()
                         << "', which is not an attn.variant";
  auto types = variant.getBufferTypes();
  if (types.size() != getBuffers().size())
    return emitOpError() << "variant '" << getVariant() << "' reads "
                         << types.size() << " buffer(s), but "
                         << getBuffers().size() << " were given";
  for (auto [i, pair] : llvm::enumerate(llvm::zip(types, getBuffers()))) {
    auto want = cast<MemRefType>(cast<TypeAttr>(std::get<0>(pair)).getValue());
    auto got = cast<MemRefType>(std::get<1>(pair).getType());
    if (want.getElementType() != got.getElementType() ||
        want.getRank() != got.getRank())
      return emitOpError() << "buffer #" << i << " ('"
                           << cast<StringAttr>(variant.getBufferNames()[i]).getValue()
                           << "') must be a rank-" << want.getRank() << " memref of "
                           << want.getElementType() << ", got " << got;
  }
  // A gated variant's routed rows come with the runtime's operands
  // (--attn-runtime-abi); --attn-to-tile requires them.
  if (bool(getGateRows()) != bool(getGateCounts()))
    return emitOpError() << "needs both gate_rows and gate_counts or neither";
  if (getGateRows() && !variant.isGated())
    return emitOpError() << "takes no gate_rows or gate_counts: variant '" << getVariant()
                         << "' is not gated";
  if (!getSummaries().empty()) {
    unsigned want = variant.getSummarizedBuffers().size();
    if (getSummaries().size() != want)
      return emitOpError() << "variant '" << getVariant() << "' has " << want
                           << " summarized buffer(s), but " << getSummaries().size()
                           << " summaries were given";
    for (Value s : getSummaries())
      if (s.getType() != summaryType(getContext()))
        return emitOpError() << "summaries must be " << summaryType(getContext());
  }
  return success();
}

LogicalResult AttentionOp::verify() {
  if (!std::isfinite(getScale().convertToFloat()))
    return emitOpError() << "scale must be finite";
  auto q = cast<MemRefType>(getQuery().getType());
  auto k = cast<MemRefType>(getKey().getType());
  auto v = cast<MemRefType>(getValue().getType());
  auto o = cast<MemRefType>(getOut().getType());
  const char *names[] = {"query", "key", "value", "out"};
  MemRefType types[] = {q, k, v, o};
  for (int i = 0; i < 4; ++i) {
    if (types[i].getRank() != 4)
      return emitOpError() << names[i] << " must have rank 4, got rank "
                           << types[i].getRank();
    if (!isStorageFloat(types[i].getElementType()))
      return emitOpError() << names[i] << " must hold f32, f16 or bf16, got "
                           << types[i].getElementType();
    if (types[i].isDynamicDim(3))
      return emitOpError() << names[i] << " must have a static head dimension";
  }
  if (q.getElementType() != k.getElementType() ||
      q.getElementType() != v.getElementType())
    return emitOpError() << "query, key and value must share an element type";
  if (q.getDimSize(3) != k.getDimSize(3))
    return emitOpError() << "query and key head dims differ: " << q.getDimSize(3)
                         << " vs " << k.getDimSize(3);
  if (v.getDimSize(3) != o.getDimSize(3))
    return emitOpError() << "value and out head dims differ: " << v.getDimSize(3)
                         << " vs " << o.getDimSize(3);
  // Logical dims: batch 0, heads (1 or 2), sequence (2 or 1).
  unsigned hd = isBSHD() ? 2 : 1, sd = isBSHD() ? 1 : 2;
  auto mismatch = [](MemRefType a, MemRefType b, unsigned d) {
    return !a.isDynamicDim(d) && !b.isDynamicDim(d) &&
           a.getDimSize(d) != b.getDimSize(d);
  };
  // A paged key/value cache counts pages, not batch entries, in dim 0.
  bool paged = static_cast<bool>(getPageTable());
  if ((!paged && (mismatch(q, k, 0) || mismatch(q, v, 0))) || mismatch(q, o, 0))
    return emitOpError() << "batch sizes of query, key, value and out differ";
  if (paged && !getKvLens())
    return emitOpError() << "a page_table needs kv_lens (a page table has no lengths)";
  if (Value qLens = getQLens()) {
    auto t = cast<MemRefType>(qLens.getType());
    if (!t.isDynamicDim(0) && !q.isDynamicDim(0) && t.getDimSize(0) != q.getDimSize(0))
      return emitOpError() << "q_lens must hold one length per batch entry: got " << t
                           << " for query " << q;
  }
  if (Value order = getEntryOrder()) {
    auto t = cast<MemRefType>(order.getType());
    if (!t.isDynamicDim(0) && !q.isDynamicDim(0) && t.getDimSize(0) != q.getDimSize(0))
      return emitOpError() << "entry_order must name one entry per batch entry: got " << t
                           << " for query " << q;
  }
  if (getCuSeqlensQ() && getQLens())
    return emitOpError() << "takes q_lens or cu_seqlens_q, not both (cu_seqlens_q gives "
                            "each entry's queries)";
  if (getCuSeqlensKv() && (getKvLens() || paged))
    return emitOpError() << "takes cu_seqlens_kv without kv_lens or a page_table (packed "
                            "keys give each entry's length; a paged cache is not packed)";
  for (Value cu : {getCuSeqlensQ(), getCuSeqlensKv()}) {
    if (!cu)
      continue;
    auto t = cast<MemRefType>(cu.getType());
    if (!t.isDynamicDim(0) && !q.isDynamicDim(0) && t.getDimSize(0) != q.getDimSize(0) + 1)
      return emitOpError() << (cu == getCuSeqlensQ() ? "cu_seqlens_q" : "cu_seqlens_kv")
                           << " must hold batch + 1 offsets: got " << t << " for query " << q;
  }
  if (paged && (k.isDynamicDim(sd) || v.isDynamicDim(sd)))
    return emitOpError() << "a paged key/value cache needs a static page size (dim " << sd
                         << " of key and value)";
  if (mismatch(k, v, 0) && paged)
    return emitOpError() << "key and value caches must have the same number of pages";
  if (mismatch(k, v, hd) || mismatch(k, v, sd))
    return emitOpError() << "key and value must have the same heads and length";
  if (mismatch(q, o, hd) || mismatch(q, o, sd))
    return emitOpError() << "query and out must have the same heads and length";
  if (!k.isDynamicDim(hd) && k.getDimSize(hd) == 0 &&
      (q.isDynamicDim(hd) || q.getDimSize(hd) != 0))
    return emitOpError() << "key/value heads are 0 but query heads are not";
  if (!q.isDynamicDim(hd) && !k.isDynamicDim(hd) && k.getDimSize(hd) != 0 &&
      q.getDimSize(hd) % k.getDimSize(hd) != 0)
    return emitOpError() << "query heads (" << q.getDimSize(hd)
                         << ") must be a multiple of key/value heads ("
                         << k.getDimSize(hd) << ")";
  if (Value lse = getLse()) {
    auto t = cast<MemRefType>(lse.getType());
    if (t.getRank() != 3 || !t.getElementType().isF32())
      return emitOpError() << "lse must be a rank-3 memref of f32 [B, Hq, Sq]";
    // [B, Hq, Sq] whatever the layout: static sizes must agree with q's.
    auto differs = [&](unsigned ld, unsigned qd) {
      return !t.isDynamicDim(ld) && !q.isDynamicDim(qd) && t.getDimSize(ld) != q.getDimSize(qd);
    };
    if (differs(0, 0) || differs(1, hd) || differs(2, sd))
      return emitOpError() << "lse must be [B, Hq, Sq] of the query: got " << t << " for query "
                           << q;
  }
  if (Value status = getStatus()) {
    auto t = cast<MemRefType>(status.getType());
    if (t.getRank() != 1 || !t.getElementType().isInteger(32) ||
        t.getDimSize(0) != 1)
      return emitOpError() << "status must be memref<1xi32>";
  }
  if (Value stats = getStats()) {
    auto t = cast<MemRefType>(stats.getType());
    if (t.getRank() != 1 || !t.getElementType().isInteger(64) ||
        t.getDimSize(0) != 3)
      return emitOpError() << "stats must be memref<3xi64>";
  }
  if (static_cast<bool>(getWorkBegin()) != static_cast<bool>(getWorkEnd()))
    return emitOpError() << "work needs both a begin and an end";
  if (static_cast<bool>(getSplitPhase()) != static_cast<bool>(getPartialStats()))
    return emitOpError() << "split needs its phase, count and partials together";
  if (getSplitPartKeys() && !getSplitPhase())
    return emitOpError() << "part_keys needs a split";
  return success();
}

void AttentionOp::getEffects(
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>> &effects) {
  for (OpOperand &operand : getOperation()->getOpOperands()) {
    if (!isa<MemRefType>(operand.get().getType()))
      continue;
    bool written = operand.get() == getOut() || operand.get() == getLse() ||
                   operand.get() == getStatus() || operand.get() == getStats() ||
                   operand.get() == getPartialAcc() || operand.get() == getPartialStats();
    if (written)
      effects.emplace_back(MemoryEffects::Write::get(), &operand,
                           SideEffects::DefaultResource::get());
    else
      effects.emplace_back(MemoryEffects::Read::get(), &operand,
                           SideEffects::DefaultResource::get());
  }
}

LogicalResult NumTilesOp::verifySymbolUses(SymbolTableCollection &symbols) {
  if (!symbols.lookupNearestSymbolFrom<VariantOp>(*this, getVariantAttr()))
    return emitOpError() << "refers to an unknown variant " << getVariantAttr();
  return success();
}
