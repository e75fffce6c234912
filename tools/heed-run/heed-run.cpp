// heed-run: compile a spec, run it on random inputs, check it against the
// float64 reference, and report errors, time and throughput.
#include "Backward.h"
#include "GPUBackends.h"
#include "Serving.h"

#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/GPU.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/GPUImage.h"
#include "heed/Runtime/HIP.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Reference.h"

#include "../common/KernelFlags.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <chrono>
#include <cmath>
#include <random>
#include <tuple>

namespace cl = llvm::cl;
// The kernel options heed-compile shares (tools/common/KernelFlags.h).
using heed::tools::blockKV;
using heed::tools::blockQ;
using heed::tools::dtype;
using heed::tools::headDim;
using heed::tools::headDimV;
using heed::tools::layout;
using heed::tools::noAnalysis;
using heed::tools::noPatchTiling;
using heed::tools::scale;

namespace {
cl::OptionCategory category("heed-run options");
cl::opt<std::string> input(cl::Positional, cl::desc("<spec.attn>"), cl::Required,
                           cl::cat(category));
cl::opt<std::string> variantName("variant", cl::desc("variant to run (default: the only one)"),
                                 cl::cat(category));
cl::list<std::string> params("param", cl::desc("override a param: name=value"),
                             cl::cat(category));
cl::list<std::string> bufferInits(
    "buffer",
    cl::desc("how to fill a buffer: name=uniform:LO:HI | bits:P | docs:MIN:MAX | "
             "iota | const:X (default: floats uniform in [-1, 1), rank-1 integers "
             "as document ids, other integers as bits with P = 0.5)"),
    cl::cat(category));
cl::opt<int64_t> batch("batch", cl::desc("batch size"), cl::init(1), cl::cat(category));
cl::opt<int64_t> heads("heads", cl::desc("query heads"), cl::init(8), cl::cat(category));
cl::opt<int64_t> kvHeads("kv-heads", cl::desc("key/value heads (default: --heads)"),
                         cl::init(0), cl::cat(category));
cl::opt<int64_t> seq("seq", cl::desc("query length"), cl::init(1024), cl::cat(category));
cl::opt<int64_t> seqKV("seq-kv", cl::desc("key/value length (default: --seq)"), cl::init(0),
                       cl::cat(category));
cl::opt<std::string> target("target",
                            cl::desc("cpu (default) | cuda[:sm_XX] (NVIDIA, needs a GPU and "
                                     "driver) | rocm[:gfxNNN] (AMD, needs a GPU and ROCm; "
                                     "default gfx942)"),
                            cl::init("cpu"), cl::cat(category));
cl::opt<std::string> artifactPath(
    "artifact",
    cl::desc("on a GPU: run the kernel of this artifact (heed-compile --aot ... -o DIR: "
             "DIR/<name>.heedk) instead of compiling; the entry for the device's chip is "
             "taken, and must match the spec and kernel options given"),
    cl::cat(category));
cl::opt<std::string> gpuKernel("gpu-kernel",
                               cl::desc("on a GPU: auto (matrix cores where they apply) | "
                                        "tensor-cores (MFMA on AMD) | simt | wgmma | "
                                        "wgmma-pipelined | wgmma-serial | wgmma-grid (Hopper)"),
                               cl::init("auto"), cl::cat(category));
cl::opt<bool> withLse("lse", cl::desc("also compute and check the log-sum-exp"),
                      cl::cat(category));
cl::opt<unsigned> threads("num-threads", cl::desc("threads (default: all cores)"), cl::init(0),
                          cl::cat(category));
cl::opt<uint64_t> seed("seed", cl::desc("random seed (default: from the clock)"),
                       cl::init(0), cl::cat(category));
cl::opt<unsigned> repeat("repeat", cl::desc("timed runs (the median is reported)"),
                         cl::init(5), cl::cat(category));
cl::opt<bool> noCheck("no-check", cl::desc("skip the float64 reference and the mask census"),
                      cl::cat(category));
cl::opt<int64_t> checkRows(
    "check-rows",
    cl::desc("rows the float64 check computes: 0 = all of them unless that would take more "
             "than --check-budget (then a random sample that fits, said in the output), "
             "N = N random rows, -1 = all"),
    cl::init(0), cl::cat(category));
cl::opt<double> checkBudget("check-budget",
                            cl::desc("CPU seconds the automatic check may take (default 40)"),
                            cl::init(40), cl::cat(category));
cl::opt<double> tolerance("tolerance",
                          cl::desc("max relative error, finite and positive (default: f32 "
                                   "1e-5, more for large scores, at most 1e-2; f16/bf16 1e-2)"),
                          cl::init(0), cl::cat(category));
cl::opt<bool> json("json", cl::desc("print one JSON object instead of a table"),
                   cl::cat(category));
cl::opt<bool> backward("backward",
                       cl::desc("also run the backward pass on a random dout and check dq, dk, "
                                "dv and the buffers' gradients against float64 (CPU; with "
                                "--target=cuda or rocm the GPU's two backward kernels)"),
                       cl::cat(category));
cl::opt<int64_t> backwardBlockKV(
    "backward-block-kv",
    cl::desc("with --backward: keys per tile of the backward kernel (0, the default: by "
             "schedule, 64: a block's query and dO tiles serve 64 keys; at most 64)"),
    cl::init(0), cl::cat(category));
cl::opt<bool> backwardSplit(
    "backward-split",
    cl::desc("with --backward: run the GPUs' two backward kernels (dQ, then dK/dV; "
             "docs/backward.md) on the CPU instead of its one KV-major kernel"),
    cl::cat(category));
cl::opt<std::string> backwardOutDType(
    "backward-out-dtype",
    cl::desc("with --backward and f16/bf16 inputs: the forward's output dtype, f32 (the "
             "default: the backward's delta = rowsum(dO * O) from the exact O) or storage "
             "(O rounded to the inputs' dtype, as FlashAttention keeps it)"),
    cl::init("f32"), cl::cat(category));
cl::opt<std::string> kvLensSpec(
    "kv-lens",
    cl::desc("a serving call: each batch entry's number of keys, L0,L1,... (one per entry), L "
             "(all), or random:MIN:MAX; --seq-kv (default: the longest) is what an entry can "
             "hold (docs/decode.md)"),
    cl::cat(category));
cl::opt<std::string> qLensSpec(
    "q-lens",
    cl::desc("ragged queries: each batch entry's number of queries, L0,L1,... (one per entry), "
             "L (all), or random:MIN:MAX; --seq is what an entry can hold; rows past an "
             "entry's queries are not written (docs/decode.md)"),
    cl::cat(category));
cl::opt<bool> packedFlag(
    "packed",
    cl::desc("packed sequences (FlashAttention's varlen layout): the queries end to end with "
             "cu_seqlens_q (lengths from --q-lens, else --seq each) and, without --page-size, "
             "the keys with cu_seqlens_kv (--kv-lens, else --seq-kv each); --seq and --seq-kv "
             "become the longest entry's (docs/decode.md)"),
    cl::cat(category));
cl::opt<int64_t> pageSize("page-size",
                          cl::desc("k and v in a paged cache of pages of this many keys, in a "
                                   "random page order, read through a page table"),
                          cl::init(0), cl::cat(category));
cl::opt<int64_t> outOffset(
    "out-offset",
    cl::desc("GPU targets: place out (and lse) this many elements past the start of their "
             "device allocations, as a view into a larger tensor would (1: rows not 16-byte "
             "aligned, so the kernels' 16-byte stores give way to element stores), with as "
             "many after them; a write into those fails the run"),
    cl::init(0), cl::cat(category));

int error(const llvm::Twine &msg) {
  llvm::WithColor::error(llvm::errs(), "heed-run") << msg << "\n";
  return 1;
}

std::vector<int64_t> layoutShape(bool bshd, int64_t b, int64_t h, int64_t s, int64_t d) {
  return bshd ? std::vector<int64_t>{b, s, h, d} : std::vector<int64_t>{b, h, s, d};
}

/// The self-check of one run against the float64 reference.
struct Check {
  heed::ErrorStats out, lse;
  double tolerance = 0, lseTolerance = 0;
  bool passed = false;
  bool lseDefined = true; ///< false for sigmoid variants: no lse to check
};

/// Which rows the float64 check computes: all, or a random sample when the
/// full check would take more than the budget (or --check-rows asks).
struct CheckPlan {
  int64_t total = 0, count = 0;
  double density = 0;       ///< visible pairs, estimated from ~256 rows
  double fullSeconds = 0;   ///< estimated CPU seconds of the full check
  std::vector<uint8_t> rows; ///< flags per BHSD row; empty: all rows
  bool random = false;       ///< rows drawn at random (else all, or all within q_lens)
  bool sampled() const { return !rows.empty(); }
  const std::vector<uint8_t> *flags() const { return rows.empty() ? nullptr : &rows; }
  std::string describe(uint64_t seed) const {
    if (!sampled())
      return fmt::format("all {} rows", total);
    if (!random)
      return fmt::format("all {} rows within q_lens (of {})", count, total);
    return fmt::format("{} of {} rows at random (seed {}; the full check: about {:.2g} CPU s, "
                       "--check-rows=-1)",
                       count, total, seed, fullSeconds);
  }
};

CheckPlan planCheck(const heed::spec::Variant &variant, const heed::AttentionDims &dims,
                    const std::vector<heed::HostTensor> &buffers, int64_t headDim,
                    int64_t headDimV, uint64_t seed) {
  CheckPlan plan;
  plan.total = dims.batch * dims.headsQ * dims.seqQ;
  plan.count = plan.total;
  // The density from ~256 rows (cheap), for the cost estimate.
  plan.density =
      heed::maskDensity(variant, dims, buffers, std::max<int64_t>(1, dims.seqQ / 256));
  plan.fullSeconds = heed::referenceCostSeconds(variant, dims, headDim, headDimV, plan.density);
  int64_t want = plan.total;
  if (checkRows > 0)
    want = std::min<int64_t>(checkRows, plan.total);
  else if (checkRows == 0 && plan.fullSeconds > checkBudget)
    want = std::max<int64_t>(
        std::min<int64_t>(256, plan.total),
        int64_t(double(plan.total) * checkBudget / std::max(plan.fullSeconds, 1e-9)));
  if (want < plan.total) {
    plan.count = want;
    plan.rows = heed::sampleRows(plan.total, want, seed ^ 0x5eed5eedULL);
    plan.random = true;
  }
  return plan;
}

/// Checks only rows an entry's queries hold (--q-lens): the others are not
/// written.
void restrictToQueries(CheckPlan &plan, const std::vector<uint8_t> &computed) {
  if (plan.rows.empty())
    plan.rows = computed;
  else
    for (size_t r = 0; r < plan.rows.size(); ++r)
      plan.rows[r] &= computed[r];
  plan.count = std::count(plan.rows.begin(), plan.rows.end(), uint8_t(1));
}

/// Compares out (and lse when the kernel writes it) with the reference.
/// The tolerance is --tolerance, else by dtype (f32: by the largest finite
/// score, see ReferenceResult::f32Tolerance); never infinite, and a NaN or
/// an infinity where the reference has none fails whatever it is.
Check checkAgainst(const heed::ReferenceResult &ref, const heed::KernelConfig &config,
                   const heed::HostTensor &out, const heed::HostTensor &lse,
                   const CheckPlan &plan) {
  Check c;
  c.tolerance = tolerance.getNumOccurrences()
                    ? tolerance.getValue()
                    : (config.dtype == heed::DType::F32 ? ref.f32Tolerance() : 1e-2);
  c.out = heed::compareOutput(out, ref.out, config.layout, plan.flags());
  c.passed = c.out.passes(c.tolerance);
  c.lseDefined = ref.lseDefined;
  if (config.lse && ref.lseDefined) {
    c.lse = heed::compareLse(lse, ref.lse, plan.flags());
    c.lseTolerance = std::max(1e-4, c.tolerance * 10);
    c.passed = c.passed && c.lse.clean() && c.lse.maxAbs <= c.lseTolerance;
  }
  return c;
}

void printCheck(const Check &c, bool showLse) {
  llvm::outs() << fmt::format("max error {:.3e} (relative {:.3e}, tolerance {:.1e})\n",
                              c.out.maxAbs, c.out.relative, c.tolerance);
  if (!c.out.clean())
    llvm::outs() << "problem   out: " << c.out.problem() << "\n";
  if (showLse && !c.lseDefined)
    llvm::outs() << "lse       not defined for sigmoid (the kernel writes NaN)\n";
  if (showLse && c.lseDefined) {
    llvm::outs() << fmt::format("lse error {:.3e} (tolerance {:.1e})\n", c.lse.maxAbs,
                                c.lseTolerance);
    if (!c.lse.clean())
      llvm::outs() << "problem   lse: " << c.lse.problem() << "\n";
  }
  llvm::outs() << "check     " << (c.passed ? "PASSED" : "FAILED") << "\n";
}

} // namespace

