// --attn-lower-to-gpu: attn.attention as a portable SIMT GPU kernel (gpu
// dialect, scalar code): one thread per query row, the KV sequence walked
// with an online softmax in f32, the variant's regions inlined per element.
//
// This is heed's GPU baseline: target-neutral (NVVM and ROCDL lower it), the
// same semantics as the CPU kernel (masked rows give zeros and lse -inf,
// out-of-range buffer reads give 0 and set `status`), simple enough to be
// obviously right, and the harness the tensor-core lowering
// (--attn-lower-to-nvgpu) is checked against. It is not fast: no tensor
// cores, no shared-memory staging, no block skipping.
//
// The function holding the attention op becomes a `gpu.func ... kernel` of
// the same arguments in `gpu.module @heed_gpu`; launch it on a grid of
// (ceil(Sq / block-rows), Hq, B) blocks of `block-rows` threads.
#include "heed/Conversion/Passes.h"

#include "../BlockSearch.h"

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <cmath>

namespace heed {
#define GEN_PASS_DEF_ATTNLOWERTOGPU
#define GEN_PASS_DEF_ATTNLOWERTONVGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::AttentionOp;
using heed::attn::VariantOp;

namespace {

/// What both GPU kernels share: the op and its variant, layout-aware
/// indexing, and the variant's regions inlined as scalar code.
class GPUKernelLowering {
public:
  GPUKernelLowering(OpBuilder &b, AttentionOp op, VariantOp variant)
      : b(b), loc(op.getLoc()), op(op), variant(variant) {}
  virtual ~GPUKernelLowering() = default;

  /// Emits the kernel body at the builder's insertion point.
  virtual LogicalResult emit() = 0;

protected:
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value f32(double v) { return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)); }
  /// Logical dim `d` (0 batch, 1 heads, 2 seq, 3 dim) of a rank-4 tensor.
  Value dim(Value t, unsigned d) {
    unsigned phys = d;
    if (op.isBSHD() && (d == 1 || d == 2))
      phys = 3 - d;
    return memref::DimOp::create(b, loc, t, phys);
  }
  SmallVector<Value> at(Value batch, Value head, Value pos, Value d) {
    if (op.isBSHD())
      return {batch, pos, head, d};
    return {batch, head, pos, d};
  }
  Value loadF32(Value t, ValueRange indices) {
    Value x = memref::LoadOp::create(b, loc, t, indices);
    if (!x.getType().isF32())
      x = arith::ExtFOp::create(b, loc, b.getF32Type(), x);
    return x;
  }
  void storeF32(Value x, Value t, ValueRange indices) {
    Type elt = cast<MemRefType>(t.getType()).getElementType();
    if (!elt.isF32())
      x = arith::TruncFOp::create(b, loc, elt, x);
    memref::StoreOp::create(b, loc, x, t, indices);
  }
  /// Clones `region` with scalars: leading block arguments -> `leading`,
  /// buffers -> the op's buffers; attn.load becomes a bounds-checked load.
  Value inlineRegion(Region &region, ArrayRef<Value> leading);

  OpBuilder &b;
  Location loc;
  AttentionOp op;
  VariantOp variant;
  Value route; ///< the head's route value (routed variants)
};

