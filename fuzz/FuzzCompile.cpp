// The fuzz target: spec text -> parse -> elaborate -> attn IR -> the CPU tile
// pipeline up to the tiled stage (what `heed-compile --emit=tiled` runs), plus
// the interpreter at a few points. Every input must end in a result or a clean
// error; libFuzzer (fuzz/run.sh) and the corpus replay (heed-fuzz-replay) both
// call LLVMFuzzerTestOneInput.
#include "heed/Compiler/Compiler.h"
#include "heed/Compiler/Tiling.h"
#include "heed/Frontend/Evaluate.h"
#include "heed/Frontend/Parser.h"
#include "heed/Runtime/Tensor.h"

#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

namespace {

/// Inputs longer than this are not tried: a spec is a few lines, and the
/// pipeline's cost grows with the text (the parser's own bound is 1 MiB).
constexpr size_t kMaxInputBytes = 8192;
/// The variants of one input that are compiled (a file may define many).
constexpr size_t kMaxCompiledVariants = 4;
/// 64 tokens on a grid with rows of up to 2^16 tokens, in patches of one lane:
/// the most tiles a tiling may make of them.
constexpr int64_t kMaxTilesOf64Tokens = (int64_t(1) << 16) + 64;
/// Buffers the interpreter reads get data only up to this many elements.
constexpr int64_t kMaxBufferElements = 1 << 14;

/// FNV-1a of the input: picks the kernel configuration and the evaluation
/// points, so that one input always takes the same path.
uint64_t hashOf(const uint8_t *data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i)
    h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

/// Tile shapes the CPU pipeline accepts, odd ones included, with and
/// without the mask analysis and patch tiling.
constexpr uint64_t kNumConfigs = 6;
heed::KernelConfig configFor(uint64_t hash) {
  heed::KernelConfig c;
  switch (hash % kNumConfigs) {
  case 0:
    break; // the default: 16 x 16, analysis and patches
  case 1:
    c.blockQ = 8;
    c.blockKV = 7;
    break;
  case 2:
    c.blockQ = 64;
    c.blockKV = 64;
    c.patchTiling = false;
    break;
  case 3:
    c.blockQ = 1;
    c.blockKV = 1;
    break;
  case 4:
    c.blockQ = 4;
    c.blockKV = 13;
    c.dtype = heed::DType::BF16;
    c.lse = true;
    break;
  case 5:
    c.analyzeMask = false;
    break;
  }
  return c;
}

/// Evaluates the variant's expressions with the interpreter at a few points,
/// on small buffers of the declared shapes.
void interpret(const heed::spec::Variant &v, uint64_t hash) {
  heed::AttentionDims dims{2, 3, 1, 37, 41};
  std::vector<heed::spec::BufferData> buffers;
  for (const heed::spec::BufferDecl &decl : v.buffers) {
    heed::spec::BufferData data;
    data.shape = heed::resolveDims(decl.shape, dims);
    int64_t count = 1;
    for (int64_t d : data.shape) {
      // An unresolvable dimension (an unknown name is an elaboration error,
      // so none should reach here) or a huge one: evaluate without data.
      if (d <= 0 || d > kMaxBufferElements || count * d > kMaxBufferElements) {
        count = 0;
        break;
      }
      count *= d;
    }
    for (int64_t i = 0; i < count; ++i)
      data.values.push_back(static_cast<double>(static_cast<int64_t>((hash >> (i % 61)) % 7) - 3));
    buffers.push_back(std::move(data));
  }
  for (int i = 0; i < 4; ++i) {
    uint64_t r = hash * (2 * i + 1) + 0x9e3779b97f4a7c15ull * i;
    heed::spec::EvalPoint p;
    p.b = r % dims.batch;
    p.h = (r >> 8) % dims.headsQ;
    p.q = (r >> 16) % dims.seqQ;
    p.kv = (r >> 24) % dims.seqKV;
    p.score = static_cast<double>(static_cast<int64_t>((r >> 32) % 2001) - 1000) / 100;
    int outOfRange = 0;
    heed::spec::evaluate(*v.mask, p, buffers, &outOfRange);
    heed::spec::evaluate(*v.score, p, buffers, &outOfRange);
    if (v.route)
      heed::spec::evaluate(*v.route, p, buffers, &outOfRange);
    if (v.gate)
      heed::spec::evaluate(*v.gate, p, buffers, &outOfRange);
  }
}

/// Bugs found by fuzzing that are open in code outside the frontend and
/// the analysis (docs/testing.md, "Findings"): inputs that hit them are
/// skipped, so that the fuzzer keeps looking for others. Remove an entry
/// when its bug is fixed, and add its reproducer to fuzz/regressions/.
bool hitsKnownOpenBug(const heed::spec::Variant &v) {
  // Upstream's scf.index_switch verifier (MLIR 22), which --attn-specialize-
  // routes emits, keeps case values in a DenseSet whose reserved keys are
  // INT64_MAX and INT64_MAX - 1: such a case is "duplicate". (heed's own
  // attn.variant verifier had the same bug, fixed.)
  for (int64_t c : v.routeCases)
    if (c >= std::numeric_limits<int64_t>::max() - 1)
      return true;
  return false;
}

/// Compiles `v` under `config` to the tiled stage and checks its tiling.
void compile(const heed::spec::Variant &v, const heed::KernelConfig &config) {
  // A variant the frontend accepted must compile: a failure of the pipeline
  // on it is a compiler bug, reported like a crash.
  auto tiled = heed::emit(v, config, heed::Stage::Tiled);
  if (!tiled) {
    std::fprintf(stderr, "heed-fuzz: variant '%s' parsed but did not compile (%s):\n%s\n",
                 v.name.c_str(), config.canonical().c_str(),
                 llvm::toString(tiled.takeError()).c_str());
    std::abort();
  }
  // The tiling the runtime sees: a short sequence makes a bounded number of
  // tiles (grid rows are at most 2^16 tokens: ChooseTiling.cpp).
  auto tiling = heed::kernelTiling(v, config);
  if (!tiling) {
    std::fprintf(stderr, "heed-fuzz: variant '%s' compiled but has no tiling (%s):\n%s\n",
                 v.name.c_str(), config.canonical().c_str(),
                 llvm::toString(tiling.takeError()).c_str());
    std::abort();
  }
  for (const heed::SequenceTiling *side : {&tiling->q, &tiling->kv}) {
    int64_t tiles = side->numTiles(64);
    if (tiles < 1 || tiles > kMaxTilesOf64Tokens) {
      std::fprintf(stderr, "heed-fuzz: variant '%s' cuts 64 tokens into %lld tiles (%s, %s)\n",
                   v.name.c_str(), static_cast<long long>(tiles), tiling->describe().c_str(),
                   config.canonical().c_str());
      std::abort();
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > kMaxInputBytes)
    return -1; // not added to the corpus
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  auto variants = heed::spec::parseSpec(text, "fuzz.attn");
  if (!variants) {
    // A clean error: a message with a location. An empty one is a bug.
    std::string message = llvm::toString(variants.takeError());
    if (message.empty()) {
      std::fprintf(stderr, "heed-fuzz: parseSpec failed without a message\n");
      std::abort();
    }
    return 0;
  }
  // The replay takes every configuration (HEED_FUZZ_ALL_CONFIGS=1), so that
  // a reproducer does not depend on the bytes that pick one.
  static const bool allConfigs = [] {
    const char *v = std::getenv("HEED_FUZZ_ALL_CONFIGS");
    return v && std::string(v) == "1";
  }();
  uint64_t hash = hashOf(data, size);
  for (size_t i = 0; i < variants->size() && i < kMaxCompiledVariants; ++i) {
    const heed::spec::Variant &v = (*variants)[i];
    interpret(v, hash);
    if (hitsKnownOpenBug(v))
      continue;
    if (!allConfigs) {
      compile(v, configFor(hash));
      continue;
    }
    for (uint64_t c = 0; c < kNumConfigs; ++c)
      compile(v, configFor(c));
  }
  return 0;
}
