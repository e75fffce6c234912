// Tensor views, dtype helpers and host tensors.
#include "heed/Runtime/Tensor.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>

namespace heed {

size_t dtypeSize(DType t) {
  switch (t) {
  case DType::F32: case DType::I32: return 4;
  case DType::F16: case DType::BF16: return 2;
  case DType::I8: case DType::Bool: return 1;
  case DType::I64: return 8;
  }
  return 0;
}

const char *toString(DType t) {
  switch (t) {
  case DType::F32: return "f32"; case DType::F16: return "f16";
  case DType::BF16: return "bf16"; case DType::I8: return "i8";
  case DType::I32: return "i32"; case DType::I64: return "i64";
  case DType::Bool: return "bool";
  }
  return "?";
}

bool parseDType(const std::string &name, DType &out) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::I32,
                  DType::I64, DType::Bool})
    if (name == toString(t)) {
      out = t;
      return true;
    }
  return false;
}

bool parseLayout(const std::string &name, Layout &out) {
  if (name != "bhsd" && name != "bshd")
    return false;
  out = name == "bshd" ? Layout::BSHD : Layout::BHSD;
  return true;
}

int64_t TensorRef::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::vector<int64_t> TensorRef::effectiveStrides() const {
  if (!strides.empty())
    return strides;
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;)
    s[i - 1] = s[i] * shape[i];
  return s;
}

bool TensorRef::isContiguous() const {
  if (strides.empty())
    return true;
  int64_t expect = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expect)
      return false;
    expect *= shape[i];
  }
  return true;
}

std::string TensorRef::describe() const {
  std::string text = std::string(toString(dtype)) + "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

namespace {

std::string describeShape(DType dtype, const std::vector<int64_t> &shape) {
  TensorRef t;
  t.dtype = dtype;
  t.shape = shape;
  return t.describe();
}

std::string joinStrides(const std::vector<int64_t> &strides) {
  std::string text = "[";
  for (size_t i = 0; i < strides.size(); ++i)
    text += (i ? ", " : "") + std::to_string(strides[i]);
  return text + "]";
}

std::string tooLarge(const std::string &what, const std::string &view) {
  return what + " is too large: " + view + " spans more than heed's limit of 2^48 bytes";
}

} // namespace

std::string checkShape(const std::string &what, DType dtype, const std::vector<int64_t> &shape,
                       int64_t *bytes) {
  int64_t total = int64_t(dtypeSize(dtype));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0)
      return what + " has a negative size in dim " + std::to_string(i) + ": " +
             describeShape(dtype, shape);
    if (shape[i] > kMaxDim)
      return what + " has " + std::to_string(shape[i]) + " elements in dim " +
             std::to_string(i) + ", more than heed's limit of " + std::to_string(kMaxDim) +
             " (2^31 - 1) per dim";
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end())
    total = 0;
  for (int64_t d : shape)
    if (total && (__builtin_mul_overflow(total, d, &total) || total > kMaxTensorBytes))
      return tooLarge(what, describeShape(dtype, shape));
  if (bytes)
    *bytes = total;
  return "";
}

std::string checkView(const std::string &what, const TensorRef &t, ByteRange *range) {
  if (std::string err = checkShape(what, t.dtype, t.shape); !err.empty())
    return err;
  if (!t.strides.empty() && t.strides.size() != t.shape.size())
    return what + " has " + std::to_string(t.strides.size()) + " strides for rank " +
           std::to_string(t.shape.size());
  ByteRange r;
  if (t.numElements() > 0) {
    int64_t size = int64_t(dtypeSize(t.dtype));
    std::vector<int64_t> strides = t.effectiveStrides();
    r.hi = size;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      int64_t offset, span;
      if (__builtin_mul_overflow(strides[i], size, &offset) ||
          __builtin_mul_overflow(offset, t.shape[i] - 1, &offset) ||
          __builtin_add_overflow(offset < 0 ? r.lo : r.hi, offset, offset < 0 ? &r.lo : &r.hi) ||
          __builtin_sub_overflow(r.hi, r.lo, &span) || span > kMaxTensorBytes)
        return tooLarge(what, t.describe() + " with strides " + joinStrides(strides));
    }
    if (!t.data)
      return what + " has no data pointer";
    auto base = reinterpret_cast<uintptr_t>(t.data);
    if ((r.lo < 0 && base < uintptr_t(-r.lo)) ||
        std::numeric_limits<uintptr_t>::max() - base < uintptr_t(r.hi))
      return what + " wraps around the address space: " + t.describe() + " with strides " +
             joinStrides(strides) + " from its data pointer";
  }
  if (range)
    *range = r;
  return "";
}

