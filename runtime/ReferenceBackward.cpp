// The float64 reference backward pass (ReferenceBackward.h).
#include "heed/Runtime/ReferenceBackward.h"

#include "heed/Runtime/Reference.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <tuple>
#include <thread>

namespace heed {

bool isFloatBuffer(spec::ElemType elem) {
  return elem == spec::ElemType::F32 || elem == spec::ElemType::F16 ||
         elem == spec::ElemType::BF16;
}

namespace {

/// One worker of the reference backward: the rows of (b, kv head) tasks,
/// with its own buffer gradients (reduced by the caller).
class RowBackward {
public:
  RowBackward(const spec::Variant &variant, const BackwardProblem &p, ReferenceGradients &r)
      : variant(variant), p(p), r(r), shape{p.batch, p.headsQ, p.headsKV, p.seqQ, p.seqKV},
        s(size_t(p.seqKV)), w(size_t(p.seqKV)), o(size_t(p.valueDim)), dO(size_t(p.valueDim)) {
    dBuf.resize(r.dBuffers.size());
    for (size_t i = 0; i < dBuf.size(); ++i)
      dBuf[i].assign(r.dBuffers[i].size(), 0);
    absBuf = dBuf;
    sensitivity.dBuffers.assign(r.dBuffers.size(), 0);
  }

  /// Row i of query head h in batch b, whose kv head is hk.
  void row(int64_t b, int64_t h, int64_t hk, int64_t i);

  std::vector<std::vector<double>> dBuf, absBuf; ///< the gradients, their terms' squares
  DeltaSensitivity sensitivity; ///< sums of squares until the reduction
  int oob = 0;
  double maxScore = 0;

private:
  double dotQK(const double *Q, const double *K, int64_t j) const {
    double dot = 0;
    for (int64_t d = 0; d < p.headDim; ++d)
      dot += Q[d] * K[j * p.headDim + d];
    return p.scale * dot;
  }
  void addDeltaSensitivity(const spec::EvalPoint &rowAt, int64_t row, const double *Q,
                           const double *K, double lse, double sink);
  void addEntries(const spec::ScoreGradient &grad) {
    for (const spec::ScoreGradient::Entry &e : grad.buffers)
      if (!dBuf[e.buffer].empty()) {
        dBuf[e.buffer][e.element] += e.value;
        absBuf[e.buffer][e.element] += e.value * e.value;
      }
  }

