// Differential testing of the mask analysis (issue 19): random well-typed
// variants, each compiled with and without --attn-analyze-mask and run on fresh
// random inputs (outputs poisoned), checked against the float64 reference and
// a brute-force block census. docs/testing.md describes the long runs:
//   HEED_DIFF_VARIANTS=N   variants to try (default 60, the ctest subset)
//   HEED_DIFF_SEED=S       the first variant's seed (default 19019); variant i
//                          uses S + i, so one failing variant reruns alone
//                          with HEED_DIFF_SEED=<its seed> HEED_DIFF_VARIANTS=1
//   HEED_DIFF_PRINT=1      print every variant with its sizes
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Reference.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace heed;

namespace {

/// Token-indexed buffers have this many entries; sequences are shorter.
constexpr int64_t kTokens = 128;
constexpr int64_t kMaxSeq = 100;

/// Constants where i64 arithmetic wraps or divisions misbehave. The smallest
/// i64 has no literal: it is written as a difference.
const char *const kExtremeInts[] = {"9223372036854775807",
                                    "(-9223372036854775807 - 1)",
                                    "4611686018427387904",
                                    "(-4611686018427387904)",
                                    "4294967296",
                                    "9223372036854775806",
                                    "3037000500",
                                    "(-3037000500)",
                                    "(-9223372036854775807)"};

/// Nonzero constant divisors: floor division by negatives, by -1 (guarded in
/// the kernel) and by extremes.
const char *const kDivisors[] = {"1",
                                 "2",
                                 "3",
                                 "5",
                                 "7",
                                 "16",
                                 "(-1)",
                                 "(-2)",
                                 "(-3)",
                                 "(-7)",
                                 "9223372036854775807",
                                 "(-9223372036854775807 - 1)",
                                 "4611686018427387904"};

/// Values an i64 buffer may hold (doubles that convert exactly).
const double kExtremeBufferValues[] = {4611686018427387904.0, -4611686018427387904.0,
                                       -9223372036854775808.0, 9223372036854774784.0};

/// Writes a random variant in the spec language: masks from the prelude and
/// i64/f32 arithmetic over q, kv, b, h, params and buffer reads, a score
/// modifier, sometimes a route. Only the buffers it reads are declared.
class Generator {
public:
  explicit Generator(uint64_t seed) : rng(seed) {}

  std::string variant() {
    // A quarter of the variants see tokens on a 2-D grid of rows of
    // `gridWidth`, or a 3-D one of `gridDepth` x `gridWidth` planes: their
    // masks read q and kv only as grid coordinates, so the kernel tiles them
    // by patches.
    if (chance(0.25)) {
      const int64_t widths[] = {3, 4, 5, 6, 8, 10, 12, 16};
      gridWidth = widths[pick(std::size(widths))];
      if (chance(0.3))
        gridDepth = 2 + pick(4);
    }
    std::ostringstream body;
    int numParams = pick(3);
    for (int i = 0; i < numParams; ++i) {
      std::string name = "p" + std::to_string(i);
      bool extreme = chance(0.5);
      std::string value =
          extreme ? kExtremeInts[pick(std::size(kExtremeInts))] : std::to_string(pick(41) - 10);
      intParams.push_back({name, value != "0"});
      body << "  param " << name << ": i64 = " << value << "\n";
    }
    if (chance(0.3)) {
      floatParam = true;
      body << "  param fp: f32 = " << floatConst() << "\n";
    }
    std::string mask = boolExpr(3);
    std::string score = scoreExpr();
    std::string route;
    if (chance(0.15)) {
      const char *selectors[] = {"h % 2", "(h + b) % 3 - 1", "win[h] % 3", "i64(h < 1)",
                                 "big[h] / 4611686018427387904"};
      std::string sel = selectors[pick(std::size(selectors))];
      useWin |= sel.find("win") != std::string::npos;
      useBig |= sel.find("big") != std::string::npos;
      route = "  route " + sel + " {\n";
      for (int c : {0, 1, -1}) {
        if (chance(0.2))
          continue;
        route += "    case " + std::to_string(c) + " { mask = " + boolExpr(2);
        if (chance(0.3))
          route += "  score = " + scoreExpr();
        route += " }\n";
      }
      route +=
          std::string("    case 7 { mask = ") + (gridWidth ? "false" : "causal()") + " }\n  }\n";
    }
    std::ostringstream out;
    out << "variant v {\n";
    if (useDoc)
      out << "  buffer doc: i32[" << kTokens << "]\n";
    if (useBig)
      out << "  buffer big: i64[" << kTokens << "]\n";
    if (useLayout)
      out << "  buffer layout: i8[H, 8, 8]\n";
    if (useWin)
      out << "  buffer win: i64[H]\n";
    if (useFlag)
      out << "  buffer flag: bool[H]\n";
    if (useFb)
      out << "  buffer fb: f32[" << kTokens << "]\n";
    if (useSlopes)
      out << "  buffer slopes: f32[H]\n";
    if (useTable)
      out << "  buffer table: f32[H, " << 2 * tableRadius + 1 << "]\n";
    out << body.str() << "  score = " << score << "\n  mask = " << mask << "\n" << route << "}\n";
    return out.str();
  }

private:
  int pick(size_t n) {
    return static_cast<int>(std::uniform_int_distribution<size_t>(0, n - 1)(rng));
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng); }

