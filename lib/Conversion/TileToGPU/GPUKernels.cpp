// What every GPU lowering of the tile ops shares: kernels outlined from the
// functions holding the work, work items on thread blocks, flat spans,
// barriers, and the driver that lowers each kernel with its target.
#include "MatrixCore.h"

#include "../TileCommon/IndexExpr.h"
#include "../TileCommon/KeyRows.h"
#include "../TileCommon/Patterns.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/TileMath.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/SCF/Transforms/Patterns.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"

#include <limits>
#include <optional>

#include <tuple>

using namespace mlir;
using namespace heed::attn;

namespace heed::gpu_tile {

Value index(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

Value i32(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIntOp::create(b, loc, v, 32);
}

Value threadId(OpBuilder &b, Location loc) {
  return gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
}

SmallVector<Value, 3> workItemIds(OpBuilder &b, Location loc) {
  return {gpu::BlockIdOp::create(b, loc, gpu::Dimension::z),
          gpu::BlockIdOp::create(b, loc, gpu::Dimension::y),
          gpu::BlockIdOp::create(b, loc, gpu::Dimension::x)};
}

Value laneId(OpBuilder &b, Location loc, int64_t waveSize) {
  return arith::RemUIOp::create(b, loc, threadId(b, loc), index(b, loc, waveSize));
}

Value xorReduce(OpBuilder &b, Location loc, Value x, int64_t from, int64_t to, int64_t width,
                bool max) {
  for (int64_t offset = from; offset < to; offset *= 2) {
    Value other = gpu::ShuffleOp::create(b, loc, x, i32(b, loc, offset), i32(b, loc, width),
                                         gpu::ShuffleMode::XOR)
                      .getShuffleResult();
    x = max ? Value(arith::MaximumFOp::create(b, loc, x, other))
            : Value(arith::AddFOp::create(b, loc, x, other));
  }
  return x;
}

SmallVector<Value> at(Layout layout, Value batch, Value head, Value pos, Value d) {
  if (layout == Layout::BSHD)
    return {batch, pos, head, d};
  return {batch, head, pos, d};
}

Value loadOrZero(OpBuilder &b, Location loc, VectorType type, Value memref, ValueRange indices,
                 Value in) {
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{type}, in, true);
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  scf::YieldOp::create(b, loc, vector::LoadOp::create(b, loc, type, memref, indices).getResult());
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  scf::YieldOp::create(
      b, loc,
      arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(type, b.getZeroAttr(type.getElementType())))
          .getResult());
  return ifOp.getResult(0);
}

/// stats[at..., k]: k = 0 the max, 1 the sum.
static SmallVector<Value> statIndices(OpBuilder &b, Location loc, ValueRange at, int64_t k) {
  SmallVector<Value> indices(at.begin(), at.end());
  indices.push_back(index(b, loc, k));
  return indices;
}

void storeRowStats(OpBuilder &b, Location loc, Value stats, ValueRange at, Value max,
                   Value sum) {
  memref::StoreOp::create(b, loc, max, stats, statIndices(b, loc, at, 0));
  memref::StoreOp::create(b, loc, sum, stats, statIndices(b, loc, at, 1));
}

std::pair<Value, Value> loadRowStats(OpBuilder &b, Location loc, Value stats, ValueRange at) {
  return {memref::LoadOp::create(b, loc, stats, statIndices(b, loc, at, 0)),
          memref::LoadOp::create(b, loc, stats, statIndices(b, loc, at, 1))};
}

/// The token at slot `slot` of a routed-row list.
static Value listToken(OpBuilder &b, Location loc, Value list, Value slot) {
  Value row = memref::LoadOp::create(b, loc, list, ValueRange{slot});
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), row);
}

QueryRows QueryRows::of(Value span, ValueRange converted) {
  auto routed = span.getDefiningOp<TileRoutedSpanOp>();
  // A packed tile's per-head length: its third converted value.
  bool packed = span.getDefiningOp<TilePackedSpanOp>() && converted.size() > 2;
  QueryRows rows{converted[0], converted[1], routed ? routed.getRows() : Value(),
                 packed ? converted[2] : Value()};
  // (checkKernel made sure a patched span reaches its users directly.)
  if (auto tile = span.getDefiningOp<TileSpanOp>(); tile && tile.getTiling().isPatched()) {
    rows.grid.assign(tile.getTiling().getGrid().begin(), tile.getTiling().getGrid().end());
    ArrayRef<int64_t> patch = tile.getTiling().getPatch(tile.getSide());
    rows.patch.assign(patch.begin(), patch.end());
  }
  return rows;
}

/// `v` (index) in `type` (index, or an integer type: unsigned truncation),
/// and the constant `c` in `type`.
static Value inType(OpBuilder &b, Location loc, Value v, Type type) {
  return type.isIndex() ? v : Value(arith::IndexCastUIOp::create(b, loc, type, v));
}
static Value constantIn(OpBuilder &b, Location loc, int64_t c, Type type) {
  return type.isIndex() ? index(b, loc, c) : Value(arith::ConstantIntOp::create(b, loc, type, c));
}

