// heed-run --target=cuda|rocm --backward (Backward.h): the forward and the
// backward's two matrix-core kernels (docs/backward.md, "GPU kernels") on
// device 0, dq, dk, dv and every buffer gradient compared normwise with the
// float64 reference backward, as the CPU's --backward does.
#include "Backward.h"
#include "GPUBackends.h"

#include "heed/Compiler/Backward.h"
#include "heed/Compiler/GPU.h"
#include "heed/Compiler/KernelCache.h"
#include "heed/Runtime/CUDA.h"
#include "heed/Runtime/GPUImage.h"
#include "heed/Runtime/HIP.h"
#include "heed/Runtime/Reference.h"
#include "heed/Runtime/ReferenceBackward.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

namespace heed::run {
namespace {

int error(const std::string &msg) {
  llvm::WithColor::error(llvm::errs(), "heed-run") << msg << "\n";
  return 1;
}

/// Host tensors and their device copies.
template <typename Buffer> class DeviceTensors {
public:
  /// A device copy of `t` (uploaded where `upload`), or an empty ref and
  /// `error` set.
  TensorRef copy(HostTensor &t, bool upload) {
    TensorRef d = t.ref();
    size_t bytes = size_t(t.size()) * dtypeSize(t.dtype());
    auto buf = Buffer::allocate(std::max<size_t>(bytes, 1), error);
    if (!buf)
      return d;
    if (upload && error.empty())
      error = buf->upload(t.ref().data, bytes);
    d.data = buf->data();
    buffers.push_back({&t, std::move(buf)});
    return d;
  }
  /// Downloads every copy into its host tensor.
  std::string download() {
    for (auto &[host, buf] : buffers)
      if (std::string e = buf->download(host->ref().data, size_t(host->size()) *
                                                              dtypeSize(host->dtype()));
          !e.empty())
        return e;
    return "";
  }
  std::string error;

private:
  std::vector<std::pair<HostTensor *, std::unique_ptr<Buffer>>> buffers;
};

/// The forward, then the dQ and dK/dV kernels for `base`'s chip (each from
/// the kernel cache), loaded on device 0; "" or the error.
template <typename Module>
std::string loadKernels(const spec::Variant &variant, const KernelConfig &config,
                        const GPUTarget &base, std::unique_ptr<Module> (&modules)[3],
                        double &compileS) {
  GPUComputation computations[] = {GPUComputation::Forward, GPUComputation::BackwardDQ,
                                   GPUComputation::BackwardDKDV};
  for (int i = 0; i < 3; ++i) {
    GPUTarget target = base;
    target.computation = computations[i];
    auto start = std::chrono::steady_clock::now();
    auto entry = KernelCache::global().getGPU(variant, config, target);
    if (!entry)
      return llvm::toString(entry.takeError());
    compileS += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string why;
    if (!(modules[i] = Module::load((*entry)->binary, *(*entry)->info.gpu, 0, why)))
      return why;
  }
  return "";
}

/// FNV-1a over the bytes of every gradient (dq, dk, dv, the buffers'): two
/// runs that print the same digest wrote the same bits.
uint64_t gradientDigest(BackwardTensors &t) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](HostTensor &x) {
    const auto *p = static_cast<const uint8_t *>(x.ref().data);
    for (size_t i = 0, n = size_t(x.size()) * dtypeSize(x.dtype()); i < n; ++i)
      h = (h ^ p[i]) * 0x100000001b3ull;
  };
  for (HostTensor *x : {&t.dq, &t.dk, &t.dv})
    mix(*x);
  for (HostTensor &g : t.grads)
    mix(g);
  return h;
}

/// Whether the gradients' bits were the same in the first and the last of
/// `repeat` runs (the kernels are deterministic: no float atomics).
enum class Repeatable { Unknown, Yes, No };