  std::string floatConst() {
    const char *values[] = {"0.5",   "(-2.25)", "1e30", "(-1e30)", "3.4e38",
                            "1e-30", "7.0",     "0.0",  "(-0.0)",  "100.5"};
    return values[pick(std::size(values))];
  }

  std::string intConst() {
    switch (pick(4)) {
    case 0:
      return std::to_string(pick(25) - 4);
    case 1:
      return "(" + std::to_string(pick(601) - 300) + ")";
    default:
      return kExtremeInts[pick(std::size(kExtremeInts))];
    }
  }

  /// q or kv, or on a grid its row or column.
  std::string token(const char *name) {
    if (!gridWidth)
      return name;
    std::string w = std::to_string(gridWidth), n = name;
    if (!gridDepth)
      return "(" + n + (pick(2) ? " / " : " % ") + w + ")";
    switch (pick(3)) {
    case 0:
      return "(" + n + " / " + std::to_string(gridWidth * gridDepth) + ")";
    case 1:
      return "(" + n + " / " + w + " % " + std::to_string(gridDepth) + ")";
    default:
      return "(" + n + " % " + w + ")";
    }
  }

  /// An index into a token-indexed buffer: in range by construction.
  std::string tokenIndex(int depth) {
    switch (gridWidth ? 2 : pick(3)) {
    case 0:
      return "q";
    case 1:
      return "kv";
    default:
      return "clamp(" + intExpr(depth - 1) + ", 0, " + std::to_string(kTokens - 1) + ")";
    }
  }

  std::string intRead(int depth) {
    switch (pick(3)) {
    case 0:
      useDoc = true;
      return "doc[" + tokenIndex(depth) + "]";
    case 1:
      useBig = true;
      return "big[" + tokenIndex(depth) + "]";
    default:
      useWin = true;
      return "win[h]";
    }
  }

  std::string intLeaf(int depth) {
    switch (pick(12)) {
    case 0:
    case 1:
    case 2:
      return token("q");
    case 3:
    case 4:
    case 5:
      return token("kv");
    case 6:
      return pick(2) ? "b" : "h";
    case 7:
    case 8:
      return intConst();
    case 9:
      if (!intParams.empty())
        return intParams[pick(intParams.size())].first;
      return intConst();
    case 10:
      return intRead(depth);
    default:
      return chance(0.5) ? "i64(" + floatExpr(depth - 1) + ")" : "i64(" + boolExpr(0) + ")";
    }
  }

