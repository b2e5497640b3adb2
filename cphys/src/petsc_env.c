/* PETSc start-up, the error handler that records instead of printing, the library lock. */
#include "petsc_env.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

void CPhysLibraryUnlock(void) {
  pthread_mutex_unlock(&library_lock);
}

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
      CPhysCheck(file != NULL, CPHYS_ERROR_ARGUMENT, "PETSC_OPTIONS: %s %s: cannot read it (%s)", previous,
                 token, strerror(errno));
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

/* Whether PETSc's options database holds `name` (without its '-'), used or
 * not; asking PetscOptionsHasName would mark it used. */
static int option_exists(const char *name, char **unused, PetscInt unused_count, PetscBool *exists) {
  CPhysPetscCall(PetscOptionsUsed(NULL, name, exists));
  for (PetscInt i = 0; i < unused_count && !*exists; i++) *exists = strcasecmp(unused[i], name) == 0;
  return 0;
}

/* The table of PETSc 3.18 holds at most 512 names (MAXOPTIONS, no API says
 * so): once full, every option with a new name fails with PETSC_ERR_MEM,
 * while options that replace a value still work. */
static int is_table_full(PetscErrorCode perr) {
  return perr == PETSC_ERR_MEM && strstr(petsc_message, "max number of options") != NULL;
}

/* `new_names`: how many names the call adds; 0: more than the table holds. */
static int table_full(size_t new_names) {
  char added[96] = "these options alone hold more names than that";
  if (new_names)
    snprintf(added, sizeof added, "these options add %zu new name%s to those set before", new_names,
             new_names == 1 ? "" : "s");
  petsc_message[0] = '\0';
  return CPhysSetError(CPHYS_ERROR_ARGUMENT, "CPhysSetOptions",
                       "PETSc's options table has no room for these options (PETSc 3.18 holds at most 512 "
                       "option names, and %s); nothing of this call was set. Options whose names are already "
                       "set can still change their values; remove options with CPhysClearOptions "
                       "(physgrad.clear_solver_options(): it removes all of them, so set the ones you need "
                       "again)",
                       added);
}

/* Inserts parsed options (names without their '-', values): first the names
 * the database does not hold yet (if one does not fit, those this call added
 * are removed again), then the new values of names it holds.  A call either
 * sets every option or none. */
static int insert_parsed_locked(PetscInt count, char **names, char **values) {
  PetscInt unused_count = 0;
  char **unused = NULL, **unused_values = NULL;
  CPhysPetscCall(PetscOptionsLeftGet(NULL, &unused_count, &unused, &unused_values));
  PetscBool *existed = calloc((size_t)count + 1, sizeof *existed);
  int ierr = existed ? 0 : CPhysSetError(CPHYS_ERROR_MEMORY, "CPhysSetOptions", "out of memory");
  size_t new_names = 0;
  for (PetscInt i = 0; i < count && !ierr; i++) {
    ierr = option_exists(names[i], unused, unused_count, &existed[i]);
    new_names += !existed[i];
  }
  PetscOptionsLeftRestore(NULL, &unused_count, &unused, &unused_values);
  char key[PETSC_MAX_OPTION_NAME + 2];
  PetscInt added = 0;
  for (int pass = 0; pass < 2 && !ierr; pass++) {
    for (PetscInt i = 0; i < count && !ierr; i++) {
      if ((pass == 1) != (existed[i] == PETSC_TRUE)) continue;
      snprintf(key, sizeof key, "-%s", names[i]);
      const PetscErrorCode perr = PetscOptionsSetValue(NULL, key, values[i]);
      if (pass == 0 && is_table_full(perr))
        ierr = table_full(new_names);
      else if (perr)
        ierr = CPhysPetscError(perr, "CPhysSetOptions", "PetscOptionsSetValue");
      else
        added += pass == 0;
    }
  }
  if (ierr) /* roll back the names this call added (in the first pass, before any value was replaced) */
    for (PetscInt i = 0; i < count && added > 0; i++)
      if (!existed[i]) {
        snprintf(key, sizeof key, "-%s", names[i]);
        PetscOptionsClearValue(NULL, key);
        added--;
      }
  free(existed);
  return ierr;
}

/* PETSc parses `options` into a database of their own first (the same rules:
 * -options_file, -prefix_push, repeated names), so that the names are known
 * before the shared database changes. */
static int set_options_locked(const char *options) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  PetscOptions parsed = NULL;
  CPhysPetscCall(PetscOptionsCreate(&parsed));
  const PetscErrorCode perr = PetscOptionsInsertString(parsed, options);
  int ierr = 0;
  if (is_table_full(perr)) {
    ierr = table_full(0);
  } else if (perr) {
    ierr = CPhysPetscError(perr, "CPhysSetOptions", "PetscOptionsInsertString(options)");
  }
  if (!ierr) {
    PetscInt count = 0;
    char **names = NULL, **values = NULL;
    const PetscErrorCode left = PetscOptionsLeftGet(parsed, &count, &names, &values);
    ierr = left ? CPhysPetscError(left, "CPhysSetOptions", "PetscOptionsLeftGet(parsed)")
                : insert_parsed_locked(count, names, values);
    if (!left) PetscOptionsLeftRestore(parsed, &count, &names, &values);
  }
  PetscOptionsDestroy(&parsed);
  return ierr;
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
  PetscBool set = PETSC_FALSE; /* read, as PetscInitialize read it: not an unused option */
  CPhysPetscCall(PetscOptionsHasName(NULL, NULL, "-no_signal_handler", &set));
  return 0;
}

int CPhysClearOptions(void) {
  CPhysLibraryLock();
  int ierr = clear_options_locked();
  CPhysLibraryUnlock();
  return ierr;
}

static int unused_options_locked(char *names, size_t size, size_t *length) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  PetscInt count = 0;
  char **keys = NULL, **values = NULL;
  CPhysPetscCall(PetscOptionsLeftGet(NULL, &count, &keys, &values));
  size_t needed = 0;
  for (PetscInt i = 0; i < count; i++) needed += (i ? 2 : 1) + strlen(keys[i]); /* " -name" */
  *length = needed;
  if (size > 0) names[0] = '\0';
  if (size > needed) {
    char *end = names;
    for (PetscInt i = 0; i < count; i++) end += sprintf(end, "%s-%s", i ? " " : "", keys[i]);
  }
  CPhysPetscCall(PetscOptionsLeftRestore(NULL, &count, &keys, &values));
  return 0;
}

int CPhysGetUnusedOptions(char *names, size_t size, size_t *length) {
  CPhysCheck(length != NULL && (names != NULL || size == 0), CPHYS_ERROR_ARGUMENT,
             "length must not be NULL, nor names when size > 0");
  CPhysLibraryLock();
  int ierr = unused_options_locked(names, size, length);
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
