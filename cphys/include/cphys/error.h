/* cphys error handling: one table of codes, a per-thread last message.
 *
 * Every cphys function returns an int: 0 (CPHYS_SUCCESS) or one of the codes
 * below.  On failure the function also records a human-readable message,
 * readable on the same thread with CPhysGetLastErrorMessage() until the next
 * failure on that thread. */
#pragma once
#include <stddef.h>

#ifdef __cplusplus
#define CPHYS_EXTERN extern "C" __attribute__((visibility("default")))
#else
#define CPHYS_EXTERN extern __attribute__((visibility("default")))
#endif

/* X(name, value, message): the single source of the codes and their texts. */
#define CPHYS_ERROR_TABLE(X)                                   \
  X(CPHYS_SUCCESS, 0, "success")                               \
  X(CPHYS_ERROR_ARGUMENT, 1, "invalid argument")               \
  X(CPHYS_ERROR_MEMORY, 2, "out of memory")                    \
  X(CPHYS_ERROR_NOT_CONVERGED, 3, "solver did not converge")   \
  X(CPHYS_ERROR_NONFINITE, 4, "non-finite value (NaN or Inf)") \
  X(CPHYS_ERROR_PETSC, 5, "PETSc error")                       \
  X(CPHYS_ERROR_FFTW, 6, "FFTW error")                         \
  X(CPHYS_ERROR_UNSUPPORTED, 7, "operation not supported")     \
  X(CPHYS_ERROR_INTERNAL, 8, "internal error")

typedef enum {
#define CPHYS_ERROR_ENUM_(name, value, message) name = value,
  CPHYS_ERROR_TABLE(CPHYS_ERROR_ENUM_)
#undef CPHYS_ERROR_ENUM_
} CPhysErrorCode;

/* Statistics of one iterative solve (one sample of a batch). */
typedef struct {
  int iterations;       /* iterations the solver took */
  double residual_norm; /* final residual norm, in the solver's norm */
  int converged;        /* 1 when the solver reported convergence */
  int reason;           /* solver-specific reason code (PETSc KSPConvergedReason, TAO reason) */
  char reason_text[48]; /* the solver's name for `reason`, e.g. "CONVERGED_RTOL" */
} CPhysSolveInfo;

/* Name of a code ("CPHYS_ERROR_ARGUMENT") and its generic message. */
CPHYS_EXTERN const char *CPhysErrorName(int code);
CPHYS_EXTERN const char *CPhysErrorMessage(int code);
/* The detailed message of the last failure on this thread ("" when none). */
CPHYS_EXTERN const char *CPhysGetLastErrorMessage(void);
CPHYS_EXTERN void CPhysClearLastError(void);
/* Records a failure and returns `code`; used through CPhysCheck. */
CPHYS_EXTERN int CPhysSetError(int code, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Version of the library, "MAJOR.MINOR.PATCH". */
CPHYS_EXTERN const char *CPhysVersion(void);

/* Returns `code` with a formatted message when `cond` is false. */
#define CPhysCheck(cond, code, ...)                                   \
  do {                                                                \
    if (!(cond)) return CPhysSetError((code), __func__, __VA_ARGS__); \
  } while (0)

/* Propagates a failure of a cphys call; the callee has set the message. */
#define CPhysCall(expr)                            \
  do {                                             \
    int cphys_call_ierr_ = (expr);                 \
    if (cphys_call_ierr_) return cphys_call_ierr_; \
  } while (0)
