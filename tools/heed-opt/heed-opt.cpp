// heed-opt: mlir-opt with the attn dialect, heed's passes and pipelines, and
// every upstream dialect, extension, LLVM IR translation and pass.
#include "heed/Pipelines/Pipelines.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary (in heed-gpu-to-rocdl) translates to LLVM IR.
  mlir::registerAllToLLVMIRTranslations(registry);
  heed::registerAllDialects(registry);
  mlir::registerAllPasses();
  heed::registerAllPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "heed optimizer driver\n", registry));
}
