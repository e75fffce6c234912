// The kernel cache and artifacts under abuse: corrupted, truncated and
// other-version entries, concurrent writer processes, an unwritable
// directory, a full disk, binaries for another target. Each is handled with
// no crash and a clear message, and the kernel that comes back is right.
#include "heed/Compiler/KernelCache.h"
#include "heed/Frontend/Parser.h"

#include "CacheFiles.h"
#include "TestSpecs.h"
#include "heed/Runtime/Reference.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include <dirent.h>
#include <csignal>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace heed;

namespace {

using test::filesIn;
using test::parse;
using test::readBytes;
using test::TempDir;
using test::writeBytes;

/// The artifact inside the cache entry at `path` ("" in `problem` when the
/// entry verifies).
Artifact artifactIn(const std::string &path, std::string *problem = nullptr) {
  Digest key;
  std::string request, why;
  Artifact a;
  why = DiskCache::decodeEntry(readBytes(path), key, request, a);
  EXPECT_EQ(why, "") << path;
  if (problem)
    *problem = why;
  return a;
}

/// Runs `kernel` on fresh random inputs (seed printed, output poisoned) and
/// checks it against the float64 reference.
void expectCorrect(const LoadedKernel &kernel, const spec::Variant &variant, int64_t seq) {
  unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  HostTensor q(DType::F32, {1, 2, seq, 64}), k(DType::F32, {1, 2, seq, 64}),
      v(DType::F32, {1, 2, seq, 64}), out(DType::F32, {1, 2, seq, 64});
  for (HostTensor *t : {&q, &k, &v})
    t->fillUniform(rng, -1, 1);
  out.poison();
  std::string err = kernel.run({q.ref(), k.ref(), v.ref(), out.ref(), {}, {}});
  ASSERT_EQ(err, "");
  auto ref = referenceAttention(variant, q, k, v, Layout::BHSD, kernel.info().scale, {});
  ErrorStats e = compareOutput(out, ref.out, Layout::BHSD);
  EXPECT_EQ(e.nanCount, 0);
  EXPECT_LT(e.maxAbs, 1e-4);
}

struct KernelCacheTest : ::testing::Test {
  TempDir dir;
  spec::Variant variant = parse("variant causal_test { mask = causal() }");
  KernelConfig config;
  Digest key = KernelCache::key(variant, config, CPUTarget::jit());
  std::string request =
      KernelCache::request(KernelCache::targetDigest(CPUTarget::jit()), variant, config);

  std::string entryPath() const { return DiskCache(dir.path, 1 << 30).pathFor(key); }

  /// With the entry on disk damaged or foreign: a fresh cache rejects it
  /// (one rejection, a warning mentioning `inWarning`), compiles anew, and
  /// the kernel is right on a length of `seq`. For `of`, else the fixture's
  /// variant.
  void expectRejectedAndRebuilt(const std::string &inWarning, int64_t seq,
                                const spec::Variant *of = nullptr) {
    CacheOutcome outcome;
    CacheStats stats;
    testing::internal::CaptureStderr();
    auto kernel = getFresh(outcome, &stats, of);
    std::string warning = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(kernel);
    EXPECT_EQ(outcome, CacheOutcome::Compiled);
    EXPECT_EQ(stats.rejectedEntries, 1u);
    EXPECT_NE(warning.find(inWarning), std::string::npos) << warning;
    expectCorrect(*kernel, of ? *of : variant, seq);
  }

