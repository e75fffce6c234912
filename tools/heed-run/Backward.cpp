// heed-run --backward (Backward.h): forward with lse, then the backward on
// a random dout; dq, dk, dv and every buffer gradient compared normwise
// with the float64 reference backward.
#include "Backward.h"

#include "heed/Compiler/Backward.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Runtime/Reference.h"
#include "heed/Runtime/ReferenceBackward.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace heed::run {
namespace {

int error(const std::string &msg) {
  llvm::WithColor::error(llvm::errs(), "heed-run") << msg << "\n";
  return 1;
}

/// The median time of `repeat` calls of `fn` (which may fail).
llvm::Expected<double> medianTime(unsigned repeat, const std::function<llvm::Error()> &fn) {
  std::vector<double> times;
  for (unsigned r = 0; r < std::max(1u, repeat); ++r) {
    auto start = std::chrono::steady_clock::now();
    if (llvm::Error err = fn())
      return std::move(err);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<double> values(const HostTensor &t) {
  std::vector<double> out(size_t(t.size()));
  for (int64_t i = 0; i < t.size(); ++i)
    out[size_t(i)] = t.get(i);
  return out;
}

/// What one --backward run measured.
struct Report {
  const spec::Variant &variant;
  const BackwardOptions &options;
  const Kernel &forward;
  const BackwardKernel &backward;
  KernelTiling tiles; ///< the backward's tiles (flat, or patches of a grid)
  double forwardTime, backwardTime, backwardFlops;
  MaskCensus census;
  RunStats stats;
  std::vector<GradientError> errors;
  double worst;
  bool passed, outOfRange;
};

llvm::json::Value number(double x) {
  return std::isfinite(x) ? llvm::json::Value(x) : llvm::json::Value(nullptr);
}

void printJSON(const Report &r) {
  llvm::json::Object o{{"variant", r.variant.name},
                       {"shape", r.options.shape},
                       {"seed", static_cast<int64_t>(r.options.seed)},
                       {"compile_s", r.forward.compileSeconds()},
                       {"cache", toString(r.forward.cacheOutcome())},
                       {"backward_compile_s", r.backward.compileSeconds()},
                       {"backward_cache", toString(r.backward.cacheOutcome())},
                       {"forward_time_s", r.forwardTime},
                       {"backward_time_s", r.backwardTime},
                       {"backward_over_forward", r.backwardTime / r.forwardTime},
                       {"backward_tflops", r.backwardFlops / r.backwardTime / 1e12},
                       {"density", r.census.density()},
                       {"blocks_visited", r.stats.visitedBlocks},
                       {"blocks_full", r.stats.fullBlocks},
                       {"blocks_total", r.stats.totalBlocks},
                       {"blocks_minimum", r.census.nonEmptyBlocks},
                       {"threads", static_cast<int64_t>(r.options.threads)},
                       {"backward_tiles", r.tiles.describe()}};
  if (r.options.check) {
    o["grad_max_rel_error"] = number(r.worst);
    o["backward_passed"] = r.passed;
  }
  llvm::json::Object per, tolerances;
  for (const GradientError &g : r.errors) {
    per[g.name] = number(g.error);
    tolerances[g.name] = number(g.tolerance);
  }
  o["grad_rel_errors"] = std::move(per);
  o["grad_tolerances"] = std::move(tolerances);
  llvm::outs() << llvm::formatv("{0:2}", llvm::json::Value(std::move(o))) << "\n";
}

void printText(const Report &r) {
  llvm::outs() << fmt::format("variant   {}\nshape     {}\nseed      {}\n", r.variant.name,
                              r.options.shape, r.options.seed);
  llvm::outs() << fmt::format("compile   {:.3f} s forward ({}), {:.3f} s backward ({}, tiles "
                              "{})\n",
                              r.forward.compileSeconds(), toString(r.forward.cacheOutcome()),
                              r.backward.compileSeconds(), toString(r.backward.cacheOutcome()),
                              r.tiles.describe());
  llvm::outs() << fmt::format("forward   {:.3f} ms\nbackward  {:.3f} ms ({:.2f}x forward), "
                              "{:.3f} TFLOP/s (2.5x the forward's useful work)\n",
                              r.forwardTime * 1e3, r.backwardTime * 1e3,
                              r.backwardTime / r.forwardTime,
                              r.backwardFlops / r.backwardTime / 1e12);
  llvm::outs() << fmt::format("blocks    {} visited of {} ({} full); minimum {}\n",
                              r.stats.visitedBlocks, r.stats.totalBlocks, r.stats.fullBlocks,
                              r.census.nonEmptyBlocks);
  for (const GradientError &g : r.errors)
    llvm::outs() << fmt::format("{:<9} relative error {:.3e} (normwise), tolerance {:.1e}\n",
                                g.name, g.error, g.tolerance);
  if (r.outOfRange)
    llvm::outs() << "problem   the reference read a buffer out of range\n";
  if (r.options.check)
    llvm::outs() << fmt::format("backward  {}\n", r.passed ? "PASSED" : "FAILED");
}

} // namespace

bool withinTolerances(const std::vector<GradientError> &errors, double &worst) {
  bool within = true;
  for (const GradientError &g : errors) {
    worst = std::isfinite(worst) && !(g.error <= worst) ? g.error : worst;
    within = within && g.error <= g.tolerance; // NaN fails
  }
  return within && std::isfinite(worst);
}

std::string BackwardTensors::create(const spec::Variant &variant, const KernelConfig &config,
                                    DType outDType, const HostTensor &q, const HostTensor &k,
                                    const HostTensor &v, const std::vector<HostTensor> &buffers,
                                    const std::vector<unsigned> &gradients,
                                    std::mt19937_64 &rng) {
  bool bshd = config.layout == Layout::BSHD;
  const std::vector<int64_t> &qs = q.shape();
  std::vector<int64_t> rows = {qs[0], qs[bshd ? 2 : 1], qs[bshd ? 1 : 2]};
  std::vector<int64_t> outShape = qs;
  outShape[3] = config.valueDim();
  for (auto [name, t, dt, shape] :
       {std::tuple{"out", &out, outDType, outShape}, std::tuple{"lse", &lse, DType::F32, rows},
        std::tuple{"delta", &delta, DType::F32, rows},
        std::tuple{"dout", &dout, config.dtype, outShape},
        std::tuple{"dq", &dq, config.dtype, qs}, std::tuple{"dk", &dk, config.dtype, k.shape()},
        std::tuple{"dv", &dv, config.dtype, v.shape()}})
    if (std::string err = HostTensor::create(name, dt, shape, *t); !err.empty())
      return err;
  dout.fillUniform(rng, -1, 1);
  grads.resize(gradients.size());
  for (size_t g = 0; g < gradients.size(); ++g)
    if (std::string err =
            HostTensor::create("gradient of '" + variant.buffers[gradients[g]].name + "'",
                               DType::F32, buffers[gradients[g]].shape(), grads[g]);
        !err.empty())
      return err;
  for (HostTensor *t : {&out, &lse, &delta, &dq, &dk, &dv})
    t->poison();
  for (HostTensor &g : grads)
    g.poison();
  return "";
}

void PackedBackward::pack(const ServingCall &call, const BackwardTensors &t, Layout layout) {
  if (call.packQ) {
    dout = packSequences(t.dout, call.queries, layout, 0);
    delta = packSequences(t.delta, call.queries, layout, 0);
    dq = packSequences(t.dq, call.queries, layout, 0);
  }
  if (call.packKV) {
    dk = packSequences(t.dk, call.lens, layout, 0);
    dv = packSequences(t.dv, call.lens, layout, 0);
  }
}

void PackedBackward::unpack(const ServingCall &call, BackwardTensors &t, Layout layout) const {
  auto into = [&](const HostTensor &packed, const std::vector<int64_t> &lens, HostTensor &padded) {
    for (int64_t i = 0; i < padded.size(); ++i)
      padded.set(i, 0);
    unpackSequences(packed, lens, layout, padded);
  };
  if (call.packQ)
    into(dq, call.queries, t.dq);
  if (call.packKV) {
    into(dk, call.lens, t.dk);
    into(dv, call.lens, t.dv);
  }
}

std::vector<GradientError> gradientErrors(const spec::Variant &variant, const KernelConfig &config,
                                          const HostTensor &q, const HostTensor &k,
                                          const HostTensor &v,
                                          const std::vector<HostTensor> &buffers,
                                          const BackwardTensors &t,
                                          const std::vector<unsigned> &gradients,
                                          const BackwardOptions &options, bool &outOfRange,
                                          const std::vector<int64_t> &kvLens,
                                          const std::vector<int64_t> &qLens) {
  BackwardProblem problem =
      backwardProblem(q, k, v, t.dout, config.layout, config.effectiveScale(), buffers);
  problem.kvLens = kvLens;
  problem.qLens = qLens;
  // Where out is stored in f16/bf16, delta computed from it moves the
  // gradients by more than their own rounding: the tolerance says how much.
  problem.deltaSensitivity = t.out.dtype() != DType::F32;
  ReferenceGradients ref = referenceBackward(variant, problem, options.threads);
  outOfRange = ref.outOfRange != 0;
  std::vector<GradientError> errors;
  auto check = [&](std::string name, const std::vector<double> &got,
                   const std::vector<double> &want, double deltaRms,
                   const std::vector<double> *magnitudes = nullptr) {
    double tolerance = options.tolerance ? options.tolerance
                                         : gradientTolerance(config.dtype, ref.maxAbsScore,
                                                             deltaRms, want, magnitudes);
    errors.push_back({std::move(name), normwiseError(got, want), tolerance});
  };
  check("dq", bhsdValues(t.dq, config.layout), ref.dq, ref.deltaRms.dq);
  check("dk", bhsdValues(t.dk, config.layout), ref.dk, ref.deltaRms.dk);
  check("dv", bhsdValues(t.dv, config.layout), ref.dv, 0);
  for (size_t g = 0; g < gradients.size(); ++g)
    check("d" + variant.buffers[gradients[g]].name, values(t.grads[g]),
          ref.dBuffers[gradients[g]], ref.deltaRms.dBuffers[gradients[g]],
          &ref.dBufferMagnitudes[gradients[g]]);
  return errors;
}

int runBackward(const spec::Variant &variant, KernelConfig config, HostTensor &q, HostTensor &k,
                HostTensor &v, std::vector<HostTensor> &buffers, std::mt19937_64 &rng,
                const BackwardOptions &options, ServingCall *call) {
  config.lse = true;
  // A training forward: O in f32 (for f16/bf16 inputs), so that the
  // backward's delta = rowsum(dO * O) is not moved by O's rounding
  // (--backward-out-dtype=storage keeps O in the inputs' dtype).
  KernelConfig forwardConfig = config;
  forwardConfig.outF32 = options.outF32 && config.dtype != DType::F32;
  auto forward = Kernel::compile(variant, forwardConfig);
  if (!forward)
    return error(llvm::toString(forward.takeError()));
  KernelConfig backwardConfig = config;
  backwardConfig.backwardBlockKV = options.blockKV;
  backwardConfig.backwardSplit = options.split;
  backwardConfig.outF32 = forwardConfig.outF32; // the dtype of the out it reads
  if (llvm::Error err = backwardConfig.validate())
    return error("--backward-block-kv: " + llvm::toString(std::move(err)));
  auto backward = BackwardKernel::compile(variant, backwardConfig);
  if (!backward)
    return error(llvm::toString(backward.takeError()));
  bool bshd = config.layout == Layout::BSHD;
  const std::vector<int64_t> &qs = q.shape(), &ks = k.shape();
  int64_t B = qs[0], Hq = qs[bshd ? 2 : 1], Sq = qs[bshd ? 1 : 2];
  int64_t Hkv = ks[bshd ? 2 : 1], Skv = ks[bshd ? 1 : 2];
  const std::vector<unsigned> &gradBuffers = (*backward)->gradientBuffers();
  BackwardTensors t;
  if (std::string err = t.create(variant, config, forwardConfig.outF32 ? DType::F32 : config.dtype,
                                 q, k, v, buffers, gradBuffers, rng);
      !err.empty())
    return error(err);
  AttentionArgs fwd{q.ref(), k.ref(), v.ref(), t.out.ref(), t.lse.ref(), {}};
  for (HostTensor &b : buffers)
    fwd.buffers.push_back(b.ref());
  std::vector<TensorRef> gradRefs;
  for (HostTensor &g : t.grads)
    gradRefs.push_back(g.ref());
  BackwardArgs bwd =
      BackwardArgs::of(fwd, t.dout.ref(), t.dq.ref(), t.dk.ref(), t.dv.ref(), gradRefs);
  // A ragged batch: its lengths; packed, every row tensor end to end (dout
  // and the gradients too, poisoned as the padded ones).
  PackedBackward packed;
  Layout layout = config.layout;
  if (call) {
    // dO past an entry's queries: NaN (as q's; no kernel may read it).
    if (!call->packQ && !call->queries.empty())
      ServingCall::poisonRowsPast(t.dout, call->queries, layout);
    if (call->packQ)
      call->pack(q, k, v, t.out, t.lse, layout);
    call->bind(fwd);
    bwd = BackwardArgs::of(fwd, t.dout.ref(), t.dq.ref(), t.dk.ref(), t.dv.ref(), gradRefs);
    packed.pack(*call, t, layout);
    if (call->packQ)
      bwd.dout = packed.dout.ref(), bwd.dq = packed.dq.ref();
    if (call->packKV)
      bwd.dk = packed.dk.ref(), bwd.dv = packed.dv.ref();
  }

  RunStats fstats, bstats;
  auto forwardTime = medianTime(options.repeat, [&] { return (*forward)->run(fwd, options.threads, &fstats); });
  if (!forwardTime)
    return error(llvm::toString(forwardTime.takeError()));
  auto backwardTime = medianTime(options.repeat, [&] { return (*backward)->run(bwd, options.threads, &bstats); });
  if (!backwardTime)
    return error(llvm::toString(backwardTime.takeError()));

  if (call)
    packed.unpack(*call, t, layout);
  std::vector<GradientError> errors;
  bool outOfRange = false;
  std::vector<int64_t> noLengths;
  if (options.check)
    errors = gradientErrors(variant, config, q, k, v, buffers, t, gradBuffers, options, outOfRange,
                            call ? call->lens : noLengths, call ? call->queries : noLengths);
  double worst = 0;
  bool passed = !options.check || (withinTolerances(errors, worst) && !outOfRange);

  AttentionDims dims{B, Hq, Hkv, Sq, Skv};
  auto tiles = backwardTiling(variant, backwardConfig);
  if (!tiles)
    return error(llvm::toString(tiles.takeError()));
  MaskCensus census =
      call ? servingMaskCensus(variant, dims, buffers, *tiles, call->lens, options.threads,
                               call->queries)
           : tiledMaskCensus(variant, dims, buffers, *tiles, options.threads);
  // Useful work: the visible (query, key) pairs of each entry.
  double pairs = call ? call->pairs(1, Sq, Skv) : double(B) * Sq * Skv;
  double flops = 2.0 * census.density() * pairs * Hq * (config.headDim + config.valueDim());
  double backwardFlops = 2.5 * flops;

  Report report{variant,         options,        **forward,      **backward, *tiles,
                *forwardTime,    *backwardTime, backwardFlops, census,     bstats,
                std::move(errors), worst,       passed,        outOfRange};
  if (options.json)
    printJSON(report);
  else
    printText(report);
  return passed ? 0 : 2;
}

} // namespace heed::run
