// Decode against the memory bandwidth of this machine, measured in one run:
// a large plain copy ((bytes read + bytes written) / time, on as many threads
// as the kernel) and heed's decode kernel (K and V bytes read once, plus Q
// and O, / time), alternated so both see the same load. Not a test: prints
// the figures for docs/decode.md.
//
//   heed-bench-decode [--batch=8 --heads=32 --kv-heads=8 --seq=1 --seq-kv=32768
//                      --head-dim=128 --dtype=bf16 --repeat=5 --threads=0 --block-q=0
//                      --spec=FILE --check]
#include "heed/Compiler/Compiler.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Reference.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

using namespace heed;

namespace {

struct Options {
  int64_t batch = 8, heads = 32, kvHeads = 8, seq = 1, seqKV = 32768, headDim = 128;
  std::string dtype = "bf16", spec;
  int repeat = 5;
  int64_t blockQ = 0;   ///< query rows per tile (0: by schedule)
  int64_t blockKV = 16; ///< keys per key tile
  unsigned threads = 0; ///< 0: every hardware thread
  bool check = false;   ///< the first batch entry against the float64 reference
};

/// --name=value flags; "" or what is wrong.
std::string parseArgs(int argc, char **argv, Options &o) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--check") {
      o.check = true;
      continue;
    }
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos)
      return "unknown argument '" + arg + "'";
    std::string name = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
    if (name == "dtype" || name == "spec") {
      (name == "dtype" ? o.dtype : o.spec) = value;
      continue;
    }
    char *end = nullptr;
    long long n = std::strtoll(value.c_str(), &end, 10);
    if (!end || *end || n < 0)
      return "'" + arg + "' needs a non-negative integer";
    if (name == "batch") o.batch = n;
    else if (name == "heads") o.heads = n;
    else if (name == "kv-heads") o.kvHeads = n;
    else if (name == "seq") o.seq = n;
    else if (name == "seq-kv") o.seqKV = n;
    else if (name == "head-dim") o.headDim = n;
    else if (name == "block-q") o.blockQ = n;
    else if (name == "block-kv") o.blockKV = n;
    else if (name == "repeat") o.repeat = int(n);
    else if (name == "threads") o.threads = unsigned(n);
    else return "unknown option '--" + name + "'";
  }
  return "";
}

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

/// (bytes read + bytes written) / time of copying `src` to `dst` on
/// `tasks` threads, each its own contiguous chunk.
double copyBandwidth(const std::vector<char> &src, std::vector<char> &dst, unsigned tasks) {
  size_t chunk = (src.size() + tasks - 1) / tasks;
  auto start = Clock::now();
  runTasks(tasks, [&](unsigned t) {
    size_t from = std::min(src.size(), size_t(t) * chunk);
    size_t to = std::min(src.size(), from + chunk);
    std::memcpy(dst.data() + from, src.data() + from, to - from);
  });
  return 2.0 * double(src.size()) / seconds(start);
}

/// Bytes / time of reading K and V as the decode kernel does, computing
/// nothing: each (batch, kv head) row block handed out to `tasks` threads
/// in turn, its keys in tiles of `tileKeys`, a tile of K then the same tile
/// of V. No kernel with that access pattern can read faster on this
/// machine: two interleaved streams per thread read slower than the copy's
/// one (docs/decode.md).
double kvReadBandwidth(const TensorRef &k, const TensorRef &v, int64_t items, int64_t rowBytes,
                       int64_t keys, int64_t tileKeys, unsigned tasks) {
  std::atomic<int64_t> next{0};
  std::vector<uint64_t> sinks(size_t(tasks) * 8, 0); // one cache line per task
  auto start = Clock::now();
  runTasks(tasks, [&](unsigned t) {
    uint64_t sum = 0;
    for (int64_t item; (item = next.fetch_add(1)) < items;) {
      const char *kItem = static_cast<const char *>(k.data) + item * keys * rowBytes;
      const char *vItem = static_cast<const char *>(v.data) + item * keys * rowBytes;
      for (int64_t key = 0; key < keys; key += tileKeys) {
        int64_t bytes = std::min(tileKeys, keys - key) * rowBytes;
        for (const char *tile : {kItem + key * rowBytes, vItem + key * rowBytes}) {
          const uint64_t *words = reinterpret_cast<const uint64_t *>(tile);
          for (int64_t w = 0; w < bytes / 8; ++w)
            sum += words[w];
        }
      }
    }
    sinks[size_t(t) * 8] = sum;
  });
  double seconds_ = seconds(start);
  volatile uint64_t keep = std::accumulate(sinks.begin(), sinks.end(), uint64_t(0));
  (void)keep;
  return 2.0 * double(items * keys * rowBytes) / seconds_;
}

