// heed's pass pipelines and the dialect/pass registration every tool shares.
#include "heed/Pipelines/Pipelines.h"

#include "dialects/attn/AttnOps.h"
#include "heed/Conversion/Passes.h"
#include "heed/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Conversion/GPUToROCDL/GPUToROCDLPass.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

#include <mutex>
#include <string>
#include <vector>

using namespace mlir;

namespace heed {

void registerAllDialects(DialectRegistry &registry) {
  registry.insert<attn::AttnDialect, arith::ArithDialect, math::MathDialect,
                  memref::MemRefDialect, func::FuncDialect, scf::SCFDialect,
                  vector::VectorDialect, cf::ControlFlowDialect,
                  index::IndexDialect, ub::UBDialect, LLVM::LLVMDialect>();
}

namespace {
/// The canonicalizer every pipeline runs, without MLIR 22's pattern that
/// merges duplicate inputs of region-branch successors (scf.if/for results
/// and iter_args that always carry the same value). heed's kernels carry
/// hundreds of scf.if (each bounds-checked read is one), and the pattern
/// rebuilds a map of every successor's inputs per op and visit: without it,
/// a Hopper kernel's MLIR passes take a third to a half of the time, for the
/// same PTX (alibi, causal, document, block_sparse at D = 128; the 2-D
/// neighborhood's predicates come out in another order; docs/benchmarks.md).
/// Its two siblings that drop dead inputs stay: without them the AMD SIMT
/// kernel kept dead loop-carried values and spilled 516 bytes to scratch.
std::unique_ptr<Pass> createHeedCanonicalizer() {
  static const std::vector<std::string> disabled = {
      "(anonymous namespace)::RemoveDuplicateSuccessorInputUses"};
  return createCanonicalizerPass(GreedyRewriteConfig(), disabled);
}

/// Canonicalize then CSE: the clean-up after each stage of a pipeline.
void addCleanup(OpPassManager &pm) {
  pm.addPass(createHeedCanonicalizer());
  pm.addPass(createCSEPass());
}

/// The tile schedule every forward kernel starts from: choose-tiling, the
/// mask analysis where asked, attn-to-tile, and skipping the tiles the mask
/// empties.
void addTileSchedule(OpPassManager &pm, int64_t blockQ, int64_t blockKV, bool patches,
                     bool analyzeMask) {
  addChooseTiling(pm, blockQ, blockKV, patches);
  if (analyzeMask)
    pm.addNestedPass<attn::VariantOp>(createAttnAnalyzeMask());
  pm.addPass(createAttnToTile());
  if (analyzeMask)
    pm.addPass(createAttnSkipTiles());
}
} // namespace

void addChooseTiling(OpPassManager &pm, int64_t blockQ, int64_t blockKV, bool patches) {
  AttnChooseTilingOptions tiling;
  tiling.blockQ = blockQ;
  tiling.blockKV = blockKV;
  tiling.patches = patches;
  pm.addPass(createAttnChooseTiling(tiling));
}

void buildCPUTilePipeline(OpPassManager &pm, const CPUPipelineOptions &options) {
  AttnRuntimeABIOptions abi;
  abi.splitKV = true; // the CPU runtime runs the split-KV phases
  pm.addPass(createAttnRuntimeABI(abi));
  pm.addNestedPass<attn::VariantOp>(createAttnSimplify());
  addTileSchedule(pm, options.blockQ, options.blockKV, options.patches(), options.analyzeMask);
  pm.addPass(createAttnSpecializeRoutes());
  // Decode: a GQA group's query heads in one tile when Sq is small (chosen
  // at run time, so the same kernel serves prefill).
  pm.addPass(createAttnPackGQA({options.packedTileRows()}));
  // Long key ranges cut across work items when the call has few of them
  // (the runtime picks the number of parts, 1 by default).
  AttnSplitKVOptions split;
  split.oneLoop = options.splitOneLoop;
  pm.addPass(createAttnSplitKV(split));
  addCleanup(pm);
}

void buildTileToCPUPipeline(OpPassManager &pm, bool bf16Dot) {
  ConvertAttnTileToCPUOptions cpu;
  cpu.bf16Dot = bf16Dot;
  pm.addPass(createConvertAttnTileToCPU(cpu));
  addCleanup(pm);
}

void buildCPUTilingPipeline(OpPassManager &pm, const CPUPipelineOptions &options) {
  buildCPUTilePipeline(pm, options);
  buildTileToCPUPipeline(pm, options.bf16Dot);
}

void buildCPUBackwardTilingPipeline(OpPassManager &pm, const CPUPipelineOptions &options) {
  pm.addNestedPass<attn::VariantOp>(createAttnSimplify());
  // Patches of a neighborhood mask's grid, in the one loop (before the
  // analysis, which then classifies grid boxes): patches of block-q
  // queries (16 by default) and block-kv keys (64).
  if (options.patches() && options.backwardKernel == "fused")
    addChooseTiling(pm, options.blockQ ? options.blockQ : kBackwardQueryRows,
                    options.blockKV ? options.blockKV : kBackwardKeys, /*patches=*/true);
  if (options.analyzeMask)
    pm.addNestedPass<attn::VariantOp>(createAttnAnalyzeMask());
  pm.addPass(createAttnDifferentiate());
  pm.addPass(createAttnBackwardToTile({options.blockQ, options.blockKV, options.backwardKernel}));
  // No CSE before the lowering: the CPU updates accumulator tiles in place,
  // and CSE would merge two zero fills of one type (dK and dV, or dQ) into
  // one buffer.
  pm.addPass(createHeedCanonicalizer());
  buildTileToCPUPipeline(pm);
}

void buildCPUToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(createApproximateMath());
  // bf16 conversions as integer arithmetic (round to nearest even): LLVM
  // would otherwise call __truncsfbf2 on CPUs without native bf16, which
  // GCC 12's libgcc lacks, so the kernel would not load.
  arith::ArithExpandOpsPassOptions expand;
  expand.includeBf16 = true;
  pm.addPass(arith::createArithExpandOpsPass(expand));
  pm.addPass(createSCFToControlFlowPass());
  ConvertVectorToLLVMPassOptions vectorToLLVM;
  vectorToLLVM.x86Vector = true; // x86vector.avx512.dot where bf16-dot used it
  pm.addPass(createConvertVectorToLLVMPass(vectorToLLVM));
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createHeedCanonicalizer());
}

