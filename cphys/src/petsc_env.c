/* PETSc start-up, the error handler that records instead of printing, the library lock. */
#include "petsc_env.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t library_lock;
static pthread_once_t library_lock_once = PTHREAD_ONCE_INIT;
static _Thread_local char petsc_message[512];

static void library_lock_init(void) {
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&library_lock, &attributes);
  pthread_mutexattr_destroy(&attributes);
}

void CPhysLibraryLock(void) {
  pthread_once(&library_lock_once, library_lock_init);
  pthread_mutex_lock(&library_lock);
}

void CPhysLibraryUnlock(void) { pthread_mutex_unlock(&library_lock); }

/* Keeps the first message of an error traceback; prints nothing. */
static PetscErrorCode record_error(MPI_Comm comm, int line, const char *func, const char *file,
                                   PetscErrorCode code, PetscErrorType type, const char *message,
                                   void *context) {
  (void)comm, (void)file, (void)context;
  if (type == PETSC_ERROR_INITIAL) {
    const char *generic = NULL;
    PetscErrorMessage(code, &generic, NULL);
    snprintf(petsc_message, sizeof petsc_message, "%s in %s (line %d): %s", generic ? generic : "error",
             func ? func : "?", line, message ? message : "");
  }
  return code;
}

int CPhysPetscError(PetscErrorCode perr, const char *func, const char *expression) {
  int code = CPhysSetError(CPHYS_ERROR_PETSC, func, "PETSc error %d from %s: %s", (int)perr, expression,
                           petsc_message[0] ? petsc_message : "(no message)");
  petsc_message[0] = '\0';
  return code;
}

/* PETSc reads PETSC_OPTIONS at start-up, where two options would end or spoil
 * the host process: "-help intro" prints PETSc's introduction and calls
 * exit(0) (a training script would stop and report success), and an
 * unreadable -options_file prints a traceback to stderr before any error
 * handler of ours is in place.  Both are refused here, with a message. */
static int check_environment_options(void) {
  const char *environment = getenv("PETSC_OPTIONS");
  if (!environment) return 0;
  char tokens[4096];
  CPhysCheck(strlen(environment) < sizeof tokens, CPHYS_ERROR_ARGUMENT,
             "PETSC_OPTIONS is longer than %zu characters", sizeof tokens - 1);
  snprintf(tokens, sizeof tokens, "%s", environment);
  const char *previous = "";
  char *save = NULL;
  for (char *token = strtok_r(tokens, " \t\n", &save); token; token = strtok_r(NULL, " \t\n", &save)) {
    CPhysCheck(!(strcmp(previous, "-help") == 0 && strcmp(token, "intro") == 0), CPHYS_ERROR_ARGUMENT,
               "PETSC_OPTIONS holds '-help intro', which makes PETSc print its introduction and end the "
               "process; remove it (plain -help lists the options as objects are made)");
    if (strcmp(previous, "-options_file") == 0 || strcmp(previous, "-options_file_yaml") == 0) {
      FILE *file = fopen(token, "r");
      CPhysCheck(file != NULL, CPHYS_ERROR_ARGUMENT, "PETSC_OPTIONS: %s %s: cannot read it (%s)", previous, token,
                 strerror(errno));
      fclose(file);
    }
    previous = token;
  }
  return 0;
}

int CPhysPetscEnsureInitializedLocked(void) {
  PetscBool initialized = PETSC_FALSE;
  CPhysPetscCall(PetscInitialized(&initialized));
  if (!initialized) {
    CPhysCall(check_environment_options());
    /* A library must not take over the host's signals (Python's, torch's). */
    CPhysPetscCall(PetscOptionsSetValue(NULL, "-no_signal_handler", NULL));
    PetscErrorCode perr = PetscInitializeNoArguments();
    CPhysCheck(perr == 0, CPHYS_ERROR_PETSC, "PetscInitialize failed with code %d", (int)perr);
  }
  static int handler_pushed = 0;
  if (!handler_pushed) {
    CPhysPetscCall(PetscPushErrorHandler(record_error, NULL));
    handler_pushed = 1;
  }
  return 0;
}

int CPhysInitialize(void) {
  CPhysLibraryLock();
  int ierr = CPhysPetscEnsureInitializedLocked();
  CPhysLibraryUnlock();
  return ierr;
}

static int set_options_locked(const char *options) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  CPhysPetscCall(PetscOptionsInsertString(NULL, options));
  return 0;
}

int CPhysSetOptions(const char *options) {
  CPhysCheck(options != NULL, CPHYS_ERROR_ARGUMENT, "options must not be NULL");
  CPhysLibraryLock();
  int ierr = set_options_locked(options);
  CPhysLibraryUnlock();
  return ierr;
}

static int clear_options_locked(void) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  CPhysPetscCall(PetscOptionsClear(NULL));
  CPhysPetscCall(PetscOptionsSetValue(NULL, "-no_signal_handler", NULL));
  return 0;
}

int CPhysClearOptions(void) {
  CPhysLibraryLock();
  int ierr = clear_options_locked();
  CPhysLibraryUnlock();
  return ierr;
}

int cphys_ksp_keep_tolerances(KSP ksp, double rtol, double atol) {
  PetscReal option_rtol, option_atol, divergence;
  PetscInt max_iterations;
  CPhysPetscCall(KSPGetTolerances(ksp, &option_rtol, &option_atol, &divergence, &max_iterations));
  const double keep_rtol = isfinite(option_rtol) && option_rtol >= 0.0 ? fmin(rtol, option_rtol) : rtol;
  const double keep_atol = isfinite(option_atol) && option_atol >= 0.0 ? fmin(atol, option_atol) : atol;
  CPhysPetscCall(KSPSetTolerances(ksp, keep_rtol, keep_atol, divergence, max_iterations));
  return 0;
}

void CPhysKSPDescribe(KSP ksp, KSPConvergedReason reason, CPhysSolveInfo *info) {
  PetscInt iterations = 0;
  PetscReal residual = NAN;
  KSPGetIterationNumber(ksp, &iterations);
  KSPGetResidualNorm(ksp, &residual);
  info->iterations = (int)iterations;
  info->residual_norm = (double)residual;
  info->converged = reason > 0;
  info->reason = (int)reason;
  snprintf(info->reason_text, sizeof info->reason_text, "%s", KSPConvergedReasons[reason]);
}