/// An exclusive upper bound of `v` where its IR shows one: constants and
/// the lane arithmetic of the fragments' rows and columns (rem, mul, add
/// and div by constants). Bounds past 2^32 (and constants from 2^32 on) are
/// none: the arithmetic stays exact.
static std::optional<int64_t> boundOf(Value v) {
  constexpr int64_t kLimit = int64_t(1) << 32;
  auto constant = [](Value c) -> std::optional<int64_t> {
    APInt value;
    if (!matchPattern(c, m_ConstantInt(&value)) || value.getActiveBits() > 32)
      return std::nullopt;
    return int64_t(value.getZExtValue());
  };
  auto within = [&](int64_t b) -> std::optional<int64_t> {
    return b <= kLimit ? std::optional<int64_t>(b) : std::nullopt;
  };
  if (std::optional<int64_t> c = constant(v))
    return *c + 1;
  Operation *op = v.getDefiningOp();
  if (!op || op->getNumOperands() != 2)
    return std::nullopt;
  std::optional<int64_t> x = boundOf(op->getOperand(0));
  std::optional<int64_t> r = constant(op->getOperand(1));
  if (r && *r == 0)
    r = std::nullopt;
  if (isa<arith::RemUIOp>(op) && r)
    return x ? std::min(*x, *r) : *r;
  if (isa<arith::DivUIOp>(op) && r && x)
    return (*x - 1) / *r + 1;
  if (isa<arith::MulIOp>(op) && r && x)
    return *x - 1 <= kLimit / *r ? within((*x - 1) * *r + 1) : std::nullopt;
  std::optional<int64_t> y = boundOf(op->getOperand(1));
  if (isa<arith::AddIOp>(op) && x && y)
    return within(*x + *y - 1);
  return std::nullopt;
}

/// Patch row r (lane r of the patch) as its token's offset from the
/// patch's origin token `first` and whether its grid digits lie inside the
/// grid (digit k >= 1 below the extent), in `type` (index, or i32: offsets
/// and tokens are below 2^31). The origin's digits come from its token
/// (d_k = first / s_k mod E_k). Where r = base + K (K a constant, base
/// below a bound: a fragment's column 8 n + j + 2 (lane mod 4)) and the
/// inner dims m.. of the patch hold M >= base + K mod M lanes, the outer
/// digits are those of the constant K / M and only the inner ones depend on
/// the lane: with a patch's innermost side a multiple of 8, a column's
/// token is the lane's base plus constants, as in a flat tile (otherwise
/// the per-column digits, the same in every tile, stay in registers across
/// the key loop).
static std::pair<Value, Value> patchLane(OpBuilder &b, Location loc, const QueryRows &rows,
                                         Value r, Type type) {
  auto cst = [&](int64_t v) { return constantIn(b, loc, v, type); };
  auto cast = [&](Value v) { return inType(b, loc, v, type); };
  ArrayRef<int64_t> patch = rows.patch;
  size_t n = patch.size();
  // r = base + constant.
  Value base = r;
  int64_t constant = 0;
  if (auto add = r.getDefiningOp<arith::AddIOp>()) {
    APInt c;
    for (int i = 0; i < 2; ++i)
      if (matchPattern(add->getOperand(i), m_ConstantInt(&c)) && c.getActiveBits() <= 32) {
        constant = int64_t(c.getZExtValue());
        base = add->getOperand(1 - i);
        break;
      }
  }
  // The innermost dim m whose suffix of sides (M lanes) takes base + K mod M;
  // without one (or without a bound on base), every digit from r itself.
  size_t m = 0;
  int64_t lanesFrom = tileSize(patch);
  bool split = false;
  if (std::optional<int64_t> bound = boundOf(base)) {
    int64_t suffix = 1;
    for (size_t k = n; k-- > 0 && !split;) {
      suffix *= patch[k];
      if (constant % suffix + *bound <= suffix) {
        m = k;
        lanesFrom = suffix;
        split = true;
      }
    }
  }
  if (!split) {
    base = r;
    constant = 0;
  }
  // Lane digits: constants along dims < m, of x = base + K mod M along the others.
  int64_t outerLane = constant / lanesFrom;
  Value x = arith::AddIOp::create(b, loc, cast(base), cst(constant % lanesFrom));
  SmallVector<int64_t> strides = gridStrides(rows.grid);
  Value first = cast(rows.first);
  Value offset = cst(0), inside;
  int64_t inner = lanesFrom, outerInner = tileSize(patch) / lanesFrom;
  for (size_t k = 0; k < n; ++k) {
    Value digit;
    if (k < m) {
      outerInner /= patch[k];
      digit = cst(outerLane / outerInner % patch[k]);
    } else {
      inner /= patch[k];
      digit = inner == 1 ? x : Value(arith::DivUIOp::create(b, loc, x, cst(inner)));
      if (k > m)
        digit = arith::RemUIOp::create(b, loc, digit, cst(patch[k]));
    }
    offset = arith::AddIOp::create(b, loc, offset,
                                   arith::MulIOp::create(b, loc, digit, cst(strides[k])));
    if (k == 0)
      continue;
    int64_t extent = rows.grid[k - 1];
    Value origin = arith::RemUIOp::create(
        b, loc, arith::DivUIOp::create(b, loc, first, cst(strides[k])), cst(extent));
    Value in = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                     arith::AddIOp::create(b, loc, origin, digit), cst(extent));
    inside = inside ? Value(arith::AndIOp::create(b, loc, inside, in)) : in;
  }
  return {offset, inside};
}

