/* Distributed Poisson object: CPhysPoisson's discrete problem on a PETSc DMDA. */
#include "cphys/poisson_mpi.h"

#include <math.h>
#include <petscdmda.h>
#include <stdlib.h>
#include <string.h>

#include "petsc_env.h"
#include "poisson_internal.h"

struct CPhysPoissonMPI_private {
  CPhysPoissonConfig config;
  char prefix[128];
  MPI_Comm comm;           /* cphys's duplicate of the caller's communicator */
  DM da;                   /* nx x ny nodes, star stencil of width 1, no periodicity */
  Mat minus_laplacian;     /* SPD: -L, distributed by DMDA rows */
  KSP ksp;                 /* knows the DMDA (for -pc_type mg) but not driven by it */
  Vec rhs, solution;       /* global work vectors; the solution wraps the caller's y */
  Vec ghosted;             /* this rank's block plus one layer of neighbours' nodes */
  PetscInt xs, ys, xm, ym; /* this rank's block */
};

/* Every rank brings its own verdict; all ranks fail when any rank failed, so
 * that no rank goes on into a collective call the others will not make. */
static int agree(MPI_Comm comm, int local_error) {
  int failed = local_error != 0, any_failed = 0;
  int merr = MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_LOR, comm);
  if (local_error) return local_error;
  CPhysCheck(merr == MPI_SUCCESS, CPHYS_ERROR_INTERNAL, "MPI_Allreduce failed with code %d", merr);
  CPhysCheck(!any_failed, CPHYS_ERROR_ARGUMENT,
             "another rank of the communicator rejected its arguments (see that rank's error)");
  return 0;
}

/* The numeric configuration must be identical on every rank. */
static int check_same_config(MPI_Comm comm, const CPhysPoissonConfig *c) {
  double mine[7] = {
      (double)c->shape[0],      (double)c->shape[1], c->spacing[0], c->spacing[1], c->rtol, c->atol,
      (double)c->max_iterations};
  double lowest[7], highest[7];
  MPI_Allreduce(mine, lowest, 7, MPI_DOUBLE, MPI_MIN, comm);
  MPI_Allreduce(mine, highest, 7, MPI_DOUBLE, MPI_MAX, comm);
  for (int k = 0; k < 7; k++)
    CPhysCheck(lowest[k] == highest[k], CPHYS_ERROR_ARGUMENT,
               "the configuration differs between ranks (shape, spacing, tolerances, max_iterations "
               "must agree; field %d ranges over [%g, %g])",
               k, lowest[k], highest[k]);
  return 0;
}

static int assemble_locked(CPhysPoissonMPI p) {
  const double wy = 1.0 / (p->config.spacing[0] * p->config.spacing[0]);
  const double wx = 1.0 / (p->config.spacing[1] * p->config.spacing[1]);
  const PetscInt ny = (PetscInt)p->config.shape[0], nx = (PetscInt)p->config.shape[1];
  CPhysPetscCall(DMSetMatType(p->da, MATAIJ));
  CPhysPetscCall(DMCreateMatrix(p->da, &p->minus_laplacian));
  for (PetscInt j = p->ys; j < p->ys + p->ym; j++) {
    for (PetscInt i = p->xs; i < p->xs + p->xm; i++) {
      MatStencil row = {.j = j, .i = i}, columns[5];
      PetscScalar values[5];
      int count = 0;
      columns[count] = row, values[count++] = 2.0 * (wx + wy);
      if (i > 0) columns[count] = (MatStencil){.j = j, .i = i - 1}, values[count++] = -wx;
      if (i < nx - 1) columns[count] = (MatStencil){.j = j, .i = i + 1}, values[count++] = -wx;
      if (j > 0) columns[count] = (MatStencil){.j = j - 1, .i = i}, values[count++] = -wy;
      if (j < ny - 1) columns[count] = (MatStencil){.j = j + 1, .i = i}, values[count++] = -wy;
      CPhysPetscCall(MatSetValuesStencil(p->minus_laplacian, 1, &row, count, columns, values, INSERT_VALUES));
    }
  }
  CPhysPetscCall(MatAssemblyBegin(p->minus_laplacian, MAT_FINAL_ASSEMBLY));
  CPhysPetscCall(MatAssemblyEnd(p->minus_laplacian, MAT_FINAL_ASSEMBLY));
  CPhysPetscCall(MatSetOption(p->minus_laplacian, MAT_SPD, PETSC_TRUE));
  return 0;
}