  /// A cache over `dir` with a cold memory cache (a new process, in effect).
  std::shared_ptr<LoadedKernel> getFresh(CacheOutcome &outcome, CacheStats *stats = nullptr,
                                         const spec::Variant *of = nullptr) {
    KernelCache cache(dir.path, 1 << 30, 4);
    auto got = cache.get(of ? *of : variant, config, &outcome);
    EXPECT_TRUE(static_cast<bool>(got)) << llvm::toString(got.takeError());
    if (stats)
      *stats = cache.stats();
    return got ? *got : nullptr;
  }
};

TEST_F(KernelCacheTest, ColdDiskAndMemoryHits) {
  KernelCache cache(dir.path, 1 << 30, 4);
  CacheOutcome outcome;
  ASSERT_TRUE(static_cast<bool>(cache.get(variant, config, &outcome)));
  EXPECT_EQ(outcome, CacheOutcome::Compiled);
  ASSERT_TRUE(static_cast<bool>(cache.get(variant, config, &outcome)));
  EXPECT_EQ(outcome, CacheOutcome::MemoryHit);
  auto kernel = getFresh(outcome);
  EXPECT_EQ(outcome, CacheOutcome::DiskHit);
  ASSERT_TRUE(kernel);
  // Lengths are run-time arguments: one kernel serves them all.
  for (int64_t seq : {1, 37, 200})
    expectCorrect(*kernel, variant, seq);
  EXPECT_EQ(cache.stats().compiles, 1u);
}

TEST_F(KernelCacheTest, KeyCoversWhatChangesTheKernel) {
  KernelConfig other = config;
  other.patchTiling = false;
  EXPECT_NE(KernelCache::key(variant, other, CPUTarget::jit()), key);
  other = config;
  other.scale = 0.5;
  EXPECT_NE(KernelCache::key(variant, other, CPUTarget::jit()), key);
  spec::Variant window = parse("variant causal_test { mask = sliding_window(64) }");
  EXPECT_NE(KernelCache::key(window, config, CPUTarget::jit()), key);
  auto v3 = CPUTarget::parse("cpu:x86-64-v3");
  ASSERT_TRUE(static_cast<bool>(v3));
  EXPECT_NE(KernelCache::key(variant, config, *v3), key);
  EXPECT_EQ(KernelCache::key(parse("variant causal_test { mask = causal() }"), config,
                             CPUTarget::jit()),
            key);
}

TEST_F(KernelCacheTest, CorruptedEntriesAreRebuilt) {
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(outcome));
  std::string good = readBytes(entryPath());
  ASSERT_GT(good.size(), 100u);
  // A flipped byte in the magic, the version, the key, the checksum, the
  // body's start, middle and end; a truncated file; an empty file; a file
  // claiming a newer format version.
  std::vector<std::pair<std::string, std::string>> damaged;
  for (size_t at : {size_t(0), size_t(8), size_t(20), size_t(60), size_t(100), good.size() / 2,
                    good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x5a;
    damaged.push_back({"byte " + std::to_string(at) + " flipped", bad});
  }
  damaged.push_back({"truncated", good.substr(0, good.size() / 3)});
  damaged.push_back({"empty", ""});
  {
    std::string other = good;
    // The version is the 32-bit word after the 8-byte magic.
    uint32_t version = kCacheFormatVersion + 1;
    std::memcpy(&other[8], &version, 4);
    damaged.push_back({"another version", other});
  }
  for (const auto &[what, bytes] : damaged) {
    SCOPED_TRACE(what);
    writeBytes(entryPath(), bytes);
    expectRejectedAndRebuilt("rejected", 45);
    // The rebuilt entry is valid again.
    artifactIn(entryPath());
  }
}

TEST_F(KernelCacheTest, WrongTargetEntryIsRejected) {
  // An entry that verifies but holds a binary for another machine (copied
  // from elsewhere): not trusted, removed and rebuilt.
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(outcome));
  Artifact a = artifactIn(entryPath());
  ASSERT_EQ(a.entries.size(), 1u);
  a.entries[0].target = "cpu:aarch64:neoverse-v2";
  writeBytes(entryPath(), DiskCache::encodeEntry(key, request, a));
  expectRejectedAndRebuilt("aarch64", 33);
}

TEST_F(KernelCacheTest, AnEntryCopiedOntoAnotherKeyIsNeverServed) {
  // Two kernels of one name whose outputs differ; the first one's entry is
  // copied onto the second one's file.
  spec::Variant window =
      parse("variant causal_test { mask = sliding_window(3) && causal() }");
  Digest windowKey = KernelCache::key(window, config, CPUTarget::jit());
  std::string windowPath = DiskCache(dir.path, 1 << 30).pathFor(windowKey);
  {
    KernelCache cache(dir.path, 1 << 30, 4);
    ASSERT_TRUE(static_cast<bool>(cache.get(variant, config)));
    ASSERT_TRUE(static_cast<bool>(cache.get(window, config)));
  }
  std::string causalEntry = readBytes(entryPath());
  // The key in the header patched: the checksum covers it.
  std::string patched = causalEntry;
  std::memcpy(&patched[16], windowKey.data(), 32);
  writeBytes(windowPath, patched);
  expectRejectedAndRebuilt("checksum", 45, &window);
  // Key and checksum made consistent: the stored request is not this one.
  Digest storedKey;
  std::string storedRequest;
  Artifact artifact;
  ASSERT_EQ(DiskCache::decodeEntry(causalEntry, storedKey, storedRequest, artifact), "");
  EXPECT_EQ(storedRequest, request);
  artifact.key = windowKey;
  writeBytes(windowPath, DiskCache::encodeEntry(windowKey, storedRequest, artifact));
  expectRejectedAndRebuilt("written for another kernel", 45, &window);
}

