// Ahead-of-time export (see Export.h): the CPU and GPU entries of one
// artifact, the typed C wrapper, the embedded artifact and the CMake package
// around libheed_runtime.a.
#include "heed/Compiler/Export.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <future>
#include <optional>

namespace heed {

namespace {

std::string identifier(const std::string &name) {
  std::string id;
  for (char c : name)
    id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (id.empty() || std::isdigit(static_cast<unsigned char>(id[0])))
    id = "k" + id;
  return id;
}

/// The C element type a typed wrapper takes for `t` (16-bit floats as raw
/// bits: C has no portable half/bfloat16 type).
const char *cType(DType t) {
  switch (t) {
  case DType::F32: return "float";
  case DType::F16: return "uint16_t";
  case DType::BF16: return "uint16_t";
  case DType::I8: return "int8_t";
  case DType::I32: return "int32_t";
  case DType::I64: return "int64_t";
  case DType::Bool: return "uint8_t";
  }
  return "void";
}

const char *cDType(DType t) {
  switch (t) {
  case DType::F32: return "HEED_F32";
  case DType::F16: return "HEED_F16";
  case DType::BF16: return "HEED_BF16";
  case DType::I8: return "HEED_I8";
  case DType::I32: return "HEED_I32";
  case DType::I64: return "HEED_I64";
  case DType::Bool: return "HEED_BOOL";
  }
  return "-1";
}

/// A C expression for one buffer dimension (a size, an integer or an
/// expression of them).
std::string dimExpr(const std::string &d) {
  return dimToC(d, [](const std::string &name) -> std::string {
    if (name == "B") return "batch";
    if (name == "H") return "heads_q";
    if (name == "Hkv") return "heads_kv";
    if (name == "Sq") return "seq_q";
    return "seq_kv";
  });
}

/// The typed run function's parameters after the kernel (and, for the
/// device variant, the device and stream): sizes, q, k, v, buffers, out, lse.
std::string tensorParameters(const KernelInfo &info) {
  std::string s = fmt::format(
      "    int64_t batch, int64_t heads_q, int64_t heads_kv, int64_t seq_q, int64_t seq_kv,\n"
      "    const {0} *q, const {0} *k, const {0} *v",
      cType(info.dtype));
  for (const BufferInfo &b : info.buffers)
    s += fmt::format(", const {} *{}", cType(b.dtype), identifier(b.name));
  s += fmt::format(",\n    {} *out", cType(info.dtype));
  if (info.lse)
    s += ", float *lse";
  return s;
}

/// The argument list that passes tensorParameters on.
std::string tensorArguments(const KernelInfo &info) {
  std::string s = "batch, heads_q, heads_kv, seq_q, seq_kv, q, k, v";
  for (const BufferInfo &b : info.buffers)
    s += ", " + identifier(b.name);
  s += ", out";
  if (info.lse)
    s += ", lse";
  return s;
}

std::string signature(const KernelInfo &info, const std::string &id) {
  return fmt::format("heed_status heed_{}_run(const heed_kernel *kernel,\n{}, int32_t num_threads)",
                     id, tensorParameters(info));
}

std::string deviceSignature(const KernelInfo &info, const std::string &id) {
  return fmt::format("heed_status heed_{}_run_device(const heed_kernel *kernel,\n"
                     "    int32_t device_type, int32_t device_id, void *stream,\n{})",
                     id, tensorParameters(info));
}

bool hasGPUEntries(const Artifact &artifact) {
  return std::any_of(artifact.entries.begin(), artifact.entries.end(),
                     [](const ArtifactEntry &e) { return isGPUTarget(e.target); });
}

/// "cpu:x86_64:x86-64-v3, cuda:sm_90 (cubin), cuda:sm_90 (ptx)".
std::string entryList(const Artifact &artifact) {
  std::string list;
  for (const ArtifactEntry &e : artifact.entries)
    list += (list.empty() ? "" : ", ") + e.target +
            (e.info.gpu ? " (" + e.info.gpu->format + ")" : "");
  return list;
}

std::string shapeText(const std::vector<std::string> &shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + shape[i];
  return "[" + s + "]";
}

llvm::Error writeFile(const std::string &path, llvm::StringRef bytes) {
  std::error_code ec;
  llvm::raw_fd_ostream out(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return llvm::createStringError(ec, "cannot write %s: %s", path.c_str(), ec.message().c_str());
  out << bytes;
  out.close();
  if (out.has_error())
    return llvm::createStringError(out.error(), "cannot write %s: %s", path.c_str(),
                                   out.error().message().c_str());
  return llvm::Error::success();
}

llvm::Error copyFile(const std::string &from, const std::string &to) {
  if (std::error_code ec = llvm::sys::fs::copy_file(from, to))
    return llvm::createStringError(ec, "cannot copy %s to %s: %s", from.c_str(), to.c_str(),
                                   ec.message().c_str());
  return llvm::Error::success();
}

constexpr const char *kPackageConfig = R"(# heed AOT package: find_package(heed_aot CONFIG REQUIRED PATHS <this dir>)
# gives heed::runtime (libheed_runtime.a and heed.h: no MLIR or LLVM) and one
# static library heed::<name> per exported kernel (<name>.c/.h here).
find_package(Threads REQUIRED)
if(NOT TARGET heed::runtime)
  add_library(heed::runtime STATIC IMPORTED)
  set_target_properties(heed::runtime PROPERTIES
    IMPORTED_LOCATION "${CMAKE_CURRENT_LIST_DIR}/lib/libheed_runtime.a"
    INTERFACE_INCLUDE_DIRECTORIES "${CMAKE_CURRENT_LIST_DIR}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};stdc++;m")
endif()
file(GLOB _heed_aot_kernels "${CMAKE_CURRENT_LIST_DIR}/*.c")
foreach(_heed_aot_source IN LISTS _heed_aot_kernels)
  get_filename_component(_heed_aot_name "${_heed_aot_source}" NAME_WE)
  if(NOT TARGET heed::${_heed_aot_name})
    add_library(heed_aot_${_heed_aot_name} STATIC "${_heed_aot_source}")
    target_include_directories(heed_aot_${_heed_aot_name} PUBLIC "${CMAKE_CURRENT_LIST_DIR}")
    target_link_libraries(heed_aot_${_heed_aot_name} PUBLIC heed::runtime)
    add_library(heed::${_heed_aot_name} ALIAS heed_aot_${_heed_aot_name})
  endif()
endforeach()
)";

} // namespace

std::string aotHeader(const Artifact &artifact, const std::string &source) {
  const KernelInfo &info = artifact.entries.front().info;
  std::string id = identifier(info.name);
  std::string guard = "HEED_AOT_" + id + "_H";
  for (char &c : guard)
    c = char(std::toupper(static_cast<unsigned char>(c)));
  bool bshd = info.layout == Layout::BSHD;
  std::string layout = bshd ? "[batch, seq, heads, dim]" : "[batch, heads, seq, dim]";
  std::string buffers;
  for (const BufferInfo &b : info.buffers)
    buffers += fmt::format(" *   {}: {}{} (contiguous)\n", identifier(b.name), toString(b.dtype),
                           shapeText(b.shape));
  if (buffers.empty())
    buffers = " *   (none)\n";
  std::string device;
  if (hasGPUEntries(artifact))
    device = fmt::format(R"(
/* The same on GPU memory: device_type HEED_DEVICE_CUDA or HEED_DEVICE_ROCM,
 * every pointer memory of GPU device_id, queued on `stream` (a CUstream or
 * cudaStream_t, a hipStream_t; NULL: the default stream) with the artifact's
 * entry for the device's chip. Returns once the kernel is queued: an error
 * the kernel records is reported by the next call on that stream or by
 * heed_synchronize(device_type, device_id, stream). */
{};
)",
                         deviceSignature(info, id));
  return fmt::format(
      R"(/* Generated by heed-compile --aot from {source}; do not edit.
 *
 * Kernel '{name}': {dtype} q/k/v/out, head dim {d} (v: {dv}), layout {layout},
 * scale {scale:.9g}{lse}. Every tensor is contiguous in that layout; 16-bit
 * floats are passed as their raw bits. Buffers, in declaration order:
{buffers} *
 * Targets: {targets}.
 * Link heed::{id} and heed::runtime (find_package(heed_aot)): no MLIR/LLVM.
 */
#ifndef {guard}
#define {guard}

#include "heed/heed.h"

#ifdef __cplusplus
extern "C" {{
#endif

/* Loads the kernel embedded in this library: the best CPU entry for this
 * machine's CPU, and the GPU entries, chosen per device at the first launch
 * there (the artifact holds one binary per exported target). */
heed_status heed_{id}_load(heed_kernel **kernel);

/* Checks the sizes against the kernel, then runs it on host memory on
 * num_threads threads (0: all cores). On failure heed_last_error() says why. */
{signature};
{device}
#ifdef __cplusplus
}}
#endif

#endif
)",
      fmt::arg("source", source), fmt::arg("name", info.name),
      fmt::arg("dtype", toString(info.dtype)), fmt::arg("d", info.headDim),
      fmt::arg("dv", info.headDimV), fmt::arg("layout", layout), fmt::arg("scale", info.scale),
      fmt::arg("lse", info.lse ? "; also writes lse [batch, heads_q, seq_q] f32" : ""),
      fmt::arg("buffers", buffers), fmt::arg("targets", entryList(artifact)),
      fmt::arg("id", id), fmt::arg("guard", guard), fmt::arg("signature", signature(info, id)),
      fmt::arg("device", device));
}