  std::string divisor(int depth) {
    switch (pick(6)) {
    case 0:
    case 1:
    case 2:
      return kDivisors[pick(std::size(kDivisors))];
    case 3: {
      const char *vars[] = {"h - 1", "b - 1", "kv - 5", "q % 4 - 2", "kv - q"};
      if (gridWidth)
        return "(" + token("kv") + " - " + token("q") + ")";
      return std::string("(") + vars[pick(std::size(vars))] + ")";
    }
    case 4:
      return intRead(depth);
    default:
      for (const auto &[name, nonzero] : intParams)
        if (nonzero && chance(0.5))
          return name;
      return kDivisors[pick(std::size(kDivisors))];
    }
  }

  std::string intExpr(int depth) {
    if (depth <= 0 || chance(0.3))
      return intLeaf(depth);
    std::string a = intExpr(depth - 1);
    switch (pick(12)) {
    case 0:
    case 1:
      return "(" + a + " + " + intExpr(depth - 1) + ")";
    case 2:
    case 3:
      return "(" + a + " - " + intExpr(depth - 1) + ")";
    case 4:
      return "(" + a + " * " + intExpr(depth - 1) + ")";
    case 5:
      return "(" + a + " / " + divisor(depth - 1) + ")";
    case 6:
      return "(" + a + " % " + divisor(depth - 1) + ")";
    case 7:
      return (pick(2) ? "min(" : "max(") + a + ", " + intExpr(depth - 1) + ")";
    case 8:
      return chance(0.5) ? "abs(" + a + ")" : "(-" + a + ")";
    case 9:
      return "(" + boolExpr(depth - 1) + " ? " + a + " : " + intExpr(depth - 1) + ")";
    case 10:
      return "clamp(" + a + ", " + intExpr(depth - 1) + ", " + intExpr(depth - 1) + ")";
    default:
      return "(" + a + " * " + kDivisors[pick(std::size(kDivisors))] + ")";
    }
  }

  /// f32 arithmetic that rounds exactly alike in the kernel and the
  /// reference (no exp/log/tanh, whose last ulp may differ, in masks).
  std::string floatExpr(int depth) {
    if (depth <= 0 || chance(0.35)) {
      switch (pick(5)) {
      case 0:
      case 1:
        return "f32(" + intExpr(depth - 1) + ")";
      case 2:
        return floatConst();
      case 3:
        useFb = true;
        return "fb[" + tokenIndex(depth) + "]";
      default:
        return floatParam ? "fp" : floatConst();
      }
    }
    std::string a = floatExpr(depth - 1);
    switch (pick(7)) {
    case 0:
      return "(" + a + " + " + floatExpr(depth - 1) + ")";
    case 1:
      return "(" + a + " - " + floatExpr(depth - 1) + ")";
    case 2:
      return "(" + a + " * " + floatExpr(depth - 1) + ")";
    case 3:
      return "(" + a + " / " + floatExpr(depth - 1) + ")";
    case 4:
      return (pick(2) ? "min(" : "max(") + a + ", " + floatExpr(depth - 1) + ")";
    case 5:
      return "abs(" + a + ")";
    default:
      return "(-" + a + ")";
    }
  }

  /// An argument of a library mask: a constant or an expression.
  std::string arg(int depth) { return chance(0.5) ? intConst() : intExpr(depth - 1); }
  std::string smallPositive(int hi) { return std::to_string(1 + pick(hi)); }
  std::string dilation() {
    const char *values[] = {"1", "1", "2", "3", "(-1)", "(-2)"};
    return values[pick(std::size(values))];
  }
  std::string flag() { return pick(2) ? "true" : "false"; }

