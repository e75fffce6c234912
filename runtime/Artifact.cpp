// Artifact serialization and verification; KernelInfo text; host checks.
#include "heed/Runtime/Artifact.h"

#include <cstring>
#include <sstream>

namespace heed {
namespace {

constexpr char kMagic[8] = {'H', 'E', 'E', 'D', 'K', 'R', 'N', '\0'};
constexpr size_t kHeaderSize = 8 + 4 + 4 + 32 + 8 + 32;

void putU32(std::string &out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out += char(v >> (8 * i));
}
void putU64(std::string &out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out += char(v >> (8 * i));
}

/// Reads little-endian fields with bounds checks.
struct Reader {
  const std::string &bytes;
  size_t pos;
  bool ok = true;
  uint64_t take(int n) {
    if (!ok || bytes.size() - pos < size_t(n)) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
      v |= uint64_t(uint8_t(bytes[pos + i])) << (8 * i);
    pos += n;
    return v;
  }
  std::string takeString(uint64_t n) {
    if (!ok || bytes.size() - pos < n) {
      ok = false;
      return {};
    }
    std::string s = bytes.substr(pos, n);
    pos += n;
    return s;
  }
};

const char *layoutName(Layout l) { return l == Layout::BSHD ? "bshd" : "bhsd"; }

std::string joinDims(const std::vector<std::string> &dims) {
  std::string out;
  for (size_t i = 0; i < dims.size(); ++i)
    out += (i ? "," : "") + dims[i];
  return out.empty() ? "-" : out;
}

} // namespace

int64_t GPULaunch::queryTiles(int64_t seqQ) const {
  if (blockRows <= 0 || seqQ <= 0)
    return 0;
  if (queryPatch.empty())
    return (seqQ + blockRows - 1) / blockRows;
  // (dialects/attn/TileMath.h's numTiles, without LLVM.)
  auto ceilDiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  int64_t stride = 1;
  for (int64_t e : queryGrid)
    stride *= e;
  int64_t tiles = ceilDiv(ceilDiv(seqQ, stride), queryPatch[0]);
  for (size_t k = 1; k < queryPatch.size(); ++k)
    tiles *= ceilDiv(queryGrid[k - 1], queryPatch[k]);
  return tiles;
}

std::string KernelInfo::serialize() const {
  std::ostringstream os;
  os.precision(17);
  os << "name " << name << "\n"
     << "dtype " << toString(dtype) << "\n"
     << "head_dim " << headDim << "\n"
     << "head_dim_v " << headDimV << "\n"
     << "layout " << layoutName(layout) << "\n"
     << "lse " << (lse ? 1 : 0) << "\n"
     << "scale " << scale << "\n"
     << "summary_block " << summaryBlock << "\n";
  // Serving layouts only where used, so other descriptions read as before.
  if (kvLens)
    os << "kv_lens 1\n";
  if (pageSize > 0)
    os << "page_size " << pageSize << "\n";
  if (qLens)
    os << "q_lens 1\n";
  if (cuSeqlensQ)
    os << "cu_seqlens_q 1\n";
  if (cuSeqlensKV)
    os << "cu_seqlens_kv 1\n";
  if (entryOrder)
    os << "entry_order 1\n";
  if (outF32)
    os << "out_f32 1\n";
  if (splitKV)
    os << "split_kv 1" << (splitPartKeys ? " 1" : "") << "\n";
  if (packedRows != 0)
    os << "packed_rows " << packedRows << "\n";
  for (const BufferInfo &b : buffers)
    os << "buffer " << b.name << " " << toString(b.dtype) << " " << joinDims(b.shape) << "\n";
  for (unsigned s : summarized)
    os << "summarized " << s << "\n";
  if (gate.size() == 4)
    os << "gate " << gate[0] << " " << gate[1] << " " << gate[2] << " " << gate[3] << "\n";
  if (gpu)
    os << "gpu_image " << gpu->format << "\n"
       << "gpu_kernel " << gpu->kernelName << "\n"
       << "gpu_launch " << gpu->blockRows << " " << gpu->threads << " " << gpu->sharedBytes
       << " " << (gpu->matrixCores ? 1 : 0) << "\n";
  if (gpu && gpu->tensorMapRowsQ > 0)
    os << "gpu_tensor_maps " << gpu->tensorMapRowsQ << " " << gpu->tensorMapRowsKV << "\n";
  if (gpu && gpu->splitKV)
    os << "gpu_split_kv 1 " << (gpu->splitKVWhole ? 1 : 0) << (gpu->splitPartKeys ? " 1" : "")
       << "\n";
  if (gpu && gpu->packedRows > 0)
    os << "gpu_packed_rows " << gpu->packedRows << "\n";
  if (gpu && gpu->persistent)
    os << "gpu_persistent 1\n";
  if (gpu && !gpu->queryPatch.empty()) {
    os << "gpu_patches " << gpu->queryGrid.size();
    for (int64_t e : gpu->queryGrid)
      os << " " << e;
    for (int64_t p : gpu->queryPatch)
      os << " " << p;
    os << "\n";
  }
  return os.str();
}

std::string KernelInfo::parse(const std::string &text) {
  *this = KernelInfo{};
  std::istringstream lines(text);
  std::string line;
  bool haveName = false, haveDType = false;
  auto gpuLaunch = [&]() -> GPULaunch & { return gpu ? *gpu : gpu.emplace(); };
  while (std::getline(lines, line)) {
    if (line.empty())
      continue;
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    bool ok = true;
    if (key == "name") {
      ok = bool(fields >> name), haveName = ok;
    } else if (key == "dtype") {
      std::string t;
      ok = (fields >> t) && parseDType(t, dtype), haveDType = ok;
    } else if (key == "head_dim") {
      ok = bool(fields >> headDim);
    } else if (key == "head_dim_v") {
      ok = bool(fields >> headDimV);
    } else if (key == "layout") {
      std::string l;
      ok = bool(fields >> l) && parseLayout(l, layout);
    } else if (key == "lse") {
      int v = 0;
      ok = bool(fields >> v), lse = v != 0;
    } else if (key == "kv_lens") {
      int v = 0;
      ok = bool(fields >> v), kvLens = v != 0;
    } else if (key == "q_lens") {
      int v = 0;
      ok = bool(fields >> v), qLens = v != 0;
    } else if (key == "cu_seqlens_q") {
      int v = 0;
      ok = bool(fields >> v), cuSeqlensQ = v != 0;
    } else if (key == "cu_seqlens_kv") {
      int v = 0;
      ok = bool(fields >> v), cuSeqlensKV = v != 0;
    } else if (key == "entry_order") {
      int v = 0;
      ok = bool(fields >> v), entryOrder = v != 0;
    } else if (key == "out_f32") {
      int v = 0;
      ok = bool(fields >> v), outF32 = v != 0;
    } else if (key == "split_kv") {
      int v = 0, parts = 0;
      ok = bool(fields >> v), splitKV = v != 0;
      if (ok && (fields >> parts)) // (before version 6: no part tiles)
        splitPartKeys = parts != 0;
    } else if (key == "packed_rows") {
      ok = bool(fields >> packedRows) && (packedRows > 0 || packedRows == -1);
    } else if (key == "page_size") {
      ok = bool(fields >> pageSize) && pageSize > 0;
    } else if (key == "scale") {
      ok = bool(fields >> scale);
    } else if (key == "summary_block") {
      ok = bool(fields >> summaryBlock) && summaryBlock > 0;
    } else if (key == "buffer") {
      BufferInfo b;
      std::string t, dims;
      ok = (fields >> b.name >> t >> dims) && parseDType(t, b.dtype);
      if (ok && dims != "-") {
        // Commas inside a dim's parentheses (cdiv(Sq,128)) are its own.
        std::string d;
        int depth = 0;
        for (char c : dims) {
          depth += c == '(' ? 1 : c == ')' ? -1 : 0;
          if (c == ',' && depth == 0) {
            b.shape.push_back(d);
            d.clear();
          } else {
            d += c;
          }
        }
        b.shape.push_back(d);
      }
      buffers.push_back(b);
    } else if (key == "gate") {
      gate.assign(4, 0);
      ok = bool(fields >> gate[0] >> gate[1] >> gate[2] >> gate[3]);
    } else if (key == "gpu_image") {
      ok = bool(fields >> gpuLaunch().format);
    } else if (key == "gpu_kernel") {
      ok = bool(fields >> gpuLaunch().kernelName);
    } else if (key == "gpu_launch") {
      GPULaunch &g = gpuLaunch();
      int matrix = 0;
      ok = bool(fields >> g.blockRows >> g.threads >> g.sharedBytes >> matrix);
      g.matrixCores = matrix != 0;
    } else if (key == "gpu_tensor_maps") {
      GPULaunch &g = gpuLaunch();
      ok = bool(fields >> g.tensorMapRowsQ >> g.tensorMapRowsKV) && g.tensorMapRowsQ > 0 &&
           g.tensorMapRowsKV > 0;
    } else if (key == "gpu_split_kv") {
      int v = 0, whole = 0, parts = 0;
      ok = bool(fields >> v);
      if (!(fields >> whole)) // (written by 51a8326 without it: never split then)
        whole = 0;
      else if (!(fields >> parts)) // (before version 6: no part tiles)
        parts = 0;
      gpuLaunch().splitKV = v != 0;
      gpuLaunch().splitKVWhole = whole != 0;
      gpuLaunch().splitPartKeys = parts != 0;
    } else if (key == "gpu_persistent") {
      int v = 0;
      ok = bool(fields >> v) && (v == 0 || v == 1);
      gpuLaunch().persistent = v != 0;
    } else if (key == "gpu_patches") {
      // The grid's rank n (0..2), its n extents, then the patch's n + 1 sides.
      GPULaunch &g = gpuLaunch();
      size_t n = 0;
      ok = bool(fields >> n) && n <= 2;
      g.queryGrid.assign(ok ? n : 0, 0);
      g.queryPatch.assign(ok ? n + 1 : 0, 0);
      for (int64_t &e : g.queryGrid)
        ok = ok && bool(fields >> e) && e > 1 && e <= (int64_t(1) << 31);
      for (int64_t &p : g.queryPatch)
        ok = ok && bool(fields >> p) && p > 0 && p <= 1024;
    } else if (key == "gpu_packed_rows") {
      GPULaunch &g = gpuLaunch();
      ok = bool(fields >> g.packedRows) && g.packedRows > 0;
    } else if (key == "summarized") {
      unsigned s = 0;
      ok = bool(fields >> s);
      summarized.push_back(s);
    } // other keys: written by a newer heed of the same format; ignored
    if (!ok)
      return "bad kernel description line: '" + line + "'";
  }
  if (!haveName || !haveDType || headDim <= 0 || headDimV <= 0)
    return "kernel description lacks its name, dtype or head dims";
  for (unsigned s : summarized)
    if (s >= buffers.size())
      return "kernel description names a summarized buffer that does not exist";
  if (!gate.empty()) {
    bool valid = gate[0] >= 0 && size_t(gate[0]) < buffers.size() &&
                 buffers[gate[0]].shape.size() == 3;
    for (int d = 1; valid && d < 4; ++d)
      valid = gate[d] >= 0 && gate[d] < 3;
    if (!valid || gate[1] == gate[2] || gate[1] == gate[3] || gate[2] == gate[3])
      return "kernel description has a malformed gate";
  }
  if (gpu && ((gpu->format != "cubin" && gpu->format != "ptx" && gpu->format != "hsaco") ||
              gpu->kernelName.empty() || gpu->blockRows <= 0 || gpu->threads <= 0 ||
              gpu->sharedBytes < 0))
    return "kernel description has a malformed GPU launch (gpu_image, gpu_kernel, gpu_launch)";
  if (gpu && !gpu->queryPatch.empty()) {
    int64_t lanes = 1;
    for (int64_t p : gpu->queryPatch)
      lanes *= p;
    if (lanes != gpu->blockRows)
      return "kernel description's query patches (gpu_patches) are not its block's rows";
  }
  return "";
}

std::string Artifact::serialize() const {
  std::string body;
  for (const ArtifactEntry &e : entries) {
    std::string info = e.info.serialize();
    putU32(body, uint32_t(e.target.size()));
    body += e.target;
    putU32(body, uint32_t(info.size()));
    body += info;
    putU64(body, e.binary.size());
    body += e.binary;
  }
  // The oldest version whose readers take every entry's arguments right.
  uint32_t version = kArtifactVersion;
  for (const ArtifactEntry &e : entries) {
    if (e.info.cuSeqlensQ || e.info.cuSeqlensKV)
      version = std::max(version, kArtifactVersionPacked);
    if (e.info.entryOrder)
      version = std::max(version, kArtifactVersionEntryOrder);
    if (e.info.gpu && e.info.gpu->packedRows > 0)
      version = std::max(version, kArtifactVersionGPUPacking);
    if (e.info.gpu && e.info.gpu->persistent)
      version = std::max(version, kArtifactVersionPersistent);
    if ((e.info.splitKV && e.info.splitPartKeys) ||
        (e.info.gpu && e.info.gpu->splitKV && e.info.gpu->splitPartKeys))
      version = std::max(version, kArtifactVersionSplitParts);
    if (e.info.gpu && !e.info.gpu->queryPatch.empty())
      version = std::max(version, kArtifactVersionGPUPatches);
  }
  std::string out(kMagic, 8);
  putU32(out, version);
  putU32(out, uint32_t(entries.size()));
  out.append(reinterpret_cast<const char *>(key.data()), key.size());
  putU64(out, body.size());
  Digest sum = sha256(body.data(), body.size());
  out.append(reinterpret_cast<const char *>(sum.data()), sum.size());
  return out + body;
}

std::string Artifact::parse(const std::string &bytes) {
  entries.clear();
  if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kMagic, 8) != 0)
    return "not a heed kernel artifact (bad magic or shorter than its header)";
  Reader r{bytes, 8};
  uint32_t version = uint32_t(r.take(4));
  if (version < kArtifactVersion || version > kArtifactVersionNewest)
    return "artifact format version " + std::to_string(version) + ", this heed reads versions " +
           std::to_string(kArtifactVersion) + " to " + std::to_string(kArtifactVersionNewest);
  uint32_t count = uint32_t(r.take(4));
  std::memcpy(key.data(), bytes.data() + r.pos, 32);
  r.pos += 32;
  uint64_t bodySize = r.take(8);
  Digest sum;
  std::memcpy(sum.data(), bytes.data() + r.pos, 32);
  r.pos += 32;
  if (bytes.size() - kHeaderSize != bodySize)
    return "artifact truncated or padded: header says " + std::to_string(bodySize) +
           " body bytes, file has " + std::to_string(bytes.size() - kHeaderSize);
  if (sha256(bytes.data() + kHeaderSize, bodySize) != sum)
    return "artifact checksum mismatch (the file is corrupt)";
  for (uint32_t i = 0; i < count; ++i) {
    ArtifactEntry e;
    e.target = r.takeString(r.take(4));
    std::string info = r.takeString(r.take(4));
    e.binary = r.takeString(r.take(8));
    if (!r.ok)
      return "artifact entry " + std::to_string(i) + " runs past the end of the file";
    if (std::string err = e.info.parse(info); !err.empty())
      return "artifact entry " + std::to_string(i) + ": " + err;
    entries.push_back(std::move(e));
  }
  if (r.pos != bytes.size())
    return "artifact has trailing bytes after its entries";
  return "";
}