/// A GPU kernel from the kernel cache (memory, disk, or compiled now).
struct GPUImage {
  std::shared_ptr<const heed::ArtifactEntry> entry; ///< image in `binary`, shape in info.gpu
  std::string chip;
  heed::CacheOutcome outcome = heed::CacheOutcome::Compiled;
  const heed::GPULaunch &launch() const { return *entry->info.gpu; }
};

static llvm::Expected<GPUImage> cachedGPUKernel(const heed::spec::Variant &variant,
                                                const heed::KernelConfig &config,
                                                const heed::GPUTarget &target) {
  GPUImage out;
  out.chip = target.chip;
  auto entry = heed::KernelCache::global().getGPU(variant, config, target, &out.outcome);
  if (!entry)
    return entry.takeError();
  out.entry = std::move(*entry);
  return out;
}

/// --artifact: the entry for `chip` of a precompiled artifact, checked
/// against what the spec and options would compile.
static llvm::Expected<GPUImage> artifactKernel(const heed::spec::Variant &variant,
                                               const heed::KernelConfig &config,
                                               const char *platform, const std::string &chip) {
  auto fail = [&](const std::string &why) {
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   artifactPath + ": " + why);
  };
  auto bytes = llvm::MemoryBuffer::getFile(artifactPath, /*IsText=*/false);
  if (!bytes)
    return fail(bytes.getError().message());
  heed::Artifact artifact;
  if (std::string why = artifact.parse((*bytes)->getBuffer().str()); !why.empty())
    return fail(why);
  std::string why;
  const heed::ArtifactEntry *entry = heed::selectGPUEntry(artifact, platform, chip, why);
  if (!entry)
    return fail(why);
  heed::KernelInfo want = heed::describeKernel(variant, config);
  const heed::KernelInfo &have = entry->info;
  if (have.name != want.name || have.dtype != want.dtype || have.headDim != want.headDim ||
      have.headDimV != want.headDimV || have.layout != want.layout || have.lse != want.lse ||
      have.buffers.size() != want.buffers.size() ||
      std::fabs(have.scale - want.scale) > 1e-6 * std::fabs(want.scale))
    return fail("its kernel ('" + have.name + "', " + heed::toString(have.dtype) + ", D=" +
                std::to_string(have.headDim) + (have.lse ? ", lse" : "") +
                ") is not the one these options compile ('" + want.name + "', " +
                heed::toString(want.dtype) + ", D=" + std::to_string(want.headDim) +
                (want.lse ? ", lse" : "") + "): export it with the same --dtype, "
                "--head-dim, --layout, --lse, --scale and --param");
  // The serving operands change the kernel's arguments.
  if (have.kvLens != want.kvLens || have.qLens != want.qLens ||
      have.cuSeqlensQ != want.cuSeqlensQ || have.cuSeqlensKV != want.cuSeqlensKV ||
      have.pageSize != want.pageSize)
    return fail("its kernel's serving operands (kv_lens " + std::to_string(have.kvLens) +
                ", q_lens " + std::to_string(have.qLens) + ", cu_seqlens " +
                std::to_string(have.cuSeqlensQ) + std::to_string(have.cuSeqlensKV) +
                ", page size " + std::to_string(have.pageSize) +
                ") are not this run's: export it with heed-compile's --kv-lens, --q-lens, "
                "--cu-seqlens-q, --cu-seqlens-kv and --page-size as this run needs them");
  GPUImage out;
  out.chip = chip;
  out.entry = std::make_shared<const heed::ArtifactEntry>(*entry);
  return out;
}