/// A patch row's token and whether it is real, in `type`.
static std::pair<Value, Value> patchToken(OpBuilder &b, Location loc, const QueryRows &rows,
                                          Value r, Type type) {
  auto [offset, inside] = patchLane(b, loc, rows, r, type);
  Value token = arith::AddIOp::create(b, loc, inType(b, loc, rows.first, type), offset);
  Value real = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, token,
                                     inType(b, loc, rows.end, type));
  if (inside)
    real = arith::AndIOp::create(b, loc, real, inside);
  return {token, real};
}

/// A packed tile's virtual row first + r as (head offset, token). In 32
/// bits: v < group x seq + the tile's rows, and the tensors' lengths are
/// far below 2^32 (a 64-bit division is a long instruction sequence on
/// GPUs, and its temporaries would sit beside the accumulators).
static std::pair<Value, Value> unpack(OpBuilder &b, Location loc, Value v, Value seq) {
  Type i32 = b.getI32Type();
  Value v32 = arith::IndexCastUIOp::create(b, loc, i32, v);
  Value seq32 = arith::IndexCastUIOp::create(b, loc, i32, seq);
  Value h32 = arith::DivUIOp::create(b, loc, v32, seq32);
  Value t32 = arith::SubIOp::create(b, loc, v32, arith::MulIOp::create(b, loc, h32, seq32));
  return {arith::IndexCastUIOp::create(b, loc, b.getIndexType(), h32),
          arith::IndexCastUIOp::create(b, loc, b.getIndexType(), t32)};
}

Value QueryRows::contains(OpBuilder &b, Location loc, Value r) const {
  if (patched())
    return patchToken(b, loc, *this, r, b.getIndexType()).second;
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                               arith::AddIOp::create(b, loc, first, r), end);
}

Value QueryRows::token(OpBuilder &b, Location loc, Value r, Value real) const {
  if (patched())
    return patchToken(b, loc, *this, r, b.getIndexType()).first;
  Value slot = arith::AddIOp::create(b, loc, first, r);
  if (seq)
    return unpack(b, loc, slot, seq).second;
  if (!list)
    return slot;
  if (real)
    slot = arith::SelectOp::create(b, loc, real, slot, first);
  return listToken(b, loc, list, slot);
}

Value QueryRows::clampedSlot(OpBuilder &b, Location loc, Value r, Type type) const {
  auto in = [&](Value v) { return inType(b, loc, v, type); };
  Value one = constantIn(b, loc, 1, type);
  Value last = arith::SubIOp::create(b, loc, in(end), one);
  return arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, in(first), in(r)), last);
}

/// A patch row's token, or where it is a hole the origin's clamped to the
/// last token (the origin is real wherever the tile's code runs; a copy may
/// be issued for a patch past a sequence that ends mid-row).
static Value clampedPatchToken(OpBuilder &b, Location loc, const QueryRows &rows, Value r,
                               Type type) {
  auto [token, real] = patchToken(b, loc, rows, r, type);
  Value last = arith::SubIOp::create(b, loc, inType(b, loc, rows.end, type),
                                     constantIn(b, loc, 1, type));
  Value origin = arith::MinUIOp::create(b, loc, inType(b, loc, rows.first, type), last);
  return arith::SelectOp::create(b, loc, real, token, origin);
}

Value QueryRows::clampedToken(OpBuilder &b, Location loc, Value r) const {
  if (patched())
    return clampedPatchToken(b, loc, *this, r, b.getIndexType());
  Value slot = clampedSlot(b, loc, r, b.getIndexType());
  if (seq)
    return unpack(b, loc, slot, seq).second;
  return list ? listToken(b, loc, list, slot) : slot;
}

Value QueryRows::clampedToken32(OpBuilder &b, Location loc, Value r) const {
  if (patched())
    return clampedPatchToken(b, loc, *this, r, b.getI32Type());
  if (seq || list) // (unpack computes in 32 bits; a list's tokens are i32)
    return arith::IndexCastUIOp::create(b, loc, b.getI32Type(), clampedToken(b, loc, r));
  return clampedSlot(b, loc, r, b.getI32Type());
}

Value QueryRows::head(OpBuilder &b, Location loc, Value head, Value r) const {
  if (!seq)
    return head;
  Value slot = clampedSlot(b, loc, r, b.getIndexType());
  return arith::AddIOp::create(b, loc, head, unpack(b, loc, slot, seq).first);
}

Value rowGate(OpBuilder &b, Location loc, TileStoreOp op, ValueRange gate, Value batch,
              Value head, Value row) {
  if (gate.empty())
    return {};
  ArrayRef<int64_t> dims = *op.getGateDims();
  Value indices[3];
  indices[dims[0]] = batch;
  indices[dims[1]] = row;
  indices[dims[2]] = head;
  Value g = memref::LoadOp::create(b, loc, gate.front(), indices);
  return g.getType().isF32() ? g : arith::ExtFOp::create(b, loc, b.getF32Type(), g);
}

