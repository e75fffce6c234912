// What the monolithic matrix-core kernels (TiledKernel.cpp, AMDGPUKernel.cpp)
// share (GPUKernel.h): GPUKernelLowering's indexing and region inlining, and
// lowerKernels. (The SIMT kernel is the tile IR's --convert-attn-tile-to-simt.)
#include "heed/Conversion/Passes.h"

#include "GPUKernel.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

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
