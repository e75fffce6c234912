// Internals shared by emit() and Kernel::compile(): building the kernel
// module, running the CPU pipelines, and the host target machine.
#ifndef HEED_LIB_COMPILER_KERNELMODULE_H
#define HEED_LIB_COMPILER_KERNELMODULE_H

#include "heed/Compiler/Compiler.h"
#include "heed/Pipelines/Pipelines.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>
#include "llvm/Target/TargetMachine.h"

#include <memory>
#include <string>
#include <vector>

namespace heed::detail {

/// Collects MLIR diagnostics while alive, for an llvm::Error.
class DiagnosticCollector {
public:
  explicit DiagnosticCollector(mlir::MLIRContext &ctx)
      : handler(&ctx, [this](mlir::Diagnostic &diag) {
          llvm::raw_string_ostream os(text);
          os << diag.getLocation() << ": " << diag << "\n";
          for (mlir::Diagnostic &note : diag.getNotes())
            os << "  note: " << note << "\n";
          return mlir::success();
        }) {}
  llvm::Error error(llvm::StringRef what) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   fmt::format("{}:\n{}", what.str(), text));
  }

private:
  std::string text;
  mlir::ScopedDiagnosticHandler handler;
};


/// Name of the kernel function; its C interface is `_mlir_ciface_<name>`.
inline constexpr const char *kKernelName = "heed_kernel";
/// `index -> index` functions in every kernel module: query tiles per
/// (batch, head) for a query length, KV blocks for a key length.
inline constexpr const char *kNumQTilesName = "heed_num_q_tiles";
inline constexpr const char *kNumKVTilesName = "heed_num_kv_tiles";

/// A context with every dialect and translation heed needs.
std::unique_ptr<mlir::MLIRContext> makeContext();

/// The variant plus `func.func @heed_kernel(q, k, v, buffers..., out, [lse])`
/// holding one attn.attention: the math alone. Every pipeline starts with
/// --attn-runtime-abi, which adds the runtime's arguments (summaries, routed
/// rows, status, stats, work range; see lib/Transforms/RuntimeABI.cpp).
mlir::OwningOpRef<mlir::ModuleOp> buildKernelModule(mlir::MLIRContext &context,
                                                    const spec::Variant &variant,
                                                    const KernelConfig &config);

/// The float buffers --attn-differentiate gives gradients to, or its error
/// (the variant cannot be differentiated).
llvm::Expected<std::vector<unsigned>> gradientPositions(mlir::MLIRContext &ctx,
                                                        const spec::Variant &variant);

/// The variant plus `func.func @heed_kernel(q, k, v, dout, lse, delta,
/// buffers..., summaries..., dq, dk, dv, gradients..., status, stats,
/// begin, end)` holding one attn.attention_backward tiled `tileRows` x
/// `tileKeys`, the tile-count functions and @heed_gradient_buffer. dq is f32
/// (the CPU adds into it) unless `dqStorage` (the GPUs write it once, in
/// the kernel's dtype). With `deltaFromOut`, the forward's out (f32 where
/// config.outF32, else the dtype) follows dout, and the kernel computes
/// and writes delta (the dQ kernel).
mlir::OwningOpRef<mlir::ModuleOp>
buildBackwardModule(mlir::MLIRContext &ctx, const spec::Variant &variant,
                    const KernelConfig &config, const std::vector<unsigned> &gradients,
                    const std::vector<unsigned> &summarized, int64_t tileRows, int64_t tileKeys,
                    bool dqStorage, bool deltaFromOut = false);

/// Positions of the buffers that get a run-time summary (rank-1 integer
/// buffers: document ids and the like).
std::vector<unsigned> summarizedBuffers(const spec::Variant &variant);

/// The runtime dtype of a buffer element type.
DType bufferDType(spec::ElemType elem);

/// The CPU pipelines' options for `config`.
CPUPipelineOptions pipelineOptions(const KernelConfig &config);

/// Runs the CPU pipelines on `module` up to `stage` (Tiled or LLVM) for
/// `target` (the products of packed decode tiles use its AVX-512 BF16).
llvm::Error lowerTo(mlir::ModuleOp module, const KernelConfig &config, Stage stage,
                    const CPUTarget &target);

/// The subtarget of an x86-64 `target` (its CPU and features), else null.
std::unique_ptr<llvm::MCSubtargetInfo> x86Subtarget(const CPUTarget &target);

/// Whether `target` has AVX-512 BF16 (vdpbf16ps).
bool hasBF16Dot(const CPUTarget &target);

/// Registers the host target with LLVM (once per process).
void initializeNativeTarget();
/// A target machine for `target`, position-independent code (for shared
/// objects), -O3.
llvm::Expected<std::unique_ptr<llvm::TargetMachine>> targetMachine(const CPUTarget &target);

/// Adds `void heed_packed_<name>(void **args)` for every `_mlir_ciface_<name>`
/// function: the calling convention the runtime uses for every kernel.
void addPackedWrappers(llvm::Module &module);

/// The element type of a storage dtype (f32, f16, bf16).
mlir::Type storageType(mlir::MLIRContext &ctx, DType t);
/// A memref of `shape` with dynamic strides but a contiguous last dim.
mlir::MemRefType stridedType(mlir::MLIRContext &ctx, llvm::ArrayRef<int64_t> shape,
                             mlir::Type elt);
/// Adds @heed_num_q_tiles and @heed_num_kv_tiles (index -> index) of
/// `variant`'s tiling to `module`.
void buildTileCountFunctions(mlir::OpBuilder &b, mlir::Location loc, mlir::ModuleOp module,
                             llvm::StringRef variant);
/// Translates an LLVM-dialect module to LLVM IR and runs -O3 for `tm`
/// (with `packed`, adds the heed_packed_ wrappers).
llvm::Expected<std::unique_ptr<llvm::Module>>
translateAndOptimize(mlir::ModuleOp module, llvm::LLVMContext &llvmContext,
                     llvm::TargetMachine &tm, bool packed = false);
/// The object file of `module` for `tm`.
llvm::Expected<std::string> emitObject(llvm::Module &module, llvm::TargetMachine &tm);

/// Links an object file into a shared object with ld.lld; returns its bytes.
llvm::Expected<std::string> linkSharedObject(llvm::StringRef object);

/// An LLVM-dialect kernel module as a shared object for `target`: LLVM IR
/// at -O3 with the heed_packed_ wrappers, an object file, ld.lld.
llvm::Expected<std::string> compileSharedObject(mlir::ModuleOp module, const CPUTarget &target);

} // namespace heed::detail

#endif
