// heed-compile: an .attn spec -> IR at any stage, a host object file, or
// (--aot) a package a deployed program builds against without MLIR/LLVM.
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Export.h"
#include "heed/Compiler/GPU.h"
#include "heed/Frontend/Parser.h"

#include "../common/KernelFlags.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

#include <fmt/format.h>

#include <cstdlib>

namespace cl = llvm::cl;

namespace {
cl::OptionCategory category("heed-compile options");
cl::opt<std::string> input(cl::Positional, cl::desc("<spec.attn>"), cl::Required,
                           cl::cat(category));
cl::opt<std::string> output("o", cl::desc("output file (default: stdout); with --aot a directory"),
                            cl::init("-"), cl::cat(category));
cl::opt<std::string> variantName("variant", cl::desc("variant to compile (default: the only one)"),
                                 cl::cat(category));
cl::list<std::string> params("param", cl::desc("override a param: name=value"),
                             cl::cat(category));
cl::opt<std::string> emitStage("emit",
                               cl::desc("attn | tile | tiled | llvm | llvm-ir | obj (CPU); "
                                        "gpu (with --target=sm_XX or gfxNNN) | ptx | cubin "
                                        "(NVIDIA, --target=sm_XX) | amdgcn | hsaco (AMD, "
                                        "--target=gfxNNN)"),
                               cl::init("attn"), cl::cat(category));
cl::opt<bool> lse("lse", cl::desc("also write the log-sum-exp"), cl::cat(category));

cl::opt<bool> kvLens("kv-lens",
                     cl::desc("the call passes kv_lens (i32 [B]): each batch entry's number of "
                              "keys (docs/decode.md)"),
                     cl::cat(category));
cl::opt<bool> qLens("q-lens",
                    cl::desc("the call passes q_lens (i32 [B]): each batch entry's number of "
                             "queries (docs/decode.md)"),
                    cl::cat(category));
cl::opt<bool> cuSeqlensQ(
    "cu-seqlens-q",
    cl::desc("packed queries: q, out and lse hold the batch's sequences end to end and the "
             "call passes cu_seqlens_q (i32 [B+1]; FlashAttention's varlen layout, "
             "docs/decode.md)"),
    cl::cat(category));
cl::opt<bool> cuSeqlensKV("cu-seqlens-kv",
                          cl::desc("packed keys: k and v hold the sequences end to end and the "
                                   "call passes cu_seqlens_kv (i32 [B+1])"),
                          cl::cat(category));
cl::opt<int64_t> pageSize("page-size",
                          cl::desc("k and v are a paged cache of pages of this many keys, read "
                                   "through a page table (implies --kv-lens)"),
                          cl::init(0), cl::cat(category));

cl::opt<bool> aot("aot",
                  cl::desc("export for deployment: artifact, C header and source, CMake package, "
                           "libheed_runtime.a (into the -o directory)"),
                  cl::cat(category));
cl::opt<std::string> targets("target",
                             cl::desc("with --aot: comma-separated targets: cpu (portable "
                                      "x86-64-v3 + x86-64), cpu:native, cpu:<LLVM CPU>, "
                                      "NVIDIA chips sm_80, sm_90, ... (cubin with ptxas, plus "
                                      "the newest chip's PTX), AMD chips gfx90a, gfx942, "
                                      "gfx950 (HSACO), e.g. --target=cpu,sm_80,sm_90,gfx942; "
                                      "with --emit=ptx|cubin: sm_80, sm_90, ... (default sm_90); "
                                      "with --emit=amdgcn|hsaco: gfx90a, gfx942 (default), "
                                      "gfx950"),
                             cl::init("cpu"), cl::cat(category));

cl::opt<std::string> gpuKernel("gpu-kernel",
                               cl::desc("with a GPU --emit: auto (matrix cores where they "
                                        "apply) | tensor-cores (MFMA on AMD) | simt | wgmma "
                                        "(Hopper, --target=sm_90a; not yet checked on a GPU) | "
                                        "wgmma-pipelined | wgmma-serial (wgmma without "
                                        "the softmax overlap) | wgmma-grid (wgmma with a "
                                        "block per work item, not persistent workers)"),
                               cl::init("auto"), cl::cat(category));

cl::opt<std::string> gpuComputation(
    "gpu-computation",
    cl::desc("with the GPU stages: which of the variant's kernels: forward (default), "
             "dq or dkdv (the backward's two matrix-core kernels; docs/backward.md)"),
    cl::init("forward"), cl::cat(category));

cl::opt<bool> timeCompile("time",
                          cl::desc("print where a GPU compile's time goes (MLIR passes, LLVM "
                                   "IR and NVPTX, ptxas) on stderr; the same as HEED_TIMING=1"),
                          cl::cat(category));

cl::opt<int64_t> mfma("mfma",
                      cl::desc("with an AMD target (--emit=gpu|amdgcn|hsaco): the MFMA shape, 32 (32x32x8) or 16 "
                               "(16x16x16)"),
                      cl::init(32), cl::cat(category));

#ifndef HEED_RUNTIME_ARCHIVE
#define HEED_RUNTIME_ARCHIVE ""
#endif
#ifndef HEED_C_HEADER
#define HEED_C_HEADER ""
#endif

/// $name if set, else the path this build knows.
std::string pathSetting(const char *name, const char *builtIn) {
  const char *v = std::getenv(name);
  return v && *v ? v : builtIn;
}

int error(const llvm::Twine &msg) {
  llvm::WithColor::error(llvm::errs(), "heed-compile") << msg << "\n";
  return 1;
}

/// The kernel configuration the flags ask for; an error text where one is
/// malformed.
llvm::Expected<heed::KernelConfig> configFromFlags() {
  auto config = heed::tools::kernelConfigFromFlags();
  if (!config)
    return config.takeError();
  config->lse = lse;
  config->kvLens = kvLens;
  config->qLens = qLens;
  config->cuSeqlensQ = cuSeqlensQ;
  config->cuSeqlensKV = cuSeqlensKV;
  config->pageSize = pageSize;
  return config;
}

/// Writes `text` to -o (stdout by default), in binary mode for binaries.
int writeOutput(const std::string &text, bool binary) {
  std::error_code ec;
  llvm::ToolOutputFile out(output, ec, binary ? llvm::sys::fs::OF_None : llvm::sys::fs::OF_Text);
  if (ec)
    return error("cannot write '" + output + "': " + ec.message());
  out.os() << text;
  out.keep();
  return 0;
}

/// --aot: the artifact for every --target, packaged with the runtime in -o.
int exportAot(const heed::spec::Variant &variant, const heed::KernelConfig &config) {
  if (output == "-")
    return error("--aot needs an output directory: -o DIR");
  auto parsedKind = heed::parseGPUKernelKind(gpuKernel);
  if (!parsedKind)
    return error(llvm::toString(parsedKind.takeError()));
  auto artifact = heed::compileExportArtifact(variant, config, targets, {*parsedKind, mfma});
  if (!artifact)
    return error(llvm::toString(artifact.takeError()));
  heed::AotPackageOptions options;
  options.runtimeArchive = pathSetting("HEED_RUNTIME_ARCHIVE", HEED_RUNTIME_ARCHIVE);
  options.header = pathSetting("HEED_C_HEADER", HEED_C_HEADER);
  options.source = llvm::sys::path::filename(input).str();
  if (llvm::Error err = heed::writeAotPackage(*artifact, output, options))
    return error(llvm::toString(std::move(err)));
  std::string list;
  for (const heed::ArtifactEntry &e : artifact->entries)
    list += (list.empty() ? "" : ", ") + e.target +
            (e.info.gpu ? " (" + e.info.gpu->format + ")" : "");
  llvm::outs() << "heed-compile: exported '" << variant.name << "' (" << list << ") to "
               << output << "\n";
  return 0;
}

/// --emit=amdgcn|hsaco: the AMD ISA or code object, with its resource
/// report (registers, LDS, scratch) on stderr.
llvm::Expected<std::string> emitAMD(const heed::spec::Variant &variant,
                                    const heed::KernelConfig &config, heed::GPUKernelKind kind,
                                    heed::GPUComputation computation) {
  auto target = heed::AMDGPUTarget::parse(targets == "cpu" ? "gfx942" : targets.getValue());
  if (!target)
    return target.takeError();
  target->mfma = mfma;
  auto binary = heed::compileAMDGPU(variant, config, *target, kind, computation);
  if (!binary)
    return binary.takeError();
  llvm::errs() << "heed-compile: " << binary->resources;
  if (emitStage != "hsaco")
    return binary->isa;
  if (!binary->hsaco)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--emit=hsaco needs ld.lld (apt install lld-22, or set "
                                   "HEED_LLD); --emit=amdgcn works without it");
  return *binary->hsaco;
}

/// --emit=ptx|cubin: the NVIDIA PTX or cubin, with ptxas' resource report
/// (as nvcc -Xptxas -v gives it) on stderr.
llvm::Expected<std::string> emitNVIDIA(const heed::spec::Variant &variant,
                                       const heed::KernelConfig &config,
                                       heed::GPUKernelKind kind,
                                       heed::GPUComputation computation) {
  auto target = heed::CUDATarget::parse(targets == "cpu" ? "sm_90" : targets.getValue());
  if (!target)
    return target.takeError();
  auto binary = heed::compileCUDA(variant, config, *target, kind, computation);
  if (!binary)
    return binary.takeError();
  if (!binary->resources.empty())
    llvm::errs() << binary->resources;
  else
    llvm::errs() << "heed-compile: ptxas not found: PTX only (the driver JIT-compiles it)\n";
  if (emitStage != "cubin")
    return binary->ptx;
  if (!binary->cubin)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "--emit=cubin needs ptxas (the CUDA toolkit: set CUDA_HOME "
                                   "or HEED_PTXAS); --emit=ptx works without it");
  return *binary->cubin;
}