void QueryRows::moveToSpan(OpBuilder &b) const {
  if (list)
    b.setInsertionPointAfterValue(end);
}

static void stageRowsOf(OpBuilder &b, Location loc, Value global, Value smem, ValueRange prefix,
                        Layout layout, Value batch, Value head, const QueryRows &map,
                        int64_t rows, int64_t width, int64_t threads, bool transposed,
                        Value pages) {
  Type elt = cast<MemRefType>(global.getType()).getElementType();
  int64_t chunks = rows * width / 8;
  int64_t pageSize = pages ? pageSizeOf(global, layout) : 0;
  // Pages holding whole tiles (a flat span: no row list): one table read.
  Value page = map.list ? Value() : tilePage(b, loc, pages, pageSize, rows, batch, map.first);
  auto loop = scf::ForOp::create(b, loc, threadId(b, loc), index(b, loc, chunks),
                                 index(b, loc, threads));
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = loop.getInductionVar();
  Value r = arith::DivUIOp::create(b, loc, i, index(b, loc, width / 8));
  Value c = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, i, index(b, loc, width / 8)),
                                  index(b, loc, 8));
  Value in = map.contains(b, loc, r);
  Value pos = map.token(b, loc, r, in);
  Value outer = batch;
  if (pages) // a paged cache: the page of a row the entry holds (a hole reads nothing)
    std::tie(outer, pos) = keyRow(b, loc, pages, pageSize, batch, map.clampedToken(b, loc, r),
                                  page);
  Value chunk = loadOrZero(b, loc, VectorType::get({8}, elt), global,
                           at(layout, outer, map.head(b, loc, head, r), pos, c), in);
  SmallVector<Value> indices(prefix.begin(), prefix.end());
  if (!transposed) {
    indices.append({r, c});
    vector::StoreOp::create(b, loc, chunk, smem, indices);
    return;
  }
  for (int64_t e = 0; e < 8; ++e) {
    SmallVector<Value> to = indices;
    to.append({arith::AddIOp::create(b, loc, c, index(b, loc, e)), r});
    memref::StoreOp::create(
        b, loc, vector::ExtractOp::create(b, loc, chunk, ArrayRef<int64_t>{e}), smem, to);
  }
}

void stageRows(OpBuilder &b, Location loc, Value global, Value smem, ValueRange prefix,
               Layout layout, Value batch, Value head, Value row0, Value seq, int64_t rows,
               int64_t width, int64_t threads, bool transposed, Value rowList, Value pages) {
  stageRowsOf(b, loc, global, smem, prefix, layout, batch, head, QueryRows{row0, seq, rowList},
              rows, width, threads, transposed, pages);
}

void stageRows(OpBuilder &b, Location loc, Value global, Value smem, ValueRange prefix,
               Layout layout, Value batch, Value head, const QueryRows &queryRows, int64_t rows,
               int64_t width, int64_t threads, bool transposed) {
  stageRowsOf(b, loc, global, smem, prefix, layout, batch, head, queryRows, rows, width, threads,
              transposed, /*pages=*/{});
}

Value unitStrideView(OpBuilder &b, Location loc, Value tensor,
                     memref::ExtractStridedMetadataOp meta, Value offset, Value size) {
  auto tensorType = cast<MemRefType>(tensor.getType());
  auto type = MemRefType::get({ShapedType::kDynamic}, tensorType.getElementType(),
                              StridedLayoutAttr::get(b.getContext(), ShapedType::kDynamic, {1}),
                              tensorType.getMemorySpace());
  OpFoldResult length = size ? OpFoldResult(size)
                             : OpFoldResult(b.getIndexAttr(std::numeric_limits<int32_t>::max()));
  return memref::ReinterpretCastOp::create(b, loc, type, meta.getBaseBuffer(), OpFoldResult(offset),
                                           ArrayRef<OpFoldResult>{length},
                                           ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
}

std::pair<Value, Value> headRowsView(OpBuilder &b, Location loc, Value tensor, Value batch,
                                     Value head, unsigned headDim, unsigned posDim) {
  auto meta = memref::ExtractStridedMetadataOp::create(b, loc, tensor);
  ValueRange strides = meta.getStrides();
  Value offset = arith::AddIOp::create(
      b, loc, meta.getOffset(),
      arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, batch, strides[0]),
                            arith::MulIOp::create(b, loc, head, strides[headDim])));
  return {unitStrideView(b, loc, tensor, meta, offset),
          arith::IndexCastOp::create(b, loc, b.getI32Type(), strides[posDim])};
}