Value GPUKernelLowering::inlineRegion(Region &region, ArrayRef<Value> leading) {
  Block &block = region.front();
  IRMapping map;
  for (auto [arg, value] : llvm::zip(block.getArguments().take_front(leading.size()), leading))
    map.map(arg, value);
  for (Operation &inner : block) {
    if (auto yield = dyn_cast<heed::attn::YieldOp>(inner))
      return map.lookup(yield.getValue());
    if (auto r = dyn_cast<heed::attn::RouteOp>(inner)) {
      map.map(r.getResult(), route);
      continue;
    }
    if (auto load = dyn_cast<heed::attn::LoadOp>(inner)) {
      unsigned which = cast<BlockArgument>(load.getBuffer()).getArgNumber() - leading.size();
      Value buffer = op.getBuffers()[which];
      Value ok = arith::ConstantIntOp::create(b, loc, 1, 1);
      SmallVector<Value> indices;
      for (auto [d, index] : llvm::enumerate(load.getIndices())) {
        Value i = map.lookup(index);
        Value size = memref::DimOp::create(b, loc, buffer, d);
        Value in = arith::AndIOp::create(
            b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, i, idx(0)),
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, size));
        ok = arith::AndIOp::create(b, loc, ok, in);
        indices.push_back(i);
      }
      Type result = load.getResult().getType();
      Type elt = cast<MemRefType>(buffer.getType()).getElementType();
      auto ifOp = scf::IfOp::create(b, loc, TypeRange{result}, ok, /*withElseRegion=*/true);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(&ifOp.getThenRegion().front());
        Value v = memref::LoadOp::create(b, loc, buffer, indices);
        if (elt != result) {
          if (isa<FloatType>(elt))
            v = arith::ExtFOp::create(b, loc, result, v);
          else if (elt.isInteger(1))
            v = arith::ExtUIOp::create(b, loc, result, v);
          else
            v = arith::ExtSIOp::create(b, loc, result, v);
        }
        scf::YieldOp::create(b, loc, v);
        b.setInsertionPointToStart(&ifOp.getElseRegion().front());
        if (Value status = op.getStatus())
          memref::StoreOp::create(b, loc, arith::ConstantIntOp::create(b, loc, which + 1, 32),
                                  status, ValueRange{idx(0)});
        scf::YieldOp::create(b, loc,
                             arith::ConstantOp::create(b, loc, b.getZeroAttr(result)).getResult());
      }
      map.map(load.getResult(), ifOp.getResult(0));
      continue;
    }
    b.clone(inner, map);
  }
  return {};
}

/// The SIMT baseline (--attn-lower-to-gpu): one thread per query row.
class SIMTLowering : public GPUKernelLowering {
public:
  using GPUKernelLowering::GPUKernelLowering;
  LogicalResult emit() override;
};