TEST_F(KernelCacheTest, SpecialFilesNeitherHangNorLoad) {
  // Each was a hang (a FIFO blocks open(); /dev/zero never ends) or is
  // never to be trusted (a link may point anywhere). If one hangs again,
  // SIGALRM ends the test instead of the suite's timeout.
  alarm(300);
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(outcome)); // creates the directory
  std::string path = entryPath();
  std::string valid = dir.path + "/valid-entry";
  writeBytes(valid, readBytes(path));
  struct Case {
    const char *what, *inWarning;
    std::function<void()> make;
    bool removable;
  } cases[] = {
      {"a link to /dev/zero", "symbolic link", [&] { ASSERT_EQ(symlink("/dev/zero", path.c_str()), 0); }, true},
      {"a link to a valid entry", "symbolic link", [&] { ASSERT_EQ(symlink(valid.c_str(), path.c_str()), 0); }, true},
      {"a FIFO", "a FIFO, not a regular file", [&] { ASSERT_EQ(mkfifo(path.c_str(), 0644), 0); }, true},
      {"a directory", "a directory, not a regular file", [&] { ASSERT_EQ(mkdir(path.c_str(), 0755), 0); }, false},
      {"a file past the size limit", "more than an entry may have",
       [&] { ASSERT_EQ(truncate((writeBytes(path, ""), path.c_str()), off_t(kMaxCacheEntryBytes + 1)), 0); },
       true},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    ::unlink(path.c_str());
    ::rmdir(path.c_str());
    c.make();
    auto listed = DiskCache(dir.path, uint64_t(1) << 40).list(/*verify=*/true);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_NE(listed[0].problem.find(c.inWarning), std::string::npos) << listed[0].problem;
    KernelCache cache(dir.path, uint64_t(1) << 40, 4);
    testing::internal::CaptureStderr();
    auto kernel = cache.get(variant, config, &outcome);
    std::string warning = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
    EXPECT_EQ(outcome, CacheOutcome::Compiled);
    EXPECT_NE(warning.find(c.inWarning), std::string::npos) << warning;
    // "removed" only when it was.
    EXPECT_EQ(warning.find("removed,") != std::string::npos, c.removable) << warning;
    if (!c.removable) {
      EXPECT_NE(warning.find("could not remove it"), std::string::npos) << warning;
    }
    expectCorrect(**kernel, variant, 21);
  }
  ::rmdir(path.c_str());
  // /dev/zero itself stays what it was.
  struct stat st;
  ASSERT_EQ(stat("/dev/zero", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  alarm(0);
}

TEST(Artifact, WrongTargetsSayWhy) {
  Artifact a;
  KernelInfo info;
  info.name = "k";
  info.headDim = info.headDimV = 64;
  a.entries.push_back({"cpu:aarch64:neoverse-v2", info, "not a binary"});
  a.entries.push_back({"cuda:sm_90a", info, "not a cubin"});
  std::string error;
  EXPECT_EQ(LoadedKernel::load(a, error), nullptr);
  EXPECT_NE(error.find("no kernel in the artifact runs on this machine"), std::string::npos);
  EXPECT_NE(error.find("built for aarch64"), std::string::npos) << error;
  EXPECT_NE(error.find("cuda:sm_90a"), std::string::npos) << error;
  // A CPU entry for this machine whose bytes are not a shared object.
  Artifact junk;
  junk.entries.push_back({"cpu:x86_64:x86-64", info, std::string(64, 'x')});
  EXPECT_EQ(LoadedKernel::load(junk, error), nullptr);
  EXPECT_NE(error.find("cannot load the kernel binary"), std::string::npos) << error;
  // Serialized, then damaged anywhere: parse says so.
  std::string bytes = a.serialize();
  Artifact back;
  EXPECT_EQ(back.parse(bytes), "");
  bytes[bytes.size() - 3] ^= 1;
  EXPECT_NE(back.parse(bytes), "");
}

TEST_F(KernelCacheTest, UnwritableDirectoryDegradesToMemoryWithOneWarning) {
  // A directory inside a regular file cannot be created, even by root.
  std::string file = dir.path + "/not-a-directory";
  writeBytes(file, "x");
  KernelCache cache(file + "/cache", 1 << 30, 4);
  testing::internal::CaptureStderr();
  CacheOutcome outcome;
  auto first = cache.get(variant, config, &outcome);
  auto second = cache.get(parse("variant w { mask = sliding_window(8) }"), config, &outcome);
  std::string warnings = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(static_cast<bool>(first)) << llvm::toString(first.takeError());
  ASSERT_TRUE(static_cast<bool>(second)) << llvm::toString(second.takeError());
  EXPECT_EQ(cache.stats().storeFailures, 1u);
  size_t count = 0;
  for (size_t at = 0; (at = warnings.find("warning", at)) != std::string::npos; ++at)
    ++count;
  EXPECT_EQ(count, 1u) << warnings;
  EXPECT_NE(warnings.find("memory only"), std::string::npos) << warnings;
  expectCorrect(**first, variant, 29);
  auto again = cache.get(variant, config, &outcome);
  ASSERT_TRUE(static_cast<bool>(again));
  EXPECT_EQ(outcome, CacheOutcome::MemoryHit);
  if (geteuid() != 0) { // permissions bind only non-root users
    std::string ro = dir.path + "/read-only";
    ::mkdir(ro.c_str(), 0555);
    KernelCache roCache(ro, 1 << 30, 4);
    testing::internal::CaptureStderr();
    auto k = roCache.get(variant, config);
    testing::internal::GetCapturedStderr();
    ASSERT_TRUE(static_cast<bool>(k));
    EXPECT_EQ(roCache.stats().storeFailures, 1u);
  }
}

TEST_F(KernelCacheTest, SizeLimitEvictsLeastRecentlyUsed) {
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(outcome));
  uint64_t one = readBytes(entryPath()).size();
  // Room for two entries: the third store evicts the oldest.
  KernelCache cache(dir.path, one * 2 + one / 2, 4);
  for (int w : {8, 16, 32}) {
    auto got = cache.get(parse("variant w { mask = sliding_window(" + std::to_string(w) + ") }"),
                         config);
    ASSERT_TRUE(static_cast<bool>(got));
    ::sleep(1); // mtime granularity: distinct last-use times
  }
  auto entries = DiskCache(dir.path, 0).list(true);
  EXPECT_EQ(entries.size(), 2u);
  uint64_t total = 0;
  for (const auto &e : entries) {
    total += e.bytes;
    EXPECT_EQ(e.problem, "");
    EXPECT_EQ(e.kernel, "w");
  }
  EXPECT_LE(total, one * 2 + one / 2);
}