SmallVector<gpu::GPUFuncOp> outlineKernels(ModuleOp module) {
  SmallVector<func::FuncOp> withWork, host;
  module.walk([&](func::FuncOp f) {
    // The work may sit in split-KV's phase branches.
    bool work = f.walk([](TileWorkOp) { return WalkResult::interrupt(); }).wasInterrupted();
    (work ? withWork : host).push_back(f);
  });
  SmallVector<gpu::GPUFuncOp> kernels;
  if (withWork.empty())
    return kernels;
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), "heed_gpu");
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
  for (func::FuncOp f : withWork) {
    b.setInsertionPointToEnd(gpuModule.getBody());
    auto kernel = gpu::GPUFuncOp::create(b, f.getLoc(), f.getName(), f.getFunctionType());
    kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    Block &body = kernel.getBody().front();
    IRMapping map;
    for (auto [from, to] : llvm::zip(f.getArguments(), body.getArguments()))
      map.map(from, to);
    b.setInsertionPointToStart(&body);
    for (Operation &op : f.getBody().front().without_terminator())
      b.clone(op, map);
    gpu::ReturnOp::create(b, f.getLoc());
    kernels.push_back(kernel);
    f.erase();
  }
  return kernels;
}

namespace {

/// Replaces a span op by (first, end) and, where the target's converter
/// gives spans a third value (matrix cores), `seq` (a packed GQA tile's
/// per-head length; 0 for other tiles).
void replaceSpan(ConversionPatternRewriter &rewriter, const TypeConverter &converter,
                 Operation *op, Value first, Value end, Value seq = {}) {
  SmallVector<Type> types;
  (void)converter.convertType(op->getResult(0).getType(), types);
  SmallVector<Value> values = {first, end};
  if (types.size() > 2)
    values.push_back(seq ? seq : index(rewriter, op->getLoc(), 0));
  rewriter.replaceOpWithMultiple(op, {values});
}

/// A work item per thread block: (b, h, t) = the block's (z, y, x).
/// Persistent (--attn-persistent-workers): a worker per block, (worker,
/// workers) = (the block's x, the grid's x); the runtime launches as many
/// as the device holds at once (the module's heed::kPersistentAttr).
struct WorkLowering : OpConversionPattern<TileWorkOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileWorkOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    SmallVector<Value, 3> ids;
    if (op.getPersistent()) {
      ids = {gpu::BlockIdOp::create(rewriter, loc, gpu::Dimension::x),
             gpu::GridDimOp::create(rewriter, loc, gpu::Dimension::x)};
    } else {
      ids = workItemIds(rewriter, loc);
    }
    rewriter.inlineBlockBefore(&op.getBody().front(), op, ids);
    rewriter.eraseOp(op);
    return success();
  }
};

/// A persistent worker's item (attn.tile.work_item): sections of S (b, h)
/// pairs, each section's items t = T - 1 down to 0, its pairs in order.
struct WorkItemLowering : OpConversionPattern<TileWorkItemOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileWorkItemOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto c = [&](int64_t v) { return index(rewriter, loc, v); };
    Value heads = adaptor.getHeads(), tiles = adaptor.getTiles();
    Value pairs = arith::MulIOp::create(rewriter, loc, adaptor.getBatches(), heads);
    Value size = arith::MaxUIOp::create(
        rewriter, loc, arith::MinUIOp::create(rewriter, loc, adaptor.getSection(), pairs), c(1));
    Value perSection = arith::MulIOp::create(rewriter, loc, size, tiles);
    Value section = arith::DivUIOp::create(rewriter, loc, adaptor.getIndex(), perSection);
    Value within = arith::RemUIOp::create(rewriter, loc, adaptor.getIndex(), perSection);
    Value first = arith::MulIOp::create(rewriter, loc, section, size);
    // (The last section may hold fewer pairs.)
    Value here = arith::MinUIOp::create(rewriter, loc, size,
                                        arith::SubIOp::create(rewriter, loc, pairs, first));
    here = arith::MaxUIOp::create(rewriter, loc, here, c(1));
    Value fromLast = arith::DivUIOp::create(rewriter, loc, within, here);
    Value tile = arith::SubIOp::create(
        rewriter, loc, arith::SubIOp::create(rewriter, loc, tiles, c(1)), fromLast);
    Value pair = arith::AddIOp::create(rewriter, loc, first,
                                       arith::RemUIOp::create(rewriter, loc, within, here));
    Value safeHeads = arith::MaxUIOp::create(rewriter, loc, heads, c(1));
    rewriter.replaceOp(op, {arith::DivUIOp::create(rewriter, loc, pair, safeHeads),
                            arith::RemUIOp::create(rewriter, loc, pair, safeHeads), tile});
    return success();
  }
};

/// A flat tile's first token and the sequence's length.
struct SpanLowering : OpConversionPattern<TileSpanOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSpanOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    if (op.getTiling().isPatched()) {
      // A patch: its origin token (QueryRows maps the lanes).
      IndexExpr seq(rewriter, op.getLoc(), adaptor.getSeq());
      SmallVector<IndexExpr> origin = spanOrigin(op, seq, adaptor.getCoords());
      replaceSpan(rewriter, *getTypeConverter(), op,
                  tokenOf<IndexExpr>(op.getTiling().getGrid(), origin).value, adaptor.getSeq());
      return success();
    }
    if (adaptor.getCoords().size() != 1)
      return rewriter.notifyMatchFailure(op, "a flat tile has one coordinate");
    int64_t lanes = op.getResult().getType().getSize();
    Value lo = arith::MulIOp::create(rewriter, op.getLoc(), adaptor.getCoords()[0],
                                     index(rewriter, op.getLoc(), lanes));
    replaceSpan(rewriter, *getTypeConverter(), op, lo, adaptor.getSeq());
    return success();
  }
};

