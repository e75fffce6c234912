// Ahead-of-time export (see Export.h): the typed C wrapper, the embedded
// artifact and the CMake package around libheed_runtime.a.
#include "heed/Compiler/Export.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

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

/// A C expression for one symbolic buffer dimension.
std::string dimExpr(const std::string &d) {
  if (d == "B") return "batch";
  if (d == "H") return "heads_q";
  if (d == "Hkv") return "heads_kv";
  if (d == "Sq") return "seq_q";
  if (d == "Skv") return "seq_kv";
  return d; // an integer literal
}

std::string signature(const KernelInfo &info, const std::string &id) {
  std::string s = fmt::format(
      "heed_status heed_{0}_run(const heed_kernel *kernel,\n"
      "    int64_t batch, int64_t heads_q, int64_t heads_kv, int64_t seq_q, int64_t seq_kv,\n"
      "    const {1} *q, const {1} *k, const {1} *v",
      id, cType(info.dtype));
  for (const BufferInfo &b : info.buffers)
    s += fmt::format(", const {} *{}", cType(b.dtype), identifier(b.name));
  s += fmt::format(",\n    {} *out", cType(info.dtype));
  if (info.lse)
    s += ", float *lse";
  s += ", int32_t num_threads)";
  return s;
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

std::string aotHeader(const KernelInfo &info, const std::string &source) {
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
  return fmt::format(
      R"(/* Generated by heed-compile --aot from {source}; do not edit.
 *
 * Kernel '{name}': {dtype} q/k/v/out, head dim {d} (v: {dv}), layout {layout},
 * scale {scale:.9g}{lse}. Every tensor is contiguous in that layout; 16-bit
 * floats are passed as their raw bits. Buffers, in declaration order:
{buffers} *
 * Link heed::{id} and heed::runtime (find_package(heed_aot)): no MLIR/LLVM.
 */
#ifndef {guard}
#define {guard}

#include "heed/heed.h"

#ifdef __cplusplus
extern "C" {{
#endif

/* Loads the kernel embedded in this library for this machine's CPU (the
 * artifact holds one binary per exported target; the best match is used). */
heed_status heed_{id}_load(heed_kernel **kernel);

/* Checks the sizes against the kernel, then runs it on num_threads threads
 * (0: all cores). On failure heed_last_error() says why. */
{signature};

#ifdef __cplusplus
}}
#endif

#endif
)",
      fmt::arg("source", source), fmt::arg("name", info.name),
      fmt::arg("dtype", toString(info.dtype)), fmt::arg("d", info.headDim),
      fmt::arg("dv", info.headDimV), fmt::arg("layout", layout), fmt::arg("scale", info.scale),
      fmt::arg("lse", info.lse ? "; also writes lse [batch, heads_q, seq_q] f32" : ""),
      fmt::arg("buffers", buffers), fmt::arg("id", id), fmt::arg("guard", guard),
      fmt::arg("signature", signature(info, id)));
}

std::string aotSource(const KernelInfo &info, const std::string &artifactBytes) {
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
  out += signature(info, id) + " {\n";
  out += fmt::format("  const int64_t q_shape[4] = {};\n", shape4("heads_q", "seq_q", info.headDim));
  out += fmt::format("  const int64_t k_shape[4] = {};\n", shape4("heads_kv", "seq_kv", info.headDim));
  out += fmt::format("  const int64_t v_shape[4] = {};\n", shape4("heads_kv", "seq_kv", info.headDimV));
  out += fmt::format("  const int64_t o_shape[4] = {};\n", shape4("heads_q", "seq_q", info.headDimV));
  std::string dt = cDType(info.dtype);
  out += fmt::format("  heed_tensor tq = {{(void *)q, HEED_DEVICE_CPU, 0, {0}, 4, q_shape, 0}};\n"
                     "  heed_tensor tk = {{(void *)k, HEED_DEVICE_CPU, 0, {0}, 4, k_shape, 0}};\n"
                     "  heed_tensor tv = {{(void *)v, HEED_DEVICE_CPU, 0, {0}, 4, v_shape, 0}};\n"
                     "  heed_tensor to = {{(void *)out, HEED_DEVICE_CPU, 0, {0}, 4, o_shape, 0}};\n",
                     dt);
  if (info.lse)
    out += "  const int64_t l_shape[3] = {batch, heads_q, seq_q};\n"
           "  heed_tensor tl = {(void *)lse, HEED_DEVICE_CPU, 0, HEED_F32, 3, l_shape, 0};\n";
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
      out += fmt::format("    {{(void *){}, HEED_DEVICE_CPU, 0, {}, {}, b{}_shape, 0}},\n",
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
         "  return heed_attention(kernel, &args);\n}\n";
  return out;
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
  if (llvm::Error err = writeFile(dir + "/" + id + ".h", aotHeader(info, options.source)))
    return err;
  if (llvm::Error err = writeFile(dir + "/" + id + ".c", aotSource(info, bytes)))
    return err;
  if (llvm::Error err = writeFile(dir + "/heed_aotConfig.cmake", kPackageConfig))
    return err;
  if (llvm::Error err = copyFile(options.header, dir + "/include/heed/heed.h"))
    return err;
  return copyFile(options.runtimeArchive, dir + "/lib/libheed_runtime.a");
}

} // namespace heed