  std::string libraryMask(int depth) {
    if (gridDepth)
      return "neighborhood_3d(" + smallPositive(4) + ", " + std::to_string(gridDepth) + ", " +
             std::to_string(gridWidth) + ", " + arg(depth) + ", " + arg(depth) + ", " + arg(depth) +
             ", dil2=" + dilation() + ", causal0=" + flag() + ")";
    if (gridWidth)
      return "neighborhood_2d(" + smallPositive(12) + ", " + std::to_string(gridWidth) +
             ", kh=" + arg(depth) + ", kw=" + arg(depth) + ", dh=" + dilation() +
             ", dw=" + dilation() + ", causal_h=" + flag() + ", causal_w=" + flag() + ")";
    switch (pick(11)) {
    case 0:
      return "causal()";
    case 1:
      return "sliding_window(" + arg(depth) + ")";
    case 2:
      return "band(" + arg(depth) + ", " + arg(depth) + ")";
    case 3:
      return "prefix_lm(" + arg(depth) + ")";
    case 4:
      return "sinks(" + arg(depth) + ")";
    case 5:
      useDoc = true;
      return "document(doc)";
    case 6: {
      // q / bq and kv / bk stay below 8 for sequences up to kMaxSeq.
      useLayout = true;
      const char *sides[] = {"13", "16", "25"};
      return std::string("block_sparse(layout, ") + sides[pick(3)] + ", " + sides[pick(3)] + ")";
    }
    case 7:
      return "neighborhood_1d(" + arg(depth) + ", " + arg(depth) + ", " + dilation() +
             ", causal=" + flag() + ")";
    case 8:
    case 9: {
      const char *widths[] = {"3", "4", "7", "10", "12", "16", "(-3)"};
      return "neighborhood_2d(" + smallPositive(12) + ", " + widths[pick(std::size(widths))] +
             ", kh=" + arg(depth) + ", kw=" + arg(depth) + ", dh=" + dilation() +
             ", dw=" + dilation() + ", causal_h=" + flag() + ", causal_w=" + flag() + ")";
    }
    default:
      return "neighborhood_3d(" + smallPositive(4) + ", " + smallPositive(5) + ", " +
             smallPositive(6) + ", " + smallPositive(5) + ", " + smallPositive(5) + ", " +
             smallPositive(5) + ", dil2=" + dilation() + ", causal0=" + flag() + ")";
    }
  }

  std::string boolExpr(int depth) {
    const char *cmps[] = {" < ", " <= ", " > ", " >= ", " == ", " != "};
    if (depth <= 0 || chance(0.3)) {
      switch (pick(9)) {
      case 0:
      case 1:
      case 2:
      case 3:
        return libraryMask(depth);
      case 4:
      case 5:
      case 6:
        return "(" + intExpr(depth) + cmps[pick(6)] + intExpr(depth) + ")";
      case 7:
        return "(" + floatExpr(depth) + cmps[pick(6)] + floatExpr(depth) + ")";
      default:
        if (chance(0.5)) {
          useFlag = true;
          return "flag[h]";
        }
        return chance(0.5) ? "true" : "false";
      }
    }
    std::string a = boolExpr(depth - 1);
    switch (pick(6)) {
    case 0:
    case 1:
      return "(" + a + " && " + boolExpr(depth - 1) + ")";
    case 2:
    case 3:
      return "(" + a + " || " + boolExpr(depth - 1) + ")";
    case 4:
      return "!" + a;
    default:
      return chance(0.5)
                 ? "(" + a + (pick(2) ? " == " : " != ") + boolExpr(depth - 1) + ")"
                 : "(" + boolExpr(depth - 1) + " ? " + a + " : " + boolExpr(depth - 1) + ")";
    }
  }

  /// Score modifiers that stay finite, so rows compare with finite tolerances.
  std::string scoreExpr() {
    switch (pick(7)) {
    case 0:
      return "score";
    case 1:
      return "score + 0.5 * tanh(f32(" + intExpr(2) + ") * 0.01)";
    case 2:
      return "(" + boolExpr(2) + " ? score : score - 3.0)";
    case 3:
      return "softcap(score, " + std::to_string(2 + pick(28)) + ".0)";
    case 4:
      useSlopes = true;
      return "alibi(score, slopes)";
    case 5:
      useTable = true;
      return "relative_bias(score, table, " + std::to_string(tableRadius) + ")";
    default:
      useSlopes = true;
      return "softcap(alibi(score, slopes) + 0.25 * tanh(f32(" + intExpr(1) + ")), 20.0)";
    }
  }