namespace {
struct CPUPipelineCLOptions : PassPipelineOptions<CPUPipelineCLOptions> {
  Option<int64_t> blockQ{*this, "block-q",
                         llvm::cl::desc("query rows per work item (0: by schedule, 32-row "
                                        "flat tiles, 16-lane patches, 16-row backward)"),
                         llvm::cl::init(0)};
  Option<int64_t> blockKV{*this, "block-kv", llvm::cl::desc("keys per KV block"),
                          llvm::cl::init(16)};
  Option<int64_t> packedRows{*this, "packed-rows",
                             llvm::cl::desc("rows of a packed GQA decode tile"),
                             llvm::cl::init(16)};
  Option<bool> analyzeMask{*this, "analyze-mask",
                           llvm::cl::desc("skip KV blocks the mask empties"),
                           llvm::cl::init(true)};
  Option<bool> patchTiling{*this, "patch-tiling",
                           llvm::cl::desc("tile 2-D/3-D token grids by patches (with the "
                                          "mask analysis)"),
                           llvm::cl::init(true)};

  Option<bool> bf16Dot{*this, "bf16-dot",
                       llvm::cl::desc("the target has AVX-512 BF16 (convert-attn-tile-to-cpu's "
                                      "bf16-dot)"),
                       llvm::cl::init(false)};

  CPUPipelineOptions get() const {
    CPUPipelineOptions o{blockQ, blockKV, analyzeMask, patchTiling, packedRows};
    o.bf16Dot = bf16Dot;
    return o;
  }
};
} // namespace