  const spec::Variant &variant;
  const BackwardProblem &p;
  ReferenceGradients &r;
  spec::EvalShape shape;
  std::vector<double> s, w, o, dO;
};

void RowBackward::row(int64_t b, int64_t h, int64_t hk, int64_t i) {
  const double inf = std::numeric_limits<double>::infinity();
  int64_t D = p.headDim, Dv = p.valueDim, Skv = p.seqKV;
  bool sigmoid = variant.normalize == spec::Normalization::Sigmoid;
  int64_t row = (b * p.headsQ + h) * p.seqQ + i;
  const double *Q = &p.q[size_t(row * D)];
  const double *K = &p.k[size_t((b * p.headsKV + hk) * Skv * D)];
  const double *V = &p.v[size_t((b * p.headsKV + hk) * Skv * Dv)];
  double *dK = &r.dk[size_t((b * p.headsKV + hk) * Skv * D)];
  double *dV = &r.dv[size_t((b * p.headsKV + hk) * Skv * Dv)];
  // A ragged entry's own lengths; its keys past kvLens[b] are not seen.
  int64_t keys = p.kvLens.empty() ? Skv : p.kvLens[size_t(b)];
  shape.seqKV = keys;
  shape.seqQ = p.qLens.empty() ? p.seqQ : p.qLens[size_t(b)];
  for (int64_t j = 0; j < Skv; ++j) {
    spec::EvalPoint at{b, h, i, j, dotQK(Q, K, j), shape};
    bool visible = j < keys && spec::evaluate(*variant.mask, at, p.buffers, &oob) != 0;
    s[size_t(j)] = visible ? spec::evaluateExact(*variant.score, at, p.buffers, &oob) : -inf;
    if (visible && std::isfinite(s[size_t(j)]))
      maxScore = std::max(maxScore, std::fabs(s[size_t(j)]));
  }
  spec::EvalPoint rowAt{b, h, i, 0, 0, shape};
  double gate = variant.gate ? spec::evaluateExact(*variant.gate, rowAt, p.buffers, &oob) : 1;
  spec::EvalPoint headAt{b, h, 0, 0, 0, shape};
  double sink = variant.sink ? spec::evaluateExact(*variant.sink, headAt, p.buffers, &oob) : 0;
  if (gate == 0)
    return; // not routed: out 0, nothing flows back
  // The weights: softmax (with the sink in the denominator) or sigmoid.
  w = s;
  double lse = spec::normalizeRow(variant, w, sink);
  r.lse[size_t(row)] = lse;
  if (!sigmoid && lse == -inf)
    return; // nothing visible and no sink
  std::fill(o.begin(), o.end(), 0);
  for (int64_t j = 0; j < keys; ++j) // (rows past the entry may hold anything)
    for (int64_t d = 0; d < Dv; ++d)
      o[size_t(d)] += w[size_t(j)] * V[j * Dv + d];
  double dGate = 0, delta = 0;
  for (int64_t d = 0; d < Dv; ++d) {
    double g = p.dOut[size_t(row * Dv + d)];
    r.out[size_t(row * Dv + d)] = gate * o[size_t(d)];
    dGate += g * o[size_t(d)];
    dO[size_t(d)] = gate * g;
    delta += p.storedOut.empty() ? dO[size_t(d)] * o[size_t(d)]
                                 : g * p.storedOut[size_t(row * Dv + d)];
  }
  spec::ScoreGradient grad;
  if (variant.gate)
    spec::backpropagate(*variant.gate, rowAt, p.buffers, dGate, grad);
  // The sink logit's share of the denominator: d out / d sink = -w_sink out.
  if (variant.sink)
    spec::backpropagate(*variant.sink, headAt, p.buffers, -std::exp(sink - lse) * delta, grad);
  double *dQ = &r.dq[size_t(row * D)];
  for (int64_t j = 0; j < Skv; ++j) {
    double wj = w[size_t(j)];
    if (wj == 0)
      continue;
    double dp = 0;
    for (int64_t d = 0; d < Dv; ++d) {
      dV[j * Dv + d] += wj * dO[size_t(d)];
      dp += dO[size_t(d)] * V[j * Dv + d];
    }
    // d out / d s_j: softmax w_j (v_j - out), sigmoid w_j (1 - w_j) v_j.
    double dS = sigmoid ? dp * wj * (1 - wj) : wj * (dp - delta);
    grad.dScore = 0;
    spec::backpropagate(*variant.score, {b, h, i, j, dotQK(Q, K, j), shape}, p.buffers, dS, grad);
    double dRaw = p.scale * grad.dScore;
    for (int64_t d = 0; d < D; ++d) {
      dQ[d] += dRaw * K[j * D + d];
      dK[j * D + d] += dRaw * Q[d];
    }
  }
  addEntries(grad);
  if (p.deltaSensitivity && !sigmoid)
    addDeltaSensitivity(rowAt, row, Q, K, lse, sink);
}

/// The gradients' derivatives in delta_i: d dS_ij / d delta_i = -P_ij, and
/// a sink's logit gets -exp(sink - lse_i). Weighted by var(delta_i) when
/// each out element is off by a uniform fraction of itself in [-1, 1]
/// (variance out^2 / 3).
void RowBackward::addDeltaSensitivity(const spec::EvalPoint &rowAt, int64_t row, const double *Q,
                                      const double *K, double lse, double sink) {
  int64_t D = p.headDim, Dv = p.valueDim;
  double var = 0, qq = 0;
  for (int64_t d = 0; d < Dv; ++d) {
    double x = p.dOut[size_t(row * Dv + d)] * r.out[size_t(row * Dv + d)];
    var += x * x / 3;
  }
  if (var == 0)
    return;
  for (int64_t d = 0; d < D; ++d)
    qq += Q[d] * Q[d];
  std::vector<double> hq(size_t(D), 0);
  double hk = 0;
  spec::ScoreGradient h;
  for (int64_t j = 0; j < p.seqKV; ++j) {
    if (w[size_t(j)] == 0)
      continue;
    h.dScore = 0;
    spec::EvalPoint at{rowAt.b, rowAt.h, rowAt.q, j, dotQK(Q, K, j), shape};
    spec::backpropagate(*variant.score, at, p.buffers, -w[size_t(j)], h);
    double dRaw = p.scale * h.dScore;
    for (int64_t d = 0; d < D; ++d)
      hq[size_t(d)] += dRaw * K[j * D + d];
    hk += dRaw * dRaw * qq; // dk_j moves by dRaw q_i: distinct rows j
  }
  if (variant.sink)
    spec::backpropagate(*variant.sink, {rowAt.b, rowAt.h, 0, 0, 0, shape}, p.buffers,
                        -std::exp(sink - lse), h);
  for (double x : hq)
    sensitivity.dq += var * x * x;
  sensitivity.dk += var * hk;
  // An element read at several keys: its contributions add before squaring.
  std::sort(h.buffers.begin(), h.buffers.end(), [](const auto &a, const auto &b) {
    return std::tie(a.buffer, a.element) < std::tie(b.buffer, b.element);
  });
  for (size_t e = 0; e < h.buffers.size();) {
    double sum = 0;
    size_t f = e;
    for (; f < h.buffers.size() && h.buffers[f].buffer == h.buffers[e].buffer &&
           h.buffers[f].element == h.buffers[e].element;
         ++f)
      sum += h.buffers[f].value;
    if (h.buffers[e].buffer < sensitivity.dBuffers.size() && !dBuf[h.buffers[e].buffer].empty())
      sensitivity.dBuffers[h.buffers[e].buffer] += var * sum * sum;
    e = f;
  }
}

} // namespace

ReferenceGradients referenceBackward(const spec::Variant &variant, const BackwardProblem &p,
                                     unsigned threads) {
  int64_t B = p.batch, Hq = p.headsQ, Hkv = p.headsKV, Sq = p.seqQ, Skv = p.seqKV;
  int64_t D = p.headDim, Dv = p.valueDim;
  int64_t group = Hkv ? Hq / Hkv : 1;
  ReferenceGradients r;
  r.out.assign(size_t(B * Hq * Sq * Dv), 0);
  r.lse.assign(size_t(B * Hq * Sq), variant.normalize == spec::Normalization::Sigmoid
                                         ? std::numeric_limits<double>::quiet_NaN()
                                         : -std::numeric_limits<double>::infinity());
  r.dq.assign(size_t(B * Hq * Sq * D), 0);
  r.dk.assign(size_t(B * Hkv * Skv * D), 0);
  r.dv.assign(size_t(B * Hkv * Skv * Dv), 0);
  r.dBuffers.resize(variant.buffers.size());
  r.deltaRms.dBuffers.assign(variant.buffers.size(), 0);
  for (size_t i = 0; i < variant.buffers.size() && i < p.buffers.size(); ++i)
    if (isFloatBuffer(variant.buffers[i].elem))
      r.dBuffers[i].assign(p.buffers[i].values.size(), 0);
  r.dBufferMagnitudes = r.dBuffers;

  // One task per (b, kv head): it owns dK, dV of that head and dQ of the
  // group's query heads, so only buffer gradients need a reduction.
  std::atomic<int64_t> next{0};
  std::atomic<int> outOfRange{0};
  std::mutex reduce;
  auto worker = [&] {
    RowBackward rows(variant, p, r);
    int64_t task;
    while ((task = next.fetch_add(1)) < B * Hkv) {
      int64_t b = task / Hkv, hk = task % Hkv;
      int64_t queries = p.qLens.empty() ? Sq : p.qLens[size_t(b)];
      for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
        for (int64_t i = 0; i < queries; ++i)
          rows.row(b, h, hk, i);
    }
    if (rows.oob)
      outOfRange = rows.oob;
    std::lock_guard<std::mutex> lock(reduce);
    r.maxAbsScore = std::max(r.maxAbsScore, rows.maxScore);
    r.deltaRms.dq += rows.sensitivity.dq;
    r.deltaRms.dk += rows.sensitivity.dk;
    for (size_t i = 0; i < rows.sensitivity.dBuffers.size(); ++i)
      r.deltaRms.dBuffers[i] += rows.sensitivity.dBuffers[i];
    for (size_t i = 0; i < rows.dBuf.size(); ++i)
      for (size_t e = 0; e < rows.dBuf[i].size(); ++e) {
        r.dBuffers[i][e] += rows.dBuf[i][e];
        r.dBufferMagnitudes[i][e] += rows.absBuf[i][e];
      }
  };
  unsigned n = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
  n = unsigned(std::min<int64_t>(n, std::max<int64_t>(1, B * Hkv)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n; ++t)
    pool.emplace_back(worker);
  worker();
  for (std::thread &t : pool)
    t.join();
  r.outOfRange = outOfRange;
  r.deltaRms.dq = std::sqrt(r.deltaRms.dq);
  r.deltaRms.dk = std::sqrt(r.deltaRms.dk);
  for (double &x : r.deltaRms.dBuffers)
    x = std::sqrt(x);
  for (std::vector<double> &terms : r.dBufferMagnitudes)
    for (double &x : terms)
      x = std::sqrt(x);
  return r;
}

std::vector<double> bhsdValues(const HostTensor &t, Layout layout) {
  const std::vector<int64_t> &s = t.shape();
  std::vector<double> out(size_t(t.size()));
  if (layout == Layout::BHSD) {
    for (int64_t i = 0; i < t.size(); ++i)
      out[size_t(i)] = t.get(i);
    return out;
  }
  int64_t B = s[0], S = s[1], H = s[2], D = s[3];
  for (int64_t b = 0; b < B; ++b)
    for (int64_t x = 0; x < S; ++x)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d)
          out[size_t(((b * H + h) * S + x) * D + d)] = t.get(((b * S + x) * H + h) * D + d);
  return out;
}

BackwardProblem backwardProblem(const HostTensor &q, const HostTensor &k, const HostTensor &v,
                                const HostTensor &dOut, Layout layout, double scale,
                                const std::vector<HostTensor> &buffers) {
  bool bshd = layout == Layout::BSHD;
  BackwardProblem p;
  p.batch = q.shape()[0];
  p.headsQ = q.shape()[bshd ? 2 : 1];
  p.seqQ = q.shape()[bshd ? 1 : 2];
  p.headsKV = k.shape()[bshd ? 2 : 1];
  p.seqKV = k.shape()[bshd ? 1 : 2];
  p.headDim = q.shape()[3];
  p.valueDim = v.shape()[3];
  p.scale = scale;
  p.q = bhsdValues(q, layout);
  p.k = bhsdValues(k, layout);
  p.v = bhsdValues(v, layout);
  p.dOut = bhsdValues(dOut, layout);
  p.buffers = widenBuffers(buffers);
  return p;
}

double gradientTolerance(DType dtype, double maxAbsScore, double deltaRms,
                         const std::vector<double> &ref, const std::vector<double> *magnitudes) {
  double u = dtype == DType::F32 ? 0x1p-24 : dtype == DType::F16 ? 0x1p-11 : 0x1p-8;
  double base = dtype == DType::F32
                    ? std::min(kMaxTolerance, std::max(1e-5, 16 * maxAbsScore * 0x1p-24))
                    : 1e-2;
  double norm = 0;
  for (double x : ref)
    norm += x * x;
  norm = std::sqrt(norm);
  if (norm == 0)
    return base;
  double tolerance = base + 4 * u * deltaRms / norm;
  if (magnitudes) {
    double terms = 0;
    for (double x : *magnitudes)
      terms += x * x;
    tolerance += 4 * 4 * 0x1p-24 * std::sqrt(terms) / norm;
  }
  return tolerance;
}

double normwiseError(const std::vector<double> &got, const std::vector<double> &ref) {
  if (got.size() != ref.size())
    return std::numeric_limits<double>::infinity();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(ref[i]))
      return std::numeric_limits<double>::infinity();
    diff += (got[i] - ref[i]) * (got[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

} // namespace heed