#ifndef HEED_TOOLS_DIR
#error "HEED_TOOLS_DIR must point at heed-run"
#endif

/// Runs a shell command; its exit status.
int shell(const std::string &command) {
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_F(KernelCacheTest, ReadOnlyCacheNeverSaysRemoved) {
  // A corrupt entry in a directory heed-run may read but not write: the
  // warning says the entry could not be removed (it said "removed"), and
  // the entry is left as it was. Permissions do not bind root, so as root
  // heed-run runs as nobody.
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(outcome));
  std::string bad = readBytes(entryPath());
  bad[bad.size() / 2] ^= 1;
  writeBytes(entryPath(), bad);
  std::string folder = entryPath().substr(0, entryPath().rfind('/'));
  ASSERT_EQ(chmod(dir.path.c_str(), 0755), 0);
  ASSERT_EQ(chmod((dir.path + "/v" + std::to_string(kCacheFormatVersion)).c_str(), 0555), 0);
  writeBytes(dir.path + "/ro.attn", "variant causal_test { mask = causal() }\n");
  chmod((dir.path + "/ro.attn").c_str(), 0644);
  std::string asUser = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
  std::string cmd = "HEED_CACHE_DIR='" + dir.path + "' " + asUser + "'" + HEED_TOOLS_DIR +
                    "/heed-run' '" + dir.path + "/ro.attn' --seq=33 > '" + dir.path +
                    "/ro.out' 2>&1";
  int status = shell(cmd);
  chmod((dir.path + "/v" + std::to_string(kCacheFormatVersion)).c_str(), 0755);
  std::string output = readBytes(dir.path + "/ro.out");
  ASSERT_EQ(status, 0) << output;
  EXPECT_NE(output.find("was rejected (cache entry checksum mismatch"), std::string::npos)
      << output;
  EXPECT_NE(output.find("could not remove it (Permission denied), rebuilding without it"),
            std::string::npos)
      << output;
  EXPECT_EQ(output.find("removed,"), std::string::npos) << output;
  EXPECT_NE(output.find("check     PASSED"), std::string::npos) << output;
  EXPECT_EQ(readBytes(entryPath()), bad); // still there, untouched
}