/// --target=cuda|rocm: the kernel on device 0, checked like the CPU kernel.
/// Exit code 77 (SKIPPED for ctest) when there is no GPU or runtime.
template <class Backend>
int runOnGPU(const heed::spec::Variant &variant, const heed::KernelConfig &config,
             heed::HostTensor &q, heed::HostTensor &k, heed::HostTensor &v,
             heed::HostTensor &out, heed::HostTensor &lse,
             std::vector<heed::HostTensor> &buffers, uint64_t seed,
             heed::run::ServingCall *call) {
  auto kind = heed::parseGPUKernelKind(gpuKernel);
  if (!kind)
    return error(llvm::toString(kind.takeError()));
  std::string why;
  if (!Backend::available(why)) {
    llvm::outs() << "heed-run: SKIPPED: " << why << "\n";
    return 77;
  }
  llvm::StringRef platform = llvm::StringRef(target).split(':').first;
  std::string chip = llvm::StringRef(target).split(':').second.str();
  if (chip.empty() && (chip = Backend::deviceChip(why)).empty())
    return error(why);
  auto start = std::chrono::steady_clock::now();
  auto binary = [&]() -> llvm::Expected<GPUImage> {
    if (!artifactPath.empty())
      return artifactKernel(variant, config, Backend::kName, chip);
    auto target = Backend::target(chip, *kind);
    if (!target)
      return target.takeError();
    return cachedGPUKernel(variant, config, *target);
  }();
  if (!binary)
    return error(llvm::toString(binary.takeError()));
  double compileS =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const heed::GPULaunch &launch = binary->launch();
  start = std::chrono::steady_clock::now();
  auto module = Backend::Module::load(binary->entry->binary, launch, 0, why);
  if (!module)
    return error(why);
  double loadS = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Device copies of every tensor, same shapes and layouts.
  std::vector<std::unique_ptr<typename Backend::Buffer>> device;
  // (--out-offset: `skip` elements of poison before the tensor, and as many
  // after it.)
  std::vector<size_t> skipped; // bytes before (and after) each device copy's tensor
  auto toDevice = [&](heed::HostTensor &t, bool upload, int64_t skip = 0) -> heed::TensorRef {
    heed::TensorRef host = t.ref(), d = host;
    size_t bytes = size_t(t.size()) * heed::dtypeSize(t.dtype());
    size_t before = size_t(skip) * heed::dtypeSize(t.dtype());
    auto buf = Backend::Buffer::allocate(std::max<size_t>(before + bytes + before, 1), why);
    if (!buf)
      return d;
    if (upload) {
      std::vector<uint8_t> staged(before + bytes + before, 0xff); // NaN in every float type
      std::memcpy(staged.data() + before, host.data, bytes);
      why = buf->upload(staged.data(), staged.size());
    }
    d.data = static_cast<uint8_t *>(buf->data()) + before;
    device.push_back(std::move(buf));
    skipped.push_back(before);
    return d;
  };
  // A serving call: its packed tensors where it packs, its index tensors
  // as host tensors (heed plans the launch on the host).
  bool packQ = call && call->packQ, packKV = call && call->packKV;
  heed::HostTensor &hq = packQ ? call->packedQ : q, &hout = packQ ? call->packedOut : out,
                   &hlse = packQ ? call->packedLse : lse;
  bool paged = call && call->pageSize > 0;
  heed::HostTensor &hk = packKV ? call->packedK : paged ? call->kPages : k;
  heed::HostTensor &hv = packKV ? call->packedV : paged ? call->vPages : v;
  heed::AttentionArgs args;
  args.q = toDevice(hq, true);
  args.k = toDevice(hk, true);
  args.v = toDevice(hv, true);
  out.poison();
  lse.poison();
  hout.poison();
  hlse.poison();
  args.out = toDevice(hout, true, outOffset);
  if (config.lse)
    args.lse = toDevice(hlse, true, outOffset);
  if (call) {
    heed::AttentionArgs host;
    call->bind(host);
    args.kvLens = host.kvLens, args.pageTable = host.pageTable, args.qLens = host.qLens;
    args.cuSeqlensQ = host.cuSeqlensQ, args.cuSeqlensKV = host.cuSeqlensKV;
  }
  for (heed::HostTensor &b : buffers)
    args.buffers.push_back(toDevice(b, true));
  if (!why.empty())
    return error(why);
  // The kernel's own description (an artifact's entry may predate an
  // argument this heed's kernels take: the entry order).
  heed::KernelInfo info = binary->entry->info;
  info.gpu.reset();
  start = std::chrono::steady_clock::now();
  heed::GPULaunchOptions synchronous;
  synchronous.synchronous = true; // the kernel's own error belongs to this check
  heed::GPULaunchChoice choice;
  if (std::string err = module->launchAttention(info, args, nullptr, synchronous, &choice);
      !err.empty())
    return error(err);
  double runS = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto fromDevice = [&](heed::HostTensor &t, const heed::TensorRef &d) {
    heed::TensorRef host = t.ref();
    for (size_t i = 0; i < device.size(); ++i)
      if (static_cast<uint8_t *>(device[i]->data()) + skipped[i] == d.data) {
        size_t bytes = size_t(t.size()) * heed::dtypeSize(t.dtype());
        size_t pad = skipped[i];
        std::vector<uint8_t> staged(pad + bytes + pad);
        if (std::string err = device[i]->download(staged.data(), staged.size()); !err.empty())
          return err;
        std::memcpy(host.data, staged.data() + pad, bytes);
        // (--out-offset: the elements around the tensor are not its.)
        auto untouched = [](auto from, auto to) {
          return std::all_of(from, to, [](uint8_t x) { return x == 0xff; });
        };
        if (!untouched(staged.begin(), staged.begin() + ptrdiff_t(pad)) ||
            !untouched(staged.end() - ptrdiff_t(pad), staged.end()))
          return std::string("the kernel wrote into the --out-offset elements around the "
                             "tensor");
        return std::string();
      }
    return std::string("internal: no device copy");
  };
  if (std::string err = fromDevice(hout, args.out); !err.empty())
    return error(err);
  if (config.lse)
    if (std::string err = fromDevice(hlse, args.lse); !err.empty())
      return error(err);
  if (call)
    call->unpack(out, lse, config.layout);
  bool bshd = config.layout == heed::Layout::BSHD;
  heed::AttentionDims dims{q.shape()[0], q.shape()[bshd ? 2 : 1], k.shape()[bshd ? 2 : 1],
                           q.shape()[bshd ? 1 : 2], k.shape()[bshd ? 1 : 2]};
  CheckPlan plan = planCheck(variant, dims, buffers, q.shape()[3], v.shape()[3], seed);
  bool ragged = call && !call->queries.empty(), serving = call && !call->lens.empty();
  if (ragged) // rows past an entry's queries are not written: not compared
    restrictToQueries(plan, heed::queryRows(call->queries, dims.headsQ, dims.seqQ));
  heed::ReferenceResult ref = heed::referenceAttention(
      variant, q, k, v, config.layout, config.effectiveScale(), buffers, 0, plan.flags(),
      serving ? &call->lens : nullptr, ragged ? &call->queries : nullptr);
  Check check = checkAgainst(ref, config, out, lse, plan);
  llvm::outs() << fmt::format("variant   {}\ntarget    {} {} ({}, {} kernel{})\nseed      {}\n",
                              variant.name, platform.str(), chip,
                              launch.format == "ptx" ? "PTX, JIT by the driver" : launch.format,
                              launch.matrixCores ? "matrix-core" : "SIMT",
                              artifactPath.empty() ? "" : ", entry " + binary->entry->target,
                              seed);
  if (artifactPath.empty())
    llvm::outs() << fmt::format("compile   {:.3f} s ({})\n", compileS,
                                heed::toString(binary->outcome));
  else
    llvm::outs() << fmt::format("artifact  {} (read in {:.3f} s)\n", artifactPath.getValue(),
                                compileS);
  llvm::outs() << fmt::format("load      {:.3f} s (module load{})\ntime      {:.3f} ms (one "
                              "launch, waited for)\n",
                              loadS, launch.format == "ptx" ? " and the driver's JIT" : "",
                              runS * 1e3);
  if (call)
    llvm::outs() << "serving   " << call->describe() << "\n";
  if (choice.packedGQA)
    llvm::outs() << fmt::format("GQA       {} query heads a block, one block per key/value head "
                                "(packed tile of {} rows)\n",
                                dims.headsQ / dims.headsKV, launch.packedRows);
  if (choice.splits > 1)
    llvm::outs() << fmt::format("split-KV  {} key ranges per work item, merged (two launches)\n",
                                choice.splits);
  llvm::outs() << "checked   " << plan.describe(seed) << "\n";
  printCheck(check, config.lse);
  return check.passed ? 0 : 1;
}