LogicalResult SIMTLowering::emit() {
  if (variant.isGated())
    return op.emitOpError() << "gated variants are not lowered to the GPU yet";
  Value q = op.getQuery(), k = op.getKey(), v = op.getValue(), out = op.getOut();
  Value lse = op.getLse();
  int64_t headDim = cast<MemRefType>(q.getType()).getDimSize(3);
  int64_t headDimV = cast<MemRefType>(v.getType()).getDimSize(3);
  Value seqQ = dim(q, 2), seqKV = dim(k, 2), headsQ = dim(q, 1), headsKV = dim(k, 1);
  Value group = arith::DivUIOp::create(b, loc, headsQ, headsKV);
  Value rowBlock = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value batch = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value lane = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value width = gpu::BlockDimOp::create(b, loc, gpu::Dimension::x);
  Value row = arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, rowBlock, width), lane);
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row, seqQ);
  auto guard = scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard ig(b);
  b.setInsertionPointToStart(&guard.getThenRegion().front());
  Value headKV = arith::DivUIOp::create(b, loc, head, group);

  if (variant.isRouted())
    route = inlineRegion(variant.getRoute(), {batch, head});

  // The query row (f32) and a zero accumulator, in private memory.
  auto privateType = [&](int64_t n) { return MemRefType::get({n}, b.getF32Type()); };
  Value qRow = memref::AllocaOp::create(b, loc, privateType(headDim));
  Value acc = memref::AllocaOp::create(b, loc, privateType(headDimV));
  {
    auto loop = scf::ForOp::create(b, loc, idx(0), idx(headDim), idx(1));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value d = loop.getInductionVar();
    memref::StoreOp::create(b, loc, loadF32(q, at(batch, head, row, d)), qRow, ValueRange{d});
  }
  {
    auto loop = scf::ForOp::create(b, loc, idx(0), idx(headDimV), idx(1));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    memref::StoreOp::create(b, loc, f32(0), acc, ValueRange{loop.getInductionVar()});
  }

  // Online softmax over every key, in base e with f32 statistics.
  float scale = op.getScale().convertToFloat();
  Value negInf = f32(-INFINITY);
  auto kvLoop = scf::ForOp::create(b, loc, idx(0), seqKV, idx(1), ValueRange{negInf, f32(0)});
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(kvLoop.getBody());
    Value kv = kvLoop.getInductionVar();
    Value m = kvLoop.getRegionIterArgs()[0], l = kvLoop.getRegionIterArgs()[1];
    Value visible = inlineRegion(variant.getMask(), {batch, head, row, kv});
    auto ifVisible = scf::IfOp::create(b, loc, TypeRange{b.getF32Type(), b.getF32Type()},
                                       visible, /*withElseRegion=*/true);
    b.setInsertionPointToStart(&ifVisible.getElseRegion().front());
    scf::YieldOp::create(b, loc, ValueRange{m, l});
    b.setInsertionPointToStart(&ifVisible.getThenRegion().front());
    auto dot = scf::ForOp::create(b, loc, idx(0), idx(headDim), idx(1), ValueRange{f32(0)});
    {
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(dot.getBody());
      Value d = dot.getInductionVar();
      Value x = memref::LoadOp::create(b, loc, qRow, ValueRange{d});
      Value y = loadF32(k, at(batch, headKV, kv, d));
      scf::YieldOp::create(b, loc,
                           ValueRange{math::FmaOp::create(b, loc, x, y, dot.getRegionIterArgs()[0])});
    }
    Value s = arith::MulFOp::create(b, loc, dot.getResult(0), f32(scale));
    Block &scoreBlock = variant.getScore().front();
    auto yield = cast<heed::attn::YieldOp>(scoreBlock.getTerminator());
    if (yield.getValue() != scoreBlock.getArgument(0))
      s = inlineRegion(variant.getScore(), {s, batch, head, row, kv});
    Value mNew = arith::MaximumFOp::create(b, loc, m, s);
    // m = -inf (nothing seen yet): alpha = 0 instead of exp(NaN).
    Value alpha = arith::SelectOp::create(
        b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, m, negInf), f32(0),
        math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, m, mNew)));
    Value p = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, s, mNew));
    Value lNew = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, l, alpha), p);
    {
      auto loop = scf::ForOp::create(b, loc, idx(0), idx(headDimV), idx(1));
      OpBuilder::InsertionGuard g2(b);
      b.setInsertionPointToStart(loop.getBody());
      Value d = loop.getInductionVar();
      Value a = memref::LoadOp::create(b, loc, acc, ValueRange{d});
      Value x = loadF32(v, at(batch, headKV, kv, d));
      memref::StoreOp::create(
          b, loc,
          math::FmaOp::create(b, loc, p, x, arith::MulFOp::create(b, loc, a, alpha)), acc,
          ValueRange{d});
    }
    scf::YieldOp::create(b, loc, ValueRange{mNew, lNew});
    b.setInsertionPointAfter(ifVisible);
    scf::YieldOp::create(b, loc, ifVisible.getResults());
  }
  Value m = kvLoop.getResult(0), l = kvLoop.getResult(1);
  Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, l, f32(0));
  Value inv = arith::SelectOp::create(b, loc, empty, f32(0),
                                      arith::DivFOp::create(b, loc, f32(1), l));
  {
    auto loop = scf::ForOp::create(b, loc, idx(0), idx(headDimV), idx(1));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value d = loop.getInductionVar();
    Value a = memref::LoadOp::create(b, loc, acc, ValueRange{d});
    storeF32(arith::MulFOp::create(b, loc, a, inv), out, at(batch, head, row, d));
  }
  if (lse) {
    Value value = arith::AddFOp::create(b, loc, m, math::LogOp::create(b, loc, l));
    value = arith::SelectOp::create(b, loc, empty, negInf, value);
    memref::StoreOp::create(b, loc, value, lse, ValueRange{batch, head, row});
  }
  return success();
}

/// FlashAttention-2 on tensor cores (mma.sync m16n8k16, f16 in, f32
/// accumulate): a block of 4 warps owns 64 query rows (16 per warp), K/V
/// tiles of 64 keys are staged in shared memory (rows padded by 8 halves:
/// no bank conflicts on ldmatrix), S = Q K^T and O += P V run on mma.sync
/// with the fragments loaded by ldmatrix (V transposed), the online softmax
/// runs on the accumulator fragments (row max and sum over the 4 lanes of a
/// quad by shuffles), the variant's score and mask are evaluated per
/// fragment element with (q, kv) from the fragment layout, and P goes from
/// the S accumulators straight into the A operand of the PV product.
/// First version: f16 only (nvgpu.mma.sync has no bf16 in LLVM 22), head
/// dims multiples of 16 up to 128, no cp.async pipelining, every KV tile
/// visited (no block skipping yet).
class MMALowering : public GPUKernelLowering {
public:
  static constexpr int64_t kRows = 64, kKeys = 64, kPad = 8, kThreads = 128;
  MMALowering(OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel)
      : GPUKernelLowering(b, op, variant), kernel(kernel) {}
  LogicalResult emit() override;

private:
  Value i32(int64_t v) { return arith::ConstantIntOp::create(b, loc, v, 32); }
  /// Copies rows [row0, row0 + 64) of a [.., S, D] tensor of head `hd` into
  /// `smem` (zero rows past `seq`), 8 halves per thread and step.
  void stageTile(Value global, Value smem, Value batch, Value hd, Value row0, Value seq,
                 int64_t width);
  /// Max or sum over the 4 lanes of a quad.
  Value quadReduce(Value x, bool max);
  /// The variant's `blocks` classifier on a box (i8: 0 EMPTY, 1 PARTIAL,
  /// 2 FULL), where it needs no buffer summaries; null otherwise.
  Value classify(Value batch, Value head, Value qLo, Value qHi, Value kvLo, Value kvHi);
  gpu::GPUFuncOp kernel;
  Value lane, warp;
};

