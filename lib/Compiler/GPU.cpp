// The GPU compile paths (see GPU.h): kernel module -> a GPU kernel
// (the tile IR through --convert-attn-tile-to-nvgpu / -amdgpu on matrix cores, else
// through the SIMT --convert-attn-tile-to-simt), then
//   NVIDIA: gpu-lower-to-nvvm-pipeline (PTX in a gpu.binary) -> ptxas -> cubin;
//   AMD:    heed-gpu-to-rocdl (AMDGCN assembly in a gpu.binary) -> the
//           assembler of LLVM's AMDGPU backend -> ld.lld -> HSACO.
#include "heed/Compiler/GPU.h"

#include "KernelModule.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "heed/Conversion/Passes.h"
#include "heed/Pipelines/Pipelines.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
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
#include "mlir/Target/LLVM/ROCDL/Target.h"
#include "mlir/Target/LLVM/ROCDL/Utils.h"
#include "mlir/Target/LLVMIR/Dialect/ROCDL/ROCDLToLLVMIRTranslation.h"
#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"
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

#include <chrono>
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <thread>
#include <vector>

using namespace mlir;

namespace heed {

namespace {

llvm::Error fail(const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

std::unique_ptr<MLIRContext> makeGPUContext() {
  DialectRegistry registry;
  heed::registerAllDialects(registry);
  registry.insert<gpu::GPUDialect, NVVM::NVVMDialect, ROCDL::ROCDLDialect, amdgpu::AMDGPUDialect>();
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
  registerROCDLDialectTranslation(registry);
  ROCDL::registerROCDLTargetInterfaceExternalModels(registry);
  auto context = std::make_unique<MLIRContext>(registry, MLIRContext::Threading::DISABLED);
  context->loadAllAvailableDialects();
  context->printOpOnDiagnostic(false); // errors name the variant, not a module dump
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

/// How a kernel is fitted into the register file when the default spills
/// (compileCUDA's retries). The backward's, in this order: the dK/dV
/// kernel's 16-row query steps (`narrow`), then one staging slot instead of
/// two (`oneStage`: no tile in flight while one is computed, so neither the
/// next tile's copy addresses nor its class, computed ahead, are live beside
/// the dK and dV accumulators; per-batch document masks at D = 128 need it).
/// The warp-specialized wgmma kernel's: how the block's registers are split
/// between the producer (`producerRegisters`: a heavy classifier, per-batch
/// documents, needs more than FlashAttention-3's 24) and the consumers, and
/// keys per tile (`keysPerTile`: a heavy score or mask per element, 2-D
/// neighborhoods, needs fewer); 0: the defaults.
struct KernelFit {
  bool narrow = false;
  bool oneStage = false;
  int64_t queryRows = 0; ///< the dK/dV kernel's query rows per step (0: gpuBackwardTiles')
  int64_t producerRegisters = 0;
  int64_t keysPerTile = 0;
  int64_t warps = 0; ///< wgmma: 4 = one consumer warpgroup (twice its registers)
  bool elementStores = false; ///< forward: O element by element (no 16-byte stores)
  bool serialSoftmax = false; ///< wgmma: no attn-overlap-softmax (P is not carried)
  bool blockPerItem = false;  ///< wgmma: no attn-persistent-workers
};

/// The warp-specialized wgmma kernel's keys per tile: FlashAttention-3's 128
/// up to D = 128, 64 above (its O accumulator takes the registers); where a
/// variant's code spills, compileCUDA fits half (fitWarpSpecialized).
int64_t wgmmaKeysPerTile(const KernelConfig &config) {
  return std::max(config.headDim, config.valueDim()) > 128 ? 64 : 128;
}

/// The warp-specialized wgmma kernel's K/V slots where its softmax
/// overlaps the previous tile's P V: a slot is then released one tile later
/// (after that P V), so with two slots a tile's copy would start only once
/// the tile before it is done; a third keeps it a tile ahead. Three where
/// they fit Hopper's 227 KB of shared memory per block (Q's rows, the
/// slots' K and V, the barriers, the swizzle alignment), else two.
int64_t wgmmaOverlapStages(const KernelConfig &config, int64_t rows, int64_t keys) {
  constexpr int64_t kStages = 3;
  int64_t bytes = hopperSharedBytes(rows, config.headDim, config.valueDim(), keys, kStages,
                                    hopperBarriers(rows, kStages, /*specialized=*/true));
  return bytes <= kHopperSharedPerBlock ? kStages : 2;
}

/// The GPU backward's tiles (query rows, keys) for `target`'s vendor and
/// computation. NVIDIA, by ptxas' register counts on sm_90 (docs/backward.md,
/// "GPU kernels"): the dQ kernel's blocks of 64 rows (4 warps) step over 64
/// keys up to D = 64, 32 above; the dK/dV kernel's blocks of 64 keys step
/// over 32 query rows up to D = 64, 16 above (its dK and dV accumulators
/// hold 4 D floats per thread); `narrow`: the dK/dV kernel's 16-row steps
/// (compileCUDA retries with them where the default spills). AMD (MFMA size
/// M): both kernels' blocks are 4 waves of M rows (queries for dQ, keys for
/// dK/dV); the dQ kernel steps over 64 keys up to D = 64, 32 above (its LDS
/// holds K both ways and V: 26 KB at D = 64 and 128), the dK/dV kernel over
/// 32 query rows (a multiple of M; its LDS holds Q and dO both ways: 35 KB
/// at D = 128). Hopper's wgmma kernels (one warpgroup: 64 rows or keys a
/// block): the dQ kernel steps over 64 keys, the dK/dV kernel over 64 query
/// rows up to D = 64, 32 above (its dK and dV accumulators hold D floats a
/// thread); `narrow`: 32 keys, 16 query rows.
std::pair<int64_t, int64_t> gpuBackwardTiles(const KernelConfig &config, const GPUTarget &target,
                                             bool narrow) {
  bool wide = std::max(config.headDim, config.valueDim()) > 64;
  bool dq = target.computation == GPUComputation::BackwardDQ;
  if (isWgmma(target.kind))
    return dq ? std::pair<int64_t, int64_t>{64, narrow ? 32 : 64}
              : std::pair<int64_t, int64_t>{narrow ? 16 : wide ? 32 : 64, 64};
  if (target.vendor == GPUVendor::AMD)
    return dq ? std::pair<int64_t, int64_t>{4 * target.mfma, wide ? 32 : 64}
              : std::pair<int64_t, int64_t>{32, 4 * target.mfma};
  if (dq) // (narrow: the fit of a dQ kernel whose buffer-gradient adds spill at 64 keys)
    return {64, wide || narrow ? 32 : 64};
  return {wide || narrow ? 16 : 32, 64};
}

/// The backward kernel module of `computation` for a GPU: the backward's
/// kernel function (dq in the kernel's dtype) and the variant.
/// The (query rows, keys) of a GPU backward kernel's tiles.
std::pair<int64_t, int64_t> backwardKernelTiles(const KernelConfig &config,
                                                const GPUTarget &target, const KernelFit &fit) {
  auto [rows, keys] = gpuBackwardTiles(config, target, fit.narrow);
  if (fit.queryRows && target.computation == GPUComputation::BackwardDKDV)
    rows = fit.queryRows;
  return {rows, keys};
}

llvm::Expected<OwningOpRef<ModuleOp>> gpuBackwardKernelModule(MLIRContext &ctx,
                                                              const spec::Variant &variant,
                                                              const KernelConfig &config,
                                                              const GPUTarget &target,
                                                              const KernelFit &fit) {
  if (variant.gate)
    return fail("the GPU backward of gated (MoH) variants is not there yet: their backward runs "
                "on the CPU (docs/backward.md)");
  auto gradients = detail::gradientPositions(ctx, variant);
  if (!gradients)
    return gradients.takeError();
  std::vector<unsigned> summarized;
  if (config.analyzeMask)
    summarized = detail::summarizedBuffers(variant);
  auto [rows, keys] = backwardKernelTiles(config, target, fit);
  OwningOpRef<ModuleOp> module = detail::buildBackwardModule(
      ctx, variant, config, *gradients, summarized, rows, keys, /*dqStorage=*/true,
      /*deltaFromOut=*/target.computation == GPUComputation::BackwardDQ);
  SmallVector<func::FuncOp> host;
  module->walk([&](func::FuncOp f) {
    if (f.getOps<heed::attn::AttentionBackwardOp>().empty())
      host.push_back(f);
  });
  for (func::FuncOp f : host)
    f.erase();
  return module;
}

/// Where a compile's time went, for HEED_TIMING: MLIR passes, and
/// gpu-module-to-binary (LLVM IR translation and the target's backend).
struct CompileTimes {
  double passes = 0, codegen = 0;
};
/// The compile being timed on this thread, if any.
thread_local CompileTimes *timedCompile = nullptr;

bool timingRequested() {
  const char *t = std::getenv("HEED_TIMING");
  return t && *t && std::string(t) != "0";
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Adds each top-level pass's time (nested pipelines inside their adaptor)
/// to `times`.
class PassTimer final : public PassInstrumentation {
public:
  explicit PassTimer(CompileTimes &times) : times(times) {}
  void runBeforePass(Pass *, Operation *) override {
    if (depth++ == 0)
      start = std::chrono::steady_clock::now();
  }
  void runAfterPass(Pass *pass, Operation *) override { finish(pass); }
  void runAfterPassFailed(Pass *pass, Operation *) override { finish(pass); }

private:
  void finish(Pass *pass) {
    if (--depth != 0)
      return;
    (pass->getArgument() == "gpu-module-to-binary" ? times.codegen : times.passes) +=
        secondsSince(start);
  }
  CompileTimes &times;
  int depth = 0;
  std::chrono::steady_clock::time_point start;
};

llvm::Error lower(ModuleOp module, llvm::function_ref<void(OpPassManager &)> build) {
  detail::DiagnosticCollector diags(*module.getContext());
  PassManager pm(module.getContext());
  if (timedCompile) {
    pm.addInstrumentation(std::make_unique<PassTimer>(*timedCompile));
    if (std::string(std::getenv("HEED_TIMING")) == "2")
      pm.enableTiming(); // MLIR's report, pass by pass, on stderr
  }
  build(pm);
  if (failed(pm.run(module)))
    return diags.error("lowering to the GPU failed");
  return llvm::Error::success();
}

/// Whether the matrix-core kernel of `vendor` takes this configuration.
bool matrixCoresApply(const spec::Variant &variant, const KernelConfig &config,
                      GPUVendor vendor) {
  // The AMD kernel's O tiles are MFMA-sized (up to 32 value dims). Head
  // dims stop at 256 on both (Dqk and Dv apart: MLA's 192/128).
  int64_t valueMultiple = vendor == GPUVendor::AMD ? 32 : 16;
  int64_t maxDim = 256;
  return (config.dtype == DType::F16 || config.dtype == DType::BF16) &&
         config.headDim % 16 == 0 && config.headDim <= maxDim &&
         config.valueDim() % valueMultiple == 0 && config.valueDim() <= maxDim;
}

llvm::Expected<bool> useMatrixCores(const spec::Variant &variant, const KernelConfig &config,
                                    GPUKernelKind kind, GPUVendor vendor) {
  bool applies = matrixCoresApply(variant, config, vendor);
  if (isWgmma(kind) &&
      (vendor != GPUVendor::NVIDIA || !applies || config.headDim % 64 ||
       config.valueDim() % 64))
    return fail("the wgmma kernel is NVIDIA's (sm_90a) and needs f16 or bf16, head dims that "
                "are multiples of 64 up to 256, and no gate (so far)");
  if (kind == GPUKernelKind::TensorCores && !applies)
    return fail(vendor == GPUVendor::AMD
                    ? "the MFMA kernel needs f16 or bf16, head dims that are multiples of 16 "
                      "(v: of 32) up to 256"
                    : "the tensor-core kernel needs f16 or bf16, head dims that are multiples "
                      "of 16 up to 256");
  return kind == GPUKernelKind::SIMT ? false : applies;
}

/// A variant's kernel module lowered to the gpu dialect (and then by
/// `then`, if given), with the kernel's launch shape as the lowering
/// recorded it on the kernel (`attn.launch`).
struct LoweredGPUModule {
  std::unique_ptr<MLIRContext> context;
  OwningOpRef<ModuleOp> module;
  GPULaunch launch; ///< all but the format
};

llvm::Expected<LoweredGPUModule>
lowerForGPU(const spec::Variant &variant, const KernelConfig &config, const GPUTarget &target,
            llvm::function_ref<void(OpPassManager &)> then = {}, KernelFit fit = {}) {
  GPUKernelKind kind = target.kind;
  GPUVendor vendor = target.vendor;
  GPUComputation computation = target.computation;
  if (llvm::Error err = config.validateFor(variant))
    return std::move(err);
  if (config.outF32)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "an f32 output for a f16/bf16 kernel (KernelConfig::outF32) "
                                   "is a CPU feature for now: the GPU kernels store out in the "
                                   "inputs' dtype");
  // Serving calls (docs/decode.md): per-entry lengths, packed sequences and
  // paged caches are the tile IR's (each work item's lengths, views and
  // page table), which every kernel lowers (the wgmma kernel's TMA reads a
  // packed view's rows from its entry's first and a paged cache a box per
  // page; rows past an entry are cleared in shared memory).
  if (config.paged() && computation != GPUComputation::Forward)
    return fail("the backward takes keys and values as tensors, not as a paged KV cache (a "
                "cache for inference; kv_lens and packed sequences (cu_seqlens) are taken)");
  auto matrixCores = useMatrixCores(variant, config, kind, vendor);
  if (!matrixCores)
    return matrixCores.takeError();
  LoweredGPUModule out;
  out.launch.kernelName = detail::kKernelName;
  out.launch.matrixCores = *matrixCores;
  // The SIMT kernel: a row a thread, 128 per block.
  constexpr int64_t kSIMTRows = 128;
  out.context = makeGPUContext();
  bool backward = computation != GPUComputation::Forward;
  if (backward) {
    if (!*matrixCores)
      return fail("the GPU backward runs on matrix cores: NVIDIA tensor cores (mma.sync, or "
                  "wgmma on sm_90a) or AMD MFMA (f16 or bf16, head dims multiples of 16; not "
                  "the SIMT kernel)");
    auto module = gpuBackwardKernelModule(*out.context, variant, config, target, fit);
    if (!module)
      return module.takeError();
    out.module = std::move(*module);
  } else {
    out.module = gpuKernelModule(*out.context, variant, config);
  }
  GPUPipelineOptions options;
  options.matrixCores = out.launch.matrixCores;
  options.wgmma = isWgmma(kind);
  if (isWarpSpecializedWgmma(kind) && !backward) {
    // Two consumer warpgroups of 64 rows (FlashAttention-3's 128-row CTA
    // tiles), wgmmaKeysPerTile keys per tile, 2 stages (overlapped: 3 where
    // they fit, wgmmaOverlapStages); persistent workers but for wgmma-grid.
    options.warps = 8;
    options.keysPerTile = wgmmaKeysPerTile(config);
    options.overlapSoftmax = kind != GPUKernelKind::WgmmaSerial;
    options.persistent = kind != GPUKernelKind::WgmmaGrid;
  } else if (kind == GPUKernelKind::WgmmaPipelined) {
    options.warpSpecialize = false;
  }
  if (backward) { // (the backward module has the summaries only with the analysis)
    options.analyzeMask = config.analyzeMask;
    // Patches of a neighborhood mask's grid, of the kernel's tile sizes (one
    // length per call: ragged calls keep flat tiles, as on the CPU).
    if (!config.ragged())
      std::tie(options.backwardRows, options.backwardKeys) =
          backwardKernelTiles(config, target, fit);
    // The wgmma backward: dP issued beside S (attn-overlap-backward) but
    // for wgmma-serial.
    options.overlapSoftmax = kind != GPUKernelKind::WgmmaSerial;
  }
  options.simtRows = kSIMTRows;
  options.patchTiling = config.patchTiling;
  options.mfma = target.mfma;
  options.chip = target.chip;
  if (fit.oneStage)
    options.kvStages = 1;
  if (fit.producerRegisters)
    options.producerRegisters = fit.producerRegisters;
  if (fit.keysPerTile)
    options.keysPerTile = fit.keysPerTile;
  if (fit.warps)
    options.warps = fit.warps;
  options.wideStores = !fit.elementStores;
  if (fit.blockPerItem)
    options.persistent = false;
  if (fit.serialSoftmax)
    options.overlapSoftmax = false;
  if (options.wgmma && options.warpSpecialize && options.overlapSoftmax && !fit.oneStage &&
      !backward)
    options.kvStages = wgmmaOverlapStages(config, options.warps / 4 * 64, options.keysPerTile);
  if (llvm::Error err = lower(*out.module, [&](OpPassManager &pm) {
        std::string which = computation == GPUComputation::BackwardDQ ? "dq" : "dkdv";
        if (backward && vendor == GPUVendor::AMD)
          buildAMDGPUBackwardKernelPipeline(pm, options, which);
        else if (backward)
          buildNVGPUBackwardKernelPipeline(pm, options, which);
        else if (vendor == GPUVendor::AMD)
          buildAMDGPUKernelPipeline(pm, options);
        else
          buildNVGPUKernelPipeline(pm, options);
      }))
    return std::move(err);
  // --attn-pack-gqa's tile where it packed a loop: the runtime's grid is
  // then (1, Hkv, B) when group x Sq fits it.
  out.launch.packedRows = takePackedRows(*out.module);
  out.launch.splitKV = !backward; // every forward kernel takes split-KV's operands
  out.launch.splitPartKeys = out.launch.splitKV;
  out.launch.splitKVWhole = out.launch.splitKV && (*out.module)->hasAttr(kSplitKVWholeAttr);
  out.launch.persistent = (*out.module)->hasAttr(kPersistentAttr);
  bool unreadMaps = false;
  out.module->walk([&](gpu::GPUFuncOp kernel) {
    if (auto shape = kernel->getAttrOfType<attn::LaunchAttr>(attn::kLaunchAttrName)) {
      out.launch.blockRows = shape.getBlockRows();
      out.launch.threads = shape.getThreads();
      out.launch.sharedBytes = shape.getSharedBytes();
      out.launch.queryGrid.assign(shape.getGrid().begin(), shape.getGrid().end());
      out.launch.queryPatch.assign(shape.getPatch().begin(), shape.getPatch().end());
    }
    // The wgmma kernel's tensor maps: (described argument, box rows) of Q,
    // then of K and V; a backward kernel's of its two operand tiles (64
    // rows), then of its slots' two tensors.
    if (auto maps = kernel->getAttrOfType<DenseI64ArrayAttr>("heed.tensor_maps")) {
      unreadMaps = maps.size() != (backward ? 8 : 6);
      if (!unreadMaps) {
        out.launch.tensorMapRowsQ = maps[1];
        out.launch.tensorMapRowsKV = maps[maps.size() - 1];
      }
    }
  });
  // (The runtime passes the maps it knows of: a kernel with others would
  // read parameters nobody passed.)
  if (unreadMaps)
    return fail("the wgmma kernel takes tensor maps the runtime does not pass (heed.tensor_maps "
                "of an unexpected size)");
  if (then)
    if (llvm::Error err = lower(*out.module, then))
      return std::move(err);
  return out;
}

/// What an external tool (ptxas, ld.lld) produced.
struct ToolRun {
  std::string output; ///< the output file's bytes ("" when it wrote none)
  std::string log;    ///< its stdout and stderr
};

/// Runs `tool` with `input` in a temporary file: `args(in, out)` gives its
/// arguments after the program name, `in` and `out` being temporary paths
/// (suffixes `inSuffix`, `outSuffix`). Every file is removed afterwards; a
/// nonzero exit is an error naming the tool, with its log.
llvm::Expected<ToolRun>
runTool(const std::string &tool, const char *name, llvm::StringRef input, const char *inSuffix,
        const char *outSuffix,
        llvm::function_ref<llvm::SmallVector<std::string>(llvm::StringRef, llvm::StringRef)>
            args) {
  llvm::SmallString<128> inPath, outPath, logPath;
  if (auto ec = llvm::sys::fs::createTemporaryFile("heed-tool", inSuffix, inPath))
    return fail("cannot create a temporary file: " + ec.message());
  llvm::sys::fs::createTemporaryFile("heed-tool", outSuffix, outPath);
  llvm::sys::fs::createTemporaryFile("heed-tool", "log", logPath);
  auto cleanup = llvm::make_scope_exit([&] {
    for (auto *p : {&inPath, &outPath, &logPath})
      llvm::sys::fs::remove(*p);
  });
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(inPath, ec, llvm::sys::fs::OF_None);
    os << input;
    os.flush();
    if (ec || os.has_error()) {
      os.clear_error();
      return fail(fmt::format("cannot write the input for {}", name));
    }
  }
  llvm::SmallVector<std::string> argv = args(inPath, outPath);
  llvm::SmallVector<llvm::StringRef> refs = {tool};
  refs.append(argv.begin(), argv.end());
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(logPath),
                                                llvm::StringRef(logPath)};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(tool, refs, std::nullopt, redirects, 0, 0, &message);
  ToolRun run;
  if (auto buf = llvm::MemoryBuffer::getFile(logPath))
    run.log = (*buf)->getBuffer().str();
  if (rc != 0)
    return fail(fmt::format("{} ({}) failed ({}): {}{}", name, tool, rc, message, run.log));
  if (auto buf = llvm::MemoryBuffer::getFile(outPath))
    run.output = (*buf)->getBuffer().str();
  return run;
}

/// The value of `key:` in the AMDGPU metadata of an assembly listing.
std::string metadataValue(llvm::StringRef isa, llvm::StringRef key) {
  size_t at = isa.find(("." + key + ":").str());
  if (at == llvm::StringRef::npos)
    return "?";
  llvm::StringRef rest = isa.drop_front(at + key.size() + 2).ltrim(" ");
  return rest.take_until([](char c) { return c == '\n' || c == ' '; }).str();
}

} // namespace

std::string ptxasOptions() {
  const char *o = std::getenv("HEED_PTXAS_OPTIONS");
  return o && *o ? o : "-O3";
}

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
  // "none": PTX only, which the driver compiles at load.
  if (const char *p = std::getenv("HEED_PTXAS"); p && *p)
    return std::string(p) == "none" ? "" : p;
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
                                          const KernelConfig &config, const GPUTarget &target) {
  auto lowered = lowerForGPU(variant, config, target);
  if (!lowered)
    return lowered.takeError();
  std::string text;
  llvm::raw_string_ostream os(text);
  lowered->module->print(os);
  return text;
}

