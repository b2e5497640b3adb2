/* Shared pieces of the libFuzzer targets (one target per cphys object).
 *
 * A target reads its whole call sequence from the fuzzer's bytes through a
 * FuzzInput: sizes (bounded, so one input runs in milliseconds), parameters
 * and data.  Doubles come from a table of hostile values (0, -0, NaN, +-Inf,
 * DBL_MAX, denormals, 1e+-300, ...), from moderate values, or raw from 8
 * bytes.  An exhausted input reads as zeros, so every byte string is valid.
 *
 * The invariants every call must keep (FUZZ_CHECK aborts, which libFuzzer
 * reports as a crash with the input saved):
 *  - the return value is one of the codes of CPHYS_ERROR_TABLE;
 *  - a failing call leaves a non-empty message (fuzz_call clears it first);
 *  - outputs the headers promise to be finite are finite on success;
 * and ASan/UBSan/LSan (the build) catch memory errors, UB and leaks. */
#pragma once
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cphys/error.h"

typedef struct {
  const uint8_t *data;
  size_t size, pos;
} FuzzInput;

static inline FuzzInput fuzz_input(const uint8_t *data, size_t size) {
  FuzzInput in = {data, size, 0};
  return in;
}

static inline uint8_t fuzz_u8(FuzzInput *in) {
  return in->pos < in->size ? in->data[in->pos++] : 0;
}

static inline int fuzz_bool(FuzzInput *in) {
  return fuzz_u8(in) & 1;
}

/* An integer in [lo, hi] (hi - lo < 65536). */
static inline int fuzz_int(FuzzInput *in, int lo, int hi) {
  unsigned raw = (unsigned)fuzz_u8(in) | (unsigned)fuzz_u8(in) << 8;
  return lo + (int)(raw % (unsigned)(hi - lo + 1));
}

static inline double fuzz_raw_double(FuzzInput *in) {
  uint64_t bits = 0;
  for (int k = 0; k < 8; k++) bits |= (uint64_t)fuzz_u8(in) << (8 * k);
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

/* Values that break numerical code. */
static const double fuzz_special_values[] = {
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    NAN,
    INFINITY,
    -INFINITY,
    DBL_MAX,
    -DBL_MAX,
    DBL_MIN,
    -DBL_MIN,
    4.9e-324,
    -4.9e-324,
    1e-300,
    -1e-300,
    1e300,
    -1e300,
    1e-150,
    1e150,
    1e-16,
    1e16,
    3.14159265358979,
    -1.5707963267949,
    1e-8,
    1e8,
};

/* A double: hostile (1/4), moderate k/16 with k in [-128, 127] (1/2) or raw bits (1/4). */
static inline double fuzz_double(FuzzInput *in) {
  const uint8_t mode = fuzz_u8(in);
  switch (mode & 3) {
    case 0: {
      const size_t count = sizeof fuzz_special_values / sizeof fuzz_special_values[0];
      return fuzz_special_values[fuzz_u8(in) % count];
    }
    case 1:
      return fuzz_raw_double(in);
    default:
      return (double)(int8_t)fuzz_u8(in) / 16.0;
  }
}

/* A positive value near `typical` (1/2), scaled by 10^(10 k), k in [-32, 31],
 * i.e. tiny or huge down to 0 and up to inf (1/4), or anything (1/4). */
static inline double fuzz_positive(FuzzInput *in, double typical) {
  const uint8_t mode = fuzz_u8(in);
  if (mode < 128) return typical * (0.25 + (double)(mode % 64) / 16.0);
  if (mode < 192) return typical * pow(10.0, 10.0 * (double)(mode - 160));
  return fuzz_double(in);
}

/* Data arrays: one mode per array keeps most inputs finite and moderate. */
static inline void fuzz_fill(FuzzInput *in, double *a, size_t n) {
  const uint8_t mode = fuzz_u8(in) & 3;
  for (size_t i = 0; i < n; i++) {
    if (mode == 0)
      a[i] = (double)(int8_t)fuzz_u8(in) / 32.0;
    else if (mode == 1)
      a[i] = fuzz_double(in);
    else if (mode == 2)
      a[i] = 0.0;
    else
      a[i] = sin(0.7 * (double)i + (double)fuzz_u8(in));
  }
}

/* A malloc'ed array of n doubles (at least one) filled by fuzz_fill. */
static inline double *fuzz_array(FuzzInput *in, size_t n) {
  double *a = malloc((n ? n : 1) * sizeof *a);
  if (!a) abort();
  fuzz_fill(in, a, n);
  return a;
}

static inline double *fuzz_zeros(size_t n) {
  double *a = calloc(n ? n : 1, sizeof *a);
  if (!a) abort();
  return a;
}

/* For LLVMFuzzerInitialize of targets that use PETSc: start it (and MPI) once,
 * before libFuzzer's per-input leak checks begin, and keep Open MPI's own
 * SIGABRT/SIGSEGV handlers out of the way of libFuzzer's crash reports. */
#define FUZZ_INITIALIZE_PETSC()                            \
  do {                                                     \
    setenv("OMPI_MCA_opal_signal", "", 0);                 \
    if (CPhysInitialize()) {                               \
      fprintf(stderr, "%s\n", CPhysGetLastErrorMessage()); \
      abort();                                             \
    }                                                      \
  } while (0)

#define FUZZ_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: invariant violated: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                                  \
      fprintf(stderr, "\n");                                                         \
      abort();                                                                       \
    }                                                                                \
  } while (0)