std::string aotSource(const Artifact &artifact, const std::string &artifactBytes) {
  const KernelInfo &info = artifact.entries.front().info;
  std::string id = identifier(info.name);
  bool bshd = info.layout == Layout::BSHD;
  std::string out = fmt::format("/* Generated by heed-compile --aot; do not edit. */\n"
                                "#include \"{}.h\"\n\n"
                                "static const unsigned char artifact[{}] = {{",
                                id, artifactBytes.size());
  for (size_t i = 0; i < artifactBytes.size(); ++i) {
    if (i % 16 == 0)
      out += "\n ";
    out += fmt::format(" 0x{:02x},", static_cast<unsigned char>(artifactBytes[i]));
  }
  out += "\n};\n\n";
  out += fmt::format("heed_status heed_{0}_load(heed_kernel **kernel) {{\n"
                     "  return heed_kernel_load(artifact, sizeof artifact, kernel);\n}}\n\n",
                     id);
  auto shape4 = [&](const char *heads, const char *seq, int64_t dim) {
    return bshd ? fmt::format("{{batch, {}, {}, {}}}", seq, heads, dim)
                : fmt::format("{{batch, {}, {}, {}}}", heads, seq, dim);
  };
  // One body for both entry points: the tensors of (device_type, device_id).
  out += fmt::format("static heed_status run(const heed_kernel *kernel, int32_t device_type,\n"
                     "    int32_t device_id, void *stream, int32_t num_threads,\n{}) {{\n",
                     tensorParameters(info));
  out += fmt::format("  const int64_t q_shape[4] = {};\n", shape4("heads_q", "seq_q", info.headDim));
  out += fmt::format("  const int64_t k_shape[4] = {};\n", shape4("heads_kv", "seq_kv", info.headDim));
  out += fmt::format("  const int64_t v_shape[4] = {};\n", shape4("heads_kv", "seq_kv", info.headDimV));
  out += fmt::format("  const int64_t o_shape[4] = {};\n", shape4("heads_q", "seq_q", info.headDimV));
  std::string dt = cDType(info.dtype);
  out += fmt::format(
      "  heed_tensor tq = {{(void *)q, device_type, device_id, {0}, 4, q_shape, 0}};\n"
      "  heed_tensor tk = {{(void *)k, device_type, device_id, {0}, 4, k_shape, 0}};\n"
      "  heed_tensor tv = {{(void *)v, device_type, device_id, {0}, 4, v_shape, 0}};\n"
      "  heed_tensor to = {{(void *)out, device_type, device_id, {0}, 4, o_shape, 0}};\n",
      dt);
  if (info.lse)
    out += "  const int64_t l_shape[3] = {batch, heads_q, seq_q};\n"
           "  heed_tensor tl = {(void *)lse, device_type, device_id, HEED_F32, 3, l_shape, 0};\n";
  size_t nb = info.buffers.size();
  for (size_t i = 0; i < nb; ++i) {
    const BufferInfo &b = info.buffers[i];
    std::string dims;
    for (size_t d = 0; d < b.shape.size(); ++d)
      dims += (d ? ", " : "") + dimExpr(b.shape[d]);
    out += fmt::format("  const int64_t b{}_shape[{}] = {{{}}};\n", i,
                       std::max<size_t>(b.shape.size(), 1), dims.empty() ? "0" : dims);
  }
  if (nb) {
    out += fmt::format("  heed_tensor buffers[{}] = {{\n", nb);
    for (size_t i = 0; i < nb; ++i)
      out += fmt::format("    {{(void *){}, device_type, device_id, {}, {}, b{}_shape, 0}},\n",
                         identifier(info.buffers[i].name), cDType(info.buffers[i].dtype),
                         info.buffers[i].shape.size(), i);
    out += "  };\n";
  }
  out += "  heed_attention_args args;\n"
         "  heed_attention_args_init(&args);\n"
         "  args.q = &tq;\n  args.k = &tk;\n  args.v = &tv;\n  args.out = &to;\n";
  if (info.lse)
    out += "  args.lse = &tl;\n";
  if (nb)
    out += fmt::format("  args.buffers = buffers;\n  args.num_buffers = {};\n", nb);
  out += "  args.num_threads = num_threads;\n"
         "  args.stream = stream;\n"
         "  return heed_attention(kernel, &args);\n}\n\n";
  out += signature(info, id) +
         fmt::format(" {{\n  return run(kernel, HEED_DEVICE_CPU, 0, 0, num_threads, {});\n}}\n",
                     tensorArguments(info));
  if (hasGPUEntries(artifact))
    out += "\n" + deviceSignature(info, id) +
           fmt::format(" {{\n  return run(kernel, device_type, device_id, stream, 0, {});\n}}\n",
                       tensorArguments(info));
  return out;
}