static int create_solver_locked(CPhysPoissonMPI p) {
  PC pc;
  CPhysPetscCall(KSPCreate(p->comm, &p->ksp));
  /* The DMDA gives PCMG its grid hierarchy; the operator stays the one assembled here. */
  CPhysPetscCall(KSPSetDM(p->ksp, p->da));
  CPhysPetscCall(KSPSetDMActive(p->ksp, PETSC_FALSE));
  CPhysPetscCall(KSPSetOperators(p->ksp, p->minus_laplacian, p->minus_laplacian));
  CPhysPetscCall(KSPSetType(p->ksp, KSPCG));
  CPhysPetscCall(KSPGetPC(p->ksp, &pc));
  CPhysPetscCall(PCSetType(pc, PCGAMG));
  CPhysPetscCall(
      KSPSetTolerances(p->ksp, p->config.rtol, p->config.atol, PETSC_DEFAULT, p->config.max_iterations));
  if (p->prefix[0]) CPhysPetscCall(KSPSetOptionsPrefix(p->ksp, p->prefix));
  CPhysPetscCall(KSPSetFromOptions(p->ksp));
  CPhysPetscCall(KSPSetUp(p->ksp));
  CPhysPetscCall(DMCreateGlobalVector(p->da, &p->rhs));
  CPhysPetscCall(VecDuplicate(p->rhs, &p->solution));
  CPhysPetscCall(DMCreateLocalVector(p->da, &p->ghosted));
  return 0;
}

static int create_locked(MPI_Comm comm, int local_error, CPhysPoissonMPI p) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  CPhysCall(agree(comm, local_error));
  CPhysCall(check_same_config(comm, &p->config));
  CPhysCheck(MPI_Comm_dup(comm, &p->comm) == MPI_SUCCESS, CPHYS_ERROR_INTERNAL, "MPI_Comm_dup failed");
  /* DMDA axes are (x, y) = (columns, rows): M = nx, N = ny. */
  CPhysPetscCall(DMDACreate2d(p->comm, DM_BOUNDARY_NONE, DM_BOUNDARY_NONE, DMDA_STENCIL_STAR,
                              (PetscInt)p->config.shape[1], (PetscInt)p->config.shape[0], PETSC_DECIDE,
                              PETSC_DECIDE, 1, 1, NULL, NULL, &p->da));
  CPhysPetscCall(DMSetUp(p->da));
  CPhysPetscCall(DMDAGetCorners(p->da, &p->xs, &p->ys, NULL, &p->xm, &p->ym, NULL));
  CPhysCall(assemble_locked(p));
  CPhysCall(create_solver_locked(p));
  return 0;
}

int CPhysPoissonMPICreate(MPI_Comm comm, const CPhysPoissonConfig *config, CPhysPoissonMPI *poisson) {
  CPhysCheck(comm != MPI_COMM_NULL, CPHYS_ERROR_ARGUMENT, "comm must not be MPI_COMM_NULL");
  int local_error = 0;
  if (poisson == NULL)
    local_error = CPhysSetError(CPHYS_ERROR_ARGUMENT, __func__, "poisson (output handle) must not be NULL");
  else
    *poisson = NULL, local_error = CPhysPoissonCheckConfig(config);
  CPhysPoissonMPI p = local_error ? NULL : calloc(1, sizeof *p);
  if (!local_error && !p)
    local_error = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate the object");
  if (p) {
    p->config = *config;
    if (config->options_prefix) strcpy(p->prefix, config->options_prefix);
    p->config.options_prefix = p->prefix;
    p->comm = MPI_COMM_NULL;
  }
  CPhysLibraryLock();
  int ierr = create_locked(comm, local_error, p);
  CPhysLibraryUnlock();
  if (ierr) {
    CPhysPoissonMPIDestroy(&p);
    return ierr;
  }
  *poisson = p;
  return 0;
}