namespace {

/// The bytes ptxas' report says the kernel spills (stores and loads).
int64_t spillBytes(const std::string &resources) {
  int64_t bytes = 0;
  for (llvm::StringRef line : llvm::split(resources, '\n'))
    for (llvm::StringRef what : {" bytes spill stores", " bytes spill loads"}) {
      size_t at = line.find(what);
      if (at == llvm::StringRef::npos)
        continue;
      llvm::StringRef count = line.substr(0, at).rtrim();
      count = count.substr(count.find_last_of(" ,") + 1);
      int64_t n = 0;
      if (!count.getAsInteger(10, n))
        bytes += n;
    }
  return bytes;
}

/// Whether ptxas' report says the kernel spills.
bool spills(const std::string &resources) { return spillBytes(resources) > 0; }

/// Whether ptxas reports that it serialized the kernel's wgmma (C7518,
/// "Potential Performance Loss: wgmma.mma_async instructions are
/// serialized ..."): the products no longer overlap anything.
bool serializesWgmma(const std::string &resources) {
  return resources.find("wgmma.mma_async instructions are serialized") != std::string::npos;
}

llvm::Expected<GPUKernelBinary> compileCUDAOnce(const spec::Variant &variant,
                                                const KernelConfig &config,
                                                const CUDATarget &device, GPUKernelKind kind,
                                                GPUComputation computation,
                                                KernelFit fit) {
  // wgmma is an sm_90a instruction: an sm_90 device runs the sm_90a code
  // (what heed-run and the C API name a compute capability 9.0 device).
  CUDATarget target = device;
  if (isWgmma(kind) && target.chip == "sm_90")
    target.chip = "sm_90a";
  CompileTimes times;
  bool timed = timingRequested();
  auto start = std::chrono::steady_clock::now();
  if (timed)
    timedCompile = &times;
  auto stopTiming = llvm::make_scope_exit([] { timedCompile = nullptr; });
  if (isWgmma(kind) && target.chip != "sm_90a")
    return fail("the wgmma kernel needs --target=sm_90a (or sm_90: wgmma is an sm_90a "
                "feature), not " +
                target.chip);
  GPUTarget gpu{GPUVendor::NVIDIA, target.chip, kind};
  gpu.computation = computation;
  auto lowered = lowerForGPU(
      variant, config, gpu,
      [&](OpPassManager &pm) { buildNVVMBinaryPipeline(pm, target.chip, isWgmma(kind)); }, fit);
  if (!lowered)
    return lowered.takeError();
  OwningOpRef<ModuleOp> &module = lowered->module;

  GPUKernelBinary out;
  out.launch = lowered->launch;
  out.launch.format = "ptx";
  module->walk([&](gpu::BinaryOp binary) {
    for (Attribute a : binary.getObjects())
      if (auto object = dyn_cast<gpu::ObjectAttr>(a))
        out.ptx = object.getObject().getValue().str();
  });
  if (out.ptx.empty())
    return fail("the NVVM pipeline produced no PTX");

  // HEED_TIMING: one line per compile on stderr.
  auto report = [&](double ptxasSeconds) {
    if (!timed)
      return;
    double total = secondsSince(start);
    llvm::errs() << fmt::format(
        "heed timing: {} {} kernel: {:.0f} ms = MLIR passes {:.0f} + LLVM IR and NVPTX "
        "(gpu-module-to-binary) {:.0f} + ptxas {} + the rest (kernel IR, I/O) {:.0f}\n",
        target.chip, out.launch.matrixCores ? "tensor-core" : "SIMT", total * 1e3,
        times.passes * 1e3, times.codegen * 1e3,
        ptxasSeconds < 0 ? std::string("skipped") : fmt::format("{:.0f}", ptxasSeconds * 1e3),
        (total - times.passes - times.codegen - std::max(ptxasSeconds, 0.0)) * 1e3);
  };
  std::string ptxas = findPtxas();
  if (ptxas.empty()) {
    report(-1);
    return out; // PTX only: the driver JIT-compiles it
  }
  auto ptxasStart = std::chrono::steady_clock::now();
  auto run = runTool(ptxas, "ptxas", out.ptx, "ptx", "cubin",
                     [&](llvm::StringRef in, llvm::StringRef cubin) {
                       llvm::SmallVector<std::string> args{"-arch=" + target.chip, "-v"};
                       for (llvm::StringRef o : llvm::split(ptxasOptions(), ' '))
                         if (!o.empty())
                           args.push_back(o.str());
                       args.append({"-o", cubin.str(), in.str()});
                       return args;
                     });
  if (!run)
    return run.takeError();
  report(secondsSince(ptxasStart));
  if (run->output.empty())
    return fail("cannot read the cubin ptxas wrote");
  out.cubin = std::move(run->output);
  out.launch.format = "cubin";
  out.resources = std::move(run->log);
  return out;
}

} // namespace