void MMALowering::stageTile(Value global, Value smem, Value batch, Value hd, Value row0,
                            Value seq, int64_t width) {
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  int64_t chunks = kRows * width / 8;
  auto loop = scf::ForOp::create(b, loc, tid, idx(chunks), idx(kThreads));
  OpBuilder::InsertionGuard g(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = loop.getInductionVar();
  Value r = arith::DivUIOp::create(b, loc, i, idx(width / 8));
  Value c = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, i, idx(width / 8)), idx(8));
  Value pos = arith::AddIOp::create(b, loc, row0, r);
  Value in = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, pos, seq);
  VectorType v8 = VectorType::get({8}, b.getF16Type());
  auto ifOp = scf::IfOp::create(b, loc, TypeRange{v8}, in, true);
  {
    OpBuilder::InsertionGuard g2(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    scf::YieldOp::create(b, loc,
                         vector::LoadOp::create(b, loc, v8, global, at(batch, hd, pos, c)).getResult());
    b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    scf::YieldOp::create(
        b, loc,
        arith::ConstantOp::create(b, loc, DenseElementsAttr::get(v8, b.getF16FloatAttr(0)))
            .getResult());
  }
  vector::StoreOp::create(b, loc, ifOp.getResult(0), smem, ValueRange{r, c});
}

Value MMALowering::classify(Value batch, Value head, Value qLo, Value qHi, Value kvLo,
                           Value kvHi) {
  if (variant.getBlocks().empty() || !variant.getSummarizedBuffers().empty())
    return {};
  Block &block = variant.getBlocks().front();
  IRMapping map;
  Value args[] = {batch, head, qLo, qHi, kvLo, kvHi};
  for (unsigned i = 0; i < VariantOp::kBlocksIndexArgs; ++i)
    map.map(block.getArgument(i), args[i]);
  for (auto [i, buf] : llvm::enumerate(op.getBuffers()))
    map.map(block.getArgument(VariantOp::kBlocksIndexArgs + i), buf);
  for (Operation &inner : block.without_terminator()) {
    if (auto r = dyn_cast<heed::attn::RouteOp>(inner)) {
      map.map(r.getResult(), route);
      continue;
    }
    b.clone(inner, map);
  }
  return map.lookup(cast<heed::attn::YieldOp>(block.getTerminator()).getValue());
}

Value MMALowering::quadReduce(Value x, bool max) {
  for (int64_t offset : {1, 2}) {
    Value other = gpu::ShuffleOp::create(b, loc, x, i32(offset), i32(32), gpu::ShuffleMode::XOR)
                      .getShuffleResult();
    x = max ? Value(arith::MaximumFOp::create(b, loc, x, other))
            : Value(arith::AddFOp::create(b, loc, x, other));
  }
  return x;
}

