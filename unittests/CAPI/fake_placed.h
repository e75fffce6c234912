/* What the stand-in drivers (fake_cuda.c, fake_hip.c) share: host memory the
 * test, or an allocation, declares to be a device's, and the pointer-attribute
 * query that finds it (the real drivers refuse host memory likewise). */
#ifndef HEED_UNITTESTS_CAPI_FAKE_PLACED_H
#define HEED_UNITTESTS_CAPI_FAKE_PLACED_H

#include <stddef.h>
#include <stdint.h>

enum { FAKE_MAX_PLACED = 64 };
static struct { uintptr_t begin, end; int device; } fakePlaced[FAKE_MAX_PLACED];
static int fakeNumPlaced;

static void fakePlace(const void *p, size_t bytes, int device) {
  if (fakeNumPlaced < FAKE_MAX_PLACED) {
    fakePlaced[fakeNumPlaced].begin = (uintptr_t)p;
    fakePlaced[fakeNumPlaced].end = (uintptr_t)p + bytes;
    fakePlaced[fakeNumPlaced++].device = device;
  }
}

/* The DEVICE_ORDINAL attribute (9 in both APIs) of `p`: 0, or 1 (invalid
 * value) for memory no device owns or another attribute. */
static int fakeDeviceOrdinal(int *data, int attribute, uintptr_t p) {
  if (attribute != 9) return 1;
  for (int i = 0; i < fakeNumPlaced; ++i)
    if (p >= fakePlaced[i].begin && p < fakePlaced[i].end) {
      *data = fakePlaced[i].device;
      return 0;
    }
  return 1;
}

#endif