/// The variant's buffers at `dims`, filled as --buffer says (or by default);
/// "" or what is wrong (a shape past the limits, a bad fill, a --buffer
/// naming no buffer).
std::string makeBuffers(const heed::spec::Variant &variant, const heed::AttentionDims &dims,
                        std::mt19937_64 &rng, std::vector<heed::HostTensor> &buffers) {
  for (const heed::spec::BufferDecl &decl : variant.buffers) {
    std::vector<int64_t> shape = heed::resolveDims(decl.shape, dims);
    heed::DType dt = heed::DType::F32;
    heed::parseDType(heed::spec::toString(decl.elem), dt);
    buffers.emplace_back();
    if (std::string err =
            heed::HostTensor::create("buffer '" + decl.name + "'", dt, shape, buffers.back());
        !err.empty())
      return err;
    std::string how;
    for (const std::string &init : bufferInits)
      if (llvm::StringRef(init).starts_with(decl.name + "="))
        how = init.substr(decl.name.size() + 1);
    if (std::string problem = buffers.back().fill(how, rng); !problem.empty())
      return "buffer '" + decl.name + "': " + problem;
  }
  for (const std::string &init : bufferInits) {
    llvm::StringRef name = llvm::StringRef(init).split('=').first;
    if (llvm::none_of(variant.buffers, [&](const auto &b) { return b.name == name; }))
      return fmt::format("--buffer names '{}', which the variant does not declare", name.str());
  }
  return "";
}