LogicalResult MMALowering::emit() {
  Value q = op.getQuery(), k = op.getKey(), v = op.getValue(), out = op.getOut();
  Value lse = op.getLse();
  auto qType = cast<MemRefType>(q.getType());
  int64_t D = qType.getDimSize(3), Dv = cast<MemRefType>(v.getType()).getDimSize(3);
  if (!qType.getElementType().isF16())
    return op.emitOpError() << "--attn-lower-to-nvgpu handles f16 so far (bf16 needs "
                               "nvvm.mma.sync: nvgpu.mma.sync cannot type it in LLVM 22); use "
                               "--attn-lower-to-gpu";
  if (D % 16 || Dv % 16 || D > 128 || Dv > 128)
    return op.emitOpError() << "--attn-lower-to-nvgpu needs head dims that are multiples of "
                               "16, at most 128 so far";
  if (variant.isGated())
    return op.emitOpError() << "gated variants are not lowered to the GPU yet";
  Value bufA = kernel.getWorkgroupAttributions()[0], bufV = kernel.getWorkgroupAttributions()[1];
  Type f16 = b.getF16Type(), f32t = b.getF32Type();
  VectorType aType = VectorType::get({4, 2}, f16), bType = VectorType::get({2, 2}, f16);
  VectorType cType = VectorType::get({2, 2}, f32t);
  Value seqQ = dim(q, 2), seqKV = dim(k, 2), headsQ = dim(q, 1), headsKV = dim(k, 1);
  Value group = arith::DivUIOp::create(b, loc, headsQ, headsKV);
  Value qTile = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value head = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value batch = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value headKV = arith::DivUIOp::create(b, loc, head, group);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  warp = arith::DivUIOp::create(b, loc, tid, idx(32));
  lane = arith::RemUIOp::create(b, loc, tid, idx(32));
  Value q0 = arith::MulIOp::create(b, loc, qTile, idx(kRows));
  if (variant.isRouted())
    route = inlineRegion(variant.getRoute(), {batch, head});

  // Q tile -> shared memory -> A fragments in registers (D / 16 of them).
  stageTile(q, bufA, batch, head, q0, seqQ, D);
  gpu::BarrierOp::create(b, loc);
  Value laneMod16 = arith::RemUIOp::create(b, loc, lane, idx(16));
  Value laneDiv16 = arith::DivUIOp::create(b, loc, lane, idx(16));
  Value warpRow = arith::MulIOp::create(b, loc, warp, idx(16));
  SmallVector<Value> qFrag;
  for (int64_t kk = 0; kk < D / 16; ++kk) {
    Value r = arith::AddIOp::create(b, loc, warpRow, laneMod16);
    Value c = arith::AddIOp::create(b, loc, idx(kk * 16),
                                    arith::MulIOp::create(b, loc, laneDiv16, idx(8)));
    qFrag.push_back(nvgpu::LdMatrixOp::create(b, loc, aType, bufA, ValueRange{r, c},
                                              /*transpose=*/false, /*numTiles=*/4));
  }
  // This thread's rows (of its warp's 16) and columns within an n-tile of 8.
  Value rowInWarp = arith::DivUIOp::create(b, loc, lane, idx(4));
  Value colPair = arith::MulIOp::create(b, loc, arith::RemUIOp::create(b, loc, lane, idx(4)), idx(2));
  Value rowQ[2];
  for (int i = 0; i < 2; ++i)
    rowQ[i] = arith::AddIOp::create(
        b, loc, q0, arith::AddIOp::create(b, loc, warpRow,
                                          arith::AddIOp::create(b, loc, rowInWarp, idx(8 * i))));

  // The KV loop: running max and partial sums for the thread's 2 rows, and
  // the O accumulators (Dv / 8 fragments).
  float scale = op.getScale().convertToFloat();
  Value negInf = f32(-INFINITY);
  SmallVector<Value> init = {negInf, negInf, f32(0), f32(0)};
  Value zeroC = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(cType, b.getF32FloatAttr(0)));
  for (int64_t d = 0; d < Dv / 8; ++d)
    init.push_back(zeroC);
  Value numTiles = arith::CeilDivUIOp::create(b, loc, seqKV, idx(kKeys));
  Value lastQ = arith::SubIOp::create(b, loc, seqQ, idx(1));
  Value lastKV = arith::SubIOp::create(b, loc, seqKV, idx(1));
  // Visit only the KV tiles between the first and last the mask may reach
  // for this block's rows (the analysis' classifier, by binary search).
  Value first = idx(0), end = numTiles;
  Value qHiBox = arith::MinUIOp::create(b, loc, arith::AddIOp::create(b, loc, q0, idx(kRows - 1)),
                                        lastQ);
  auto isEmpty = [&](Value lo, Value hi) -> Value {
    Value cls = classify(batch, head, q0, qHiBox, lo, hi);
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, cls,
                                 arith::ConstantIntOp::create(b, loc, VariantOp::Empty, 8));
  };
  if (!variant.getBlocks().empty() && variant.getSummarizedBuffers().empty()) {
    Value one = arith::ConstantIntOp::create(b, loc, 1, 1);
    first = heed::searchFirst(b, loc, idx(0), numTiles, [&](Value t) -> Value {
      Value hi = arith::MinUIOp::create(
          b, loc, arith::SubIOp::create(b, loc, arith::MulIOp::create(b, loc, arith::AddIOp::create(b, loc, t, idx(1)), idx(kKeys)), idx(1)),
          lastKV);
      return arith::XOrIOp::create(b, loc, isEmpty(idx(0), hi), one);
    });
    end = heed::searchFirst(b, loc, first, numTiles, [&](Value t) -> Value {
      return isEmpty(arith::MulIOp::create(b, loc, t, idx(kKeys)), lastKV);
    });
  }
  auto loop = scf::ForOp::create(b, loc, first, end, idx(1), init);
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(loop.getBody());
    Value t = loop.getInductionVar();
    ValueRange it = loop.getRegionIterArgs();
    Value m[2] = {it[0], it[1]}, l[2] = {it[2], it[3]};
    SmallVector<Value> o(it.begin() + 4, it.end());
    Value kv0 = arith::MulIOp::create(b, loc, t, idx(kKeys));
    gpu::BarrierOp::create(b, loc); // the previous tile (or Q) is consumed
    stageTile(k, bufA, batch, headKV, kv0, seqKV, D);
    stageTile(v, bufV, batch, headKV, kv0, seqKV, Dv);
    gpu::BarrierOp::create(b, loc);

    // S = Q K^T: 8 n-tiles of 8 keys.
    Value laneMod8 = arith::RemUIOp::create(b, loc, lane, idx(8));
    Value half = arith::RemUIOp::create(b, loc, arith::DivUIOp::create(b, loc, lane, idx(8)), idx(2));
    SmallVector<Value> sAcc;
    for (int64_t n = 0; n < kKeys / 8; ++n) {
      Value acc = zeroC;
      for (int64_t kk = 0; kk < D / 16; ++kk) {
        Value r = arith::AddIOp::create(b, loc, idx(n * 8), laneMod8);
        Value c = arith::AddIOp::create(b, loc, idx(kk * 16), arith::MulIOp::create(b, loc, half, idx(8)));
        Value kFrag = nvgpu::LdMatrixOp::create(b, loc, bType, bufA, ValueRange{r, c},
                                                /*transpose=*/false, /*numTiles=*/2);
        acc = nvgpu::MmaSyncOp::create(b, loc, qFrag[kk], kFrag, acc,
                                       ArrayRef<int64_t>{16, 8, 16});
      }
      sAcc.push_back(acc);
    }
    // Scale, score modifier and mask per element; keys past the end masked.
    Block &scoreBlock = variant.getScore().front();
    bool identityScore =
        cast<heed::attn::YieldOp>(scoreBlock.getTerminator()).getValue() == scoreBlock.getArgument(0);
    Value rowMax[2] = {negInf, negInf};
    SmallVector<SmallVector<Value, 4>> sv(kKeys / 8);
    for (int64_t n = 0; n < kKeys / 8; ++n)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j) {
          Value x = vector::ExtractOp::create(b, loc, sAcc[n], ArrayRef<int64_t>{i, j});
          x = arith::MulFOp::create(b, loc, x, f32(scale));
          Value kvPos = arith::AddIOp::create(
              b, loc, kv0, arith::AddIOp::create(b, loc, idx(n * 8 + j), colPair));
          // Rows past Sq and keys past Skv are padding: the variant is
          // evaluated at the last real row/key instead (and the result
          // dropped), so their buffer reads are never reported out of range.
          Value qEval = arith::MinUIOp::create(b, loc, rowQ[i], lastQ);
          Value kvEval = arith::MinUIOp::create(b, loc, kvPos, lastKV);
          if (!identityScore)
            x = inlineRegion(variant.getScore(), {x, batch, head, qEval, kvEval});
          Value ok = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, kvPos, seqKV);
          ok = arith::AndIOp::create(b, loc, ok,
                                     inlineRegion(variant.getMask(), {batch, head, qEval, kvEval}));
          x = arith::SelectOp::create(b, loc, ok, x, negInf);
          sv[n].push_back(x);
          rowMax[i] = arith::MaximumFOp::create(b, loc, rowMax[i], x);
        }
    // Online softmax per row (statistics shared by the quad).
    Value mNew[2], mUse[2], alpha[2], rowSum[2] = {f32(0), f32(0)};
    for (int i = 0; i < 2; ++i) {
      mNew[i] = arith::MaximumFOp::create(b, loc, m[i], quadReduce(rowMax[i], true));
      Value none = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, mNew[i], negInf);
      mUse[i] = arith::SelectOp::create(b, loc, none, f32(0), mNew[i]);
      alpha[i] = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, m[i], mUse[i]));
    }
    SmallVector<Value> p(kKeys / 8); // P as f16 fragments, one per n-tile
    VectorType hType = VectorType::get({2, 2}, f16);
    for (int64_t n = 0; n < kKeys / 8; ++n) {
      Value frag = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(hType, b.getF16FloatAttr(0)));
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j) {
          Value e = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, sv[n][i * 2 + j], mUse[i]));
          rowSum[i] = arith::AddFOp::create(b, loc, rowSum[i], e);
          frag = vector::InsertOp::create(b, loc, arith::TruncFOp::create(b, loc, f16, e), frag,
                                          ArrayRef<int64_t>{i, j});
        }
      p[n] = frag;
    }
    Value lNew[2];
    for (int i = 0; i < 2; ++i)
      lNew[i] = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, l[i], alpha[i]), rowSum[i]);
    // Rescale O rows, then O += P V (k = 16 keys per mma).
    Value alphaVec = vector::FromElementsOp::create(
        b, loc, cType, ValueRange{alpha[0], alpha[0], alpha[1], alpha[1]});
    for (Value &od : o)
      od = arith::MulFOp::create(b, loc, od, alphaVec);
    for (int64_t t16 = 0; t16 < kKeys / 16; ++t16) {
      // A fragment of P: rows r / r + 8 of keys [16 t, 16 t + 8) and [+8, +16).
      Value a = arith::ConstantOp::create(b, loc, DenseElementsAttr::get(aType, b.getF16FloatAttr(0)));
      for (int64_t i = 0; i < 2; ++i) {
        a = vector::InsertOp::create(b, loc, vector::ExtractOp::create(b, loc, p[2 * t16], ArrayRef<int64_t>{i}), a, ArrayRef<int64_t>{i});
        a = vector::InsertOp::create(b, loc, vector::ExtractOp::create(b, loc, p[2 * t16 + 1], ArrayRef<int64_t>{i}), a, ArrayRef<int64_t>{2 + i});
      }
      for (int64_t d = 0; d < Dv / 8; ++d) {
        Value r = arith::AddIOp::create(b, loc, idx(t16 * 16), laneMod16);
        Value vFrag = nvgpu::LdMatrixOp::create(b, loc, bType, bufV, ValueRange{r, idx(d * 8)},
                                                /*transpose=*/true, /*numTiles=*/2);
        o[d] = nvgpu::MmaSyncOp::create(b, loc, a, vFrag, o[d], ArrayRef<int64_t>{16, 8, 16});
      }
    }
    SmallVector<Value> next = {mNew[0], mNew[1], lNew[0], lNew[1]};
    next.append(o.begin(), o.end());
    scf::YieldOp::create(b, loc, next);
  }
  // Normalize, write the thread's elements of O and (one lane per row) lse.
  for (int i = 0; i < 2; ++i) {
    Value mFinal = loop.getResult(i);
    Value lFinal = quadReduce(loop.getResult(2 + i), false);
    Value empty = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, lFinal, f32(0));
    Value inv = arith::SelectOp::create(b, loc, empty, f32(0), arith::DivFOp::create(b, loc, f32(1), lFinal));
    Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, rowQ[i], seqQ);
    auto ifOp = scf::IfOp::create(b, loc, inRange, false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    for (int64_t d = 0; d < Dv / 8; ++d)
      for (int64_t j = 0; j < 2; ++j) {
        Value x = vector::ExtractOp::create(b, loc, loop.getResult(4 + d), ArrayRef<int64_t>{i, j});
        Value col = arith::AddIOp::create(b, loc, idx(d * 8 + j), colPair);
        storeF32(arith::MulFOp::create(b, loc, x, inv), out, at(batch, head, rowQ[i], col));
      }
    if (lse) {
      Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, colPair, idx(0));
      auto once = scf::IfOp::create(b, loc, first, false);
      b.setInsertionPointToStart(&once.getThenRegion().front());
      Value value = arith::AddFOp::create(b, loc, mFinal, math::LogOp::create(b, loc, lFinal));
      memref::StoreOp::create(b, loc, arith::SelectOp::create(b, loc, empty, f32(-INFINITY), value),
                              lse, ValueRange{batch, head, rowQ[i]});
    }
  }
  return success();
}