namespace {
/// Does this CPU have the x86 extension `f` (one of kCheckedX86Features)?
bool cpuSupports(const std::string &f) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (f == "sse4.1") return __builtin_cpu_supports("sse4.1");
  if (f == "sse4.2") return __builtin_cpu_supports("sse4.2");
  if (f == "popcnt") return __builtin_cpu_supports("popcnt");
  if (f == "avx") return __builtin_cpu_supports("avx");
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "bmi") return __builtin_cpu_supports("bmi");
  if (f == "bmi2") return __builtin_cpu_supports("bmi2");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512cd") return __builtin_cpu_supports("avx512cd");
  if (f == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
  if (f == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
  if (f == "avx512vbmi") return __builtin_cpu_supports("avx512vbmi");
#endif
  (void)f;
  return false;
}
} // namespace

bool isGPUTarget(const std::string &target) {
  return target.rfind("cuda:", 0) == 0 || target.rfind("hip:", 0) == 0;
}

std::string checkGPUEntry(const ArtifactEntry &entry, const std::string &target) {
  if (entry.target != target)
    return "an entry for '" + entry.target + "', not '" + target + "'";
  if (!isGPUTarget(target))
    return "'" + target + "' is not a GPU target";
  if (!entry.info.gpu)
    return "a GPU entry without its launch shape";
  const GPULaunch &g = *entry.info.gpu;
  bool cuda = target.rfind("cuda:", 0) == 0;
  if (cuda ? g.format != "cubin" && g.format != "ptx" : g.format != "hsaco")
    return "a " + g.format + " image for '" + target + "'";
  const std::string &image = entry.binary;
  if (g.format == "ptx") {
    if (image.find(".version") == std::string::npos ||
        image.find(".entry " + g.kernelName) == std::string::npos)
      return "PTX without a .version or the entry '" + g.kernelName + "'";
    return "";
  }
  // ELF64, little-endian; e_machine at byte 18: EM_CUDA 190, EM_AMDGPU 224.
  constexpr uint16_t kCUDAMachine = 190, kAMDGPUMachine = 224;
  if (image.size() < 64 || image.compare(0, 4, "\x7f" "ELF") != 0 || image[4] != 2 ||
      image[5] != 1)
    return "a " + g.format + " image that is not a 64-bit ELF file";
  uint16_t machine = uint16_t(uint8_t(image[18]) | uint8_t(image[19]) << 8);
  if (machine != (cuda ? kCUDAMachine : kAMDGPUMachine))
    return "a " + g.format + " image for ELF machine " + std::to_string(machine);
  if (image.find(g.kernelName) == std::string::npos)
    return "a " + g.format + " image without the kernel '" + g.kernelName + "'";
  return "";
}

