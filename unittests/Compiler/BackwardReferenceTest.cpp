// The float64 reference backward (ReferenceBackward.h) against central
// finite differences of its own forward, in float64, on small shapes.
#include "heed/Runtime/ReferenceBackward.h"

#include "TestSpecs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

using namespace heed;

namespace {

/// sum(dOut * out) of the problem: the loss whose gradients the backward gives.
double loss(const spec::Variant &v, const BackwardProblem &p) {
  ReferenceGradients r = referenceBackward(v, p, 1);
  double total = 0;
  for (size_t i = 0; i < r.out.size(); ++i)
    total += p.dOut[i] * r.out[i];
  return total;
}

struct Case {
  const char *name, *spec;
  int64_t headsQ, headsKV, seqQ, seqKV;
};

class BackwardReference : public ::testing::TestWithParam<Case> {};

/// A problem of `c`'s shape on uniform values in [-1, 1] (gates: some rows
/// 0, the others away from 0).
BackwardProblem randomProblem(const spec::Variant &variant, const Case &c, std::mt19937_64 &rng) {
  std::uniform_real_distribution<double> uniform(-1, 1);
  BackwardProblem p;
  p.batch = 2;
  p.headsQ = c.headsQ;
  p.headsKV = c.headsKV;
  p.seqQ = c.seqQ;
  p.seqKV = c.seqKV;
  p.headDim = 3;
  p.valueDim = 2;
  p.scale = 0.7;
  auto draw = [&](int64_t n) {
    std::vector<double> x(static_cast<size_t>(n));
    for (double &e : x)
      e = uniform(rng);
    return x;
  };
  p.q = draw(p.batch * p.headsQ * p.seqQ * p.headDim);
  p.k = draw(p.batch * p.headsKV * p.seqKV * p.headDim);
  p.v = draw(p.batch * p.headsKV * p.seqKV * p.valueDim);
  p.dOut = draw(p.batch * p.headsQ * p.seqQ * p.valueDim);
  AttentionDims dims{p.batch, p.headsQ, p.headsKV, p.seqQ, p.seqKV};
  for (const spec::BufferDecl &decl : variant.buffers) {
    spec::BufferData d;
    d.shape = resolveDims(decl.shape, dims);
    int64_t n = 1;
    for (int64_t e : d.shape)
      n *= e;
    d.values = draw(n);
    if (variant.gate)
      for (double &e : d.values)
        e = e < -0.3 ? 0 : 1.5 + e;
    p.buffers.push_back(std::move(d));
  }
  return p;
}

TEST_P(BackwardReference, MatchesCentralFiniteDifferences) {
  const Case &c = GetParam();
  spec::Variant variant = test::parse(c.spec);
  unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937_64 rng(seed);
  BackwardProblem p = randomProblem(variant, c, rng);
  ReferenceGradients g = referenceBackward(variant, p);
  ASSERT_EQ(g.outOfRange, 0);

  // The loss is smooth away from ties and kinks, which random inputs avoid
  // almost surely; h balances truncation (h^2) against rounding (eps / h).
  const double h = 1e-5;
  // A gate of 0 means "not routed": the output jumps when it leaves 0, so
  // no difference quotient exists there; the gradient is defined as 0.
  auto check = [&](const char *what, std::vector<double> &x, std::vector<double> grad,
                   bool gate = false) {
    ASSERT_EQ(x.size(), grad.size()) << what;
    std::vector<double> fd(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      if (gate && x[i] == 0) {
        EXPECT_EQ(grad[i], 0) << what << "[" << i << "] is not routed";
        continue;
      }
      double saved = x[i];
      x[i] = saved + h;
      double up = loss(variant, p);
      x[i] = saved - h;
      double down = loss(variant, p);
      x[i] = saved;
      fd[i] = (up - down) / (2 * h);
    }
    double err = normwiseError(grad, fd);
    std::printf("%s %s: normwise error %.3g\n", c.name, what, err);
    EXPECT_LT(err, 1e-7) << what << " of " << c.name << " (seed " << seed << ")";
    double norm = 0;
    for (double e : fd)
      norm += e * e;
    EXPECT_GT(norm, 0) << what << ": a gradient of zeros checks nothing";
  };
  check("dq", p.q, g.dq);
  check("dk", p.k, g.dk);
  check("dv", p.v, g.dv);
  for (size_t i = 0; i < variant.buffers.size(); ++i) {
    if (!isFloatBuffer(variant.buffers[i].elem))
      continue;
    bool gate = variant.gate && spec::gateLayout(*variant.gate)[0] == int64_t(i);
    check(variant.buffers[i].name.c_str(), p.buffers[i].values, g.dBuffers[i], gate);
  }
}

const Case cases[] = {
    {"plain", "variant plain { }", 2, 2, 5, 6},
    {"alibi_gqa",
     "variant alibi { buffer slopes: f32[H]\n score = alibi(score, slopes)\n mask = causal() }",
     4, 2, 6, 6},
    {"relative_bias",
     "variant rb { buffer table: f32[H, 7]\n score = relative_bias(score, table, 3)\n"
     " mask = causal() }",
     2, 1, 7, 7},
    {"softcap", "variant sc { score = softcap(score, 0.8)\n mask = sliding_window(3) }", 2, 2,
     6, 5},
    {"piecewise",
     "variant pw { buffer w: f32[H, Skv]\n"
     " score = max(score, -0.2) + select(q > kv, w[h, kv] / 1.7, sqrt(abs(w[h, kv]) + 1.0))"
     " - exp(w[h, kv]) * log(2.0 + w[h, kv]) }",
     2, 2, 4, 6},
    {"gated",
     "variant g { buffer router: f32[B, Sq, H]\n buffer slopes: f32[H]\n"
     " gate = router[b, q, h]\n score = alibi(score, slopes)\n mask = causal() }",
     2, 1, 6, 6},
    // Normalizations. `q >= kv + 2` leaves rows 0 and 1 without a key:
    // their output is 0 and only the sink is in their denominator.
    {"sink_gqa",
     "variant s { buffer sinks: f32[H]\n normalize = softmax(sink = sinks[h])\n"
     " mask = q >= kv + 2 }",
     4, 2, 6, 6},
    {"sink_expression_alibi",
     "variant s { buffer sinks: f32[H]\n buffer slopes: f32[H]\n"
     " normalize = softmax(sink = 2.0 * tanh(sinks[h]) - slopes[h] * sinks[h])\n"
     " score = alibi(score, slopes)\n mask = sliding_window(3) }",
     2, 2, 6, 7},
    {"off_by_one", "variant o { normalize = softmax_off_by_one\n mask = causal() }", 2, 1, 5, 5},
    {"sigmoid_relative_bias",
     "variant g { buffer table: f32[H, 7]\n normalize = sigmoid(bias = -1.5)\n"
     " score = relative_bias(score, table, 3)\n mask = causal() }",
     4, 2, 7, 7},
    {"sigmoid_softcap_window",
     "variant g { normalize = sigmoid\n score = softcap(score, 0.8)\n"
     " mask = sliding_window(3) }",
     2, 2, 6, 5},
    {"gated_sink",
     "variant g { buffer router: f32[B, Sq, H]\n buffer sinks: f32[H]\n"
     " gate = router[b, q, h]\n normalize = softmax(sink = sinks[h])\n mask = causal() }",
     2, 1, 6, 6},
    {"gated_sigmoid",
     "variant g { buffer router: f32[B, Sq, H]\n gate = router[b, q, h]\n"
     " normalize = sigmoid(bias = 0.5)\n mask = causal() }",
     2, 2, 5, 6},
};

INSTANTIATE_TEST_SUITE_P(Variants, BackwardReference, ::testing::ValuesIn(cases),
                         [](const auto &info) { return std::string(info.param.name); });

// deltaRms predicts how much delta computed from a rounded out moves the
// gradients: out perturbed by uniform relative errors in [-u, u] (the
// model it states), the root-mean-square change over trials is u * deltaRms.
TEST(BackwardReference, DeltaSensitivityPredictsARoundedOutput) {
  unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(-1, 1);
  for (const Case &c : cases) {
    std::string name = c.name;
    if (name != "alibi_gqa" && name != "relative_bias" && name != "sink_expression_alibi" &&
        name != "gated")
      continue;
    SCOPED_TRACE(name + ", seed " + std::to_string(seed));
    spec::Variant variant = test::parse(c.spec);
    BackwardProblem p = randomProblem(variant, c, rng);
    p.deltaSensitivity = true;
    ReferenceGradients exact = referenceBackward(variant, p);
    p.deltaSensitivity = false;
    const double u = 1e-3;
    const int trials = 40;
    // dq, dk, then the buffers that get gradients (a gate's is dOut . out,
    // not delta's: not part of it).
    auto gradients = [&](const ReferenceGradients &r) {
      std::vector<std::pair<std::string, const std::vector<double> *>> out = {{"dq", &r.dq},
                                                                              {"dk", &r.dk}};
      for (size_t i = 0; i < variant.buffers.size(); ++i)
        if (!r.dBuffers[i].empty() &&
            !(variant.gate && spec::gateLayout(*variant.gate)[0] == int64_t(i)))
          out.push_back({"d" + variant.buffers[i].name, &r.dBuffers[i]});
      return out;
    };
    std::vector<double> predicted = {exact.deltaRms.dq, exact.deltaRms.dk};
    for (size_t i = 0; i < variant.buffers.size(); ++i)
      if (!exact.dBuffers[i].empty() &&
          !(variant.gate && spec::gateLayout(*variant.gate)[0] == int64_t(i)))
        predicted.push_back(exact.deltaRms.dBuffers[i]);
    auto refs = gradients(exact);
    std::vector<double> squares(refs.size(), 0);
    for (int t = 0; t < trials; ++t) {
      p.storedOut = exact.out;
      for (double &o : p.storedOut)
        o *= 1 + u * uniform(rng);
      ReferenceGradients moved = referenceBackward(variant, p);
      auto got = gradients(moved);
      for (size_t g = 0; g < refs.size(); ++g)
        for (size_t e = 0; e < refs[g].second->size(); ++e) {
          double d = (*got[g].second)[e] - (*refs[g].second)[e];
          squares[g] += d * d / trials;
        }
    }
    for (size_t g = 0; g < refs.size(); ++g) {
      double measured = std::sqrt(squares[g]), want = u * predicted[g];
      std::printf("%s %s: rms change %.4g, predicted %.4g\n", c.name, refs[g].first.c_str(),
                  measured, want);
      ASSERT_GT(want, 0) << refs[g].first;
      // 40 trials: the measured rms is within about 12% (one sigma).
      EXPECT_NEAR(measured / want, 1, 0.4) << refs[g].first;
    }
  }
}

TEST(BackwardReference, NonFloatBuffersGetNoGradient) {
  spec::Variant v = test::parse("variant d { buffer doc: i32[Skv]\n mask = document(doc) }");
  BackwardProblem p;
  p.batch = p.headsQ = p.headsKV = 1;
  p.seqQ = p.seqKV = 2;
  p.headDim = p.valueDim = 1;
  p.q = {0.3, -0.2};
  p.k = {0.5, 0.1};
  p.v = {1.0, -1.0};
  p.dOut = {0.4, 0.9};
  p.buffers.push_back({{2}, {7, 7}});
  ReferenceGradients g = referenceBackward(v, p);
  ASSERT_EQ(g.dBuffers.size(), 1u);
  EXPECT_TRUE(g.dBuffers[0].empty());
  // Both keys visible to both rows: dv = sum over rows of p * dOut.
  double dv0 = 0;
  for (int i = 0; i < 2; ++i) {
    double s0 = p.q[i] * p.k[0], s1 = p.q[i] * p.k[1];
    dv0 += std::exp(s0) / (std::exp(s0) + std::exp(s1)) * p.dOut[i];
  }
  EXPECT_NEAR(g.dv[0], dv0, 1e-15);
}

} // namespace