/// The report of a GPU backward run (a table, or JSON); whether it passed.
bool report(const spec::Variant &variant, const BackwardOptions &options,
            const std::string &chip, double compileS, double backwardTime, double flops,
            const std::vector<GradientError> &rows, bool outOfRange, uint64_t digest,
            Repeatable repeatable) {
  double worst = 0;
  bool passed = withinTolerances(rows, worst) && !outOfRange && repeatable != Repeatable::No;
  auto number = [](double x) {
    return std::isfinite(x) ? llvm::json::Value(x) : llvm::json::Value(nullptr);
  };
  if (options.json) {
    llvm::json::Object o{{"variant", variant.name},
                         {"shape", options.shape},
                         {"target", "cuda:" + chip},
                         {"seed", static_cast<int64_t>(options.seed)},
                         {"compile_s", compileS},
                         {"backward_time_s", backwardTime},
                         {"backward_tflops_dense", flops / backwardTime / 1e12},
                         {"grad_max_rel_error", number(worst)},
                         {"grad_digest", fmt::format("{:016x}", digest)},
                         {"backward_passed", passed}};
    if (repeatable != Repeatable::Unknown)
      o["grads_bitwise_repeatable"] = repeatable == Repeatable::Yes;
    llvm::json::Object per;
    for (const GradientError &r : rows)
      per[r.name] = number(r.error);
    o["grad_rel_errors"] = std::move(per);
    llvm::outs() << llvm::formatv("{0:2}", llvm::json::Value(std::move(o))) << "\n";
    return passed;
  }
  llvm::outs() << fmt::format("variant   {}\nshape     {}\ntarget    cuda {} (forward, dQ "
                              "and dK/dV {} kernels)\nseed      {}\n",
                              variant.name, options.shape, chip,
                              isWgmma(options.kind) ? "wgmma" : "tensor-core", options.seed);
  llvm::outs() << fmt::format("compile   {:.3f} s (3 kernels)\nbackward  {:.3f} ms (dQ and "
                              "dK/dV launches, with buffer gradients a third that finalizes "
                              "them; waited for)\n",
                              compileS, backwardTime * 1e3);
  for (const GradientError &r : rows)
    llvm::outs() << fmt::format("{:<9} relative error {:.3e} (normwise), tolerance {:.1e}\n",
                                r.name, r.error, r.tolerance);
  llvm::outs() << fmt::format("digest    {:016x} (of every gradient's bits)\n", digest);
  if (repeatable != Repeatable::Unknown)
    llvm::outs() << fmt::format("repeat    {} over {} runs\n",
                                repeatable == Repeatable::Yes ? "bitwise identical gradients"
                                                              : "gradients DIFFER between runs",
                                options.repeat);
  if (outOfRange)
    llvm::outs() << "problem   the reference read a buffer out of range\n";
  llvm::outs() << fmt::format("backward  {}\n", passed ? "PASSED" : "FAILED");
  return passed;
}