namespace {
/// "sm_90a" -> {90, true}; false when `chip` is not an NVIDIA chip name.
bool parseSM(const std::string &chip, int &version, bool &archSpecific) {
  if (chip.rfind("sm_", 0) != 0 || chip.size() < 5)
    return false;
  std::string digits = chip.substr(3);
  archSpecific = digits.back() == 'a';
  if (archSpecific)
    digits.pop_back();
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  version = std::stoi(digits);
  return true;
}
} // namespace

const ArtifactEntry *selectGPUEntry(const Artifact &artifact, const std::string &platform,
                                    const std::string &chip, std::string &why) {
  const std::string prefix = platform + ":";
  const ArtifactEntry *best = nullptr;
  int bestRank = 0; // higher is better
  std::string reasons;
  auto reject = [&](const ArtifactEntry &e, const std::string &because) {
    reasons += (reasons.empty() ? "" : "; ") + e.target +
               (e.info.gpu ? " (" + e.info.gpu->format + ")" : "") + ": " + because;
  };
  int device = 0;
  bool deviceArch = false;
  bool cuda = platform == "cuda";
  if (cuda && (!parseSM(chip, device, deviceArch) || deviceArch)) {
    why = "'" + chip + "' is not a CUDA device chip (expected sm_<compute capability>)";
    return nullptr;
  }
  for (const ArtifactEntry &e : artifact.entries) {
    if (e.target.rfind(prefix, 0) != 0) {
      reject(e, "not a " + platform + " entry");
      continue;
    }
    if (!e.info.gpu) {
      reject(e, "no launch shape");
      continue;
    }
    std::string entryChip = e.target.substr(prefix.size());
    int rank = 0;
    if (!cuda) {
      if (entryChip == chip)
        rank = 1;
      else
        reject(e, "built for " + entryChip + ", the device is " + chip);
    } else {
      int version = 0;
      bool arch = false;
      if (!parseSM(entryChip, version, arch)) {
        reject(e, "not an NVIDIA chip");
        continue;
      }
      bool ptx = e.info.gpu->format == "ptx";
      // Ranks: exact cubin 3000+, same-major cubin 2000+minor, PTX 1000+version.
      if (!ptx && version == device)
        rank = 3000;
      else if (!ptx && !arch && version / 10 == device / 10 && version < device)
        rank = 2000 + version;
      else if (ptx && (arch ? version == device : version <= device))
        rank = 1000 + version;
      else if (ptx)
        reject(e, "PTX for " + entryChip + ", newer than the device's " + chip);
      else
        reject(e, "a cubin for " + entryChip + " runs only on " +
                      (arch ? entryChip : "sm_" + std::to_string(version / 10) + "x") +
                      " devices, the device is " + chip);
    }
    if (rank > bestRank) {
      best = &e;
      bestRank = rank;
    }
  }
  if (!best)
    why = "no entry of the artifact runs on " + platform + " " + chip +
          (reasons.empty() ? std::string(": the artifact is empty") : ": " + reasons);
  return best;
}

