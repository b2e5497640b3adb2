/* Internal: finiteness checks of whole arrays in one vectorizable pass.
 * x * 0 is 0 for a finite x and NaN otherwise, so four running sums of it stay
 * 0 exactly when every value is finite; the first offender is looked up only
 * when one exists.  (A test and a branch per value kept the compiler from
 * vectorizing, and took a third of a heat call.) */
#pragma once
#include <math.h>
#include <stddef.h>

/* dst = src when dst != NULL; the index of the first non-finite src value, or -1. */
static inline ptrdiff_t cphys_copy_checked(double *restrict dst, const double *restrict src,
                                           ptrdiff_t count) {
  double probe[4] = {0.0, 0.0, 0.0, 0.0};
  ptrdiff_t i = 0;
  if (dst) {
    for (; i + 4 <= count; i += 4)
      for (int k = 0; k < 4; k++) {
        dst[i + k] = src[i + k];
        probe[k] += src[i + k] * 0.0;
      }
    for (; i < count; i++) dst[i] = src[i], probe[0] += src[i] * 0.0;
  } else {
    for (; i + 4 <= count; i += 4)
      for (int k = 0; k < 4; k++) probe[k] += src[i + k] * 0.0;
    for (; i < count; i++) probe[0] += src[i] * 0.0;
  }
  if (probe[0] == 0.0 && probe[1] == 0.0 && probe[2] == 0.0 && probe[3] == 0.0) return -1;
  for (i = 0; i < count; i++)
    if (!isfinite(src[i])) return i;
  return -1;
}

/* The index of the first non-finite value of a[0..count), or -1. */
static inline ptrdiff_t cphys_first_non_finite(const double *a, ptrdiff_t count) {
  return cphys_copy_checked(NULL, a, count);
}
