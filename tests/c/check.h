/* Minimal assertions for the numbered C test programs (one program per object). */
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cphys/error.h"

static int check_failures = 0;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      check_failures++;                                                        \
    }                                                                          \
  } while (0)

/* A cphys call that must succeed; prints the library's message otherwise. */
#define CHECK_OK(expr)                                                                                       \
  do {                                                                                                       \
    int check_ierr_ = (expr);                                                                                \
    if (check_ierr_) {                                                                                       \
      fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, CPhysErrorName(check_ierr_), \
              CPhysGetLastErrorMessage());                                                                   \
      check_failures++;                                                                                      \
    }                                                                                                        \
  } while (0)

/* A cphys call that must fail with `code` and leave a message. */
#define CHECK_FAILS(expr, code)                                                                     \
  do {                                                                                              \
    CPhysClearLastError();                                                                          \
    int check_ierr_ = (expr);                                                                       \
    CHECK(check_ierr_ == (code), "%s returned %s, expected %s", #expr, CPhysErrorName(check_ierr_), \
          CPhysErrorName(code));                                                                    \
    CHECK(CPhysGetLastErrorMessage()[0] != '\0', "%s left no error message", #expr);                \
  } while (0)

/* Largest absolute difference of two arrays of n doubles. */
static inline double max_abs_diff(const double *a, const double *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

static inline double max_abs(const double *a, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
  return m;
}

/* Deterministic uniform numbers in [-1, 1) (xorshift), so tests need no seeding. */
static inline double test_random(unsigned long long *state) {
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return (double)(*state >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}

#define CHECK_REPORT()                                         \
  do {                                                         \
    if (check_failures) {                                      \
      fprintf(stderr, "%d check(s) failed\n", check_failures); \
      return EXIT_FAILURE;                                     \
    }                                                          \
    printf("all checks passed\n");                             \
    return EXIT_SUCCESS;                                       \
  } while (0)
