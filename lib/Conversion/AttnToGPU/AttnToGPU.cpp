// --attn-lower-to-gpu: attn.attention as a portable SIMT GPU kernel (gpu
// dialect, scalar code): one thread per query row, the KV sequence walked
// with an online softmax in f32, the variant's regions inlined per element.
//
// This is heed's GPU baseline: target-neutral (NVVM and ROCDL lower it), the
// same semantics as the CPU kernel (masked rows give zeros and lse -inf,
// out-of-range buffer reads give 0 and set `status`), simple enough to be
// obviously right, and the harness the matrix-core lowerings
// (--attn-lower-to-nvgpu, --attn-lower-to-amdgpu) are checked against. It is
// not fast: no matrix cores, no shared-memory staging, no block skipping.
//
// The function holding the attention op becomes a `gpu.func ... kernel` of
// the same arguments in `gpu.module @heed_gpu`; launch it on a grid of
// (ceil(Sq / block-rows), Hq, B) blocks of `block-rows` threads.
//
// Also here: what every GPU kernel shares (GPUKernel.h): GPUKernelLowering's
// indexing and region inlining, and lowerKernels.
#include "heed/Conversion/Passes.h"

#include "GPUKernel.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

#include <cmath>

namespace heed {
#define GEN_PASS_DEF_ATTNLOWERTOGPU
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::AttentionOp;
using heed::attn::VariantOp;

namespace heed::gpu_kernel {

Value GPUKernelLowering::dim(Value t, unsigned d) {
  unsigned phys = d;
  if (op.isBSHD() && (d == 1 || d == 2))
    phys = 3 - d;
  return memref::DimOp::create(b, loc, t, phys);
}

SmallVector<Value> GPUKernelLowering::at(Value batch, Value head, Value pos, Value d) {
  if (op.isBSHD())
    return {batch, pos, head, d};
  return {batch, head, pos, d};
}

Value GPUKernelLowering::loadF32(Value t, ValueRange indices) {
  Value x = memref::LoadOp::create(b, loc, t, indices);
  if (!x.getType().isF32())
    x = arith::ExtFOp::create(b, loc, b.getF32Type(), x);
  return x;
}

void GPUKernelLowering::storeF32(Value x, Value t, ValueRange indices) {
  Type elt = cast<MemRefType>(t.getType()).getElementType();
  if (!elt.isF32())
    x = arith::TruncFOp::create(b, loc, elt, x);
  memref::StoreOp::create(b, loc, x, t, indices);
}

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

namespace {

/// The SIMT baseline (--attn-lower-to-gpu): one thread per query row.
class SIMTLowering : public GPUKernelLowering {
public:
  SIMTLowering(OpBuilder &b, AttentionOp op, VariantOp variant, int64_t blockRows)
      : GPUKernelLowering(b, op, variant), blockRows(blockRows) {}
  LogicalResult emit() override;

private:
  int64_t blockRows; ///< the block size (a constant: ROCDL's block_dim needs ockl)
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
  Value row =
      arith::AddIOp::create(b, loc, arith::MulIOp::create(b, loc, rowBlock, idx(blockRows)), lane);
  // Private buffers at the top of the kernel (a static frame: AMDGPU cannot
  // allocate stack dynamically).
  auto privateSpace = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Private);
  auto privateType = [&](int64_t n) {
    return MemRefType::get({n}, b.getF32Type(), MemRefLayoutAttrInterface{}, privateSpace);
  };
  Value qRow = memref::AllocaOp::create(b, loc, privateType(headDim));
  Value acc = memref::AllocaOp::create(b, loc, privateType(headDimV));
  Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, row, seqQ);
  auto guard = scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard ig(b);
  b.setInsertionPointToStart(&guard.getThenRegion().front());
  Value headKV = arith::DivUIOp::create(b, loc, head, group);

  if (variant.isRouted())
    route = inlineRegion(variant.getRoute(), {batch, head});

  // The query row (f32) and a zero accumulator, in private memory.
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
    // While the max is -inf (nothing seen yet, or a score modifier gave -inf),
    // exponents are taken against 0: alpha = p = 0 instead of exp(NaN).
    Value mUse = arith::SelectOp::create(
        b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, mNew, negInf), f32(0),
        mNew);
    Value alpha = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, m, mUse));
    Value p = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, s, mUse));
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

} // namespace

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
    kernel->setAttr(heed::attn::kLaunchAttrName,
                    heed::attn::LaunchAttr::get(b.getContext(), blockRows, threads, 0));
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
  // Variants have been inlined into the kernels; host code (tile counts) may
  // still name them.
  SmallVector<VariantOp> variants;
  module.walk([&](VariantOp v) { variants.push_back(v); });
  for (VariantOp v : variants)
    if (SymbolTable::symbolKnownUseEmpty(v, module))
      v.erase();
  return success();
}

std::pair<int64_t, Type> widestOperand(ModuleOp module) {
  int64_t width = 0;
  Type elt = Float16Type::get(module.getContext());
  module.walk([&](AttentionOp op) {
    auto q = cast<MemRefType>(op.getQuery().getType());
    width = std::max({width, q.getDimSize(3),
                      cast<MemRefType>(op.getValue().getType()).getDimSize(3)});
    elt = q.getElementType();
  });
  return {width, elt};
}

} // namespace heed::gpu_kernel

namespace {

using namespace heed::gpu_kernel;

struct AttnLowerToGPUPass : heed::impl::AttnLowerToGPUBase<AttnLowerToGPUPass> {
  using Base::Base;
  void runOnOperation() override {
    int64_t rows = blockRows;
    auto make = [rows](OpBuilder &b, AttentionOp op, VariantOp variant, gpu::GPUFuncOp) {
      return std::unique_ptr<GPUKernelLowering>(
          std::make_unique<SIMTLowering>(b, op, variant, rows));
    };
    if (failed(lowerKernels(getOperation(), blockRows, blockRows, {}, make)))
      signalPassFailure();
  }
};

} // namespace