/// How many register fits fitWarpSpecialized compiles at once: the cores
/// (at most 8), or HEED_FIT_THREADS (1: one after the other).
static size_t fitThreads() {
  if (const char *e = std::getenv("HEED_FIT_THREADS"); e && *e) {
    long n = std::strtol(e, nullptr, 10);
    if (n >= 1)
      return size_t(std::min(n, 64L));
  }
  return std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
}

/// The warp-specialized wgmma kernel where `first` (the defaults) spills:
/// other splits of the registers between producer and consumers, then half
/// the keys per tile; the first that does not spill, else the one that
/// spills least. The fit is appended to the ptxas report (`resources`).
llvm::Expected<GPUKernelBinary> fitWarpSpecialized(const spec::Variant &variant,
                                                   const KernelConfig &config,
                                                   const CUDATarget &device,
                                                   GPUKernelKind kind,
                                                   llvm::Expected<GPUKernelBinary> first) {
  // (A kernel whose wgmma ptxas serialized is taken only where every fit
  // spills or is serialized too.)
  auto cost = [](const GPUKernelBinary &binary) {
    return std::pair<int64_t, bool>(spillBytes(binary.resources),
                                    serializesWgmma(binary.resources));
  };
  // HEED_FIT_TRACE=1: each kernel tried and what ptxas made of it, on
  // stderr (docs/passes.md).
  bool trace = std::getenv("HEED_FIT_TRACE") != nullptr;
  if (first && trace)
    llvm::errs() << "heed: fit trace: the default kernel spills " << cost(*first).first
                 << " bytes" << (cost(*first).second ? ", its wgmma serialized" : "") << "\n";
  if (!first || cost(*first) == std::pair<int64_t, bool>(0, false))
    return first;
  GPUKernelBinary best = std::move(*first);
  std::pair<int64_t, bool> least = cost(best);
  int64_t keys = wgmmaKeysPerTile(config);
  // Every fit writes O in element stores: the 16-byte epilogue's quad
  // transposes hold a few registers more while O is live, which costs less
  // to give up (once per work item) than smaller key tiles (every
  // iteration). First the default tiles so, then more registers for the
  // consumers (their score tile at these keys), then half the keys with
  // each producer budget (a heavy classifier needs more in the producer
  // whatever the tile), then a quarter (a heavy mask per score: 2-D
  // neighborhoods). Last, one consumer warpgroup instead of two (no
  // ping-pong): each thread may then take twice the registers (D = 256 with
  // a heavy mask: O alone is 128 f32 a thread).
  //
  //
  // Each tile size is tried with the softmax overlapping the previous
  // tile's P V (attn-overlap-softmax: its probabilities carried across
  // the loop, a score tile's registers more) and then without, so that
  // the overlap never costs a smaller tile; without it, the default tiles
  // are tried with the 16-byte stores first (the kernel as it was before
  // the overlap).
  auto fitOf = [](int64_t k, int64_t producer, int64_t warps, bool serial) {
    KernelFit fit;
    fit.keysPerTile = k;
    fit.producerRegisters = producer;
    fit.warps = warps;
    fit.elementStores = true;
    fit.serialSoftmax = serial;
    return fit;
  };
  std::vector<KernelFit> fits;
  auto both = [&](int64_t k, std::initializer_list<int64_t> producers, int64_t warps) {
    for (bool serial : {false, true}) {
      if (!serial && kind == GPUKernelKind::WgmmaSerial)
        continue;
      for (int64_t producer : producers)
        fits.push_back(fitOf(k, producer, warps, serial));
    }
  };
  both(keys, {kHopperProducerRegisters, 24}, 0);
  // Without the overlap, the defaults first: O in 16-byte stores (the
  // wgmma-serial kernel compiled those already).
  if (kind != GPUKernelKind::WgmmaSerial) {
    KernelFit serialDefaults = fitOf(keys, kHopperProducerRegisters, 0, true);
    serialDefaults.elementStores = false;
    fits.insert(fits.begin() + 2, serialDefaults);
  }
  both(keys / 2, {kHopperProducerRegisters, 24, 88, 120}, 0);
  if (keys / 4 >= 16)
    both(keys / 4, {kHopperProducerRegisters}, 0);
  for (int64_t k : {keys, keys / 2, keys / 4})
    if (k >= 16)
      both(k, {kHopperProducerRegisters}, 4);
  // Persistent workers only in the kernel with the default options (the
  // compile before the fits): their item loop keeps more registers live
  // (causal bf16 D = 128 overlapped spills 116 bytes with it, none
  // without), and the overlap, the tile size and the 16-byte stores come
  // first; the fits are the kernels as they were, a block per work item.
  for (KernelFit &fit : fits)
    fit.blockPerItem = true;
  // First the default kernel itself with a block per work item.
  if (kind != GPUKernelKind::WgmmaGrid) {
    KernelFit defaults = fitOf(keys, kHopperProducerRegisters, 0,
                               kind == GPUKernelKind::WgmmaSerial);
    defaults.elementStores = false;
    defaults.blockPerItem = true;
    fits.insert(fits.begin(), defaults);
  }
  auto tryFit = [&](const KernelFit &fit, llvm::Expected<GPUKernelBinary> binary) {
    if (!binary) { // (this fit does not lower: keep the best so far)
      llvm::consumeError(binary.takeError());
      return false;
    }
    std::pair<int64_t, bool> c = cost(*binary);
    binary->resources +=
        fmt::format("heed: warp-specialized fit: {}, {} keys per tile{}{}{}\n",
                    fit.warps == 4 ? std::string("one consumer warpgroup (no register split)")
                                   : fmt::format("producer {} registers", fit.producerRegisters),
                    fit.keysPerTile, fit.elementStores ? ", O in element stores" : "",
                    fit.serialSoftmax ? ", softmax not overlapped" : "",
                    binary->launch.persistent ? ", persistent workers"
                                              : ", a block per work item");
    bool fits = c == std::pair<int64_t, bool>(0, false);
    if (trace)
      llvm::errs() << "heed: fit trace: spills " << c.first << " bytes"
                   << (c.second ? ", wgmma serialized" : "") << ": "
                   << llvm::StringRef(binary->resources)
                          .substr(binary->resources.rfind("heed: warp-specialized fit: ") + 28);
    if (c < least) { // (fewer bytes spilled, then not serialized)
      least = c;
      best = std::move(*binary);
    }
    return fits;
  };
  // The fits in list order, a window of them compiled at once where the
  // machine has the cores (each compile is its own context and ptxas run):
  // the result is the serial search's (the first that fits, else the least
  // spilling, the earliest of equals); only the wall time differs (a 20-fit
  // search of ~1.5 s each takes two windows of 8 cores).
  size_t window = fitThreads();
  for (size_t at = 0; at < fits.size(); at += window) {
    size_t n = std::min(window, fits.size() - at);
    std::vector<std::optional<llvm::Expected<GPUKernelBinary>>> got(n);
    auto compileFit = [&](size_t i) {
      got[i].emplace(
          compileCUDAOnce(variant, config, device, kind, GPUComputation::Forward, fits[at + i]));
    };
    std::vector<std::thread> threads;
    for (size_t i = 1; i < n; ++i)
      threads.emplace_back(compileFit, i);
    compileFit(0);
    for (std::thread &t : threads)
      t.join();
    bool found = false;
    for (size_t i = 0; i < n; ++i) {
      if (found) { // (compiled ahead of the one taken)
        if (!*got[i])
          llvm::consumeError(got[i]->takeError());
        continue;
      }
      found = tryFit(fits[at + i], std::move(*got[i]));
    }
    if (found)
      return best;
  }
  return best;
}

