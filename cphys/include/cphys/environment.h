/* The library environment: PETSc start-up, solver options, the library lock.
 *
 * PETSc is initialized lazily by the first object that needs it (or by
 * CPhysInitialize).  An application that initialized PETSc itself keeps its
 * initialization; cphys never finalizes PETSc from an object.  PETSc errors
 * are returned as CPHYS_ERROR_PETSC with PETSc's message, never printed and
 * never aborting.  Options come from the PETSC_OPTIONS environment variable
 * and from CPhysSetOptions.
 *
 * Threads.  The batch loops that do not call PETSc (heat transforms, sine,
 * wave packet, the Poisson stencil) run their samples on OpenMP threads when
 * the library is built with OpenMP; PETSc solves always run on the caller's
 * thread.  How many threads a call may use is set per calling thread. */
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
/* *found = 1 when the options database holds an option named "-<prefix>...",
 * not counting those named "-<excluded_prefix>..." (NULL: none), e.g.
 * ("physgrad_poisson_", "physgrad_poisson_lbfgs_"); else 0.  Starts PETSc if
 * nobody has (options from PETSC_OPTIONS count). */
CPHYS_EXTERN int CPhysHasOptionsWithPrefix(const char *prefix, const char *excluded_prefix, int *found);

/* Threads the batch loops of calls made from this thread may use: >= 1, or 0
 * for OpenMP's default (OMP_NUM_THREADS, else one per core).  Loops with
 * little work per thread use fewer.  The physgrad torch ops pass
 * at::get_num_threads() (torch.set_num_threads) before each call.  Without
 * OpenMP everything runs on the calling thread.  Results do not depend on the
 * thread count (bitwise).  The loops: heat, sine, wave packet, the Poisson
 * stencil, and the fluid's samples (forward, adjoint, physical inverse; their
 * pressure solves take turns in PETSc, which is not thread-safe). */
CPHYS_EXTERN int CPhysSetThreads(int threads);
/* The threads a batch loop called from this thread would use at most (1 without OpenMP). */
CPHYS_EXTERN int CPhysGetThreads(void);
