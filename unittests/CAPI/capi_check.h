/* What the C API tests share: CHECK (prints the failing line and the C API's
 * last error, counts the failure, carries on) and runOn (q, k, v, out on a
 * stream). Each test includes it once and reports `failures` at the end. */
#ifndef HEED_UNITTESTS_CAPI_CHECK_H
#define HEED_UNITTESTS_CAPI_CHECK_H

#include "heed/heed.h"

#include <stdio.h>

static int failures = 0;
#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
              #cond, heed_last_error());                                                  \
      ++failures;                                                                         \
    }                                                                                     \
  } while (0)

/* heed_attention on t = {q, k, v, out} on `stream`. */
static inline heed_status runOn(heed_kernel *k, heed_tensor t[4], void *stream) {
  heed_attention_args a;
  heed_attention_args_init(&a);
  a.q = &t[0], a.k = &t[1], a.v = &t[2], a.out = &t[3], a.stream = stream;
  return heed_attention(k, &a);
}

#endif