  std::mt19937_64 rng;
  std::vector<std::pair<std::string, bool>> intParams; ///< name, nonzero
  bool floatParam = false;
  bool useDoc = false, useBig = false, useLayout = false, useWin = false, useFlag = false,
       useFb = false, useSlopes = false, useTable = false;
  int tableRadius = 1 + static_cast<int>(rng() % 6);
  int64_t gridWidth = 0, gridDepth = 0;
};

/// Fills a variant's buffer the way its name says (see Generator).
void fillBuffer(const std::string &name, HostTensor &t, std::mt19937_64 &rng) {
  auto uniform = [&](double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng);
  };
  auto integer = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  int mode = static_cast<int>(integer(0, 3));
  for (int64_t i = 0; i < t.size(); ++i) {
    double v = 0;
    if (name == "doc") {
      // Document ids: sorted runs, noise, or the i32 extremes.
      v = mode <= 1   ? std::floor(i / double(1 + mode * 9 + 3))
          : mode == 2 ? double(integer(-3, 3))
                      : (integer(0, 1) ? 2147483647.0 : -2147483648.0);
    } else if (name == "big") {
      v = mode == 0       ? double(integer(-40, 140))
          : integer(0, 2) ? kExtremeBufferValues[integer(0, 3)]
                          : double(integer(-5, 5));
    } else if (name == "layout" || name == "flag") {
      v = double(integer(0, 1));
    } else if (name == "win") {
      v = mode <= 1 ? double(integer(-2, 40)) : kExtremeBufferValues[integer(0, 3)];
    } else if (name == "fb") {
      v = mode == 0            ? uniform(-50, 50)
          : integer(0, 9) == 0 ? (integer(0, 1) ? INFINITY : -INFINITY)
                               : double(integer(-60, 160));
    } else if (name == "slopes") {
      v = uniform(-0.1, 0.1);
    } else {
      v = uniform(-1, 1); // table
    }
    t.set(i, v);
  }
}

struct Totals {
  int variants = 0, failures = 0, skipping = 0, claimingFull = 0, patched = 0;
  int64_t visited = 0, nonEmpty = 0, total = 0;
};

int64_t envInt(const char *name, int64_t fallback) {
  const char *v = std::getenv(name);
  if (!v || !*v)
    return fallback;
  char *end = nullptr;
  long long r = std::strtoll(v, &end, 10);
  return end && *end == 0 ? r : fallback;
}