llvm::Expected<Artifact> compileExportArtifact(const spec::Variant &variant,
                                               const KernelConfig &config,
                                               const std::string &targets,
                                               const ExportOptions &options) {
  // Each target in order: a CPU one (compileArtifact's syntax) or a GPU chip.
  struct Target {
    std::string cpu;             ///< or
    std::optional<GPUTarget> gpu;
  };
  std::vector<Target> list;
  std::string newestSM; ///< the CUDA chip whose PTX goes in
  auto smVersion = [](llvm::StringRef chip) {
    unsigned v = 0;
    chip.consume_front("sm_");
    chip.consume_back("a");
    return chip.getAsInteger(10, v) ? 0u : v;
  };
  for (llvm::StringRef name : llvm::split(targets, ',')) {
    name = name.trim();
    if (name.empty())
      continue;
    llvm::StringRef chip = name;
    bool cuda = chip.consume_front("cuda:") || chip.starts_with("sm_");
    bool amd = !cuda && (chip.consume_front("hip:") || chip.starts_with("gfx"));
    if (!cuda && !amd) {
      list.push_back({name.str(), std::nullopt});
      continue;
    }
    GPUTarget target{cuda ? GPUVendor::NVIDIA : GPUVendor::AMD, chip.str(), options.kind,
                     options.mfma};
    if (cuda) {
      if (auto parsed = CUDATarget::parse(target.chip); !parsed)
        return parsed.takeError();
      if (smVersion(chip) > smVersion(newestSM))
        newestSM = chip.str();
    } else if (auto parsed = AMDGPUTarget::parse(target.chip); !parsed) {
      return parsed.takeError();
    }
    if (llvm::none_of(list, [&](const Target &t) {
          return t.gpu && t.gpu->entryTarget() == target.entryTarget();
        }))
      list.push_back({"", target});
  }
  if (list.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "no target given");

  // GPU targets on their own threads (ptxas and lld run beside each other).
  auto buildGPU = [&](const GPUTarget &target) -> llvm::Expected<std::vector<ArtifactEntry>> {
    std::vector<ArtifactEntry> entries;
    if (target.vendor == GPUVendor::AMD) {
      auto entry = compileGPUEntry(variant, config, target);
      if (!entry)
        return entry.takeError();
      entries.push_back(std::move(*entry));
      return entries;
    }
    auto binary = compileCUDA(variant, config, CUDATarget{target.chip}, target.kind);
    if (!binary)
      return binary.takeError();
    ArtifactEntry entry{target.entryTarget(), describeKernel(variant, config), ""};
    entry.info.gpu = binary->launch;
    if (binary->cubin) {
      entry.info.gpu->format = "cubin";
      entry.binary = std::move(*binary->cubin);
      entries.push_back(entry);
    }
    if (!binary->cubin || target.chip == newestSM) {
      entry.info.gpu->format = "ptx";
      entry.binary = std::move(binary->ptx);
      entries.push_back(std::move(entry));
    }
    return entries;
  };
  std::vector<std::future<llvm::Expected<std::vector<ArtifactEntry>>>> pending;
  for (const Target &t : list)
    if (t.gpu)
      pending.push_back(std::async(std::launch::async, buildGPU, *t.gpu));
  std::string cpuTargets;
  for (const Target &t : list)
    if (!t.gpu)
      cpuTargets += (cpuTargets.empty() ? "" : ",") + t.cpu;
  std::optional<llvm::Expected<Artifact>> cpu;
  if (!cpuTargets.empty())
    cpu.emplace(compileArtifact(variant, config, cpuTargets));

  // In the order given: the CPU entries where the first CPU target was.
  Artifact artifact;
  llvm::Error failure = llvm::Error::success();
  bool cpuPlaced = false;
  size_t next = 0;
  for (const Target &t : list) {
    if (!t.gpu) {
      if (cpuPlaced)
        continue;
      cpuPlaced = true;
      if (!*cpu) {
        failure = llvm::joinErrors(std::move(failure), cpu->takeError());
        continue;
      }
      for (ArtifactEntry &e : (*cpu)->entries)
        artifact.entries.push_back(std::move(e));
      continue;
    }
    auto entries = pending[next++].get();
    if (!entries) {
      failure = llvm::joinErrors(std::move(failure), entries.takeError());
      continue;
    }
    for (ArtifactEntry &e : *entries)
      artifact.entries.push_back(std::move(e));
  }
  if (failure)
    return std::move(failure);
  return artifact;
}