/* The codes of the table, and a message after every failure. */
static inline int fuzz_check_result(int code, const char *what) {
  int known = 0;
#define FUZZ_KNOWN_CODE_(name, value, message) known |= code == (value);
  CPHYS_ERROR_TABLE(FUZZ_KNOWN_CODE_)
#undef FUZZ_KNOWN_CODE_
  FUZZ_CHECK(known, "%s returned %d, not a code of the error table", what, code);
  if (code) {
    const char *message = CPhysGetLastErrorMessage();
    FUZZ_CHECK(message != NULL && message[0] != '\0', "%s failed with %s but left no message", what,
               CPhysErrorName(code));
  }
  return code;
}

/* Runs a cphys call with a cleared message and checks its result. */
#define fuzz_call(expr) (CPhysClearLastError(), fuzz_check_result((expr), #expr))

static inline int fuzz_all_finite(const double *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(a[i])) return 0;
  return 1;
}

#define FUZZ_CHECK_FINITE(a, n, what) \
  FUZZ_CHECK(fuzz_all_finite((a), (n)), "%s succeeded with a non-finite output", (what))

#ifdef CPHYS_MINIMIZE_FUZZ_HELPERS
#include "cphys/minimize.h"
/* An op's `lbfgs` mode: its least-squares problem through
 * CPhysQuasiNewtonPhysicalGradient with a few iterations.  x: [batch, n]
 * (also used as y and g, sizes permitting: only n == m problems come here). */
static inline int fuzz_quasi_newton(FuzzInput *in, const CPhysLeastSquaresProblem *problem, ptrdiff_t batch,
                                    const double *x, double *dx) {
  CPhysLeastSquaresConfig config = {0};
  config.max_iterations = fuzz_int(in, 0, 4);
  config.gradient_atol = fuzz_bool(in) ? 0.0 : fuzz_double(in);
  config.gradient_rtol = 0.0;
  const double y_step = fuzz_bool(in) ? 1.0 : fuzz_double(in);
  CPhysSolveInfo info[4];
  const int code = fuzz_call(CPhysQuasiNewtonPhysicalGradient(&config, problem, batch, x, x, x, y_step, dx,
                                                              batch <= 4 ? info : NULL));
  for (ptrdiff_t s = 0; !code && batch <= 4 && s < batch; s++)
    FUZZ_CHECK(info[s].iterations >= 0 && info[s].iterations <= config.max_iterations,
               "sample %td: %d iterations with max_iterations %d", s, info[s].iterations,
               config.max_iterations);
  return code;
}
#endif