TEST_F(KernelCacheTest, ConcurrentProcessesLeaveOneValidEntry) {
  // Six processes compile the same variant into one empty cache at once.
  std::string run = std::string(HEED_TOOLS_DIR) + "/heed-run";
  std::string spec = dir.path + "/race.attn";
  writeBytes(spec, "variant race { mask = sliding_window(40) && causal() }\n");
  writeBytes(dir.path + "/race.sh",
             "cd \"$1\"\nfor i in 1 2 3 4 5 6; do\n"
             "  HEED_CACHE_DIR=\"$1\" \"$2\" race.attn --seq=96 --num-threads=1 > out.$i 2>&1 &\n"
             "done\nfail=0\nfor i in 1 2 3 4 5 6; do wait -n || fail=1; done\nexit $fail\n");
  std::string cmd = "bash '" + dir.path + "/race.sh' '" + dir.path + "' '" + run + "'";
  ASSERT_EQ(shell(cmd), 0) << readBytes(dir.path + "/out.1");
  std::vector<std::string> files = filesIn(dir.path);
  ASSERT_EQ(files.size(), 1u) << "stray files: " << files.size();
  auto entries = DiskCache(dir.path, 1 << 30).list(/*verify=*/true);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].problem, "");
  EXPECT_EQ(entries[0].kernel, "race");
  // And every process checked its output against the reference.
  for (int i = 1; i <= 6; ++i)
    EXPECT_NE(readBytes(dir.path + "/out." + std::to_string(i)).find("PASS"),
              std::string::npos)
        << readBytes(dir.path + "/out." + std::to_string(i));
}

TEST_F(KernelCacheTest, FullDiskFailsCleanly) {
  // A full disk, simulated by a file size limit in a child process (SIGXFSZ
  // ignored: writes fail with EFBIG as they would with ENOSPC): the store
  // fails with a message and leaves nothing partial. (KernelCache turns a
  // failed store into memory-only caching: UnwritableDirectory... above.)
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(outcome));
  Artifact artifact = artifactIn(entryPath());
  std::string full = dir.path + "/full";
  pid_t child = fork();
  if (child == 0) {
    struct rlimit limit = {4096, 4096};
    setrlimit(RLIMIT_FSIZE, &limit);
    signal(SIGXFSZ, SIG_IGN);
    std::string error;
    bool stored = DiskCache(full, 1 << 30).store(key, request, artifact, error);
    FILE *f = std::fopen((dir.path + "/store-error").c_str(), "w");
    std::fputs(error.c_str(), f);
    std::fclose(f);
    _exit(stored ? 1 : 0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the store did not fail";
  std::string error = readBytes(dir.path + "/store-error");
  EXPECT_NE(error.find("File too large"), std::string::npos) << error;
  EXPECT_TRUE(filesIn(full).empty());
}

} // namespace

namespace {

/// A kernel built for a CPU with extensions this machine lacks refuses to
/// load (it would die on an illegal instruction), and says which.
TEST(Artifact, KernelForAnotherCPURefusesToLoad) {
  std::string lacking;
  for (const char *f : kCheckedX86Features) {
    std::string why;
    if (!hostRuns(std::string("cpu:x86_64:probe:") + f, why)) {
      lacking = f;
      EXPECT_NE(why.find(f), std::string::npos) << why;
      break;
    }
  }
  if (lacking.empty())
    GTEST_SKIP() << "this CPU has every checked extension: nothing to refuse";
  auto parsed = spec::parseSpec("variant v { mask = causal() }", "v.attn");
  ASSERT_TRUE(static_cast<bool>(parsed));
  // Sapphire Rapids has every extension on the list.
  auto artifact = compileArtifact(parsed->front(), KernelConfig{}, "cpu:sapphirerapids");
  ASSERT_TRUE(static_cast<bool>(artifact)) << llvm::toString(artifact.takeError());
  ASSERT_EQ(artifact->entries.size(), 1u);
  EXPECT_NE(artifact->entries[0].target.find(lacking), std::string::npos)
      << artifact->entries[0].target;
  std::string error;
  EXPECT_EQ(LoadedKernel::load(*artifact, error), nullptr);
  EXPECT_NE(error.find("which this CPU does not have"), std::string::npos) << error;
  EXPECT_NE(error.find(lacking), std::string::npos) << error;
}

} // namespace

// GPU kernels in the same cache: images (cubin or PTX, HSACO) with their
// launch shape, keyed by platform, chip, kernel kind and MFMA shape. No GPU
// is needed: nothing here loads a module. The damage cases use f32 (the
// SIMT kernel, ~0.2 s a compile); the first test f16 (matrix cores, ~1 s).
namespace {

struct GPUKernelCacheTest : ::testing::Test {
  TempDir dir;
  spec::Variant variant = parse("variant causal_test { mask = causal() }");
  KernelConfig f16 = [] {
    KernelConfig c;
    c.dtype = DType::F16;
    return c;
  }();
  KernelConfig f32;
  GPUTarget sm90{GPUVendor::NVIDIA, "sm_90"};
  GPUTarget gfx942{GPUVendor::AMD, "gfx942"};

  std::string pathOf(const Digest &key) const { return DiskCache(dir.path, 1 << 30).pathFor(key); }

