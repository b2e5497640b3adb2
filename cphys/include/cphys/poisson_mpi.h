/* Poisson's equation on one large 2-D grid distributed over MPI ranks (PETSc DMDA).
 *
 * The discrete problem is exactly CPhysPoisson's (cphys/poisson.h): ny x nx
 * interior nodes, zero Dirichlet boundary one spacing outside, the 5-point
 * Laplacian L, forward map y = L^-1 x, physical gradient L(y_step * g), adjoint
 * = forward (L is symmetric).  Only the storage differs: the grid is split into
 * rectangular blocks by a DMDA (star stencil, width 1, DM_BOUNDARY_NONE) over
 * the caller's communicator, and every rank passes and receives only its block,
 *   rows ys .. ys+ym-1, columns xs .. xs+xm-1 (CPhysPoissonMPIGetLocalRange),
 * contiguous in C order [ym, xm].  Use CPhysPoisson for many small grids (it
 * takes a batch); use this for one grid too large for one process.
 *
 * This header includes <mpi.h>; cphys/poisson.h does not.
 *
 * Collectivity: every function below except GetLocalRange and GetConfig is
 * collective on the object's communicator: all its ranks call it, in the same
 * order, with their own blocks.  Arguments are checked on every rank and the
 * verdict is agreed (an MPI_Allreduce) before any communication, so a bad
 * argument on one rank fails the call on all ranks (CPHYS_ERROR_ARGUMENT)
 * instead of leaving the others waiting.  Solver statistics (iterations,
 * residual, reason) are global, hence identical on every rank, and so is the
 * return value of a solve.
 *
 * PETSc: the solver is CG with GAMG by default (ICC is not defined for a
 * distributed matrix, and CPhysPoisson's sparse Cholesky does not scale to
 * the grids this object is for; GAMG's iteration count does not grow with
 * the grid).  Options under the prefix (default "physgrad_poisson_") are
 * read at Create from each rank's own options database, so every rank must be
 * given the same options (the command line or PETSC_OPTIONS of an mpiexec run,
 * or the same CPhysSetOptions call on every rank).  The DMDA is attached to the
 * KSP, so geometric multigrid works too:
 *   -physgrad_poisson_pc_type mg -physgrad_poisson_pc_mg_levels 5
 *   -physgrad_poisson_pc_mg_galerkin pmat
 * (Galerkin coarse operators are needed because the object assembles the
 * operator itself; DMDA coarsening needs (n - 1) divisible by 2^(levels-1) on
 * each axis, e.g. n = 2^k + 1.)
 * PETSc is started lazily on MPI_COMM_WORLD if the program has not started it
 * (which also starts MPI if needed); a program that called MPI_Init or
 * PetscInitialize itself keeps its own start-up.  Starting PETSc is collective
 * on MPI_COMM_WORLD: a program that creates the object on a smaller
 * communicator calls CPhysInitialize() (or PetscInitialize) on every rank
 * first.  cphys never finalizes either:
 * an MPI program calls MPI_Finalize (and PetscFinalize if it called
 * PetscInitialize) after destroying its objects.
 *
 * Threads: the library lock serializes the calls of one process, but a
 * collective call must not wait on it behind another collective call that
 * other ranks issue in a different order: in a multithreaded program, call
 * these objects from one thread per rank. */
#pragma once
#include <mpi.h>
#include <stddef.h>

#include "cphys/error.h"
#include "cphys/poisson.h"

typedef struct CPhysPoissonMPI_private *CPhysPoissonMPI;

/* Builds the DMDA, the distributed matrix and the KSP (collective on comm).
 * config: as for CPhysPoisson (CPhysPoissonDefaultConfig()), and the same on
 * every rank (checked).  comm is duplicated, so the caller may free its own
 * after Create.  Each rank must own at least one node per axis (a DMDA
 * requirement): n ranks need grids of at least about sqrt(n) x sqrt(n). */
CPHYS_EXTERN int CPhysPoissonMPICreate(MPI_Comm comm, const CPhysPoissonConfig *config,
                                       CPhysPoissonMPI *poisson);
/* Collective; NULL-safe; sets *poisson = NULL. */
CPHYS_EXTERN int CPhysPoissonMPIDestroy(CPhysPoissonMPI *poisson);

/* This rank's block of the grid: rows [ys, ys + ym), columns [xs, xs + xm)
 * (global interior-node indices; ym, xm >= 1).  Not collective; any pointer
 * may be NULL. */
CPHYS_EXTERN int CPhysPoissonMPIGetLocalRange(CPhysPoissonMPI poisson, ptrdiff_t *ys, ptrdiff_t *ym,
                                              ptrdiff_t *xs, ptrdiff_t *xm);

/* y = L^-1 x on the distributed grid.  x: borrowed, this rank's block [ym, xm];
 * y: written, [ym, xm]; info: written when not NULL (global statistics).
 * Non-convergence (NaN or Inf anywhere included) returns
 * CPHYS_ERROR_NOT_CONVERGED on every rank, with PETSc's reason in the message
 * and the last iterate in y. */
CPHYS_EXTERN int CPhysPoissonMPISolve(CPhysPoissonMPI poisson, const double *x, double *y,
                                      CPhysSolveInfo *info);

/* Vector-Jacobian product dx = L^-T dy = L^-1 dy (one solve); blocks as in Solve. */
CPHYS_EXTERN int CPhysPoissonMPIAdjoint(CPhysPoissonMPI poisson, const double *dy, double *dx,
                                        CPhysSolveInfo *info);

/* x = L y (no solve; exchanges one layer of halo with the neighbouring ranks).
 * y: [ym, xm], x: [ym, xm]. */
CPHYS_EXTERN int CPhysPoissonMPIApplyLaplacian(CPhysPoissonMPI poisson, const double *y, double *x);

/* The physical gradient L(y_step * g) (no solve; halo exchange).  g, dx: [ym, xm]. */
CPHYS_EXTERN int CPhysPoissonMPIPhysicalGradient(CPhysPoissonMPI poisson, double y_step, const double *g,
                                                 double *dx);

/* The configuration the object was created with (options_prefix points into
 * the object).  Not collective. */
CPHYS_EXTERN int CPhysPoissonMPIGetConfig(CPhysPoissonMPI poisson, CPhysPoissonConfig *config);