/// Turns every function holding one attn.attention into a gpu.func kernel
/// of `gpu.module @heed_gpu`, its body emitted by `make(...)->emit()`.
LogicalResult lowerKernels(
    ModuleOp module, int64_t blockRows, int64_t threads, TypeRange workgroup,
    llvm::function_ref<std::unique_ptr<GPUKernelLowering>(OpBuilder &, AttentionOp, VariantOp,
                                                     gpu::GPUFuncOp)>
        make) {
  SymbolTableCollection symbols;
  SmallVector<func::FuncOp> kernels;
  module.walk([&](func::FuncOp f) {
    if (!f.getOps<AttentionOp>().empty())
      kernels.push_back(f);
  });
  if (kernels.empty())
    return success();
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), "heed_gpu");
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
  for (func::FuncOp f : kernels) {
    auto ops = llvm::to_vector(f.getOps<AttentionOp>());
    if (ops.size() != 1)
      return f.emitOpError() << "must hold exactly one attn.attention to become a GPU kernel";
    AttentionOp op = ops.front();
    auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr());
    if (!variant)
      return op.emitOpError() << "refers to an unknown variant";
    b.setInsertionPointToEnd(gpuModule.getBody());
    auto kernel =
        gpu::GPUFuncOp::create(b, f.getLoc(), f.getName(), f.getFunctionType(), workgroup);
    kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    kernel->setAttr("attn.block_rows", b.getI64IntegerAttr(blockRows));
    kernel->setAttr("attn.threads", b.getI64IntegerAttr(threads));
    // The function's arguments become the kernel's.
    Block &body = kernel.getBody().front();
    IRMapping map;
    for (auto [from, to] : llvm::zip(f.getArguments(), body.getArguments()))
      map.map(from, to);
    b.setInsertionPointToStart(&body);
    auto cloned = cast<AttentionOp>(b.clone(*op, map));
    std::unique_ptr<GPUKernelLowering> lowering = make(b, cloned, variant, kernel);
    if (failed(lowering->emit()))
      return failure();
    cloned.erase();
    b.setInsertionPointToEnd(&body);
    gpu::ReturnOp::create(b, f.getLoc());
    f.erase();
  }
  SmallVector<VariantOp> variants;
  module.walk([&](VariantOp v) { variants.push_back(v); });
  for (VariantOp v : variants)
    v.erase();
  return success();
}