/// HEED_CUDA_LOAD_PTX=1: kernels are loaded from their PTX (the driver
/// compiles it) even where ptxas made a cubin; ptxas still runs, for its
/// report and the fits. For the stand-in driver's PTX emulator, which runs
/// PTX only (docs/testing.md): it then runs the kernels a GPU would, fits
/// included.
/// (Only the entries the runtime loads: compileGPUEntry. AOT exports and
/// heed-compile keep their cubins.)
static bool loadPTX() {
  static const bool load = [] {
    const char *e = std::getenv("HEED_CUDA_LOAD_PTX");
    return e && std::string(e) == "1";
  }(); // (read once: the cache key asks on every launch)
  return load;
}

llvm::Expected<GPUKernelBinary> compileCUDA(const spec::Variant &variant,
                                            const KernelConfig &config,
                                            const CUDATarget &device, GPUKernelKind kind,
                                            GPUComputation computation) {
  auto binary = compileCUDAOnce(variant, config, device, kind, computation, {});
  if (isWarpSpecializedWgmma(kind) && computation == GPUComputation::Forward)
    return fitWarpSpecialized(variant, config, device, kind, std::move(binary));
  if (!binary || !spills(binary->resources))
    return binary;
  GPUTarget gpu{GPUVendor::NVIDIA, device.chip, kind};
  gpu.computation = computation;
  KernelFit fit;
  // The fits: the try that spills least is kept (ptxas' report says so, and
  // which fit; HEED_FIT_TRACE=1 prints each).
  bool trace = std::getenv("HEED_FIT_TRACE") != nullptr;
  GPUKernelBinary best = std::move(*binary); // (checked above)
  if (trace)
    llvm::errs() << "heed: fit trace: the default kernel spills " << spillBytes(best.resources)
                 << " bytes\n";
  auto tryFit = [&](KernelFit next, const char *note) {
    auto other = compileCUDAOnce(variant, config, device, kind, computation, next);
    if (!other) {
      llvm::consumeError(other.takeError());
      return;
    }
    if (trace)
      llvm::errs() << "heed: fit trace: " << note << ": spills " << spillBytes(other->resources)
                   << " bytes\n";
    if (spillBytes(other->resources) < spillBytes(best.resources)) {
      other->resources += std::string("heed: fit: ") + note + "\n";
      best = std::move(*other);
    }
  };
  if (computation == GPUComputation::Forward) {
    // Without the 16-byte epilogue (its quad transposes hold a few more
    // registers while O is live).
    if (best.launch.matrixCores) {
      fit.elementStores = true;
      tryFit(fit, "O in element stores");
    }
    return std::move(best);
  }
  bool dq = computation == GPUComputation::BackwardDQ;
  if (dq) {
    // The dQ kernel adds the buffers' gradients (fixed point: a few dozen
    // instructions per element): where that spills at 64 keys per step,
    // 32 (gpuBackwardTiles' narrow); on Hopper then one staging slot.
    if (gpuBackwardTiles(config, gpu, true).second >= gpuBackwardTiles(config, gpu, false).second)
      return std::move(best);
    fit.narrow = true;
    tryFit(fit, "the dQ kernel steps over 32 keys");
    if (isWgmma(kind) && spills(best.resources)) {
      fit.oneStage = true;
      tryFit(fit, "the dQ kernel steps over 32 keys, one staging slot");
    }
  } else {
    // The dK/dV kernel of a variant whose mask or score takes many registers
    // (2-D neighborhoods, per-batch documents) may spill: then 16-row steps,
    // then one staging slot (BackwardFit).
    // (On Hopper, 32 query rows first where the default is 64.)
    if (isWgmma(kind) && gpuBackwardTiles(config, gpu, false).first > 32) {
      KernelFit half = fit;
      half.queryRows = 32;
      tryFit(half, "the dK/dV kernel steps over 32 query rows");
    }
    if (spills(best.resources) && gpuBackwardTiles(config, gpu, false).first > 16) {
      fit.narrow = true;
      tryFit(fit, "the dK/dV kernel steps over 16 query rows");
    }
    if (spills(best.resources)) {
      fit.oneStage = true;
      tryFit(fit, fit.narrow ? "the dK/dV kernel steps over 16 query rows, one staging slot"
                             : "the dK/dV kernel has one staging slot");
    }
  }
  // On Hopper, last, the same without dP issued beside S
  // (attn-overlap-backward: its accumulators are live while P is computed).
  if (isWgmma(kind) && kind != GPUKernelKind::WgmmaSerial && spills(best.resources)) {
    KernelFit serial = fit;
    serial.serialSoftmax = true;
    serial.oneStage = false;
    tryFit(serial, dq ? "the dQ kernel steps over 32 keys, without the overlap"
                      : "the dK/dV kernel steps over 16 query rows, without the overlap");
    if (spills(best.resources)) {
      serial.oneStage = true;
      tryFit(serial, dq ? "the dQ kernel steps over 32 keys, one staging slot, without the "
                          "overlap"
                        : "the dK/dV kernel steps over 16 query rows, one staging slot, "
                          "without the overlap");
    }
  }
  return std::move(best);
}