std::string checkWritable(const std::string &what, const TensorRef &t) {
  if (t.numElements() == 0)
    return "";
  std::vector<int64_t> strides = t.effectiveStrides();
  std::vector<std::pair<int64_t, int64_t>> dims; // (stride, extent) of dims that step
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (t.shape[i] < 2)
      continue;
    if (strides[i] < 0)
      return what + " has a negative stride " + joinStrides(strides) +
             "; heed writes outputs through non-negative strides only";
    dims.emplace_back(strides[i], t.shape[i]);
  }
  std::sort(dims.begin(), dims.end());
  int64_t span = 1; // elements covered by the dims inside the current one
  for (const auto &[stride, extent] : dims) {
    if (stride < span)
      return what + " overlaps itself: with strides " + joinStrides(strides) + " for " +
             t.describe() + " two of its indices address the same memory, so one output "
             "would overwrite another";
    span = stride * (extent - 1) + span; // fits: checkView bounded the whole span
  }
  return "";
}

float bf16ToFloat(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t floatToBF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f))
    return 0x7fc0;
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

float f16ToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { // subnormal
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t floatToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  if (std::isnan(f))
    return static_cast<uint16_t>(sign | 0x7e00);
  float a = std::fabs(f);
  if (a >= 65520.0f)
    return static_cast<uint16_t>(sign | 0x7c00);
  if (a < 6.103515625e-05f) { // subnormal half: round a / 2^-24 to an integer
    float scaled = a * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  uint32_t ax = x & 0x7fffffffu;
  uint32_t mant = ax & 0x7fffff;
  int32_t exp = static_cast<int32_t>(ax >> 23) - 127 + 15;
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
    ++half; // may carry into the exponent, which is still correct
  return static_cast<uint16_t>(sign | half);
}

HostTensor::HostTensor(DType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)) {
  count_ = 1;
  for (int64_t d : shape_)
    count_ *= d;
  bytes_.assign(static_cast<size_t>(count_) * dtypeSize(dtype_), 0);
}

std::string HostTensor::create(const std::string &what, DType dtype, std::vector<int64_t> shape,
                               HostTensor &out) {
  int64_t bytes = 0;
  if (std::string err = checkShape(what, dtype, shape, &bytes); !err.empty())
    return err;
  try {
    out = HostTensor(dtype, std::move(shape));
  } catch (const std::bad_alloc &) {
    return "cannot allocate " + std::to_string(bytes) + " bytes for " + what;
  }
  return "";
}

TensorRef HostTensor::ref() {
  TensorRef r;
  r.data = bytes_.data();
  r.dtype = dtype_;
  r.shape = shape_;
  return r;
}

double HostTensor::get(int64_t i) const {
  const unsigned char *p = bytes_.data() + i * dtypeSize(dtype_);
  switch (dtype_) {
  case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
  case DType::F16: { uint16_t v; std::memcpy(&v, p, 2); return f16ToFloat(v); }
  case DType::BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16ToFloat(v); }
  case DType::I8: return static_cast<int8_t>(*p);
  case DType::Bool: return *p ? 1 : 0;
  case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
  case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
  }
  return 0;
}