bool hostRuns(const std::string &target, std::string &why) {
  if (isGPUTarget(target)) {
    why = "'" + target + "' is a GPU image, not CPU code";
    return false;
  }
  // "cpu:<arch>:<cpu>[:<features>]"
  if (target.rfind("cpu:", 0) != 0) {
    why = "'" + target + "' is not a CPU target, and this runtime launches CPU kernels only";
    return false;
  }
  std::string rest = target.substr(4);
  std::string arch = rest.substr(0, rest.find(':'));
  std::string cpu = rest.find(':') == std::string::npos ? "" : rest.substr(rest.find(':') + 1);
  cpu = cpu.substr(0, cpu.find(':'));
#if defined(__x86_64__)
  const char *hostArch = "x86_64";
#elif defined(__aarch64__)
  const char *hostArch = "aarch64";
#else
  const char *hostArch = "unknown";
#endif
  if (arch != hostArch) {
    why = "built for " + arch + ", this machine is " + hostArch;
    return false;
  }
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  bool ok = true;
  if (cpu == "x86-64-v2")
    ok = __builtin_cpu_supports("x86-64-v2");
  else if (cpu == "x86-64-v3")
    ok = __builtin_cpu_supports("x86-64-v3");
  else if (cpu == "x86-64-v4")
    ok = __builtin_cpu_supports("x86-64-v4");
  if (!ok) {
    why = "built for " + cpu + ", which this CPU does not support";
    return false;
  }
#endif
  // The extensions the code may use, as the compiler listed them.
  size_t third = rest.find(':', rest.find(':') + 1);
  if (third != std::string::npos && rest.find(':') != std::string::npos) {
    std::string list = rest.substr(third + 1), missing;
    size_t start = 0;
    while (start < list.size()) {
      size_t comma = list.find(',', start);
      std::string f = list.substr(start, comma == std::string::npos ? std::string::npos
                                                                     : comma - start);
      if (!f.empty() && !cpuSupports(f))
        missing += (missing.empty() ? "" : ", ") + f;
      if (comma == std::string::npos)
        break;
      start = comma + 1;
    }
    if (!missing.empty()) {
      why = "built for " + cpu + ", whose code uses " + missing +
            ", which this CPU does not have";
      return false;
    }
  }
  return true;
}

} // namespace heed