llvm::Expected<GPUComputation> parseGPUComputation(const std::string &name) {
  if (name == "forward")
    return GPUComputation::Forward;
  if (name == "dq")
    return GPUComputation::BackwardDQ;
  if (name == "dkdv")
    return GPUComputation::BackwardDKDV;
  return fail("unknown GPU kernel '" + name + "' (forward, dq or dkdv)");
}

llvm::Expected<GPUKernelKind> parseGPUKernelKind(const std::string &name) {
  if (name == "auto")
    return GPUKernelKind::Auto;
  if (name == "tensor-cores" || name == "matrix-cores")
    return GPUKernelKind::TensorCores;
  if (name == "simt")
    return GPUKernelKind::SIMT;
  if (name == "wgmma")
    return GPUKernelKind::Wgmma;
  if (name == "wgmma-pipelined")
    return GPUKernelKind::WgmmaPipelined;
  if (name == "wgmma-serial")
    return GPUKernelKind::WgmmaSerial;
  if (name == "wgmma-grid")
    return GPUKernelKind::WgmmaGrid;
  return fail("unknown --gpu-kernel=" + name +
              " (expected auto, tensor-cores, simt, wgmma, wgmma-pipelined, wgmma-serial or "
              "wgmma-grid)");
}

std::string GPUTarget::entryTarget() const {
  return (vendor == GPUVendor::AMD ? "hip:" : "cuda:") + chip;
}