void HostTensor::set(int64_t i, double value) {
  unsigned char *p = bytes_.data() + i * dtypeSize(dtype_);
  switch (dtype_) {
  case DType::F32: { float v = static_cast<float>(value); std::memcpy(p, &v, 4); return; }
  case DType::F16: { uint16_t v = floatToF16(static_cast<float>(value)); std::memcpy(p, &v, 2); return; }
  case DType::BF16: { uint16_t v = floatToBF16(static_cast<float>(value)); std::memcpy(p, &v, 2); return; }
  case DType::I8: *p = static_cast<unsigned char>(static_cast<int8_t>(value)); return;
  case DType::Bool: *p = value != 0; return;
  case DType::I32: { int32_t v = static_cast<int32_t>(value); std::memcpy(p, &v, 4); return; }
  case DType::I64: { int64_t v = static_cast<int64_t>(value); std::memcpy(p, &v, 8); return; }
  }
}

void HostTensor::fillUniform(std::mt19937_64 &rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < count_; ++i)
    set(i, dist(rng));
}

namespace {

/// Reads a dimension in the frontend's canonical form (docs/spec-language.md,
/// "buffer"): integers, B H Hkv Sq Skv, + - * / %, cdiv min max, parentheses.
/// Computes its value for `sizes` and its C expression over `names`.
class DimReader {
public:
  DimReader(const std::string &text, const AttentionDims &sizes,
            const std::function<std::string(const std::string &)> &names)
      : text(text), sizes(sizes), names(names) {}

  /// false where the text is not a dimension or its value is undefined.
  bool read(int64_t &value, std::string &c) {
    return sum(value, c) && (skip(), pos == text.size());
  }

private:
  void skip() {
    while (pos < text.size() && text[pos] == ' ')
      ++pos;
  }
  bool eat(char ch) {
    skip();
    if (pos < text.size() && text[pos] == ch) {
      ++pos;
      return true;
    }
    return false;
  }
  bool sum(int64_t &v, std::string &c) {
    if (!product(v, c))
      return false;
    while (true) {
      bool add = eat('+');
      if (!add && !eat('-'))
        return true;
      int64_t r;
      std::string rc;
      if (!product(r, rc))
        return false;
      v = add ? v + r : v - r;
      c = "(" + c + (add ? " + " : " - ") + rc + ")";
    }
  }
  bool product(int64_t &v, std::string &c) {
    if (!atom(v, c))
      return false;
    while (true) {
      char op = eat('*') ? '*' : eat('/') ? '/' : eat('%') ? '%' : 0;
      if (!op)
        return true;
      int64_t r;
      std::string rc;
      if (!atom(r, rc) || (op != '*' && r <= 0))
        return false;
      // Sizes are non-negative, so C's truncation is the floor here.
      v = op == '*' ? v * r : op == '/' ? floorDiv(v, r) : v - floorDiv(v, r) * r;
      c = "(" + c + " " + op + " " + rc + ")";
    }
  }
  static int64_t floorDiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
  }
  bool atom(int64_t &v, std::string &c) {
    skip();
    if (eat('('))
      return sum(v, c) && eat(')');
    size_t start = pos;
    while (pos < text.size() && std::isalnum(static_cast<unsigned char>(text[pos])))
      ++pos;
    std::string word = text.substr(start, pos - start);
    if (word.empty())
      return false;
    if (std::isdigit(static_cast<unsigned char>(word[0]))) {
      char *end = nullptr;
      v = std::strtoll(word.c_str(), &end, 10);
      c = word;
      return end && *end == 0;
    }
    if (word == "cdiv" || word == "min" || word == "max") {
      int64_t a, b;
      std::string ac, bc;
      if (!eat('(') || !sum(a, ac) || !eat(',') || !sum(b, bc) || !eat(')'))
        return false;
      if (word == "cdiv") {
        if (b <= 0)
          return false;
        v = floorDiv(a + b - 1, b);
        c = "((" + ac + " + " + bc + " - 1) / " + bc + ")";
      } else {
        v = word == "min" ? std::min(a, b) : std::max(a, b);
        c = "(" + ac + (word == "min" ? " < " : " > ") + bc + " ? " + ac + " : " + bc + ")";
      }
      return true;
    }
    const int64_t *size = word == "B"     ? &sizes.batch
                          : word == "H"   ? &sizes.headsQ
                          : word == "Hkv" ? &sizes.headsKV
                          : word == "Sq"  ? &sizes.seqQ
                          : word == "Skv" ? &sizes.seqKV
                                          : nullptr;
    if (!size)
      return false;
    v = *size;
    c = names(word);
    return true;
  }