/// What a CPU run measured and checked: printed as JSON or as a table.
struct RunReport {
  std::string variant, shape, tiling, cache;
  uint64_t seed = 0;
  double compileS = 0, median = 0, density = 0, flops = 0, kvBytes = 0;
  size_t runs = 0;
  heed::RunStats stats;
  const heed::run::ServingCall *call = nullptr; ///< serving or ragged calls
  bool serving = false, ragged = false, counted = false, checked = false, passed = true;
  heed::MaskCensus census;
  CheckPlan plan;
  Check check;

  void printJSON() const {
    llvm::json::Object o{{"variant", variant},
                         {"shape", shape},
                         {"seed", static_cast<int64_t>(seed)},
                         {"compile_s", compileS},
                         {"cache", cache},
                         {"time_s", median},
                         {"density", density},
                         {"gflops", flops / median / 1e9},
                         {"kv_gbps", kvBytes / median / 1e9},
                         {"threads", static_cast<int64_t>(threads.getValue())},
                         {"tiling", tiling},
                         {"blocks_visited", stats.visitedBlocks},
                         {"blocks_full", stats.fullBlocks},
                         {"blocks_partial", stats.partialBlocks},
                         {"blocks_total", stats.totalBlocks},
                         {"kv_splits", stats.splits},
                         {"gqa_packed", stats.packedGQA}};
    if (serving) {
      o["kv_keys"] = call->totalKeys();
      o["page_size"] = pageSize.getValue();
    }
    if (ragged)
      o["q_rows"] = std::accumulate(call->queries.begin(), call->queries.end(), int64_t(0));
    if (ragged && call->packQ)
      o["packed"] = call->packKV ? "q,kv" : "q";
    if (counted) {
      o["blocks_minimum"] = census.nonEmptyBlocks;
      o["blocks_full_maximum"] = census.fullBlocks;
    }
    if (checked) {
      o["checked_rows"] = plan.count;
      o["total_rows"] = plan.total;
      // JSON has no infinity: an error that is not finite is null.
      auto number = [](double x) -> llvm::json::Value {
        return std::isfinite(x) ? llvm::json::Value(x) : llvm::json::Value(nullptr);
      };
      o["max_abs_error"] = number(check.out.maxAbs);
      o["rel_error"] = number(check.out.relative);
      o["tolerance"] = check.tolerance;
      o["passed"] = passed;
      if (!check.out.clean())
        o["problem"] = check.out.problem();
      if (withLse) {
        o["lse_max_abs_error"] = number(check.lse.maxAbs);
        if (!check.lse.clean())
          o["lse_problem"] = check.lse.problem();
      }
    }
    llvm::outs() << llvm::formatv("{0:2}", llvm::json::Value(std::move(o))) << "\n";
  }