template <typename Platform>
int runBackwardOn(const spec::Variant &variant, KernelConfig config, HostTensor &q, HostTensor &k,
                  HostTensor &v, std::vector<HostTensor> &buffers, std::mt19937_64 &rng,
                  const BackwardOptions &options, std::string chip, ServingCall *call) {
  std::string why;
  if (!Platform::available(why)) {
    llvm::outs() << "heed-run: SKIPPED: " << why << "\n";
    return 77;
  }
  if (chip.empty() && (chip = Platform::deviceChip(why)).empty())
    return error(why);
  auto target = Platform::target(chip, options.kind);
  if (!target)
    return error(llvm::toString(target.takeError()));
  config.lse = true;
  auto gradients = differentiableBuffers(variant);
  if (!gradients)
    return error(llvm::toString(gradients.takeError()));
  std::unique_ptr<typename Platform::Module> modules[3];
  double compileS = 0;
  if (std::string err = loadKernels(variant, config, *target, modules, compileS);
      !err.empty())
    return error(err);
  bool bshd = config.layout == Layout::BSHD;
  const std::vector<int64_t> &qs = q.shape(), &ks = k.shape();
  int64_t B = qs[0], Hq = qs[bshd ? 2 : 1], Sq = qs[bshd ? 1 : 2];
  int64_t Skv = ks[bshd ? 1 : 2];
  BackwardTensors t; // out in the kernel's dtype: the GPU forward writes it so
  if (std::string err = t.create(variant, config, config.dtype, q, k, v, buffers, *gradients, rng);
      !err.empty())
    return error(err);

  // A ragged batch (--kv-lens, --q-lens, --packed): its lengths (host
  // tensors, as the launch takes them); packed, every row tensor end to end.
  Layout layout = config.layout;
  PackedBackward packed;
  HostTensor *rowsQ = &q, *rowsK = &k, *rowsV = &v, *rowsOut = &t.out, *rowsLse = &t.lse;
  HostTensor *rowsDout = &t.dout, *rowsDelta = &t.delta, *rowsDq = &t.dq, *rowsDk = &t.dk,
             *rowsDv = &t.dv;
  AttentionArgs lengths;
  if (call) {
    packed.pack(*call, t, layout);
    if (call->packQ) {
      call->pack(q, k, v, t.out, t.lse, layout);
      rowsQ = &call->packedQ, rowsOut = &call->packedOut, rowsLse = &call->packedLse;
      rowsDout = &packed.dout, rowsDq = &packed.dq, rowsDelta = &packed.delta;
    }
    if (call->packKV) {
      rowsK = &call->packedK, rowsV = &call->packedV;
      rowsDk = &packed.dk, rowsDv = &packed.dv;
    }
    call->bind(lengths);
  }
  DeviceTensors<typename Platform::Buffer> device;
  GPUBackwardTensors args;
  args.forward.q = device.copy(*rowsQ, true);
  args.forward.k = device.copy(*rowsK, true);
  args.forward.v = device.copy(*rowsV, true);
  args.forward.out = device.copy(*rowsOut, true);
  args.forward.lse = device.copy(*rowsLse, true);
  args.forward.kvLens = lengths.kvLens, args.forward.qLens = lengths.qLens;
  args.forward.cuSeqlensQ = lengths.cuSeqlensQ, args.forward.cuSeqlensKV = lengths.cuSeqlensKV;
  for (HostTensor &b : buffers)
    args.forward.buffers.push_back(device.copy(b, true));
  args.dout = device.copy(*rowsDout, true);
  args.delta = device.copy(*rowsDelta, true);
  args.dq = device.copy(*rowsDq, true);
  args.dk = device.copy(*rowsDk, true);
  args.dv = device.copy(*rowsDv, true);
  for (HostTensor &g : t.grads)
    args.bufferGrads.push_back(device.copy(g, true));
  if (!device.error.empty())
    return error(device.error);

  KernelInfo info = describeKernel(variant, config);
  GPULaunchOptions synchronous;
  synchronous.synchronous = true; // each kernel's own error belongs to this run
  if (std::string err = modules[0]->launchAttention(info, args.forward, nullptr, synchronous);
      !err.empty())
    return error("forward: " + err);
  // The backward's time: the median of `repeat` synchronous launches.
  // With two runs or more, the first run's gradients are kept to compare
  // bitwise with the last's.
  std::vector<double> times;
  unsigned runs = std::max(1u, options.repeat);
  uint64_t firstDigest = 0;
  for (unsigned r = 0; r < runs; ++r) {
    auto start = std::chrono::steady_clock::now();
    if (std::string err = modules[1]->launchBackward(info, args, *gradients, *modules[2],
                                                     nullptr, synchronous);
        !err.empty())
      return error("backward: " + err);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (r == 0 && runs > 1) {
      if (std::string err = device.download(); !err.empty())
        return error(err);
      firstDigest = gradientDigest(t);
    }
  }
  std::sort(times.begin(), times.end());
  double backwardTime = times[times.size() / 2];
  if (std::string err = device.download(); !err.empty())
    return error(err);
  uint64_t digest = gradientDigest(t);
  Repeatable repeatable = runs < 2              ? Repeatable::Unknown
                          : digest == firstDigest ? Repeatable::Yes
                                                  : Repeatable::No;

  if (call)
    packed.unpack(*call, t, layout);
  bool outOfRange = false;
  std::vector<int64_t> none;
  std::vector<GradientError> rows =
      gradientErrors(variant, config, q, k, v, buffers, t, *gradients, options, outOfRange,
                     call ? call->lens : none, call ? call->queries : none);
  double pairs = call ? call->pairs(1, Sq, Skv) : double(B) * Sq * Skv;
  double flops = 2.5 * 2.0 * pairs * Hq * (config.headDim + config.valueDim());
  return report(variant, options, target->chip, compileS, backwardTime, flops, rows, outOfRange,
                digest, repeatable)
             ? 0
             : 2;
}

} // namespace

int runBackwardOnGPU(GPUPlatform platform, const spec::Variant &variant, KernelConfig config,
                     HostTensor &q, HostTensor &k, HostTensor &v, std::vector<HostTensor> &buffers,
                     std::mt19937_64 &rng, const BackwardOptions &options, std::string chip,
                     ServingCall *call) {
  return platform == GPUPlatform::CUDA
             ? runBackwardOn<CUDABackend>(variant, config, q, k, v, buffers, rng, options, chip,
                                          call)
             : runBackwardOn<HIPBackend>(variant, config, q, k, v, buffers, rng, options, chip,
                                         call);
}

} // namespace heed::run