  /// getGPU from a cache with a cold memory (a new process, in effect).
  std::shared_ptr<const ArtifactEntry> getFresh(const KernelConfig &config,
                                                const GPUTarget &target, CacheOutcome &outcome,
                                                CacheStats *stats = nullptr) {
    KernelCache cache(dir.path, 1 << 30, 4);
    auto got = cache.getGPU(variant, config, target, &outcome);
    EXPECT_TRUE(static_cast<bool>(got)) << llvm::toString(got.takeError());
    if (stats)
      *stats = cache.stats();
    return got ? *got : nullptr;
  }

  /// With the entry on disk damaged or foreign: a fresh cache rejects it
  /// (one rejection, a warning mentioning `inWarning`) and compiles anew an
  /// entry that checks.
  void expectRejectedAndRebuilt(const KernelConfig &config, const GPUTarget &target,
                                const std::string &inWarning) {
    CacheOutcome outcome;
    CacheStats stats;
    testing::internal::CaptureStderr();
    auto entry = getFresh(config, target, outcome, &stats);
    std::string warning = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(entry);
    EXPECT_EQ(outcome, CacheOutcome::Compiled);
    EXPECT_EQ(stats.rejectedEntries, 1u);
    EXPECT_NE(warning.find(inWarning), std::string::npos) << warning;
    EXPECT_EQ(checkGPUEntry(*entry, target.entryTarget()), "");
    artifactIn(pathOf(KernelCache::key(variant, config, target)));
  }
};

void expectSameEntry(const ArtifactEntry &a, const ArtifactEntry &b) {
  EXPECT_EQ(a.target, b.target);
  EXPECT_TRUE(a.binary == b.binary) << "the images differ";
  ASSERT_TRUE(a.info.gpu && b.info.gpu);
  EXPECT_EQ(a.info.gpu->format, b.info.gpu->format);
  EXPECT_EQ(a.info.gpu->kernelName, b.info.gpu->kernelName);
  EXPECT_EQ(a.info.gpu->blockRows, b.info.gpu->blockRows);
  EXPECT_EQ(a.info.gpu->threads, b.info.gpu->threads);
  EXPECT_EQ(a.info.gpu->sharedBytes, b.info.gpu->sharedBytes);
  EXPECT_EQ(a.info.gpu->matrixCores, b.info.gpu->matrixCores);
  EXPECT_EQ(a.info.serialize(), b.info.serialize());
}

TEST_F(GPUKernelCacheTest, CompiledOnceThenDiskHitInANewProcess) {
  for (const GPUTarget &target : {sm90, gfx942}) {
    SCOPED_TRACE(target.entryTarget());
    KernelCache cache(dir.path, 1 << 30, 4);
    CacheOutcome outcome;
    auto first = cache.getGPU(variant, f16, target, &outcome);
    ASSERT_TRUE(static_cast<bool>(first)) << llvm::toString(first.takeError());
    EXPECT_EQ(outcome, CacheOutcome::Compiled);
    const ArtifactEntry &entry = **first;
    EXPECT_EQ(entry.target, target.entryTarget());
    EXPECT_EQ(checkGPUEntry(entry, target.entryTarget()), "");
    const GPULaunch &launch = *entry.info.gpu;
    EXPECT_TRUE(launch.matrixCores); // f16, head dim 64
    EXPECT_GT(launch.blockRows, 0);
    EXPECT_GT(launch.threads, 0);
    if (target.vendor == GPUVendor::NVIDIA) {
      EXPECT_EQ(launch.format, findPtxas().empty() ? "ptx" : "cubin");
      EXPECT_GT(launch.sharedBytes, 0); // the tensor-core kernel stages K and V in shared memory
    } else {
      EXPECT_EQ(launch.format, "hsaco");
      EXPECT_EQ(launch.sharedBytes, 0); // static LDS
    }
    auto again = cache.getGPU(variant, f16, target, &outcome);
    ASSERT_TRUE(static_cast<bool>(again));
    EXPECT_EQ(outcome, CacheOutcome::MemoryHit);
    EXPECT_EQ(again->get(), first->get());

    auto fresh = getFresh(f16, target, outcome);
    ASSERT_TRUE(fresh);
    EXPECT_EQ(outcome, CacheOutcome::DiskHit);
    expectSameEntry(*fresh, entry);
    EXPECT_EQ(cache.stats().compiles, 1u);
  }
  auto listed = DiskCache(dir.path, 1 << 30).list(/*verify=*/true);
  ASSERT_EQ(listed.size(), 2u);
  std::string targets = listed[0].targets + " " + listed[1].targets;
  EXPECT_NE(targets.find("cuda:sm_90 ("), std::string::npos) << targets;
  EXPECT_NE(targets.find("hip:gfx942 (hsaco, matrix cores)"), std::string::npos) << targets;
}

TEST_F(GPUKernelCacheTest, KeyCoversPlatformChipKindAndMFMA) {
  Digest base = KernelCache::key(variant, f32, sm90);
  auto differs = [&](GPUTarget t) { return KernelCache::key(variant, f32, t) != base; };
  EXPECT_TRUE(differs({GPUVendor::NVIDIA, "sm_80"}));
  EXPECT_TRUE(differs({GPUVendor::NVIDIA, "sm_90a"}));
  EXPECT_TRUE(differs({GPUVendor::NVIDIA, "sm_90", GPUKernelKind::SIMT}));
  EXPECT_TRUE(differs({GPUVendor::AMD, "sm_90"}));
  EXPECT_FALSE(differs({GPUVendor::NVIDIA, "sm_90", GPUKernelKind::Auto, 16})); // no MFMA on NVIDIA
  EXPECT_NE(KernelCache::key(variant, f32, gfx942),
            KernelCache::key(variant, f32, GPUTarget{GPUVendor::AMD, "gfx942",
                                                     GPUKernelKind::Auto, 16}));
  EXPECT_NE(KernelCache::key(variant, f32, gfx942),
            KernelCache::key(variant, f32, GPUTarget{GPUVendor::AMD, "gfx90a"}));
  EXPECT_NE(KernelCache::key(variant, f16, sm90), base);
  EXPECT_NE(KernelCache::key(variant, f32, CPUTarget::jit()), base);
  EXPECT_EQ(KernelCache::key(parse("variant causal_test { mask = causal() }"), f32, sm90), base);
  // CUDA keys name the ptxas that makes the cubin (or that there is none).
  std::string canonical = sm90.canonical();
  if (findPtxas().empty())
    EXPECT_NE(canonical.find("ptxas=none"), std::string::npos) << canonical;
  else
    EXPECT_NE(canonical.find("ptxas=Cuda compilation tools, release"), std::string::npos)
        << canonical;
  EXPECT_EQ(gfx942.canonical().find("ptxas"), std::string::npos) << gfx942.canonical();

  // In the cache: another chip is another entry, compiled, not a disk hit.
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(f32, sm90, outcome));
  auto sm80 = getFresh(f32, GPUTarget{GPUVendor::NVIDIA, "sm_80"}, outcome);
  ASSERT_TRUE(sm80);
  EXPECT_EQ(outcome, CacheOutcome::Compiled);
  EXPECT_EQ(sm80->target, "cuda:sm_80");
  EXPECT_EQ(DiskCache(dir.path, 1 << 30).list(false).size(), 2u);
}

