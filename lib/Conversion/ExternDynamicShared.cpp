// --heed-extern-dynamic-shared: a GPU kernel's dynamic shared memory as an
// external zero-length array (see Passes.td).
#include "heed/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/SymbolTable.h"

namespace heed {
#define GEN_PASS_DEF_HEEDEXTERNDYNAMICSHARED
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

using namespace mlir;

namespace {

/// The upstream lowering's name, so that PTX reads the same before and after.
constexpr llvm::StringLiteral kDeclaredName = "__dynamic_shmem__0";

bool isZeroLengthArray(LLVM::GlobalOp global, unsigned addressSpace) {
  auto array = dyn_cast<LLVM::LLVMArrayType>(global.getGlobalType());
  return array && array.getNumElements() == 0 && global.getAddrSpace() == addressSpace;
}

struct ExternDynamicShared
    : heed::impl::HeedExternDynamicSharedBase<ExternDynamicShared> {
  using Base::Base;

  void runOnOperation() override {
    WalkResult result = getOperation().walk([&](gpu::GPUModuleOp module) {
      bool reusable = false;
      for (LLVM::GlobalOp global : module.getOps<LLVM::GlobalOp>()) {
        if (!isZeroLengthArray(global, addressSpace))
          continue;
        // A zero-length array holds no initial value; one that claims to
        // is not dynamic shared memory, and making it a declaration would
        // drop that value.
        if (global.getValueOrNull() || !global.getInitializerRegion().empty()) {
          global.emitError("a zero-length shared array with an initializer cannot be "
                           "declared external");
          return WalkResult::interrupt();
        }
        global.setLinkage(LLVM::Linkage::External);
        reusable |= global.getAlignment().value_or(0) == alignment;
      }
      bool usesDynamicShared = false;
      module.walk([&](gpu::DynamicSharedMemoryOp) {
        usesDynamicShared = true;
        return WalkResult::interrupt();
      });
      if (reusable || !usesDynamicShared)
        return WalkResult::advance();
      // Not lowered yet: declare the array the lowering will take, renamed
      // if the module already has a symbol of that name.
      SymbolTable symbols(module);
      OpBuilder builder(module.getContext());
      auto bytes = LLVM::LLVMArrayType::get(builder.getI8Type(), 0);
      auto declared = LLVM::GlobalOp::create(builder, module.getLoc(), bytes,
                                             /*isConstant=*/false, LLVM::Linkage::External,
                                             kDeclaredName, /*value=*/Attribute(), alignment,
                                             addressSpace);
      symbols.insert(declared, module.getBody()->begin());
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