struct AttnLowerToGPUPass : heed::impl::AttnLowerToGPUBase<AttnLowerToGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    auto make = [](OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp) {
      return std::unique_ptr<GPUKernelLowering>(std::make_unique<SIMTLowering>(b, op, variant));
    };
    if (failed(lowerKernels(getOperation(), blockRows, blockRows, {}, make)))
      signalPassFailure();
  }
};

struct AttnLowerToNVGPUPass : heed::impl::AttnLowerToNVGPUBase<AttnLowerToNVGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Two shared-memory tiles: Q then K (Q lives in registers once loaded), and V.
    int64_t width = 0;
    module.walk([&](AttentionOp op) {
      width = std::max({width, cast<MemRefType>(op.getQuery().getType()).getDimSize(3),
                        cast<MemRefType>(op.getValue().getType()).getDimSize(3)});
    });
    auto space = gpu::AddressSpaceAttr::get(module.getContext(), gpu::AddressSpace::Workgroup);
    auto tile = MemRefType::get({MMALowering::kRows, width + MMALowering::kPad},
                                Float16Type::get(module.getContext()), MemRefLayoutAttrInterface{},
                                space);
    auto make = [](OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp kernel) {
      return std::unique_ptr<GPUKernelLowering>(
          std::make_unique<MMALowering>(b, op, variant, kernel));
    };
    if (failed(lowerKernels(module, MMALowering::kRows, MMALowering::kThreads,
                            TypeRange{tile, tile}, make)))
      signalPassFailure();
  }
};

} // namespace