void buildGPUToROCDLPipeline(OpPassManager &pm, const std::string &chip) {
  pm.addPass(createSCFToControlFlowPass());
  GpuROCDLAttachTargetOptions target;
  target.chip = chip;
  pm.addPass(createGpuROCDLAttachTarget(target));
  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  // The AMDGPU backend has no tanh (no libcall without the device library):
  // expand it into exponentials.
  math::MathExpandOpsPassOptions expand;
  expand.opMnemonics = {"tanh"};
  kernels.addPass(math::createMathExpandOpsPass(expand));
  ConvertGpuOpsToROCDLOpsOptions rocdl;
  rocdl.chipset = chip;
  rocdl.runtime = gpu::amd::Runtime::HIP;
  kernels.addPass(createConvertGpuOpsToROCDLOps(rocdl));
  addCleanup(kernels);
  kernels.addPass(createReconcileUnrealizedCastsPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

namespace {
/// Split-KV on a GPU kernel (docs/decode.md, "Split-KV on the GPU"): its
/// three phases in one key loop, after the tile schedule and before the
/// loop is pipelined.
void addGPUSplitKV(OpPassManager &pm) {
  AttnSplitKVOptions split;
  split.oneLoop = true;
  pm.addPass(createAttnSplitKV(split));
}

/// The SIMT kernel's schedule after attn-simplify (NVIDIA and AMD alike): a
/// block of `simtRows` threads owns a query tile, a thread a row; keys one
/// at a time (a tile of one key keeps the kernel's registers where the
/// per-key kernel had them; see docs/passes.md).
void buildSIMTKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options) {
  constexpr int64_t kSIMTKeys = 1;
  addTileSchedule(pm, options.simtRows, kSIMTKeys, /*patches=*/false, /*analyzeMask=*/false);
  addGPUSplitKV(pm);
  addCleanup(pm);
  pm.addPass(createConvertAttnTileToSIMT());
  addCleanup(pm);
}

/// The matrix-core kernels' schedule after attn-simplify (NVIDIA and AMD
/// alike): flat tiles of `blockQ` x `blockKV` (0: by head dim), the mask
/// analysis and tile skipping where asked, `stages` K/V tiles in flight, FULL
/// tiles specialized.
void buildMatrixCoreSchedule(OpPassManager &pm, const GPUPipelineOptions &options,
                             int64_t blockQ, int64_t blockKV, int64_t stages, bool patches) {
  addTileSchedule(pm, blockQ, blockKV, patches, options.analyzeMask);
  // Decode: a GQA group's query heads in one block's tile when group x Sq
  // fits it (chosen at run time in one loop; the runtime's grid follows).
  // Not the wgmma kernel: its Q tensor map reads one head's rows.
  if (!options.wgmma) {
    AttnPackGQAOptions pack;
    pack.rows = blockQ;
    pack.oneLoop = true;
    pm.addPass(createAttnPackGQA(pack));
  }
  addGPUSplitKV(pm);
  if (options.wgmma && options.warpSpecialize) {
    AttnWarpSpecializeOptions specialize;
    specialize.stages = stages;
    int64_t consumers = std::max<int64_t>(blockQ / 64, 1);
    std::tie(specialize.producerRegisters, specialize.consumerRegisters) =
        hopperRegisterBudget(consumers, options.producerRegisters);
    // (With one slot a turn would wait, holding the turn, for a fill that
    // needs the other warpgroup's release after its turn: a deadlock.)
    specialize.pingpong = options.pingpong && consumers > 1 && stages > 1;
    pm.addPass(createAttnWarpSpecialize(specialize));
    if (options.persistent) {
      // FlashAttention-3's section of K/V meant to stay in L2 (32 MiB of
      // the H100's 50 MB).
      AttnPersistentWorkersOptions persistent;
      persistent.l2Bytes = kPersistentL2Bytes;
      pm.addPass(createAttnPersistentWorkers(persistent));
    }
    if (options.overlapSoftmax)
      pm.addPass(createAttnOverlapSoftmax());
  } else {
    AttnPipelineKVOptions pipeline;
    pipeline.stages = stages;
    pm.addPass(createAttnPipelineKV(pipeline));
  }
  if (options.analyzeMask)
    pm.addPass(createAttnSpecializeFullTiles());
  addCleanup(pm);
}

/// attn -> a GPU kernel (NVIDIA and AMD alike): the runtime ABI and
/// attn-simplify, then the SIMT kernel, or the matrix-core schedule and the
/// target's conversion that `addConversion` adds.
void buildGPUKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options,
                            int64_t blockQ, int64_t blockKV, int64_t stages, bool patches,
                            llvm::function_ref<void(OpPassManager &)> addConversion) {
  AttnRuntimeABIOptions abi;
  abi.splitKV = true; // the GPU runtime runs split-KV's phases too
  pm.addPass(createAttnRuntimeABI(abi));
  pm.addNestedPass<attn::VariantOp>(createAttnSimplify());
  if (!options.matrixCores) {
    buildSIMTKernelPipeline(pm, options);
    return;
  }
  buildMatrixCoreSchedule(pm, options, blockQ, blockKV, stages, patches);
  addConversion(pm);
  addCleanup(pm);
}
} // namespace

