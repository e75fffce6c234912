// Tensors as heed's runtime sees them: a pointer, an element type, a shape
// and strides (DLPack-like, no ownership), plus an owning host tensor for
// tools and tests. No MLIR or LLVM types here.
#ifndef HEED_RUNTIME_TENSOR_H
#define HEED_RUNTIME_TENSOR_H

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace heed {

enum class DType : uint8_t { F32, F16, BF16, I8, I32, I64, Bool };

/// Order of the dims of q, k, v and out: [batch, heads, seq, dim] or
/// [batch, seq, heads, dim].
enum class Layout { BHSD, BSHD };

size_t dtypeSize(DType t);
const char *toString(DType t);
/// Parses "f32", "f16", "bf16", "i8", "i32", "i64", "bool"; false if unknown.
bool parseDType(const std::string &name, DType &out);
/// Parses "bhsd" and "bshd"; false if unknown.
bool parseLayout(const std::string &name, Layout &out);

/// A view of a tensor in memory. Strides count elements; empty strides mean
/// contiguous row-major.
struct TensorRef {
  void *data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  int64_t numElements() const;
  /// The strides, computing row-major ones when none are given.
  std::vector<int64_t> effectiveStrides() const;
  bool isContiguous() const;
  std::string describe() const; ///< "bf16[2, 8, 128, 64]"
};

/// Limits on every tensor heed reads or writes (docs/runtime.md, "Limits"):
/// a dim holds at most kMaxDim elements (the kernels count tiles and grid
/// blocks in 32 bits), and a view spans at most kMaxTensorBytes (more than
/// any address space heed runs in), so that no size or offset computation
/// can overflow. checkShape and checkView enforce them; every entry point
/// (checkAttentionArgs, so the C++ API, the C API, Python and GPU launches;
/// heed-run's options) goes through them.
inline constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;
inline constexpr int64_t kMaxTensorBytes = int64_t(1) << 48;

/// "" when a contiguous tensor of `dtype` and `shape` is within the limits:
/// every dim in [0, kMaxDim] and the size (products checked for overflow)
/// at most kMaxTensorBytes; else a message naming `what`. `bytes` gets the
/// size.
std::string checkShape(const std::string &what, DType dtype, const std::vector<int64_t> &shape,
                       int64_t *bytes = nullptr);

/// The bytes a view's elements occupy, relative to its data pointer: [lo,
/// hi), lo < 0 where strides are negative; empty (lo == hi == 0) when the
/// view has no element.
struct ByteRange {
  int64_t lo = 0, hi = 0;
  bool empty() const { return hi <= lo; }
};

/// "" when `t` is a view heed may read: its shape passes checkShape, its
/// strides (if given) are one per dim, the bytes it spans (computed without
/// overflow) are at most kMaxTensorBytes and do not wrap around the address
/// space, and it has a data pointer unless it is empty. Else a message
/// naming `what`. `range` gets the bytes it spans.
std::string checkView(const std::string &what, const TensorRef &t, ByteRange *range = nullptr);

/// "" when heed may write `t` (a view that passed checkView): no two
/// distinct indices address overlapping bytes. The test is cheap and
/// sufficient: strides are non-negative, and with the dims of more than one
/// element ordered by stride, each stride is at least the span of the dims
/// inside it. Else a message naming `what`.
std::string checkWritable(const std::string &what, const TensorRef &t);

float bf16ToFloat(uint16_t v);
uint16_t floatToBF16(float v); ///< round to nearest even
float f16ToFloat(uint16_t v);
uint16_t floatToF16(float v); ///< round to nearest even

/// The run-time sizes a buffer's symbolic dims refer to.
struct AttentionDims {
  int64_t batch = 0, headsQ = 0, headsKV = 0, seqQ = 0, seqKV = 0;
};

/// Resolves symbolic dims ("B", "H" = query heads, "Hkv", "Sq", "Skv", a
/// decimal integer, or an expression of them in the frontend's canonical
/// form: "cdiv(Sq,128)", "(H*2)") to sizes; -1 for a dim that is none of
/// these or that is not positive for `sizes`.
std::vector<int64_t> resolveDims(const std::vector<std::string> &dims,
                                 const AttentionDims &sizes);

/// The C expression of a dim (as resolveDims reads it), each size name
/// replaced by `names(name)`; "" if it is not a dim.
std::string dimToC(const std::string &dim,
                   const std::function<std::string(const std::string &)> &names);

/// A contiguous tensor owned on the host, with element access as double.
class HostTensor {
public:
  HostTensor() = default;
  /// A tensor of a shape the caller knows to be within the limits.
  HostTensor(DType dtype, std::vector<int64_t> shape);
  /// A tensor of any requested shape: "" and `out` set, or a message naming
  /// `what` when the shape breaks a limit (checkShape) or the memory cannot
  /// be allocated. Never throws.
  static std::string create(const std::string &what, DType dtype, std::vector<int64_t> shape,
                            HostTensor &out);

  TensorRef ref();
  DType dtype() const { return dtype_; }
  const std::vector<int64_t> &shape() const { return shape_; }
  int64_t size() const { return count_; }

  double get(int64_t flat) const;
  void set(int64_t flat, double value); ///< rounds to the storage type

  /// Uniform values in [lo, hi) (rounded to the storage type).
  void fillUniform(std::mt19937_64 &rng, double lo, double hi);
  /// Fills as `how` says: "uniform:LO:HI", "bits:P" (0/1 with P(1) = P),
  /// "docs:MIN:MAX" (runs of equal ids with lengths in [MIN, MAX]), "iota",
  /// "const:X"; empty picks a default by type and rank (floats uniform in
  /// [-1, 1), rank-1 integers docs:1:64, other integers bits:0.5). Returns an
  /// error text, or "" on success.
  std::string fill(const std::string &how, std::mt19937_64 &rng);
  /// NaN everywhere (0x7f for integer types), so unwritten outputs show.
  void poison();

private:
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  int64_t count_ = 0;
  std::vector<unsigned char> bytes_;
};

} // namespace heed

#endif // HEED_RUNTIME_TENSOR_H