llvm::Error writeAotPackage(const Artifact &artifact, const std::string &dir,
                            const AotPackageOptions &options) {
  if (artifact.entries.empty())
    return llvm::createStringError(llvm::inconvertibleErrorCode(), "the artifact is empty");
  const KernelInfo &info = artifact.entries.front().info;
  std::string id = identifier(info.name);
  for (const char *sub : {"", "/include/heed", "/lib"})
    if (std::error_code ec = llvm::sys::fs::create_directories(dir + sub))
      return llvm::createStringError(ec, "cannot create %s: %s", (dir + sub).c_str(),
                                     ec.message().c_str());
  std::string bytes = artifact.serialize();
  if (llvm::Error err = writeFile(dir + "/" + id + ".heedk", bytes))
    return err;
  if (llvm::Error err = writeFile(dir + "/" + id + ".h", aotHeader(artifact, options.source)))
    return err;
  if (llvm::Error err = writeFile(dir + "/" + id + ".c", aotSource(artifact, bytes)))
    return err;
  if (llvm::Error err = writeFile(dir + "/heed_aotConfig.cmake", kPackageConfig))
    return err;
  if (llvm::Error err = copyFile(options.header, dir + "/include/heed/heed.h"))
    return err;
  return copyFile(options.runtimeArchive, dir + "/lib/libheed_runtime.a");
}

} // namespace heed