/// Compiles, runs and checks one random variant; appends what went wrong to
/// `problems`.
void runVariant(uint64_t seed, Totals &totals, std::vector<std::string> &problems) {
  std::string text = Generator(seed).variant();
  std::mt19937_64 rng(seed * 0x9e3779b97f4a7c15ull + 1);
  auto integer = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto seqLength = [&]() -> int64_t {
    switch (integer(0, 4)) {
    case 0:
      return integer(1, 8);
    case 1:
      return kMaxSeq;
    default:
      return integer(9, kMaxSeq);
    }
  };
  AttentionDims dims;
  dims.batch = integer(1, 2);
  dims.headsQ = integer(1, 4);
  dims.headsKV = integer(0, 1) ? dims.headsQ : 1;
  dims.seqQ = seqLength();
  dims.seqKV = integer(0, 2) ? dims.seqQ : seqLength();
  KernelConfig config;
  config.headDim = 16;
  config.lse = true;
  config.layout = integer(0, 3) ? Layout::BHSD : Layout::BSHD;
  const int64_t blockQs[] = {0, 16, 8, 32, 4, 64, 1}; // 0: by schedule
  const int64_t blockKVs[] = {16, 16, 7, 13, 32, 64, 1};
  config.blockQ = blockQs[integer(0, 6)];
  config.blockKV = blockKVs[integer(0, 6)];
  config.patchTiling = integer(0, 4) != 0;

  std::ostringstream where;
  where << "seed=" << seed << " B=" << dims.batch << " H=" << dims.headsQ << " Hkv=" << dims.headsKV
        << " Sq=" << dims.seqQ << " Skv=" << dims.seqKV << " block=" << config.blockQ << "x"
        << config.blockKV << " layout=" << (config.layout == Layout::BSHD ? "bshd" : "bhsd")
        << " patches=" << config.patchTiling;
  auto fail = [&](const std::string &what) {
    problems.push_back(where.str() + " (rerun: HEED_DIFF_SEED=" + std::to_string(seed) +
                       " HEED_DIFF_VARIANTS=1): " + what + "\n" + text);
  };
  ++totals.variants;
  if (envInt("HEED_DIFF_PRINT", 0))
    std::printf("[ variant  ] %s\n%s", where.str().c_str(), text.c_str());

  auto parsed = spec::parseSpec(text, "differential.attn");
  if (!parsed)
    return fail("the generated variant does not parse: " + llvm::toString(parsed.takeError()));
  spec::Variant variant = std::move(parsed->front());

  bool bshd = config.layout == Layout::BSHD;
  auto shape4 = [&](int64_t h, int64_t len, int64_t d) {
    return bshd ? std::vector<int64_t>{dims.batch, len, h, d}
                : std::vector<int64_t>{dims.batch, h, len, d};
  };
  HostTensor q(DType::F32, shape4(dims.headsQ, dims.seqQ, config.headDim));
  HostTensor k(DType::F32, shape4(dims.headsKV, dims.seqKV, config.headDim));
  HostTensor v(DType::F32, shape4(dims.headsKV, dims.seqKV, config.headDim));
  q.fillUniform(rng, -2, 2);
  k.fillUniform(rng, -2, 2);
  v.fillUniform(rng, -1, 1);
  std::vector<HostTensor> buffers;
  for (const spec::BufferDecl &decl : variant.buffers) {
    DType dt = DType::F32;
    if (!parseDType(spec::toString(decl.elem), dt))
      return fail("unknown buffer type");
    buffers.emplace_back(dt, resolveDims(decl.shape, dims));
    fillBuffer(decl.name, buffers.back(), rng);
  }

  ReferenceResult ref =
      referenceAttention(variant, q, k, v, config.layout, config.effectiveScale(), buffers);
  if (ref.outOfRange)
    return fail("the generated variant reads a buffer out of range");
  double tol = ref.f32Tolerance();

  std::vector<TensorRef> bufferRefs;
  for (HostTensor &b : buffers)
    bufferRefs.push_back(b.ref());
  for (bool analyze : {true, false}) {
    KernelConfig c = config;
    c.analyzeMask = analyze;
    std::string tag = analyze ? "with the analysis: " : "without the analysis: ";
    auto kernel = Kernel::compile(variant, c);
    if (!kernel)
      return fail(tag + "does not compile: " + llvm::toString(kernel.takeError()));
    HostTensor out(DType::F32, shape4(dims.headsQ, dims.seqQ, config.headDim));
    HostTensor lse(DType::F32, {dims.batch, dims.headsQ, dims.seqQ});
    out.poison();
    lse.poison();
    RunStats stats;
    if (llvm::Error err = (*kernel)->run(
            {q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), bufferRefs}, 0, &stats))
      return fail(tag + "the run failed: " + llvm::toString(std::move(err)));

    auto tiling = kernelTiling(variant, c);
    if (!tiling)
      return fail(tag + "no tiling: " + llvm::toString(tiling.takeError()));
    MaskCensus census = tiledMaskCensus(variant, dims, buffers, *tiling);
    std::ostringstream blocks;
    blocks << "visited " << stats.visitedBlocks << ", full " << stats.fullBlocks << " of "
           << stats.totalBlocks << " blocks; brute force: " << census.nonEmptyBlocks
           << " non-empty, " << census.fullBlocks << " full of " << census.totalBlocks << " ("
           << tiling->describe() << ")";
    if (stats.visitedBlocks < census.nonEmptyBlocks)
      fail(tag + "fewer blocks visited than are non-empty: " + blocks.str());
    if (stats.fullBlocks > census.fullBlocks)
      fail(tag + "more blocks claimed FULL than are full: " + blocks.str());
    if (stats.totalBlocks != census.totalBlocks)
      fail(tag + "block totals differ: " + blocks.str());

    ErrorStats e = compareOutput(out, ref.out, config.layout);
    if (e.nanCount > 0 || !(e.relative <= tol)) {
      std::ostringstream s;
      s << "output differs from float64: relative " << e.relative << " (tolerance " << tol
        << "), max abs " << e.maxAbs << ", " << e.nanCount << " NaN; " << blocks.str();
      fail(tag + s.str());
    }
    for (int64_t i = 0; i < lse.size(); ++i) {
      double want = ref.lse[i], have = lse.get(i);
      bool ok = std::isinf(want) ? have == want
                                 : std::fabs(have - want) <= 1e-4 * std::max(1.0, std::fabs(want));
      if (!ok) {
        std::ostringstream s;
        s << "lse differs at " << i << ": " << have << ", float64 " << want << "; " << blocks.str();
        fail(tag + s.str());
        break;
      }
    }
    if (analyze) {
      totals.visited += stats.visitedBlocks;
      totals.nonEmpty += census.nonEmptyBlocks;
      totals.total += stats.totalBlocks;
      totals.skipping += stats.visitedBlocks < stats.totalBlocks;
      totals.claimingFull += stats.fullBlocks > 0;
      totals.patched += tiling->patched();
    }
  }
}