/// The ptxas that makes cubins, as the cache key sees it: its --version
/// output (so a new CUDA toolkit, or ptxas appearing where there was none
/// and only PTX was kept, gives new keys). Once per process.
static const std::string &ptxasIdentity() {
  static const std::string identity = [] {
    std::string ptxas = findPtxas();
    if (ptxas.empty())
      return std::string("none");
    std::string version = ptxas;
    auto run = runTool(ptxas, "ptxas", "", "txt", "txt",
                       [](llvm::StringRef, llvm::StringRef) {
                         return llvm::SmallVector<std::string>{"--version"};
                       });
    if (!run) {
      llvm::consumeError(run.takeError());
      return version;
    }
    // The line naming the release, e.g. "Cuda compilation tools, release 13.0, V13.0.48".
    for (llvm::StringRef line : llvm::split(run->log, '\n'))
      if (line.contains("release"))
        version = line.trim().str();
    return version;
  }();
  return identity;
}

std::string GPUTarget::canonical() const {
  const char *kinds[] = {"auto",         "tensor-cores", "simt",      "wgmma",
                         "wgmma-pipelined", "wgmma-serial", "wgmma-grid"};
  const char *computations[] = {"forward", "dq", "dkdv"};
  // (The backward's kernels are the same for every wgmma kind but
  // wgmma-serial, without the overlap: one entry for them.)
  GPUKernelKind keyed = computation != GPUComputation::Forward && isWgmma(kind) &&
                                kind != GPUKernelKind::WgmmaSerial
                            ? GPUKernelKind::Wgmma
                            : kind;
  std::string text = entryTarget() + " kernel=" + kinds[int(keyed)];
  if (computation != GPUComputation::Forward) // (forward keys stay what they were)
    text += std::string(" computation=") + computations[int(computation)];
  if (vendor == GPUVendor::AMD)
    text += " mfma=" + std::to_string(mfma);
  else
    text += " ptxas=" + ptxasIdentity() + " options=" + ptxasOptions() +
            (loadPTX() ? " load=ptx" : "");
  return text;
}