/// A packed GQA tile (attn.tile.packed_span, --attn-pack-gqa): virtual rows
/// [tile x lanes, group x seq), row v token v % seq of head v / seq of the
/// group (QueryRows). Only where spans carry the per-head length.
struct PackedSpanLowering : OpConversionPattern<TilePackedSpanOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TilePackedSpanOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    SmallVector<Type> types;
    if (failed(getTypeConverter()->convertType(op.getResult().getType(), types)) ||
        types.size() < 3)
      return rewriter.notifyMatchFailure(op, "packed GQA tiles need the matrix-core kernels");
    Location loc = op.getLoc();
    int64_t lanes = op.getResult().getType().getSize();
    Value lo = arith::MulIOp::create(rewriter, loc, adaptor.getTile(), index(rewriter, loc, lanes));
    Value end = arith::MulIOp::create(rewriter, loc, adaptor.getSeq(), adaptor.getGroup());
    // (A zero length has no real row; the divisor stays non-zero.)
    Value seq = arith::MaxUIOp::create(rewriter, loc, adaptor.getSeq(), index(rewriter, loc, 1));
    replaceSpan(rewriter, *getTypeConverter(), op, lo, end, seq);
    return success();
  }
};

/// A gated head's tile: its rows' list slots [offset, offset + lanes).
struct RoutedSpanLowering : OpConversionPattern<TileRoutedSpanOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileRoutedSpanOp op, OpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Value end = arith::AddIOp::create(rewriter, op.getLoc(), adaptor.getOffset(),
                                      adaptor.getLanes());
    replaceSpan(rewriter, *getTypeConverter(), op, adaptor.getOffset(), end);
    return success();
  }
};

/// The box of a span: a flat tile's first and last token; a gated tile's
/// first and last routed row (the list is ascending there; a tile with no
/// routed row never asks).
struct SpanBoxLowering : OpConversionPattern<TileSpanBoxOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileSpanBoxOp op, OneToNOpAdaptor adaptor,
                                ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value lo = adaptor.getSpan()[0], seq = adaptor.getSpan()[1];
    if (auto routed = op.getSpan().getDefiningOp<TileRoutedSpanOp>()) {
      Value one = index(rewriter, loc, 1);
      Value count = arith::MaxUIOp::create(rewriter, loc, routed.getRouted(), one);
      Value last = arith::SubIOp::create(rewriter, loc,
                                         arith::AddIOp::create(rewriter, loc, lo, count), one);
      rewriter.replaceOp(op, {listToken(rewriter, loc, routed.getRows(), lo),
                              listToken(rewriter, loc, routed.getRows(), last)});
      return success();
    }
    int64_t lanes = op.getSpan().getType().getSize();
    if (op.getSpan().getDefiningOp<TilePackedSpanOp>()) {
      // A packed tile's queries: exact within one head, the whole sequence
      // where the tile crosses into the next head (as on the CPU).
      Value seqOne = adaptor.getSpan()[2], end = seq;
      Value one = index(rewriter, loc, 1);
      Value last = arith::SubIOp::create(
          rewriter, loc,
          arith::MinUIOp::create(rewriter, loc,
                                 arith::AddIOp::create(rewriter, loc, lo, index(rewriter, loc, lanes)),
                                 end),
          one);
      Value firstHead = arith::DivUIOp::create(rewriter, loc, lo, seqOne);
      Value lastHead = arith::DivUIOp::create(rewriter, loc, last, seqOne);
      Value same = arith::CmpIOp::create(rewriter, loc, arith::CmpIPredicate::eq, firstHead, lastHead);
      Value base = arith::MulIOp::create(rewriter, loc, firstHead, seqOne);
      Value qLo = arith::SelectOp::create(rewriter, loc, same,
                                          arith::SubIOp::create(rewriter, loc, lo, base),
                                          index(rewriter, loc, 0));
      Value qHi = arith::SelectOp::create(rewriter, loc, same,
                                          arith::SubIOp::create(rewriter, loc, last, base),
                                          arith::SubIOp::create(rewriter, loc, seqOne, one));
      rewriter.replaceOp(op, {qLo, qHi});
      return success();
    }
    if (auto span = op.getSpan().getDefiningOp<TileSpanOp>(); span && span.getTiling().isPatched()) {
      // A patch's box: its origin's digits (from its token) to the last
      // point of the patch inside the grid, as on the CPU.
      ArrayRef<int64_t> grid = span.getTiling().getGrid();
      ArrayRef<int64_t> patch = span.getTiling().getPatch(span.getSide());
      SmallVector<int64_t> strides = gridStrides(grid);
      IndexExpr first(rewriter, loc, lo), length(rewriter, loc, seq);
      IndexExpr rows = gridRows(grid, length);
      SmallVector<IndexExpr> end;
      for (size_t k = 0; k < patch.size(); ++k) {
        IndexExpr digit = k == 0 ? first / strides[0] : first / strides[k] % grid[k - 1];
        IndexExpr last = k == 0 ? rows - first.constant(1) : first.constant(grid[k - 1] - 1);
        end.push_back(min(digit + (patch[k] - 1), last));
      }
      rewriter.replaceOp(op, {lo, tokenOf<IndexExpr>(grid, end).value});
      return success();
    }
    Value hi = arith::MinUIOp::create(
        rewriter, loc, arith::AddIOp::create(rewriter, loc, lo, index(rewriter, loc, lanes - 1)),
        arith::SubIOp::create(rewriter, loc, seq, index(rewriter, loc, 1)));
    rewriter.replaceOp(op, {lo, hi});
    return success();
  }
};

