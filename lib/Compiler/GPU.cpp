// The NVIDIA compile path (see GPU.h): kernel module -> --attn-lower-to-gpu
// -> gpu-lower-to-nvvm-pipeline (PTX in a gpu.binary) -> ptxas -> cubin.
#include "heed/Compiler/GPU.h"

#include "KernelModule.h"

#include "dialects/attn/AttnOps.h"

#include "heed/Conversion/Passes.h"
#include "heed/Pipelines/Pipelines.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/GPUCommon/GPUToLLVM.h"
#include "mlir/Conversion/GPUToNVVM/GPUToNVVM.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <cstdlib>

using namespace mlir;

namespace heed {

namespace {

llvm::Error fail(const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::unique_ptr<MLIRContext> makeGPUContext() {
  DialectRegistry registry;
  heed::registerAllDialects(registry);
  registry.insert<gpu::GPUDialect, NVVM::NVVMDialect>();
  // What the NVVM pipeline needs: each dialect's conversion to LLVM, the
  // LLVM IR translations, and the NVVM target that serializes to PTX.
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  index::registerConvertIndexToLLVMInterface(registry);
  registerConvertMathToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  NVVM::registerConvertGpuToNVVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  gpu::registerConvertGpuToLLVMInterface(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  auto context = std::make_unique<MLIRContext>(registry, MLIRContext::Threading::DISABLED);
  context->loadAllAvailableDialects();
  return context;
}

/// The kernel module with only what a GPU launch needs: the variant and the
/// kernel function (tile counters and summaries are host code).
OwningOpRef<ModuleOp> gpuKernelModule(MLIRContext &ctx, const spec::Variant &variant,
                                      const KernelConfig &config) {
  OwningOpRef<ModuleOp> module = detail::buildKernelModule(ctx, variant, config);
  SmallVector<func::FuncOp> host;
  module->walk([&](func::FuncOp f) {
    if (f.getOps<heed::attn::AttentionOp>().empty())
      host.push_back(f);
  });
  for (func::FuncOp f : host)
    f.erase();
  return module;
}

llvm::Error lower(ModuleOp module, llvm::function_ref<void(OpPassManager &)> build) {
  detail::DiagnosticCollector diags(*module.getContext());
  PassManager pm(module.getContext());
  build(pm);
  if (failed(pm.run(module)))
    return diags.error("lowering to the GPU failed");
  return llvm::Error::success();
}

bool tensorCoresApply(const spec::Variant &variant, const KernelConfig &config) {
  return config.dtype == DType::F16 && config.headDim % 16 == 0 && config.headDim <= 128 &&
         config.valueDim() % 16 == 0 && config.valueDim() <= 128 && !variant.gate;
}

llvm::Expected<bool> useTensorCores(const spec::Variant &variant, const KernelConfig &config,
                                    GPUKernelKind kind) {
  bool applies = tensorCoresApply(variant, config);
  if (kind == GPUKernelKind::TensorCores && !applies)
    return fail("the tensor-core kernel needs f16, head dims that are multiples of 16 up to "
                "128, and no gate (so far)");
  return kind == GPUKernelKind::SIMT ? false : applies;
}

/// A variant's kernel module lowered to the gpu dialect (and then by
/// `then`, if given), with the kernel's launch shape.
struct LoweredGPUModule {
  std::unique_ptr<MLIRContext> context;
  OwningOpRef<ModuleOp> module;
  bool tensorCores = false;
  int64_t blockRows = 0, threads = 0; ///< query rows and threads per block
};

void addGPULowering(OpPassManager &pm, bool tensorCores, int64_t blockRows);

llvm::Expected<LoweredGPUModule>
lowerForGPU(const spec::Variant &variant, const KernelConfig &config, GPUKernelKind kind,
            llvm::function_ref<void(OpPassManager &)> then = {}) {
  if (llvm::Error err = config.validate())
    return std::move(err);
  auto tensorCores = useTensorCores(variant, config, kind);
  if (!tensorCores)
    return tensorCores.takeError();
  LoweredGPUModule out;
  out.tensorCores = *tensorCores;
  // The tensor-core kernel: 4 warps own 64 rows; the SIMT one: a row a thread.
  out.blockRows = out.tensorCores ? 64 : 128;
  out.threads = 128;
  out.context = makeGPUContext();
  out.module = gpuKernelModule(*out.context, variant, config);
  if (llvm::Error err = lower(*out.module, [&](OpPassManager &pm) {
        addGPULowering(pm, out.tensorCores, out.blockRows);
        if (then)
          then(pm);
      }))
    return std::move(err);
  return out;
}

void addGPULowering(OpPassManager &pm, bool tensorCores, int64_t blockRows) {
  pm.addPass(createAttnSimplify());
  if (tensorCores) {
    // The block classifier: the tensor-core kernel skips KV tiles it proves
    // EMPTY (flat tiles: patch tiling is a CPU layout).
    AttnAnalyzeMaskOptions analysis;
    analysis.blockQ = 64;
    analysis.blockKV = 64;
    analysis.patchTiling = false;
    pm.addPass(createAttnAnalyzeMask(analysis));
    pm.addPass(createAttnLowerToNVGPU());
  } else {
    AttnLowerToGPUOptions gpu;
    gpu.blockRows = blockRows;
    pm.addPass(createAttnLowerToGPU(gpu));
  }
}

} // namespace

llvm::Expected<CUDATarget> CUDATarget::parse(const std::string &name) {
  llvm::StringRef n(name);
  unsigned version = 0;
  llvm::StringRef digits = n;
  if (!digits.consume_front("sm_") || digits.empty())
    return fail("unknown NVIDIA target '" + name + "': expected sm_80, sm_86, sm_89, sm_90 or sm_90a");
  digits.consume_back("a");
  if (digits.getAsInteger(10, version) || version < 80)
    return fail("NVIDIA target '" + name +
                "' is not supported: heed's kernels need sm_80 (Ampere) or newer");
  return CUDATarget{name};
}

std::string findPtxas() {
  if (const char *p = std::getenv("HEED_PTXAS"); p && *p)
    return p;
  std::vector<std::string> dirs;
  if (const char *home = std::getenv("CUDA_HOME"); home && *home)
    dirs.push_back(std::string(home) + "/bin");
  dirs.push_back("/usr/local/cuda/bin");
  for (const std::string &d : dirs)
    if (llvm::sys::fs::can_execute(d + "/ptxas"))
      return d + "/ptxas";
  if (auto p = llvm::sys::findProgramByName("ptxas"))
    return *p;
  return "";
}

llvm::Expected<std::string> emitGPUModule(const spec::Variant &variant,
                                          const KernelConfig &config, GPUKernelKind kind) {
  auto lowered = lowerForGPU(variant, config, kind);
  if (!lowered)
    return lowered.takeError();
  std::string text;
  llvm::raw_string_ostream os(text);
  lowered->module->print(os);
  return text;
}

llvm::Expected<GPUKernelBinary> compileCUDA(const spec::Variant &variant,
                                            const KernelConfig &config,
                                            const CUDATarget &target, GPUKernelKind kind) {
  auto lowered = lowerForGPU(variant, config, kind, [&](OpPassManager &pm) {
    gpu::GPUToNVVMPipelineOptions nvvm;
    nvvm.cubinChip = target.chip;
    nvvm.cubinFeatures = "+ptx80";
    nvvm.cubinFormat = "isa"; // PTX text; ptxas makes the cubin
    gpu::buildLowerToNVVMPassPipeline(pm, nvvm);
  });
  if (!lowered)
    return lowered.takeError();
  OwningOpRef<ModuleOp> &module = lowered->module;

  GPUKernelBinary out;
  out.kernelName = detail::kKernelName;
  out.blockRows = lowered->blockRows;
  out.threads = lowered->threads;
  out.tensorCores = lowered->tensorCores;
  module->walk([&](gpu::BinaryOp binary) {
    for (Attribute a : binary.getObjects())
      if (auto object = dyn_cast<gpu::ObjectAttr>(a))
        out.ptx = object.getObject().getValue().str();
  });
  if (out.ptx.empty())
    return fail("the NVVM pipeline produced no PTX");

  std::string ptxas = findPtxas();
  if (ptxas.empty())
    return out; // PTX only: the driver JIT-compiles it
  llvm::SmallString<128> ptxPath, cubinPath, logPath;
  if (auto ec = llvm::sys::fs::createTemporaryFile("heed-kernel", "ptx", ptxPath))
    return fail("cannot create a temporary file: " + ec.message());
  llvm::sys::fs::createTemporaryFile("heed-kernel", "cubin", cubinPath);
  llvm::sys::fs::createTemporaryFile("heed-ptxas", "log", logPath);
  auto cleanup = llvm::make_scope_exit([&] {
    for (auto *p : {&ptxPath, &cubinPath, &logPath})
      llvm::sys::fs::remove(*p);
  });
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(ptxPath, ec);
    os << out.ptx;
    os.flush();
    if (ec || os.has_error()) {
      os.clear_error();
      return fail("cannot write the PTX for ptxas");
    }
  }
  std::string arch = "-arch=" + target.chip;
  llvm::SmallVector<llvm::StringRef> args = {ptxas, arch, "-v", "-O3", "-o", cubinPath,
                                             ptxPath};
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(logPath),
                                                llvm::StringRef(logPath)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects, 0, 0, &message);
  std::string log;
  if (auto buf = llvm::MemoryBuffer::getFile(logPath))
    log = (*buf)->getBuffer().str();
  if (rc != 0)
    return fail(fmt::format("ptxas ({}) failed ({}): {}{}", ptxas, rc, message, log));
  auto cubin = llvm::MemoryBuffer::getFile(cubinPath);
  if (!cubin)
    return fail("cannot read the cubin ptxas wrote");
  out.cubin = (*cubin)->getBuffer().str();
  out.resources = log;
  return out;
}

} // namespace heed