/// The GPU stages: --emit=gpu (the gpu-dialect module), amdgcn, hsaco,
/// ptx, cubin.
int emitGPU(const heed::spec::Variant &variant, const heed::KernelConfig &config) {
  auto parsedKind = heed::parseGPUKernelKind(gpuKernel);
  if (!parsedKind)
    return error(llvm::toString(parsedKind.takeError()));
  auto computation = heed::parseGPUComputation(gpuComputation);
  if (!computation)
    return error(llvm::toString(computation.takeError()));
  bool amdTarget = llvm::StringRef(targets).starts_with("gfx");
  bool amdStage = emitStage == "amdgcn" || emitStage == "hsaco";
  heed::GPUTarget gpu{amdTarget ? heed::GPUVendor::AMD : heed::GPUVendor::NVIDIA,
                      targets == "cpu" ? "" : targets.getValue(), *parsedKind, mfma};
  gpu.computation = *computation;
  llvm::Expected<std::string> text =
      emitStage == "gpu"
          ? heed::emitGPUModule(variant, config, gpu)
      : amdStage ? emitAMD(variant, config, *parsedKind, *computation)
                 : emitNVIDIA(variant, config, *parsedKind, *computation);
  if (!text)
    return error(llvm::toString(text.takeError()));
  return writeOutput(*text, emitStage == "cubin" || emitStage == "hsaco");
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions({&category, &heed::tools::kernelCategory});
  cl::ParseCommandLineOptions(argc, argv, "heed spec compiler\n");
  if (timeCompile)
    setenv("HEED_TIMING", "1", 1);

  bool gpuStage = emitStage == "gpu" || emitStage == "ptx" || emitStage == "cubin" ||
                  emitStage == "amdgcn" || emitStage == "hsaco";
  static const std::pair<const char *, heed::Stage> stages[] = {
      {"attn", heed::Stage::Attn},     {"tile", heed::Stage::Tile},
      {"tiled", heed::Stage::Tiled},
      {"llvm", heed::Stage::LLVM},     {"llvm-ir", heed::Stage::LLVMIR},
      {"obj", heed::Stage::Object}};
  const heed::Stage *stage = nullptr;
  for (const auto &s : stages)
    if (emitStage == s.first)
      stage = &s.second;
  if (!stage && !gpuStage)
    return error("unknown --emit=" + emitStage +
                 " (expected attn, tile, tiled, llvm, llvm-ir, obj, gpu, ptx, cubin, amdgcn or hsaco)");

  auto config = configFromFlags();
  if (!config)
    return error(llvm::toString(config.takeError()));
  auto overrides = heed::spec::parseParamAssignments(params);
  if (!overrides)
    return error(llvm::toString(overrides.takeError()));
  auto variants = heed::spec::parseSpecFile(input, *overrides);
  if (!variants) {
    llvm::errs() << llvm::toString(variants.takeError());
    return 1;
  }
  auto variant = heed::spec::selectVariant(std::move(*variants), variantName);
  if (!variant)
    return error(llvm::toString(variant.takeError()));

  if (aot)
    return exportAot(*variant, *config);
  if (gpuStage)
    return emitGPU(*variant, *config);
  auto text = heed::emit(*variant, *config, *stage);
  if (!text)
    return error(llvm::toString(text.takeError()));
  return writeOutput(*text, *stage == heed::Stage::Object);
}