struct BarrierLowering : OpConversionPattern<TileBarrierOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileBarrierOp op, OpAdaptor,
                                ConversionPatternRewriter &rewriter) const override {
    rewriter.replaceOpWithNewOp<gpu::BarrierOp>(op);
    return success();
  }
};

/// The statistics are the CPU's: a GPU kernel does not count its tiles.
struct CountLowering : OpConversionPattern<TileCountOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult matchAndRewrite(TileCountOp op, OpAdaptor,
                                ConversionPatternRewriter &rewriter) const override {
    rewriter.eraseOp(op);
    return success();
  }
};

/// The kernel's geometry from its tiles: the rows of its q tiles (loaded
/// once per item), the staged k/v tiles' rows and each slot part's width
/// (forward: K [keys x D] and V [keys x Dv]; the backward's kernels stage
/// K and V, or Q and dO).
FailureOr<KernelShape> readShape(gpu::GPUFuncOp kernel) {
  KernelShape shape;
  int64_t rows = 0;
  kernel.walk([&](TileLoadOp load) {
    auto type = cast<TileType>(load.getResult().getType());
    if (type.getRole() == TileRole::Q) {
      rows = type.getRows();
      shape.elt = type.getElementType();
      return;
    }
    shape.keys = type.getRows();
    bool part0 = load.getStage() ? load.getPart() == 0 : type.getRole() == TileRole::K;
    (part0 ? shape.headDim : shape.valueDim) = type.getCols();
  });
  kernel.walk([&](TileCopyKVOp copy) { shape.stages = std::max(shape.stages, static_cast<int64_t>(copy.getStages())); });
  shape.backward = kernel.walk([](TileProbsOp) { return WalkResult::interrupt(); }).wasInterrupted();
  shape.keyMajor = kernel
                       .walk([](TileProbsOp p) {
                         return p.getTransposed() ? WalkResult::interrupt()
                                                  : WalkResult::advance();
                       })
                       .wasInterrupted();
  if (!rows || !shape.headDim || !shape.valueDim)
    return kernel.emitOpError() << "holds no attention tile loop";
  shape.waves = rows; // completed by the target: rows / rowsPerWave
  return shape;
}

