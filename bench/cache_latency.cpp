// Latency from spec text to a runnable kernel, per variant, through the
// kernel cache: cold (parse + compile + link + store + load, empty cache),
// disk hit (a fresh process's view: a new KernelCache over the same
// directory, so the memory cache is cold), memory hit (median of 10000).
#include "heed/Compiler/KernelCache.h"
#include "heed/Frontend/Parser.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

heed::spec::Variant parse(const std::string &text) {
  auto parsed = heed::spec::parseSpec(text, "bench.attn");
  if (!parsed) {
    std::fprintf(stderr, "%s\n", llvm::toString(parsed.takeError()).c_str());
    std::exit(1);
  }
  return std::move(parsed->front());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

} // namespace

int main() {
  char tmpl[] = "/tmp/heed-cache-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  struct Case {
    const char *name, *spec;
  } cases[] = {
      {"causal", "variant causal { mask = causal() }"},
      {"sliding window 1024", "variant w { mask = sliding_window(1024) && causal() }"},
      {"document", "variant d { buffer doc: i32[Skv]\n mask = document(doc) && causal() }"},
      {"2-D neighborhood 17x17",
       "variant n { mask = neighborhood_2d(64, 128, kh=17, kw=17) }"},
      {"softcap + causal",
       "variant s { score = 30 * tanh(score / 30)\n mask = causal() }"},
  };
  heed::KernelConfig config;
  std::printf("| variant | cold: spec -> runnable (ms) | disk hit (ms) | memory hit (us) |\n");
  std::printf("| --- | --- | --- | --- |\n");
  for (const Case &c : cases) {
    auto t0 = Clock::now();
    heed::spec::Variant variant = parse(c.spec);
    heed::KernelCache cold(dir, 1ull << 30, 64);
    heed::CacheOutcome outcome;
    auto k = cold.get(variant, config, &outcome);
    double coldS = since(t0);
    if (!k || outcome != heed::CacheOutcome::Compiled) {
      std::fprintf(stderr, "%s: cold compile failed\n", c.name);
      return 1;
    }
    std::vector<double> disk, memory;
    for (int i = 0; i < 5; ++i) {
      auto t = Clock::now();
      heed::spec::Variant v = parse(c.spec);
      heed::KernelCache fresh(dir, 1ull << 30, 64);
      auto hit = fresh.get(v, config, &outcome);
      disk.push_back(since(t));
      if (!hit || outcome != heed::CacheOutcome::DiskHit)
        return 1;
    }
    for (int i = 0; i < 10000; ++i) {
      auto t = Clock::now();
      auto hit = cold.get(variant, config, &outcome);
      memory.push_back(since(t));
      if (!hit || outcome != heed::CacheOutcome::MemoryHit)
        return 1;
    }
    std::printf("| %s | %.0f | %.2f | %.1f |\n", c.name, coldS * 1e3, median(disk) * 1e3,
                median(memory) * 1e6);
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}