  void printText() const {
    llvm::outs() << fmt::format("variant   {}\nshape     {}\nseed      {}\n", variant, shape,
                                seed);
    llvm::outs() << fmt::format("compile   {:.3f} s ({})\ntime      {:.3f} ms (median of {})\n",
                                compileS, cache, median * 1e3, runs);
    if (call)
      llvm::outs() << "serving   " << call->describe() << "\n";
    llvm::outs() << fmt::format("density   {:.4f}\nGFLOP/s   {:.2f} (useful work)\n", density,
                                flops / median / 1e9);
    llvm::outs() << fmt::format("K/V       {:.2f} GB/s (each key and value read once)\n",
                                kvBytes / median / 1e9);
    llvm::outs() << fmt::format("tiling    {}\n", tiling);
    if (stats.packedGQA)
      llvm::outs() << "GQA       a group's query heads in one tile, one work item per "
                      "key/value head\n";
    if (stats.splits > 1)
      llvm::outs() << fmt::format("split-KV  {} key ranges per work item, merged\n",
                                  stats.splits);
    llvm::outs() << fmt::format("blocks    {} visited of {} ({} full, {} partial)\n",
                                stats.visitedBlocks, stats.totalBlocks, stats.fullBlocks,
                                stats.partialBlocks);
    if (counted)
      llvm::outs() << fmt::format("minimum   {} blocks must be visited, {} are full\n",
                                  census.nonEmptyBlocks, census.fullBlocks);
    else if (checked)
      llvm::outs() << "minimum   not counted (as dear as the full check)\n";
    if (checked) {
      llvm::outs() << "checked   " << plan.describe(seed) << "\n";
      printCheck(check, withLse);
    }
  }
};