/// Whether the NVIDIA schedules tile token grids by patches: mma.sync only
/// (cp.async copies a row at a time; the wgmma kernel's TMA boxes are runs
/// of tokens), and only with the mask analysis (without it patches only add
/// lanes).
static bool nvgpuPatches(const GPUPipelineOptions &options) {
  return options.patchTiling && options.analyzeMask && !options.wgmma;
}

void buildNVGPUKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options) {
  // Query tiles of 16 rows per warp (wgmma: 64 per warpgroup); keys per
  // tile by head dim unless set.
  buildGPUKernelPipeline(pm, options, /*blockQ=*/16 * options.warps, options.keysPerTile,
                         options.kvStages, nvgpuPatches(options), [&](OpPassManager &kernel) {
                           if (options.wgmma)
                             kernel.addPass(createConvertAttnTileToHopper({options.wideStores}));
                           else
                             kernel.addPass(createConvertAttnTileToNVGPU({options.wideStores}));
                         });
}

namespace {
/// --convert-attn-tile-to-amdgpu's options for the chip: the MFMA shape and
/// the LDS a workgroup may take (gfx950: 160 KiB, earlier chips 64 KiB).
ConvertAttnTileToAMDGPUOptions amdOptions(const GPUPipelineOptions &options) {
  ConvertAttnTileToAMDGPUOptions amd;
  amd.mfma = options.mfma;
  amd.ldsBytes = options.chip == "gfx950" ? 160 * 1024 : 64 * 1024;
  return amd;
}

/// The GPU backward's schedule (NVIDIA and AMD alike), then the target's
/// conversion that `addConversion` adds.
void buildGPUBackwardKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options,
                                    const std::string &kernel, int64_t stages, bool patches,
                                    llvm::function_ref<void(OpPassManager &)> addConversion) {
  pm.addNestedPass<attn::VariantOp>(createAttnSimplify());
  // Patches of a neighborhood mask's grid (before the analysis, which then
  // classifies grid boxes), of the kernel's own tile sizes.
  if (patches && options.backwardRows > 0 && options.backwardKeys > 0)
    addChooseTiling(pm, options.backwardRows, options.backwardKeys, /*patches=*/true);
  if (options.analyzeMask)
    pm.addNestedPass<attn::VariantOp>(createAttnAnalyzeMask());
  pm.addPass(createAttnDifferentiate());
  AttnBackwardToTileOptions tile;
  tile.kernel = kernel;
  pm.addPass(createAttnBackwardToTile(tile));
  AttnPipelineKVOptions pipeline;
  pipeline.stages = stages;
  pm.addPass(createAttnPipelineKV(pipeline));
  addCleanup(pm);
  addConversion(pm);
  addCleanup(pm);
}
} // namespace

void buildNVGPUBackwardKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options,
                                      const std::string &kernel) {
  // mma.sync (cp.async staging), or on Hopper wgmma (TMA staging onto
  // mbarriers, SS wgmma for S and dP, RS wgmma for the accumulators):
  // docs/backward.md, "On Hopper (wgmma)".
  buildGPUBackwardKernelPipeline(pm, options, kernel, options.kvStages, nvgpuPatches(options),
                                 [&](OpPassManager &pm) {
    if (options.wgmma) {
      if (options.overlapSoftmax)
        pm.addPass(createAttnOverlapBackward());
      pm.addPass(createConvertAttnTileToHopper({options.wideStores}));
    } else {
      pm.addPass(createConvertAttnTileToNVGPU());
    }
  });
}

void buildAMDGPUBackwardKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options,
                                       const std::string &kernel) {
  // One synchronous LDS slot, as the forward's.
  buildGPUBackwardKernelPipeline(pm, options, kernel, /*stages=*/1, /*patches=*/false,
                                 [&](OpPassManager &pm) {
    pm.addPass(createConvertAttnTileToAMDGPU(amdOptions(options)));
  });
}

void buildNVVMBinaryPipeline(OpPassManager &pm, const std::string &chip, bool tensorMaps) {
  gpu::GPUToNVVMPipelineOptions nvvm;
  nvvm.cubinChip = chip;
  nvvm.cubinFeatures = "+ptx80";
  nvvm.cubinFormat = "isa"; // PTX text; ptxas makes the cubin
  pm.addPass(createHeedExternDynamicShared()); // .extern .shared, not a 1-byte global
  if (!tensorMaps) {
    gpu::buildLowerToNVVMPassPipeline(pm, nvvm);
    return;
  }
  // gpu-lower-to-nvvm-pipeline's passes (LLVM 22), with the tensor maps made
  // byval grid constants once the kernel is an llvm.func: upstream builds the
  // pipeline in one piece, and convert-gpu-to-nvvm drops argument attributes.
  pm.addPass(createConvertNVGPUToNVVMPass());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createConvertVectorToSCFPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertNVVMToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  GpuNVVMAttachTargetOptions target;
  target.triple = nvvm.cubinTriple;
  target.chip = chip;
  target.features = nvvm.cubinFeatures;
  target.optLevel = nvvm.optLevel;
  pm.addPass(createGpuNVVMAttachTarget(target));
  pm.addPass(createLowerAffinePass());
  pm.addPass(createArithToLLVMConversionPass());
  ConvertIndexToLLVMPassOptions index;
  index.indexBitwidth = nvvm.indexBitWidth;
  pm.addPass(createConvertIndexToLLVMPass(index));
  addCleanup(pm);
  pm.addNestedPass<gpu::GPUModuleOp>(createStripDebugInfoPass());
  ConvertGpuOpsToNVVMOpsOptions kernel;
  kernel.useBarePtrCallConv = nvvm.kernelUseBarePtrCallConv;
  kernel.indexBitwidth = nvvm.indexBitWidth;
  pm.addNestedPass<gpu::GPUModuleOp>(createConvertGpuOpsToNVVMOps(kernel));
  pm.addPass(createHeedTensorMapParams());
  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  addCleanup(kernels);
  kernels.addPass(createReconcileUnrealizedCastsPass());
  GpuToLLVMConversionPassOptions host;
  host.hostBarePtrCallConv = nvvm.hostUseBarePtrCallConv;
  host.kernelBarePtrCallConv = nvvm.kernelUseBarePtrCallConv;
  pm.addPass(createGpuToLLVMConversionPass(host));
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = nvvm.cubinFormat;
  pm.addPass(createGpuModuleToBinaryPass(binary));
  pm.addPass(createConvertMathToLLVMPass());
  addCleanup(pm);
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void buildAMDGPUKernelPipeline(OpPassManager &pm, const GPUPipelineOptions &options) {
  // Query tiles of 4 waves of `mfma` rows; keys per tile by head dim; one
  // synchronous LDS slot.
  buildGPUKernelPipeline(pm, options, /*blockQ=*/4 * options.mfma, /*blockKV=*/0,
                         /*stages=*/1, /*patches=*/false, [&](OpPassManager &kernel) {
                           kernel.addPass(createConvertAttnTileToAMDGPU(amdOptions(options)));
                         });
}

namespace {
/// The command-line options of heed-nvgpu-pipeline and heed-amdgpu-pipeline.
struct GPUPipelineCLOptions : PassPipelineOptions<GPUPipelineCLOptions> {
  Option<std::string> chip{*this, "chip", llvm::cl::desc("sm_80, sm_90, ... or gfx90a, gfx942, ...")};
  Option<std::string> kernel{*this, "kernel",
                             llvm::cl::desc("matrix-cores (tensor cores / MFMA), simt, or "
                                            "wgmma (NVIDIA sm_90a: wgmma, TMA, mbarriers)"),
                             llvm::cl::init("matrix-cores")};
  Option<bool> analyzeMask{*this, "analyze-mask",
                           llvm::cl::desc("skip KV tiles the mask empties"),
                           llvm::cl::init(true)};
  Option<int64_t> keysPerTile{*this, "keys-per-tile",
                              llvm::cl::desc("NVIDIA: keys per KV tile, 32 or 64 (0: by head dim)"),
                              llvm::cl::init(0)};
  Option<int64_t> warps{*this, "warps", llvm::cl::desc("NVIDIA: warps per block (1, 2, 4, 8)"),
                        llvm::cl::init(4)};
  Option<int64_t> kvStages{*this, "kv-stages",
                           llvm::cl::desc("NVIDIA: K/V tiles in flight, 1..4 (attn-pipeline-kv)"),
                           llvm::cl::init(2)};
  Option<bool> warpSpecialize{*this, "warp-specialize",
                              llvm::cl::desc("wgmma: a producer warpgroup stages K/V "
                                             "(attn-warp-specialize)"),
                              llvm::cl::init(true)};
  Option<bool> pingpong{*this, "pingpong",
                        llvm::cl::desc("wgmma, warp-specialized: the consumer warpgroups take "
                                       "turns at the matrix units"),
                        llvm::cl::init(true)};
  Option<bool> overlapSoftmax{
      *this, "overlap-softmax",
      llvm::cl::desc("wgmma, warp-specialized: each tile's softmax beside the previous "
                     "tile's P V (attn-overlap-softmax)"),
      llvm::cl::init(true)};
  Option<bool> persistent{*this, "persistent",
                          llvm::cl::desc("wgmma, warp-specialized: persistent workers walking the "
                                         "items longest first (attn-persistent-workers)"),
                          llvm::cl::init(true)};
  Option<int64_t> producerRegisters{
      *this, "producer-registers",
      llvm::cl::desc("wgmma, warp-specialized: the producer's registers per thread"),
      llvm::cl::init(kHopperProducerRegisters)};
  Option<bool> patchTiling{*this, "patch-tiling",
                           llvm::cl::desc("NVIDIA mma.sync: tile 2-D/3-D token grids by patches"),
                           llvm::cl::init(true)};
  Option<bool> wideStores{*this, "wide-stores",
                          llvm::cl::desc("NVIDIA matrix cores: f16/bf16 O in 16-byte stores "
                                         "where its rows are aligned"),
                          llvm::cl::init(true)};
  Option<int64_t> mfma{*this, "mfma", llvm::cl::desc("AMD: MFMA shape, 32 or 16"),
                       llvm::cl::init(32)};
  Option<int64_t> simtRows{*this, "simt-rows",
                           llvm::cl::desc("SIMT: query rows (threads) per block"),
                           llvm::cl::init(128)};

  GPUPipelineOptions get(const char *defaultChip) const {
    GPUPipelineOptions o;
    o.chip = chip.empty() ? std::string(defaultChip) : std::string(chip);
    o.matrixCores = kernel != "simt";
    o.wgmma = kernel == "wgmma";
    o.analyzeMask = analyzeMask;
    o.keysPerTile = keysPerTile;
    o.warps = warps;
    o.kvStages = kvStages;
    o.warpSpecialize = warpSpecialize;
    o.producerRegisters = producerRegisters;
    o.pingpong = pingpong;
    o.overlapSoftmax = overlapSoftmax;
    o.persistent = persistent;
    o.wideStores = wideStores;
    o.patchTiling = patchTiling;
    o.mfma = mfma;
    o.simtRows = simtRows;
    return o;
  }
};

struct ROCDLPipelineCLOptions : public PassPipelineOptions<ROCDLPipelineCLOptions> {
  Option<std::string> chip{*this, "chip", llvm::cl::desc("AMD GPU: gfx90a, gfx942, ..."),
                           llvm::cl::init("gfx942")};
};
} // namespace

void registerAllPasses() {
  static std::once_flag once;
  std::call_once(once, [] {
    registerHeedPasses();
    registerHeedConversionPasses();
    PassPipelineRegistration<CPUPipelineCLOptions>(
        "heed-cpu-tile", "attn -> the tile IR with the CPU's schedule passes",
        [](OpPassManager &pm, const CPUPipelineCLOptions &o) {
          buildCPUTilePipeline(pm, o.get());
        });
    PassPipelineRegistration<CPUPipelineCLOptions>(
        "heed-cpu-tiling", "attn -> tiled scf/vector code for the CPU",
        [](OpPassManager &pm, const CPUPipelineCLOptions &o) {
          buildCPUTilingPipeline(pm, o.get());
        });
    PassPipelineRegistration<>("heed-cpu-to-llvm",
                               "tiled scf/vector code -> LLVM dialect",
                               buildCPUToLLVMPipeline);
    PassPipelineRegistration<CPUPipelineCLOptions>(
        "heed-cpu-pipeline", "attn -> LLVM dialect for the CPU",
        [](OpPassManager &pm, const CPUPipelineCLOptions &o) {
          buildCPUTilingPipeline(pm, o.get());
          buildCPUToLLVMPipeline(pm);
        });
    PassPipelineRegistration<CPUPipelineCLOptions>(
        "heed-cpu-backward-pipeline",
        "attn.attention_backward -> LLVM dialect for the CPU (docs/backward.md)",
        [](OpPassManager &pm, const CPUPipelineCLOptions &o) {
          // (block-kv: this pipeline's option, 16 by default; the library's
          // BackwardKernel gives its 64. Patches where the mask allows.)
          buildCPUBackwardTilingPipeline(pm, o.get());
          buildCPUToLLVMPipeline(pm);
        });
    PassPipelineRegistration<GPUPipelineCLOptions>(
        "heed-nvgpu-pipeline",
        "attn -> an NVIDIA kernel (tensor cores or SIMT) -> PTX in a gpu.binary",
        [](OpPassManager &pm, const GPUPipelineCLOptions &o) {
          GPUPipelineOptions options = o.get("sm_90");
          buildNVGPUKernelPipeline(pm, options);
          buildNVVMBinaryPipeline(pm, options.chip, options.wgmma);
        });
    PassPipelineRegistration<GPUPipelineCLOptions>(
        "heed-amdgpu-pipeline",
        "attn -> an AMD kernel (MFMA or SIMT) -> AMDGCN assembly in a gpu.binary",
        [](OpPassManager &pm, const GPUPipelineCLOptions &o) {
          GPUPipelineOptions options = o.get("gfx942");
          buildAMDGPUKernelPipeline(pm, options);
          buildGPUToROCDLPipeline(pm, options.chip);
        });
    PassPipelineRegistration<ROCDLPipelineCLOptions>(
        "heed-gpu-to-rocdl", "gpu-dialect kernels -> AMDGCN assembly (gpu.binary)",
        [](OpPassManager &pm, const ROCDLPipelineCLOptions &o) {
          buildGPUToROCDLPipeline(pm, o.chip);
        });
  });
}

} // namespace heed
