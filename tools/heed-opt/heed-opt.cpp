// heed-opt: mlir-opt with the attn dialect, heed's passes and pipelines, and
// every upstream dialect and pass.
#include "heed/Pipelines/Pipelines.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  heed::registerAllDialects(registry);
  mlir::registerAllPasses();
  heed::registerAllPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "heed optimizer driver\n", registry));
}