int CPhysPoissonMPIDestroy(CPhysPoissonMPI *poisson) {
  if (!poisson || !*poisson) return 0;
  CPhysPoissonMPI p = *poisson;
  CPhysLibraryLock();
  /* Destroy must not fail half-way: PETSc's destroy errors are ignored here. */
  if (p->ksp) KSPDestroy(&p->ksp);
  if (p->minus_laplacian) MatDestroy(&p->minus_laplacian);
  if (p->rhs) VecDestroy(&p->rhs);
  if (p->solution) VecDestroy(&p->solution);
  if (p->ghosted) VecDestroy(&p->ghosted);
  if (p->da) DMDestroy(&p->da);
  if (p->comm != MPI_COMM_NULL) MPI_Comm_free(&p->comm);
  CPhysLibraryUnlock();
  free(p);
  *poisson = NULL;
  return 0;
}

int CPhysPoissonMPIGetLocalRange(CPhysPoissonMPI poisson, ptrdiff_t *ys, ptrdiff_t *ym, ptrdiff_t *xs,
                                 ptrdiff_t *xm) {
  CPhysCheck(poisson != NULL, CPHYS_ERROR_ARGUMENT, "the Poisson object is NULL");
  if (ys) *ys = poisson->ys;
  if (ym) *ym = poisson->ym;
  if (xs) *xs = poisson->xs;
  if (xm) *xm = poisson->xm;
  return 0;
}

int CPhysPoissonMPIGetConfig(CPhysPoissonMPI poisson, CPhysPoissonConfig *config) {
  CPhysCheck(poisson != NULL && config != NULL, CPHYS_ERROR_ARGUMENT, "arguments must not be NULL");
  *config = poisson->config;
  return 0;
}

/* Collective argument check of a block operation (the object itself must exist on every rank). */
static int check_blocks(CPhysPoissonMPI p, const void *in, const void *out, int local_error) {
  CPhysCheck(p != NULL, CPHYS_ERROR_ARGUMENT, "the Poisson object is NULL");
  if (!local_error && (in == NULL || out == NULL))
    local_error = CPhysSetError(CPHYS_ERROR_ARGUMENT, __func__, "input and output blocks must not be NULL");
  return agree(p->comm, local_error);
}

/* Solves -L y = -x on the whole grid, i.e. y = L^-1 x. */
static int solve_locked(CPhysPoissonMPI p, const double *x, double *y, CPhysSolveInfo *info) {
  const PetscInt n = p->xm * p->ym;
  PetscScalar *b;
  KSPConvergedReason reason;
  CPhysPetscCall(VecGetArrayWrite(p->rhs, &b));
  for (PetscInt k = 0; k < n; k++) b[k] = -x[k];
  CPhysPetscCall(VecRestoreArrayWrite(p->rhs, &b));
  CPhysPetscCall(VecPlaceArray(p->solution, y));
  PetscErrorCode perr = KSPSolve(p->ksp, p->rhs, p->solution);
  VecResetArray(p->solution);
  if (perr) return CPhysPetscError(perr, __func__, "KSPSolve");
  CPhysPetscCall(KSPGetConvergedReason(p->ksp, &reason));
  CPhysKSPDescribe(p->ksp, reason, info);
  return 0;
}