TEST(AnalysisDifferential, RandomVariantsAgreeWithBruteForceAndFloat64) {
  uint64_t seed = static_cast<uint64_t>(envInt("HEED_DIFF_SEED", 19019));
  int64_t count = envInt("HEED_DIFF_VARIANTS", 60);
  std::printf("[ diff     ] %lld variants from seed %llu\n", static_cast<long long>(count),
              static_cast<unsigned long long>(seed));
  Totals totals;
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < count; ++i) {
    std::vector<std::string> problems;
    // An exception (an allocation of tiles, say) is one variant's failure.
    try {
      runVariant(seed + i, totals, problems);
    } catch (const std::exception &e) {
      problems.push_back("seed=" + std::to_string(seed + i) +
                         " (rerun: HEED_DIFF_SEED=" + std::to_string(seed + i) +
                         " HEED_DIFF_VARIANTS=1): exception: " + e.what() + "\n" +
                         Generator(seed + i).variant());
    }
    if (!problems.empty())
      ++totals.failures;
    for (const std::string &p : problems) {
      ADD_FAILURE() << p;
      std::printf("[ MISMATCH ] %s\n", p.c_str());
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ diff     ] %d variants in %.1f s: %d with a mismatch; with the analysis "
              "%d skipped blocks, %d claimed FULL blocks, %d used patches; blocks visited "
              "%lld, non-empty %lld, total %lld\n",
              totals.variants, seconds, totals.failures, totals.skipping, totals.claimingFull,
              totals.patched, static_cast<long long>(totals.visited),
              static_cast<long long>(totals.nonEmpty), static_cast<long long>(totals.total));
  EXPECT_EQ(totals.failures, 0);
  // Not vacuous: the generator makes masks the analysis does prove things about.
  if (count >= 40) {
    EXPECT_GE(totals.skipping, count / 10);
    EXPECT_GE(totals.claimingFull, count / 10);
  }
}

} // namespace