TEST_F(GPUKernelCacheTest, DamagedEntriesAreRebuilt) {
  // A flipped byte (CUDA) and a truncated file (ROCm): detected by the
  // artifact's checksum and size before anything is used.
  CacheOutcome outcome;
  ASSERT_TRUE(getFresh(f32, sm90, outcome));
  std::string cudaPath = pathOf(KernelCache::key(variant, f32, sm90));
  std::string good = readBytes(cudaPath);
  ASSERT_GT(good.size(), 1000u);
  std::string bad = good;
  bad[good.size() / 2] ^= 0x5a;
  writeBytes(cudaPath, bad);
  expectRejectedAndRebuilt(f32, sm90, "checksum");
  EXPECT_EQ(readBytes(cudaPath), good); // the same kernel again

  ASSERT_TRUE(getFresh(f32, gfx942, outcome));
  std::string hipPath = pathOf(KernelCache::key(variant, f32, gfx942));
  good = readBytes(hipPath);
  writeBytes(hipPath, good.substr(0, good.size() - 100));
  expectRejectedAndRebuilt(f32, gfx942, "truncated");
}

TEST_F(GPUKernelCacheTest, EntriesOfTheWrongKindAreNeverUsed) {
  CacheOutcome outcome;
  auto gpu = getFresh(f32, sm90, outcome);
  ASSERT_TRUE(gpu);
  Digest cpuKey = KernelCache::key(variant, f32, CPUTarget::jit());
  Digest gpuKey = KernelCache::key(variant, f32, sm90);

  // The CPU loader never opens a GPU image ...
  std::string error;
  EXPECT_EQ(LoadedKernel::load(*gpu, error), nullptr);
  EXPECT_NE(error.find("GPU image"), std::string::npos) << error;
  // ... so a GPU entry where the CPU kernel's should be (a forged key) is
  // rejected by get(), and a CPU kernel is built and runs.
  Artifact forged;
  forged.key = cpuKey;
  forged.entries.push_back(*gpu);
  std::string cpuPath = pathOf(cpuKey);
  std::string cpuRequest =
      KernelCache::request(KernelCache::targetDigest(CPUTarget::jit()), variant, f32);
  ASSERT_TRUE(DiskCache(dir.path, 1 << 30).store(cpuKey, cpuRequest, forged, error)) << error;
  {
    KernelCache cache(dir.path, 1 << 30, 4);
    testing::internal::CaptureStderr();
    auto kernel = cache.get(variant, f32, &outcome);
    std::string warning = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(static_cast<bool>(kernel)) << llvm::toString(kernel.takeError());
    EXPECT_EQ(outcome, CacheOutcome::Compiled);
    EXPECT_EQ(cache.stats().rejectedEntries, 1u);
    EXPECT_NE(warning.find("GPU image"), std::string::npos) << warning;
    EXPECT_EQ((*kernel)->target().rfind("cpu:", 0), 0u);
    expectCorrect(**kernel, variant, 37);
  }

  // And a CPU entry where the GPU image's should be: rejected by getGPU.
  Artifact cpu = artifactIn(cpuPath);
  cpu.key = gpuKey;
  std::string gpuRequest = KernelCache::request(KernelCache::targetDigest(sm90), variant, f32);
  ASSERT_TRUE(DiskCache(dir.path, 1 << 30).store(gpuKey, gpuRequest, cpu, error)) << error;
  expectRejectedAndRebuilt(f32, sm90, "not 'cuda:sm_90'");
}