static int solve(CPhysPoissonMPI p, const double *x, double *y, CPhysSolveInfo *info, const char *what) {
  CPhysCall(check_blocks(p, x, y, 0));
  CPhysSolveInfo result;
  CPhysLibraryLock();
  int ierr = solve_locked(p, x, y, &result);
  CPhysLibraryUnlock();
  if (ierr) return ierr;
  if (info) *info = result;
  CPhysCheck(result.converged, CPHYS_ERROR_NOT_CONVERGED,
             "%s did not converge: %s after %d iterations (residual %g)", what, result.reason_text,
             result.iterations, result.residual_norm);
  return 0;
}

int CPhysPoissonMPISolve(CPhysPoissonMPI poisson, const double *x, double *y, CPhysSolveInfo *info) {
  return solve(poisson, x, y, info, "distributed Poisson solve");
}

int CPhysPoissonMPIAdjoint(CPhysPoissonMPI poisson, const double *dy, double *dx, CPhysSolveInfo *info) {
  return solve(poisson, dy, dx, info, "distributed Poisson adjoint solve");
}

/* x = scale * L y: the matrix's stencil, with the neighbours' nodes from the halo. */
static int apply_laplacian_locked(CPhysPoissonMPI p, double scale, const double *y, double *x) {
  const PetscInt ny = (PetscInt)p->config.shape[0], nx = (PetscInt)p->config.shape[1];
  const double wy = scale / (p->config.spacing[0] * p->config.spacing[0]);
  const double wx = scale / (p->config.spacing[1] * p->config.spacing[1]);
  PetscScalar *owned;
  const PetscScalar **v;
  CPhysPetscCall(VecGetArrayWrite(p->rhs, &owned));
  memcpy(owned, y, sizeof(double) * (size_t)(p->xm * p->ym));
  CPhysPetscCall(VecRestoreArrayWrite(p->rhs, &owned));
  CPhysPetscCall(DMGlobalToLocalBegin(p->da, p->rhs, INSERT_VALUES, p->ghosted));
  CPhysPetscCall(DMGlobalToLocalEnd(p->da, p->rhs, INSERT_VALUES, p->ghosted));
  CPhysPetscCall(DMDAVecGetArrayRead(p->da, p->ghosted, &v)); /* v[j][i], global indices */
  for (PetscInt j = p->ys; j < p->ys + p->ym; j++) {
    double *row = x + (j - p->ys) * p->xm;
    for (PetscInt i = p->xs; i < p->xs + p->xm; i++) {
      const double left = i > 0 ? v[j][i - 1] : 0.0, right = i < nx - 1 ? v[j][i + 1] : 0.0;
      const double down = j > 0 ? v[j - 1][i] : 0.0, up = j < ny - 1 ? v[j + 1][i] : 0.0;
      row[i - p->xs] = wx * (left + right - 2.0 * v[j][i]) + wy * (down + up - 2.0 * v[j][i]);
    }
  }
  CPhysPetscCall(DMDAVecRestoreArrayRead(p->da, p->ghosted, &v));
  return 0;
}

static int apply_laplacian(CPhysPoissonMPI p, double scale, const double *y, double *x, int local_error) {
  CPhysCall(check_blocks(p, y, x, local_error));
  CPhysLibraryLock();
  int ierr = apply_laplacian_locked(p, scale, y, x);
  CPhysLibraryUnlock();
  return ierr;
}

int CPhysPoissonMPIApplyLaplacian(CPhysPoissonMPI poisson, const double *y, double *x) {
  return apply_laplacian(poisson, 1.0, y, x, 0);
}

int CPhysPoissonMPIPhysicalGradient(CPhysPoissonMPI poisson, double y_step, const double *g, double *dx) {
  int local_error = 0;
  if (!isfinite(y_step))
    local_error = CPhysSetError(CPHYS_ERROR_ARGUMENT, __func__, "y_step must be finite, got %g", y_step);
  return apply_laplacian(poisson, y_step, g, dx, local_error);
}
