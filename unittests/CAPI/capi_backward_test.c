/* The backward pass through the C API (heed_backward_*): ALiBi on random
 * inputs (seed printed), gradients of q, k, v and the slopes against central
 * finite differences of the compiled forward, for one sequence and for two
 * packed ones (cu_seqlens), and the error paths. */
#include "heed/heed.h"

#include "capi_check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t state;
static double uniform(void) {
  state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
  return (double)((state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2 - 1;
}

enum { H = 2, S = 37, D = 16 };
#define NQ (H * S * D)

static const char *spec = "variant alibi {\n  buffer slopes: f32[H]\n"
                          "  score = alibi(score, slopes)\n  mask = causal()\n}\n";

static float q[NQ], k[NQ], v[NQ], out[NQ], dout[NQ], lse[H * S], slopes[H];
static float dq[NQ], dk[NQ], dv[NQ], dslopes[H];
static int64_t shape4[4] = {1, H, S, D}, shape3[3] = {1, H, S}, shape1[1] = {H};
/* Packed: the S rows are two sequences, [0, 20) and [20, 37). */
static int32_t cu[3] = {0, 20, S};
static int64_t shapeCu[1] = {3};
static int packed;

static heed_tensor tensor(void *data, int32_t ndim, int64_t *shape) {
  heed_tensor t = {data, HEED_DEVICE_CPU, 0, HEED_F32, ndim, shape, NULL};
  return t;
}

/* sum(dout * out) of the forward. */
static double loss(heed_kernel *forward) {
  heed_tensor tq = tensor(q, 4, shape4), tk = tensor(k, 4, shape4), tv = tensor(v, 4, shape4);
  heed_tensor to = tensor(out, 4, shape4), tl = tensor(lse, 3, shape3);
  heed_tensor tb = tensor(slopes, 1, shape1);
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &tq, a.k = &tk, a.v = &tv, a.out = &to, a.lse = &tl, a.buffers = &tb, a.num_buffers = 1;
  heed_tensor tcu = {cu, HEED_DEVICE_CPU, 0, HEED_I32, 1, shapeCu, NULL};
  if (packed)
    a.cu_seqlens_q = &tcu, a.cu_seqlens_kv = &tcu;
  if (heed_attention(forward, &a) != HEED_OK)
    return NAN;
  double total = 0;
  for (int i = 0; i < NQ; ++i)
    total += (double)dout[i] * out[i];
  return total;
}

/* The gradient entry `grad` of `x` against a central difference. */
static int matches(heed_kernel *forward, float *x, float grad, const char *what, int i) {
  float saved = x[i], h = 3e-3f;
  x[i] = saved + h;
  double up = loss(forward);
  x[i] = saved - h;
  double down = loss(forward);
  x[i] = saved;
  double fd = (up - down) / (2 * (double)h);
  int ok = fabs(fd - grad) <= 2e-2 * fmax(1.0, fabs(fd));
  if (!ok)
    fprintf(stderr, "%s[%d]: backward %g, finite difference %g\n", what, i, grad, fd);
  return ok;
}

int main(void) {
  state = (uint64_t)time(NULL) | 1;
  printf("seed %llu\n", (unsigned long long)state);
  for (int i = 0; i < NQ; ++i)
    q[i] = (float)uniform(), k[i] = (float)uniform(), v[i] = (float)uniform(),
    dout[i] = (float)uniform(), dq[i] = dk[i] = dv[i] = NAN;
  for (int h = 0; h < H; ++h)
    slopes[h] = (float)(0.1 * (1 + uniform())), dslopes[h] = NAN;

  heed_compile_options o;
  heed_compile_options_init(&o);
  o.head_dim = D;
  o.lse = 1;
  heed_kernel *forward = NULL;
  heed_backward *backward = NULL;
  CHECK(heed_compile(spec, "alibi.attn", &o, &forward) == HEED_OK);
  CHECK(heed_backward_compile(spec, "alibi.attn", &o, &backward) == HEED_OK);
  if (!forward || !backward)
    return 1;
  CHECK(heed_backward_num_buffer_grads(backward) == 1);
  CHECK(heed_backward_buffer_grad_index(backward, 0) == 0);
  CHECK(heed_backward_buffer_grad_index(backward, 1) == -1);

  CHECK(!isnan(loss(forward)));
  heed_tensor tq = tensor(q, 4, shape4), tk = tensor(k, 4, shape4), tv = tensor(v, 4, shape4);
  heed_tensor to = tensor(out, 4, shape4), tl = tensor(lse, 3, shape3), td = tensor(dout, 4, shape4);
  heed_tensor tb = tensor(slopes, 1, shape1), tdq = tensor(dq, 4, shape4);
  heed_tensor tdk = tensor(dk, 4, shape4), tdv = tensor(dv, 4, shape4);
  heed_tensor tdb = tensor(dslopes, 1, shape1);
  heed_backward_args a;
  heed_backward_args_init(&a);
  a.q = &tq, a.k = &tk, a.v = &tv, a.out = &to, a.lse = &tl, a.dout = &td;
  a.buffers = &tb, a.num_buffers = 1, a.dq = &tdq, a.dk = &tdk, a.dv = &tdv;
  a.buffer_grads = &tdb, a.num_buffer_grads = 1;
  heed_run_stats stats;
  a.stats = &stats;
  CHECK(heed_attention_backward(backward, &a) == HEED_OK);
  /* Causal, the backward's 16 x 64 tiles: 3 query tiles x 1 key tile (keys
   * 0-36), which every query tile sees: 3 blocks per head. */
  CHECK(stats.visited_blocks == 2 * 3);
  for (int i = 0; i < NQ; i += 37) {
    CHECK(matches(forward, q, dq[i], "dq", i));
    CHECK(matches(forward, k, dk[i], "dk", i));
    CHECK(matches(forward, v, dv[i], "dv", i));
  }
  for (int h = 0; h < H; ++h)
    CHECK(matches(forward, slopes, dslopes[h], "dslopes", h));

  /* Two packed sequences (FlashAttention's varlen layout): the same tensors
   * as entries [0, 20) and [20, 37) of their own, each causal from its
   * first row. */
  heed_compile_options po = o;
  po.cu_seqlens_q = po.cu_seqlens_kv = 1;
  heed_kernel *packedForward = NULL;
  heed_backward *packedBackward = NULL;
  CHECK(heed_compile(spec, "alibi.attn", &po, &packedForward) == HEED_OK);
  CHECK(heed_backward_compile(spec, "alibi.attn", &po, &packedBackward) == HEED_OK);
  if (!packedForward || !packedBackward)
    return 1;
  packed = 1;
  CHECK(!isnan(loss(packedForward)));
  for (int i = 0; i < NQ; ++i)
    dq[i] = dk[i] = dv[i] = NAN;
  heed_tensor tcu = {cu, HEED_DEVICE_CPU, 0, HEED_I32, 1, shapeCu, NULL};
  heed_backward_args pa = a;
  pa.cu_seqlens_q = pa.cu_seqlens_kv = &tcu;
  CHECK(heed_attention_backward(packedBackward, &pa) == HEED_OK);
  /* Entry 0 (20 rows): 2 query tiles; entry 1 (17): 2; one key tile each. */
  CHECK(stats.visited_blocks == 2 * (2 + 2));
  for (int i = 0; i < NQ; i += 37) {
    CHECK(matches(packedForward, q, dq[i], "packed dq", i));
    CHECK(matches(packedForward, k, dk[i], "packed dk", i));
    CHECK(matches(packedForward, v, dv[i], "packed dv", i));
  }
  for (int h = 0; h < H; ++h)
    CHECK(matches(packedForward, slopes, dslopes[h], "packed dslopes", h));
  /* Without its offsets, the packed backward is refused. */
  pa.cu_seqlens_kv = NULL;
  CHECK(heed_attention_backward(packedBackward, &pa) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "cu_seqlens_kv") != NULL);
  heed_backward_release(packedBackward);
  heed_kernel_release(packedForward);
  packed = 0;

  /* Errors: a missing gradient tensor, a released handle, a score that is not
   * differentiable in its buffer. */
  a.num_buffer_grads = 0;
  CHECK(heed_attention_backward(backward, &a) == HEED_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(heed_last_error(), "buffer gradients") != NULL);
  heed_backward_release(backward);
  CHECK(heed_attention_backward(backward, &a) == HEED_ERROR_INVALID_ARGUMENT);
  heed_backward *bad = NULL;
  CHECK(heed_backward_compile("variant t { buffer w: f32[Skv]\n score = w[kv] > 0.0 ? score : "
                              "-1000.0 }",
                              "t.attn", &o, &bad) == HEED_ERROR_COMPILE);
  CHECK(strstr(heed_last_error(), "not differentiable in buffer 'w'") != NULL);
  CHECK(bad == NULL);
  heed_kernel_release(forward);
  if (failures)
    fprintf(stderr, "%d checks failed\n", failures);
  return failures ? 1 : 0;
}