TEST(GPUArtifact, CheckGPUEntrySaysWhatIsWrong) {
  KernelInfo info;
  info.name = "k";
  info.headDim = info.headDimV = 64;
  info.gpu = GPULaunch{"cubin", "heed_kernel", 128, 128, 0, false};
  // An ELF64 header for EM_CUDA (190) and the kernel's name in its strings.
  std::string cubin(64, '\0');
  cubin.replace(0, 4, "\x7f" "ELF");
  cubin[4] = 2, cubin[5] = 1, cubin[18] = char(190);
  cubin += "heed_kernel";
  ArtifactEntry e{"cuda:sm_90", info, cubin};
  EXPECT_EQ(checkGPUEntry(e, "cuda:sm_90"), "");
  EXPECT_NE(checkGPUEntry(e, "cuda:sm_80").find("not 'cuda:sm_80'"), std::string::npos);

  auto problem = [&](auto change) {
    ArtifactEntry bad = e;
    change(bad);
    return checkGPUEntry(bad, bad.target);
  };
  EXPECT_NE(problem([](ArtifactEntry &b) { b.info.gpu.reset(); }).find("launch shape"),
            std::string::npos);
  EXPECT_NE(problem([](ArtifactEntry &b) { b.binary[18] = char(224); }).find("ELF machine 224"),
            std::string::npos);
  EXPECT_NE(problem([](ArtifactEntry &b) { b.binary[0] = 'x'; }).find("not a 64-bit ELF"),
            std::string::npos);
  EXPECT_NE(problem([](ArtifactEntry &b) { b.binary.resize(64); }).find("without the kernel"),
            std::string::npos);
  EXPECT_NE(problem([](ArtifactEntry &b) { b.target = "hip:gfx942"; }).find("a cubin image"),
            std::string::npos);
  EXPECT_NE(problem([](ArtifactEntry &b) { b.target = "cpu:x86_64:x86-64"; })
                .find("not a GPU target"),
            std::string::npos);
  EXPECT_NE(problem([](ArtifactEntry &b) {
              b.info.gpu->format = "ptx";
              b.binary = ".version 8.0\n.target sm_90\n";
            }).find("PTX without"),
            std::string::npos);
  EXPECT_EQ(problem([](ArtifactEntry &b) {
              b.info.gpu->format = "ptx";
              b.binary = ".version 8.0\n.target sm_90\n.visible .entry heed_kernel(";
            }),
            "");
  // The launch shape survives the text form; a malformed one does not parse.
  KernelInfo back;
  EXPECT_EQ(back.parse(info.serialize()), "");
  ASSERT_TRUE(back.gpu);
  EXPECT_EQ(back.gpu->blockRows, 128);
  EXPECT_EQ(back.gpu->kernelName, "heed_kernel");
  EXPECT_NE(back.parse(info.serialize() + "gpu_launch 0 128 0 0\n").find("malformed GPU launch"),
            std::string::npos);
  EXPECT_NE(back.parse(info.serialize() + "gpu_image sass\n").find("malformed GPU launch"),
            std::string::npos);
}

} // namespace