  const std::string &text;
  const AttentionDims &sizes;
  const std::function<std::string(const std::string &)> &names;
  size_t pos = 0;
};

} // namespace

std::vector<int64_t> resolveDims(const std::vector<std::string> &dims,
                                 const AttentionDims &sizes) {
  std::vector<int64_t> out;
  auto same = [](const std::string &n) { return n; };
  for (const std::string &d : dims) {
    int64_t v = -1;
    std::string c;
    out.push_back(DimReader(d, sizes, same).read(v, c) && v > 0 ? v : -1);
  }
  return out;
}

std::string dimToC(const std::string &dim,
                   const std::function<std::string(const std::string &)> &names) {
  int64_t v = 0;
  std::string c;
  AttentionDims ones{1, 1, 1, 1, 1};
  return DimReader(dim, ones, names).read(v, c) ? c : "";
}

std::string HostTensor::fill(const std::string &spec, std::mt19937_64 &rng) {
  bool isFloat = dtype_ == DType::F32 || dtype_ == DType::F16 || dtype_ == DType::BF16;
  std::string how = spec;
  if (how.empty())
    how = isFloat ? "uniform:-1:1" : (shape_.size() == 1 ? "docs:1:64" : "bits:0.5");
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t colon; (colon = how.find(':', start)) != std::string::npos; start = colon + 1)
    parts.push_back(how.substr(start, colon - start));
  parts.push_back(how.substr(start));
  auto number = [&](size_t i, double &out) {
    if (i >= parts.size() || parts[i].empty())
      return false;
    char *end = nullptr;
    out = std::strtod(parts[i].c_str(), &end);
    return end && *end == 0;
  };
  double a = 0, b = 0;
  if (parts[0] == "uniform" && parts.size() == 3 && number(1, a) && number(2, b) && a < b) {
    fillUniform(rng, a, b);
  } else if (parts[0] == "bits" && parts.size() == 2 && number(1, a)) {
    std::bernoulli_distribution coin(std::min(1.0, std::max(0.0, a)));
    for (int64_t i = 0; i < count_; ++i)
      set(i, coin(rng) ? 1 : 0);
  } else if (parts[0] == "docs" && parts.size() == 3 && number(1, a) && number(2, b) &&
             a >= 1 && a <= b) {
    std::uniform_int_distribution<int64_t> len(static_cast<int64_t>(a), static_cast<int64_t>(b));
    int64_t id = 0, left = len(rng);
    for (int64_t i = 0; i < count_; ++i) {
      if (left-- == 0) {
        ++id;
        left = len(rng) - 1;
      }
      set(i, static_cast<double>(id));
    }
  } else if (parts[0] == "iota" && parts.size() == 1) {
    for (int64_t i = 0; i < count_; ++i)
      set(i, static_cast<double>(i));
  } else if (parts[0] == "const" && parts.size() == 2 && number(1, a)) {
    for (int64_t i = 0; i < count_; ++i)
      set(i, a);
  } else {
    return std::string("cannot fill a ") + toString(dtype_) + " tensor with '" + spec +
           "' (expected uniform:LO:HI, bits:P, docs:MIN:MAX, iota or const:X)";
  }
  return "";
}

void HostTensor::poison() {
  for (int64_t i = 0; i < count_; ++i) {
    if (dtype_ == DType::F32 || dtype_ == DType::F16 || dtype_ == DType::BF16)
      set(i, std::numeric_limits<double>::quiet_NaN());
    else
      bytes_[i * dtypeSize(dtype_)] = 0x7f;
  }
}

} // namespace heed