int fail(const std::string &message) {
  fmt::print(stderr, "heed-bench-decode: {}\n", message);
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (std::string err = parseArgs(argc, argv, o); !err.empty())
    return fail(err);
  const int64_t batch = o.batch, heads = o.heads, kvHeads = o.kvHeads, seq = o.seq,
                seqKV = o.seqKV, headDim = o.headDim;
  const std::string &dtypeName = o.dtype, &specFile = o.spec;
  const int repeat = o.repeat;
  const unsigned threads = o.threads;
  const bool check = o.check;
  DType dtype = DType::BF16;
  if (!parseDType(dtypeName, dtype))
    return fail("unknown dtype '" + dtypeName + "'");
  auto parsed = specFile.empty()
                    ? spec::parseSpec("variant decode { mask = causal_bottom_right() }\n",
                                      "decode.attn")
                    : spec::parseSpecFile(specFile);
  if (!parsed)
    return fail(llvm::toString(parsed.takeError()));
  auto variant = spec::selectVariant(std::move(*parsed), "");
  if (!variant)
    return fail(llvm::toString(variant.takeError()));
  if (!variant->buffers.empty())
    return fail("the benchmark takes variants without buffers");

  KernelConfig config;
  config.dtype = dtype;
  config.headDim = headDim;
  config.headDimV = headDim;
  config.lse = true;
  config.blockQ = o.blockQ;
  config.blockKV = o.blockKV;
  auto kernel = Kernel::compile(*variant, config);
  if (!kernel)
    return fail(llvm::toString(kernel.takeError()));

  std::mt19937_64 rng(1);
  HostTensor q(dtype, {batch, heads, seq, headDim}), k(dtype, {batch, kvHeads, seqKV, headDim}),
      v(dtype, {batch, kvHeads, seqKV, headDim}), out(dtype, {batch, heads, seq, headDim}),
      lse(DType::F32, {batch, heads, seq});
  q.fillUniform(rng, -1, 1);
  k.fillUniform(rng, -1, 1);
  v.fillUniform(rng, -1, 1);
  AttentionArgs args{q.ref(), k.ref(), v.ref(), out.ref(), lse.ref(), {}};

  double elt = double(dtypeSize(dtype));
  double kvBytes = 2.0 * double(batch * kvHeads * seqKV * headDim) * elt;
  double bytes = kvBytes + 2.0 * double(batch * heads * seq * headDim) * elt +
                 double(batch * heads * seq) * 4;
  double flops = 4.0 * double(batch * heads * seq * seqKV * headDim);
  unsigned tasks = threads ? threads : hardwareThreads();
  // A copy larger than any cache, as large as K and V (at most 1 GiB).
  std::vector<char> src(size_t(std::min(kvBytes, 1073741824.0)), 1), dst(src.size(), 0);

  fmt::print("decode   B={} Hq={} Hkv={} Sq={} Skv={} D={} {}, {} threads, variant '{}'\n",
             batch, heads, kvHeads, seq, seqKV, headDim, dtypeName, tasks, variant->name);
  fmt::print("bytes    kernel {:.1f} MiB (K, V once; Q, O, lse), copy {:.1f} MiB each way\n",
             bytes / 1048576, double(src.size()) / 1048576);
  if (llvm::Error err = (*kernel)->run(args, tasks)) // warm: pages, thread pool
    return fail(llvm::toString(std::move(err)));
  copyBandwidth(src, dst, tasks);
  int64_t rowBytes = headDim * int64_t(elt);
  auto readKV = [&] {
    return kvReadBandwidth(args.k, args.v, batch * kvHeads, rowBytes, seqKV, 16, tasks);
  };
  double bestCopy = 0, bestKernel = 0, bestRead = 0;
  for (int r = 0; r < repeat; ++r) {
    bestCopy = std::max(bestCopy, copyBandwidth(src, dst, tasks));
    bestRead = std::max(bestRead, readKV());
    auto start = Clock::now();
    if (llvm::Error err = (*kernel)->run(args, tasks))
      return fail(llvm::toString(std::move(err)));
    double t = seconds(start);
    bestKernel = std::max(bestKernel, bytes / t);
    fmt::print("run {}   copy {:.2f} GB/s   K/V read only {:.2f} GB/s   kernel {:.2f} GB/s "
               "({:.3f} ms, {:.1f} GFLOP/s)\n",
               r, bestCopy / 1e9, bestRead / 1e9, bytes / t / 1e9, t * 1e3, flops / t / 1e9);
  }
  fmt::print("best     copy {:.2f} GB/s, K/V read only (the kernel's order, no compute) {:.2f} "
             "GB/s = {:.0f}% of the copy, kernel {:.2f} GB/s: {:.0f}% of the copy, {:.0f}% of "
             "the read\n",
             bestCopy / 1e9, bestRead / 1e9, 100 * bestRead / bestCopy, bestKernel / 1e9,
             100 * bestKernel / bestCopy, 100 * bestKernel / bestRead);

  if (check) {
    // The first batch entry against the float64 reference.
    HostTensor q1(dtype, {1, heads, seq, headDim}), k1(dtype, {1, kvHeads, seqKV, headDim}),
        v1(dtype, {1, kvHeads, seqKV, headDim}), o1(dtype, {1, heads, seq, headDim}),
        l1(DType::F32, {1, heads, seq});
    for (int64_t i = 0; i < q1.size(); ++i)
      q1.set(i, q.get(i));
    for (int64_t i = 0; i < k1.size(); ++i) {
      k1.set(i, k.get(i));
      v1.set(i, v.get(i));
    }
    o1.poison();
    l1.poison();
    AttentionArgs one{q1.ref(), k1.ref(), v1.ref(), o1.ref(), l1.ref(), {}};
    if (llvm::Error err = (*kernel)->run(one, tasks))
      return fail(llvm::toString(std::move(err)));
    ReferenceResult ref = referenceAttention(*variant, q1, k1, v1, Layout::BHSD,
                                             config.effectiveScale(), {});
    ErrorStats e = compareOutput(o1, ref.out, Layout::BHSD);
    bool ok = e.passes(1e-2);
    fmt::print("check    {} (relative error {:.2e}, seed 1)\n", ok ? "PASSED" : "FAILED",
               e.relative);
    if (!ok)
      return 1;
  }
  return 0;
}