/// The CPU run: compile (through the cache), run, time, check against
/// float64 and report; the exit code (0 passed, 2 failed, 1 error).
int runOnCPU(const heed::spec::Variant &variant, const heed::KernelConfig &config,
             const heed::AttentionDims &dims, heed::HostTensor &q, heed::HostTensor &k,
             heed::HostTensor &v, heed::HostTensor &out, heed::HostTensor &lse,
             std::vector<heed::HostTensor> &buffers, heed::run::ServingCall &call, bool serving,
             bool ragged, uint64_t usedSeed) {
  int64_t hkv = dims.headsKV, skv = dims.seqKV, dv = config.valueDim();
  auto kernel = heed::Kernel::compile(variant, config);
  if (!kernel)
    return error(llvm::toString(kernel.takeError()));

  heed::AttentionArgs args;
  args.q = q.ref();
  args.k = k.ref();
  args.v = v.ref();
  args.out = out.ref();
  if (withLse)
    args.lse = lse.ref();
  for (heed::HostTensor &b : buffers)
    args.buffers.push_back(b.ref());
  if (serving || ragged)
    call.bind(args);

  out.poison();
  lse.poison();
  if (call.packQ) { // the kernel writes the packed outputs
    call.packedOut.poison();
    call.packedLse.poison();
  }
  if (llvm::Error err = (*kernel)->run(args, threads))
    return error(llvm::toString(std::move(err)));

  // Useful work: visible (q, kv) pairs, from the interpreted mask; and the
  // fewest blocks any kernel with this kernel's tiling must visit (the same
  // count bounds the analysis).
  auto tiling = heed::kernelTiling(variant, config);
  if (!tiling)
    return error(llvm::toString(tiling.takeError()));
  // The census is as dear as the full check: it is counted when the check
  // covers every row, else the density is estimated from ~256 rows.
  CheckPlan plan;
  if (!noCheck)
    plan = planCheck(variant, dims, buffers, headDim, dv, usedSeed);
  bool counted = !noCheck && !plan.sampled();
  // Rows past an entry's queries are not written: not compared.
  if (!noCheck && ragged)
    restrictToQueries(plan, heed::queryRows(call.queries, heads, seq));
  heed::MaskCensus census;
  if (counted)
    census = serving || ragged
                 ? heed::servingMaskCensus(variant, dims, buffers, *tiling, call.lens, threads,
                                           call.queries)
                 : heed::tiledMaskCensus(variant, dims, buffers, *tiling, threads);
  // Without the census, the density planCheck estimated (or, with
  // --no-check, the same estimate here).
  double density = counted    ? census.density()
                   : !noCheck ? plan.density
                              : heed::maskDensity(variant, dims, buffers,
                                                  std::max<int64_t>(1, seq / 256), threads);
  // A serving call's pairs are its entries' own keys.
  double pairs = call.pairs(heads, seq, skv);
  if (!serving && !ragged)
    pairs = double(batch) * heads * seq * double(skv);
  double flops = 2.0 * density * pairs * (headDim + dv);
  // K and V once per key/value head: what decode is bound by.
  double kvBytes = double(serving ? call.totalKeys() : batch * skv) * hkv * (headDim + dv) *
                   double(heed::dtypeSize(config.dtype));

  // Timing: the first run above was the warm-up.
  std::vector<double> times;
  heed::RunStats stats;
  for (unsigned r = 0; r < std::max(1u, repeat.getValue()); ++r) {
    auto start = std::chrono::steady_clock::now();
    if (llvm::Error err = (*kernel)->run(args, threads, &stats))
      return error(llvm::toString(std::move(err)));
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  double median = times[times.size() / 2];
  call.unpack(out, lse, config.layout); // packed outputs: into the padded ones checked

  // Check the last run's output against float64.
  bool checked = !noCheck, passed = true;
  Check check;
  if (checked) {
    heed::ReferenceResult ref = heed::referenceAttention(
        variant, q, k, v, config.layout, config.effectiveScale(), buffers, threads, plan.flags(),
        serving ? &call.lens : nullptr, ragged ? &call.queries : nullptr);
    check = checkAgainst(ref, config, out, lse, plan);
    passed = check.passed;
  }

  RunReport report;
  report.variant = variant.name;
  report.shape = fmt::format("B={} Hq={} Hkv={} Sq={} Skv={} D={} Dv={} {} {}", batch.getValue(),
                             heads.getValue(), hkv, seq.getValue(), skv, headDim.getValue(), dv,
                             dtype.getValue(), layout.getValue());
  report.seed = usedSeed;
  report.compileS = (*kernel)->compileSeconds();
  report.cache = heed::toString((*kernel)->cacheOutcome());
  report.median = median;
  report.runs = times.size();
  report.density = density;
  report.flops = flops;
  report.kvBytes = kvBytes;
  report.tiling = tiling->describe();
  report.stats = stats;
  report.call = serving || ragged ? &call : nullptr;
  report.serving = serving;
  report.ragged = ragged;
  report.counted = counted;
  report.census = census;
  report.checked = checked;
  report.plan = plan;
  report.check = check;
  report.passed = passed;
  if (json)
    report.printJSON();
  else
    report.printText();
  return passed ? 0 : 2;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions({&category, &heed::tools::kernelCategory});
  cl::ParseCommandLineOptions(argc, argv, "heed: run and check an attention variant\n");

  auto flags = heed::tools::kernelConfigFromFlags();
  if (!flags)
    return error(llvm::toString(flags.takeError()));
  heed::KernelConfig config = *flags;
  bool bshd = config.layout == heed::Layout::BSHD;
  config.lse = withLse;
  bool packed = packedFlag;
  bool serving = kvLensSpec.getNumOccurrences() || pageSize.getNumOccurrences() || packed;
  config.pageSize = pageSize;
  bool ragged = qLensSpec.getNumOccurrences() > 0 || packed;
  config.cuSeqlensQ = packed;
  config.cuSeqlensKV = packed && pageSize == 0;
  config.kvLens = serving && !config.cuSeqlensKV;
  config.qLens = ragged && !packed;
  // An option given is taken as given: 0 never means "the default".
  if (headDimV.getNumOccurrences() && headDimV < 1)
    return error(fmt::format("--head-dim-v must be positive, got {} (leave it out for "
                             "--head-dim)",
                             headDimV.getValue()));
  if (llvm::Error err = config.validate())
    return error(llvm::toString(std::move(err)));
  if (tolerance.getNumOccurrences() &&
      !(std::isfinite(tolerance.getValue()) && tolerance.getValue() > 0))
    return error(fmt::format("--tolerance must be a finite positive number, got {}",
                             tolerance.getValue()));
  int64_t hkv = kvHeads.getNumOccurrences() ? kvHeads.getValue() : heads.getValue();
  int64_t skv = seqKV.getNumOccurrences()
                    ? seqKV.getValue()
                    : serving ? heed::run::defaultCapacity(kvLensSpec, seq.getValue())
                              : seq.getValue();
  // A key/value length of 0 is a real run (every row attends to nothing:
  // out 0, lse -inf); the other sizes must be positive, or there is
  // nothing to run and nothing to check.
  if (batch < 1 || heads < 1 || hkv < 1 || seq < 1)
    return error(fmt::format("--batch, --heads, --kv-heads and --seq must be positive, got "
                             "{}, {}, {} and {}",
                             batch.getValue(), heads.getValue(), hkv, seq.getValue()));
  if (skv < 0)
    return error(fmt::format("--seq-kv must be at least 0, got {}", skv));
  if (heads % hkv)
    return error(fmt::format("--heads ({}) must be a multiple of --kv-heads ({})",
                             heads.getValue(), hkv));

  auto overrides = heed::spec::parseParamAssignments(params);
  if (!overrides)
    return error(llvm::toString(overrides.takeError()));
  auto variants = heed::spec::parseSpecFile(input, *overrides);
  if (!variants) {
    llvm::errs() << llvm::toString(variants.takeError());
    return 1;
  }
  auto selected = heed::spec::selectVariant(std::move(*variants), variantName);
  if (!selected)
    return error(llvm::toString(selected.takeError()));
  const heed::spec::Variant &variant = *selected;

  uint64_t usedSeed = seed ? seed.getValue()
                           : static_cast<uint64_t>(
                                 std::chrono::steady_clock::now().time_since_epoch().count());
  std::mt19937_64 rng(usedSeed);
  int64_t dv = config.valueDim();
  heed::run::ServingCall call;
  if (packed) {
    // The lengths first: a packed call's capacity (what `Sq` and `Skv` mean
    // in buffer shapes) is its longest entry.
    call.packQ = true;
    call.packKV = config.cuSeqlensKV;
    if (std::string err = call.prepareQueries(qLensSpec, batch, seq, rng); !err.empty())
      return error(err);
    seq.setValue(std::max<int64_t>(
        1, *std::max_element(call.queries.begin(), call.queries.end())));
    if (call.packKV) {
      if (std::string err = call.prepare(kvLensSpec, 0, batch, skv, {}, {}, config.layout, rng);
          !err.empty())
        return error(err);
      skv = *std::max_element(call.lens.begin(), call.lens.end());
    }
  }
  // Sizes go through heed's limits (checkShape) before anything is allocated.
  heed::HostTensor q, k, v, out, lse;
  for (auto [name, tensor, shape] :
       {std::tuple{"q", &q, layoutShape(bshd, batch, heads, seq, headDim)},
        std::tuple{"k", &k, layoutShape(bshd, batch, hkv, skv, headDim)},
        std::tuple{"v", &v, layoutShape(bshd, batch, hkv, skv, dv)},
        std::tuple{"out", &out, layoutShape(bshd, batch, heads, seq, dv)},
        std::tuple{"lse", &lse, std::vector<int64_t>{batch, heads, seq}}})
    if (std::string err = heed::HostTensor::create(
            name, std::string(name) == "lse" ? heed::DType::F32 : config.dtype, shape, *tensor);
        !err.empty())
      return error(err);
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  v.fillUniform(rng, -1, 1);

  // A paged call's key capacity (what `Skv` means in buffer shapes) is its
  // page table's: whole pages (docs/decode.md).
  int64_t skvCapacity =
      pageSize > 0 ? heed::run::ServingCall::pagesPerEntry(skv, pageSize) * pageSize : skv;
  std::vector<heed::HostTensor> buffers;
  if (std::string err =
          makeBuffers(variant, {batch, heads, hkv, seq, skvCapacity}, rng, buffers);
      !err.empty())
    return error(err);

  if (serving && !call.packKV)
    if (std::string err = call.prepare(kvLensSpec, pageSize, batch, skv, k, v, config.layout, rng);
        !err.empty())
      return error(err);
  if (ragged && !call.packQ)
    if (std::string err = call.prepareQueries(qLensSpec, batch, seq, rng); !err.empty())
      return error(err);
  if (packed)
    call.pack(q, k, v, out, lse, config.layout);
  if (serving || ragged)
    call.poisonPadding(q, k, v, config.layout);
  llvm::StringRef platform = llvm::StringRef(target).split(':').first;
  if (pageSize > 0 && backward)
    return error("--backward takes keys and values as tensors, not a paged cache (--page-size); "
                 "--kv-lens, --q-lens and --packed are taken (docs/backward.md)");
  heed::run::BackwardOptions o;
  if (backward) {
    if (backwardOutDType != "f32" && backwardOutDType != "storage")
      return error("unknown --backward-out-dtype=" + backwardOutDType + " (expected f32 or storage)");
    o.threads = threads;
    o.repeat = repeat;
    o.tolerance = tolerance.getNumOccurrences() ? tolerance.getValue() : 0;
    o.json = json;
    o.check = !noCheck;
    o.blockKV = backwardBlockKV;
    o.split = backwardSplit;
    o.outF32 = backwardOutDType == "f32";
    o.seed = usedSeed;
    auto kind = heed::parseGPUKernelKind(gpuKernel);
    if (!kind)
      return error(llvm::toString(kind.takeError()));
    if (*kind == heed::GPUKernelKind::SIMT)
      return error("--backward runs on matrix cores: --gpu-kernel=tensor-cores (the default) or "
                   "a wgmma kind (sm_90a), not simt");
    if (*kind != heed::GPUKernelKind::Auto)
      o.kind = *kind;
    o.shape = fmt::format("B={} Hq={} Hkv={} Sq={} Skv={} D={} Dv={} {} {}", batch.getValue(),
                          heads.getValue(), hkv, seq.getValue(), skv, headDim.getValue(), dv,
                          dtype.getValue(), layout.getValue());
    if (serving || ragged)
      o.shape += ", " + call.describe();
  }
  if (outOffset < 0 || outOffset > (int64_t(1) << 20))
    return error("--out-offset must be between 0 and 2^20 elements");
  if (outOffset && ((platform != "cuda" && platform != "rocm") || backward))
    return error("--out-offset applies to forward runs on GPU targets (cuda, rocm)");
  if ((platform == "cuda" || platform == "rocm") && backward)
    return heed::run::runBackwardOnGPU(
        platform == "cuda" ? heed::GPUPlatform::CUDA : heed::GPUPlatform::HIP, variant, config, q,
        k, v, buffers, rng, o, llvm::StringRef(target).split(':').second.str(),
        serving || ragged ? &call : nullptr);
  if (platform == "cuda")
    return runOnGPU<heed::run::CUDABackend>(variant, config, q, k, v, out, lse, buffers, usedSeed,
                                 serving || ragged ? &call : nullptr);
  if (platform == "rocm")
    return runOnGPU<heed::run::HIPBackend>(variant, config, q, k, v, out, lse, buffers, usedSeed,
                                serving || ragged ? &call : nullptr);
  if (target != "cpu")
    return error("unknown --target=" + target +
                 " (expected cpu, cuda, cuda:sm_XX, rocm or rocm:gfxNNN)");
  if (backward)
    return heed::run::runBackward(variant, config, q, k, v, buffers, rng, o,
                                  serving || ragged ? &call : nullptr);
  return runOnCPU(variant, config, {batch, heads, hkv, seq, skv}, q, k, v, out, lse, buffers,
                  call, serving, ragged, usedSeed);
}
