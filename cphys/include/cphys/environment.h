/* The library environment: PETSc start-up, solver options, the library lock.
 *
 * PETSc is initialized lazily by the first object that needs it (or by
 * CPhysInitialize).  An application that initialized PETSc itself keeps its
 * initialization; cphys never finalizes PETSc from an object.  PETSc errors
 * are returned as CPHYS_ERROR_PETSC with PETSc's message, never printed and
 * never aborting.  Options come from the PETSC_OPTIONS environment variable
 * and from CPhysSetOptions. */
#pragma once
#include "cphys/error.h"

/* Starts PETSc if nobody has (idempotent, thread-safe). */
CPHYS_EXTERN int CPhysInitialize(void);
/* Inserts options into PETSc's global database, e.g.
 * "-physgrad_poisson_ksp_type cg -physgrad_poisson_pc_type gamg".  Objects read
 * them when they are created. */
CPHYS_EXTERN int CPhysSetOptions(const char *options);
/* Removes every option set by CPhysSetOptions or the environment. */
CPHYS_EXTERN int CPhysClearOptions(void);
