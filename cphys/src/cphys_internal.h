/* Internal: what every cphys object's sources share, besides error.h's
 * CPhysCheck / CPhysCall: one pi, and the argument check of a validation
 * helper shared by several entry points. */
#pragma once
#include <stddef.h>

#include "cphys/error.h"

/* The double nearest to pi (2 * CPHYS_PI is then the double nearest to 2 pi). */
#define CPHYS_PI 3.14159265358979323846264338327950288

/* CPhysCheck for a helper that validates the arguments of several entry
 * points: the message names `caller`, the entry point that was called (pass
 * it __func__), not the helper. */
#define CPhysCheckCaller(caller, cond, code, ...)                     \
  do {                                                                \
    if (!(cond)) return CPhysSetError((code), (caller), __VA_ARGS__); \
  } while (0)

/* The y-space target of the inverse modes, t = y - y_step g (`count` entries),
 * in a new array the caller frees (physical_gradient.c); errors name `caller`. */
int cphys_target(const char *caller, ptrdiff_t count, const double *y, const double *g, double y_step,
                 double **target);
