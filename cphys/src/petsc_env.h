/* Internal: PETSc environment and the library lock.  Only cphys sources include this. */
#pragma once
#include <petsc.h>

#include "cphys/environment.h"

/* One recursive lock around every PETSc call and every FFTW planner call. */
void CPhysLibraryLock(void);
void CPhysLibraryUnlock(void);

/* Starts PETSc if nobody has; call with the library lock held. */
int CPhysPetscEnsureInitializedLocked(void);

/* The options in PETSc's database that nothing has read so far (a mistyped
 * name or prefix, or a solver not created yet), as "-name" separated by
 * blanks.  *length: the characters the list needs (without the NUL); `names`
 * gets the list when size > *length, else "".  For the op library
 * (physgrad.unused_solver_options), which declares it itself; not part of the
 * C API. */
CPHYS_EXTERN int CPhysGetUnusedOptions(char *names, size_t size, size_t *length);

/* After KSPSetFromOptions: the KSP's rtol/atol become the stricter of the
 * options' and (rtol, atol); the options' iteration limit stays. */
int cphys_ksp_keep_tolerances(KSP ksp, double rtol, double atol);

/* Fills `info` from a KSP after a solve that ended with `reason`. */
void CPhysKSPDescribe(KSP ksp, KSPConvergedReason reason, CPhysSolveInfo *info);

/* Converts a PETSc error code into CPHYS_ERROR_PETSC with PETSc's message. */
int CPhysPetscError(PetscErrorCode perr, const char *func, const char *expression);

#define CPhysPetscCall(expr)                                               \
  do {                                                                     \
    PetscErrorCode cphys_perr_ = (expr);                                   \
    if (cphys_perr_) return CPhysPetscError(cphys_perr_, __func__, #expr); \
  } while (0)