llvm::Expected<ArtifactEntry> compileGPUEntry(const spec::Variant &variant,
                                              const KernelConfig &config,
                                              const GPUTarget &target) {
  ArtifactEntry entry;
  entry.target = target.entryTarget();
  entry.info = describeKernel(variant, config);
  GPULaunch &launch = entry.info.gpu.emplace();
  if (target.vendor == GPUVendor::NVIDIA) {
    auto chip = CUDATarget::parse(target.chip);
    if (!chip)
      return chip.takeError();
    auto binary = compileCUDA(variant, config, *chip, target.kind, target.computation);
    if (!binary)
      return binary.takeError();
    launch = binary->launch;
    if (binary->cubin && loadPTX()) {
      binary->cubin.reset();
      launch.format = "ptx";
    }
    entry.binary = binary->cubin ? std::move(*binary->cubin) : std::move(binary->ptx);
    if (target.computation != GPUComputation::Forward) // what heed-cache lists
      entry.info.name += target.computation == GPUComputation::BackwardDQ ? ".backward.dq"
                                                                          : ".backward.dkdv";
    return entry;
  }
  auto chip = AMDGPUTarget::parse(target.chip);
  if (!chip)
    return chip.takeError();
  chip->mfma = target.mfma;
  auto binary = compileAMDGPU(variant, config, *chip, target.kind, target.computation);
  if (!binary)
    return binary.takeError();
  if (!binary->hsaco)
    return fail("no ld.lld to link the HSACO code object (install lld or set HEED_LLD)");
  launch = binary->launch;
  entry.binary = std::move(*binary->hsaco);
  if (target.computation != GPUComputation::Forward)
    entry.info.name += target.computation == GPUComputation::BackwardDQ ? ".backward.dq"
                                                                        : ".backward.dkdv";
  return entry;
}