/// What a GPU kernel cannot have, as errors before any rewriting: a patch's
/// span must reach the tile ops that read it directly (QueryRows::of takes
/// the patch's shape from the span op, not through a loop's or a branch's
/// values).
LogicalResult checkKernel(gpu::GPUFuncOp kernel) {
  WalkResult result = kernel.walk([&](TileSpanOp span) {
    if (!span.getTiling().isPatched())
      return WalkResult::advance();
    for (Operation *user : span->getUsers())
      if (!isa<AttnDialect>(user->getDialect())) {
        span.emitOpError() << "is a patch whose span reaches '" << user->getName()
                           << "': GPU kernels read a patch's span only in tile ops";
        return WalkResult::interrupt();
      }
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}

} // namespace

TileSpanOp firstPatchedSpan(gpu::GPUFuncOp kernel) {
  TileSpanOp found;
  kernel.walk([&](TileSpanOp span) {
    if (!span.getTiling().isPatched())
      return WalkResult::advance();
    found = span;
    return WalkResult::interrupt();
  });
  return found;
}

void populateGPUStructurePatterns(const TypeConverter &converter, RewritePatternSet &patterns) {
  patterns.add<WorkLowering, WorkItemLowering, SpanLowering, RoutedSpanLowering, PackedSpanLowering, SpanBoxLowering,
               BarrierLowering, CountLowering>(
      converter, patterns.getContext());
  populateTileCommonPatterns(converter, patterns, /*statistics=*/false);
}

/// Erases the kernel's attn.tile.bind_shapes once the regions reading the
/// sizes are inlined: the sizes are the memref.dim of the kernel's own
/// tensor arguments, so no length is compiled into the kernel. An attn.shape
/// left outside a variant (inlined where no binding was in scope) is an
/// error, not a silent constant.
static LogicalResult eraseShapeBindings(gpu::GPUFuncOp kernel) {
  WalkResult unbound = kernel.walk([](ShapeOp shape) {
    if (shape->getParentOfType<VariantOp>())
      return WalkResult::advance();
    shape.emitOpError() << "reads a size with no attn.tile.bind_shapes above it";
    return WalkResult::interrupt();
  });
  if (unbound.wasInterrupted())
    return failure();
  SmallVector<TileBindShapesOp> bindings;
  kernel.walk([&](TileBindShapesOp op) { bindings.push_back(op); });
  for (TileBindShapesOp op : bindings)
    op.erase();
  return success();
}

LogicalResult convertGPUKernel(gpu::GPUFuncOp kernel, const TypeConverter &converter,
                               RewritePatternSet &&patterns) {
  MLIRContext *ctx = kernel.getContext();
  populateGPUStructurePatterns(converter, patterns);
  ConversionTarget legal(*ctx);
  // Whatever the target's patterns make (nvgpu, nvvm, amdgpu, ...) stays.
  legal.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
  legal.addIllegalDialect<AttnDialect>();
  // attn.shape stays in the variants' regions; the binding stays until every
  // region reading it is inlined (boundShape), then goes below.
  legal.addLegalOp<VariantOp, YieldOp, LoadOp, RouteOp, ShapeOp, TileBindShapesOp>();
  scf::populateSCFStructuralTypeConversionsAndLegality(converter, patterns, legal);
  if (failed(applyPartialConversion(kernel, legal, std::move(patterns))))
    return failure();
  return eraseShapeBindings(kernel);
}

LogicalResult lowerGPUKernels(ModuleOp module,
                              function_ref<LogicalResult(gpu::GPUFuncOp)> lowerKernel) {
  MLIRContext *ctx = module.getContext();
  for (gpu::GPUFuncOp kernel : outlineKernels(module))
    if (failed(checkKernel(kernel)) || failed(lowerKernel(kernel)))
      return failure();
  addSummaryKernels(module);
  addGateRowsKernel(module);
  // Host code: the tile counts (attn.num_tiles) of the tiling used.
  TypeConverter identity;
  identity.addConversion([](Type t) { return t; });
  RewritePatternSet host(ctx);
  populateTileCommonPatterns(identity, host, /*statistics=*/false);
  ConversionTarget hostLegal(*ctx);
  hostLegal.addIllegalOp<NumTilesOp>();
  hostLegal.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
  if (failed(applyPartialConversion(module, hostLegal, std::move(host))))
    return failure();
  // Variants no op names any more go.
  SmallVector<VariantOp> variants;
  module.walk([&](VariantOp v) { variants.push_back(v); });
  for (VariantOp v : variants)
    if (SymbolTable::symbolKnownUseEmpty(v, module))
      v.erase();
  return success();
}

LogicalResult lowerMatrixCoreKernels(
    ModuleOp module, StringRef name,
    function_ref<std::unique_ptr<MatrixCoreTarget>(const KernelShape &)> makeTarget,
    function_ref<void(KernelShape &)> completeShape) {
  return lowerGPUKernels(module, [&](gpu::GPUFuncOp kernel) -> LogicalResult {
    FailureOr<KernelShape> shape = readShape(kernel);
    if (failed(shape))
      return failure();
    completeShape(*shape);
    std::unique_ptr<MatrixCoreTarget> target = makeTarget(*shape);
    if (std::string why = target->unsupported(); !why.empty())
      return kernel.emitOpError() << name << ": " << why
                                  << (shape->backward ? "; run the backward on the CPU"
                                                      : "; use the SIMT kernel");
    // Patches: the grid and the work item's patch (the query patch; the key
    // patch in the backward's key-major dK/dV kernel) go into the launch
    // (grid x is the number of patches).
    SmallVector<int64_t> grid, queryPatch;
    if (TileSpanOp span = firstPatchedSpan(kernel)) {
      if (!target->takesPatches())
        return span.emitOpError() << name << ": patch tiles are not lowered to this kernel "
                                  << "(choose flat tiles: patch-tiling=false)";
      TilingAttr tiling = span.getTiling();
      grid.assign(tiling.getGrid().begin(), tiling.getGrid().end());
      ArrayRef<int64_t> itemPatch = shape->keyMajor ? tiling.getKv() : tiling.getQ();
      queryPatch.assign(itemPatch.begin(), itemPatch.end());
      if (tileSize(queryPatch) != shape->blockRows())
        return span.emitOpError() << name << ": a work item's patch of " << tileSize(queryPatch)
                                  << " lanes in a block of " << shape->blockRows() << " rows";
    }
    // (The gradients' two arguments first: a target's own parameters, the
    // wgmma kernel's tensor maps, come last.)
    if (shape->backward && failed(prepareGradientAccumulators(kernel, target->gradients)))
      return failure();
    if (failed(target->prepareKernel(kernel)))
      return failure();
    MatrixCoreTypeConverter converter(*target);
    RewritePatternSet patterns(kernel.getContext());
    populateMatrixCorePatterns(converter, *target, patterns);
    if (shape->backward)
      populateMatrixCoreBackwardPatterns(converter, *target, patterns);
    if (failed(convertGPUKernel(kernel, converter, std::move(patterns))))
      return failure();
    // Only the dK/dV kernel (key-major: transposed score tiles) is launched
    // to finalize the buffers' gradients; the dQ kernel needs no such branch.
    if (shape->keyMajor)
      addGradientFinalize(kernel, target->gradients, target->launchThreads());
    kernel->setAttr(kLaunchAttrName,
                    LaunchAttr::get(kernel.getContext(), shape->blockRows(), target->launchThreads(),
                                    target->dynamicSharedBytes(), grid, queryPatch));
    return success();
  });
}

} // namespace heed::gpu_tile
