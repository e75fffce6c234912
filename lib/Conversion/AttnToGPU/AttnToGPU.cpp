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

#include "dialects/attn/AttnOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

#include <cmath>

namespace heed {
#define GEN_PASS_DEF_ATTNLOWERTOGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::AttentionOp;
using heed::attn::VariantOp;

namespace {

class SIMTLowering {
public:
  SIMTLowering(OpBuilder &b, AttentionOp op, VariantOp variant)
      : b(b), loc(op.getLoc()), op(op), variant(variant) {}

  /// Emits the kernel body at the builder's insertion point.
  LogicalResult emit();

private:
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

Value SIMTLowering::inlineRegion(Region &region, ArrayRef<Value> leading) {
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

  if (variant.isRouted()) {
    Block &rb = variant.getRoute().front();
    (void)rb;
    route = inlineRegion(variant.getRoute(), {batch, head});
  }

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

struct AttnLowerToGPUPass : heed::impl::AttnLowerToGPUBase<AttnLowerToGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTableCollection symbols;
    SmallVector<func::FuncOp> kernels;
    module.walk([&](func::FuncOp f) {
      if (!f.getOps<AttentionOp>().empty())
        kernels.push_back(f);
    });
    if (kernels.empty())
      return;
    OpBuilder b(module.getContext());
    b.setInsertionPointToEnd(module.getBody());
    auto gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), "heed_gpu");
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
    for (func::FuncOp f : kernels) {
      auto ops = llvm::to_vector(f.getOps<AttentionOp>());
      if (ops.size() != 1) {
        f.emitOpError() << "must hold exactly one attn.attention to become a GPU kernel";
        return signalPassFailure();
      }
      AttentionOp op = ops.front();
      auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr());
      if (!variant) {
        op.emitOpError() << "refers to an unknown variant";
        return signalPassFailure();
      }
      b.setInsertionPointToEnd(gpuModule.getBody());
      auto kernel = gpu::GPUFuncOp::create(b, f.getLoc(), f.getName(), f.getFunctionType());
      kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
      kernel->setAttr("attn.block_rows", b.getI64IntegerAttr(blockRows));
      // The function's arguments become the kernel's.
      Block &body = kernel.getBody().front();
      IRMapping map;
      for (auto [from, to] : llvm::zip(f.getArguments(), body.getArguments()))
        map.map(from, to);
      b.setInsertionPointToStart(&body);
      auto cloned = cast<AttentionOp>(b.clone(*op, map));
      SIMTLowering lowering(b, cloned, variant);
      if (failed(lowering.emit()))
        return signalPassFailure();
      cloned.erase();
      b.setInsertionPointToEnd(&body);
      gpu::ReturnOp::create(b, f.getLoc());
      f.erase();
    }
    SmallVector<VariantOp> variants;
    module.walk([&](VariantOp v) { variants.push_back(v); });
    for (VariantOp v : variants)
      v.erase();
  }
};

} // namespace