llvm::Expected<AMDGPUTarget> AMDGPUTarget::parse(const std::string &name) {
  static const char *const known[] = {"gfx90a", "gfx942", "gfx950"};
  for (const char *chip : known)
    if (name == chip)
      return AMDGPUTarget{name};
  if (llvm::StringRef(name).starts_with("gfx"))
    return fail("AMD target '" + name +
                "' is not supported: heed's MFMA kernels need gfx90a (MI200), gfx942 (MI300) "
                "or gfx950");
  return fail("unknown AMD target '" + name + "': expected gfx90a, gfx942 or gfx950");
}

std::string findLld() {
  if (const char *p = std::getenv("HEED_LLD"); p && *p)
    return p;
  std::string bundled = std::string(HEED_LLVM_TOOLS_DIR) + "/ld.lld";
  if (llvm::sys::fs::can_execute(bundled))
    return bundled;
  if (auto p = llvm::sys::findProgramByName("ld.lld"))
    return *p;
  return "";
}

llvm::Expected<AMDGPUKernelBinary> compileAMDGPU(const spec::Variant &variant,
                                                 const KernelConfig &config,
                                                 const AMDGPUTarget &target,
                                                 GPUKernelKind kind,
                                                 GPUComputation computation) {
  if (target.mfma != 32 && target.mfma != 16)
    return fail("the MFMA shape is 32 (32x32x8) or 16 (16x16x16)");
  GPUTarget gpu{GPUVendor::AMD, target.chip, kind, target.mfma};
  gpu.computation = computation;
  auto lowered = lowerForGPU(variant, config, gpu, [&](OpPassManager &pm) {
    buildGPUToROCDLPipeline(pm, target.chip);
  });
  if (!lowered)
    return lowered.takeError();
  AMDGPUKernelBinary out;
  out.launch = lowered->launch;
  out.launch.format = "hsaco";
  lowered->module->walk([&](gpu::BinaryOp binary) {
    for (Attribute a : binary.getObjects())
      if (auto object = dyn_cast<gpu::ObjectAttr>(a))
        out.isa = object.getObject().getValue().str();
  });
  if (out.isa.empty())
    return fail("the ROCDL pipeline produced no AMDGCN assembly");
  llvm::StringRef isa = out.isa;
  out.resources = fmt::format(
      "{} on {}: {} VGPRs, {} AGPRs, {} SGPRs, {} bytes LDS, {} bytes scratch, {} VGPR "
      "spills, {} SGPR spills\n",
      out.launch.kernelName, target.chip, metadataValue(isa, "vgpr_count"),
      metadataValue(isa, "agpr_count"), metadataValue(isa, "sgpr_count"),
      metadataValue(isa, "group_segment_fixed_size"),
      metadataValue(isa, "private_segment_fixed_size"), metadataValue(isa, "vgpr_spill_count"),
      metadataValue(isa, "sgpr_spill_count"));

  // Assemble (LLVM's AMDGPU MC layer, in process) and link with lld into a
  // shared code object, as the ROCm loader expects.
  std::string diagnostic;
  auto object = ROCDL::assembleIsa(out.isa, "amdgcn-amd-amdhsa", target.chip, "", [&] {
    diagnostic = "cannot assemble the AMDGCN";
    return lowered->module->emitError();
  });
  if (failed(object))
    return fail(diagnostic);
  std::string lld = findLld();
  if (lld.empty())
    return out; // no HSACO without a linker: --emit=amdgcn still works
  auto run = runTool(lld, "ld.lld", llvm::StringRef(object->data(), object->size()), "o",
                     "hsaco", [](llvm::StringRef in, llvm::StringRef hsaco) {
                       return llvm::SmallVector<std::string>{"-shared", "-o", hsaco.str(),
                                                             in.str()};
                     });
  if (!run)
    return run.takeError();
  if (run->output.empty())
    return fail("cannot read the code object lld wrote");
  out.hsaco = std::move(run->output);
  return out;
}

} // namespace heed
