/* Internal: what every cphys object's sources share, besides error.h's
 * CPhysCheck / CPhysCall: one pi, and the argument check of a validation
 * helper shared by several entry points. */
#pragma once
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
