/* What the stand-in libcuda.so.1 (fake_cuda.c) records of each
 * cuTensorMapEncodeTiled call and of the launch after them, shared with the
 * test that reads it (capi_cuda_tma_test.c). */
#ifndef HEED_UNITTESTS_CAPI_FAKE_TENSOR_MAPS_H
#define HEED_UNITTESTS_CAPI_FAKE_TENSOR_MAPS_H

#include <stdint.h>

typedef struct {
  int type, rank, interleave, swizzle, l2, oobFill;
  const void *address;
  uint64_t dims[5], strides[4];
  unsigned box[5], elementStrides[5];
} FakeTensorMap;

enum { FAKE_MAX_MAPS = 8 }; /* the backward's two kernels: 4 each */
typedef struct {
  int maps;                     /* encoded since the launch before the last one */
  FakeTensorMap map[FAKE_MAX_MAPS];
  int passed;                   /* of those, the last launch's parameters holding them */
  unsigned sharedBytes;         /* that launch's dynamic shared memory */
  unsigned block;               /* and its threads per block */
} FakeTensorMapLog;

#endif
