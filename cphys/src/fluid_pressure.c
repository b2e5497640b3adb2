/* Pressure projection on the MAC grid with PETSc CG.
 *
 * With D the face-to-centre divergence and G the centre-to-face gradient,
 * G = -D^T on the MAC grid, so A = -D G = D D^T is the symmetric positive
 * semi-definite 5-point -Laplacian whose null space is the constants, and the
 * projection v - G A^+ D v = (I - D^T (D D^T)^+ D) v is an orthogonal
 * projector: its adjoint is itself.  Walls: D reads the faces on them as 0 and
 * G is 0 there, so A drops the neighbour across a wall (Neumann, dp/dn = 0) and
 * the projection, Z + D^T (D D^T)^+ D with Z zeroing the wall faces, is still
 * an orthogonal projector (its range: divergence-free fields with v_n = 0 on
 * the walls).  The entry points (CPhysFluidProject,
 * CPhysFluidDivergence) are in fluid.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fluid_internal.h"

static int assemble_locked(CPhysFluid f) {
  const PetscInt nx = (PetscInt)f->nx, ny = (PetscInt)f->ny;
  const double wx = 1.0 / (f->dx * f->dx), wy = 1.0 / (f->dy * f->dy);
  CPhysPetscCall(MatCreateSeqAIJ(PETSC_COMM_SELF, nx * ny, nx * ny, 5, NULL, &f->laplacian));
  for (PetscInt j = 0; j < ny; j++)
    for (PetscInt i = 0; i < nx; i++) {
      const PetscInt row = j * nx + i;
      /* Neighbours across a wall face are absent (zero flux: Neumann). */
      const int has[4] = {!f->walls[1] || i > 0, !f->walls[1] || i < nx - 1, !f->walls[0] || j > 0,
                          !f->walls[0] || j < ny - 1};
      const PetscInt neighbours[4] = {j * nx + (i + nx - 1) % nx, j * nx + (i + 1) % nx,
                                      ((j + ny - 1) % ny) * nx + i, ((j + 1) % ny) * nx + i};
      const double weights[4] = {wx, wx, wy, wy};
      PetscInt columns[5] = {row};
      PetscScalar values[5] = {has[0] && has[1] && has[2] && has[3]
                                   ? 2.0 * (wx + wy)
                                   : (has[0] + has[1]) * wx + (has[2] + has[3]) * wy};
      int count = 1;
      for (int k = 0; k < 4; k++)
        if (has[k]) columns[count] = neighbours[k], values[count++] = -weights[k];
      CPhysPetscCall(MatSetValues(f->laplacian, 1, &row, count, columns, values, INSERT_VALUES));
    }
  CPhysPetscCall(MatAssemblyBegin(f->laplacian, MAT_FINAL_ASSEMBLY));
  CPhysPetscCall(MatAssemblyEnd(f->laplacian, MAT_FINAL_ASSEMBLY));
  CPhysPetscCall(MatSetOption(f->laplacian, MAT_SYMMETRIC, PETSC_TRUE));
  /* Periodic or walls (no Dirichlet anywhere): the constants are the null space; CG stays in
   * its complement. */
  CPhysPetscCall(MatNullSpaceCreate(PETSC_COMM_SELF, PETSC_TRUE, 0, NULL, &f->nullspace));
  CPhysPetscCall(MatSetNullSpace(f->laplacian, f->nullspace));
  return 0;
}

int fluid_pressure_create_locked(CPhysFluid f) {
  PC pc;
  CPhysCall(assemble_locked(f));
  CPhysPetscCall(KSPCreate(PETSC_COMM_SELF, &f->ksp));
  CPhysPetscCall(KSPSetOperators(f->ksp, f->laplacian, f->laplacian));
  CPhysPetscCall(KSPSetType(f->ksp, KSPCG));
  CPhysPetscCall(KSPGetPC(f->ksp, &pc));
  /* A sparse Cholesky factorization (made here, once) with a nonzero shift
   * (the matrix is singular: its last pivot would be zero): CG then needs one
   * iteration per solve.  Measured at 64 x 64 (benchmarks/RESULTS.md): the
   * forward 5x faster than with ICC(0) (~40 iterations per solve; plain CG
   * ~100).  Beyond 512 x 512 cells the factor grows too large: ICC(0) there.
   * The convergence test uses the unpreconditioned residual, so atol still
   * bounds ||div v||_2 itself, as PhiFlow's plain CG.  The options under the
   * prefix override all three. */
  CPhysPetscCall(PCSetType(pc, f->n <= 512 * 512 ? PCCHOLESKY : PCICC));
  CPhysPetscCall(PCFactorSetShiftType(pc, MAT_SHIFT_NONZERO));
  CPhysPetscCall(KSPSetNormType(f->ksp, KSP_NORM_UNPRECONDITIONED));
  CPhysPetscCall(
      KSPSetTolerances(f->ksp, f->config.rtol, f->config.atol, PETSC_DEFAULT, f->config.max_iterations));
  CPhysPetscCall(KSPSetInitialGuessNonzero(f->ksp, PETSC_TRUE));
  CPhysPetscCall(KSPSetOptionsPrefix(f->ksp, f->prefix));
  CPhysPetscCall(KSPSetFromOptions(f->ksp));
  /* An option may tighten the configuration's rtol/atol, never loosen them:
   * -<prefix>ksp_rtol 0.5 must not turn a call's rtol into a 50% error.  (The
   * iteration limit stays the option's: too few iterations is reported as
   * non-convergence, not returned as a solution.) */
  CPhysCall(cphys_ksp_keep_tolerances(f->ksp, f->config.rtol, f->config.atol));
  CPhysPetscCall(KSPSetUp(f->ksp));
  CPhysPetscCall(MatCreateVecs(f->laplacian, &f->solution, &f->rhs));
  return 0;
}

void fluid_pressure_destroy_locked(CPhysFluid f) {
  /* Destroy must not fail half-way: PETSc's destroy errors are ignored. */
  if (f->ksp) KSPDestroy(&f->ksp);
  if (f->nullspace) MatNullSpaceDestroy(&f->nullspace);
  if (f->laplacian) MatDestroy(&f->laplacian);
  if (f->rhs) VecDestroy(&f->rhs);
  if (f->solution) VecDestroy(&f->solution);
}

void fluid_divergence(CPhysFluid f, const double *v, double *divergence) {
  const ptrdiff_t nx = f->nx, ny = f->ny, n = f->n;
  if (!f->any_walls) { /* the same values without the walls' index rules */
    const double *vx = v, *vy = v + n;
    for (ptrdiff_t j = 0; j < ny; j++) {
      const ptrdiff_t jp = j == ny - 1 ? 0 : j + 1;
      for (ptrdiff_t i = 0; i < nx; i++) {
        const ptrdiff_t ip = i == nx - 1 ? 0 : i + 1, p = j * nx + i;
        divergence[p] = (vx[j * nx + ip] - vx[p]) / f->dx + (vy[jp * nx + i] - vy[p]) / f->dy;
      }
    }
    return;
  }
  double a, b, c, d;
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      /* Faces on walls count as 0 (fluid_face_node). */
      const ptrdiff_t right = fluid_face_node(f, 0, j, i + 1, &a), left = fluid_face_node(f, 0, j, i, &b);
      const ptrdiff_t top = fluid_face_node(f, 1, j + 1, i, &c), bottom = fluid_face_node(f, 1, j, i, &d);
      divergence[p] = (a * v[right] - b * v[left]) / f->dx + (c * v[n + top] - d * v[n + bottom]) / f->dy;
    }
}

/* The PETSc part of a projection: solve A p = b from the warm start p.  One
 * thread at a time (see fluid_project_locked). */
static int solve_pressure_serialized(CPhysFluid f, double *b, double *p, KSPConvergedReason *reason,
                                     CPhysSolveInfo *info) {
  CPhysPetscCall(VecPlaceArray(f->rhs, b));
  PetscErrorCode perr = VecPlaceArray(f->solution, p);
  if (!perr) {
    perr = KSPSolve(f->ksp, f->rhs, f->solution);
    VecResetArray(f->solution);
  }
  VecResetArray(f->rhs);
  if (perr) return CPhysPetscError(perr, __func__, "KSPSolve");
  CPhysPetscCall(KSPGetConvergedReason(f->ksp, reason));
  CPhysKSPDescribe(f->ksp, *reason, info);
  return 0;
}

int fluid_project_locked(CPhysFluid f, double *v, double *p, CPhysSolveInfo *info, const char *what,
                         ptrdiff_t sample, int solve) {
  const ptrdiff_t nx = f->nx, ny = f->ny, n = f->n;
  KSPConvergedReason reason = KSP_CONVERGED_ITERATING;
  double *b = fluid_slot(f, FLUID_SLOT_RHS);
  fluid_divergence(f, v, b);
  /* The divergence sums to zero up to rounding (periodic or closed box); removing
   * the rounding keeps the singular system consistent. */
  double mean = 0.0;
  for (ptrdiff_t k = 0; k < n; k++) mean += b[k];
  mean /= (double)n;
  double rhs_squares = 0.0;
  for (ptrdiff_t k = 0; k < n; k++) {
    b[k] = mean - b[k];
    rhs_squares += b[k] * b[k];
  }
  int ierr;
  /* Serializes the threads of a sample loop (the calling thread holds the
   * library lock for the whole call). */
#pragma omp critical(cphys_fluid_petsc)
  {
    ierr = solve_pressure_serialized(f, b, p, &reason, info);
    /* Deferred failures: the lowest sample's first, as a serial loop keeps. */
    if (!ierr && reason <= 0 && (!f->failed || sample < f->failed_sample)) {
      f->failed = 1, f->failed_sample = sample;
      snprintf(f->failure, sizeof f->failure,
               "%s pressure solve %d of sample %td did not converge: %s after %d iterations "
               "(residual %g, atol %g, max_iterations %d)",
               what, solve, sample, info->reason_text, info->iterations, info->residual_norm, f->config.atol,
               f->config.max_iterations);
    }
  }
  if (ierr) return ierr;
  double *vx = v, *vy = v + n;
  for (ptrdiff_t j = 0; j < ny; j++) {
    const ptrdiff_t jm = j == 0 ? ny - 1 : j - 1;
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t im = i == 0 ? nx - 1 : i - 1, q = j * nx + i;
      /* A face on a wall is set to 0: v_n = 0 there (the projection stays symmetric). */
      if (fluid_wall_node(f, FLUID_XFACE, j, i))
        vx[q] = 0.0;
      else
        vx[q] -= (p[q] - p[j * nx + im]) / f->dx;
      if (fluid_wall_node(f, FLUID_YFACE, j, i))
        vy[q] = 0.0;
      else
        vy[q] -= (p[q] - p[jm * nx + i]) / f->dy;
    }
  }
  /* The projection is converged when the divergence left, not KSP's residual,
   * meets the tolerance (an option such as -ksp_type preonly stops without
   * solving): ||div v||_2 <= max(atol, rtol ||div v_in||_2), 10x for rounding. */
  if (reason > 0) {
    fluid_divergence(f, v, b);
    double squares = 0.0;
    for (ptrdiff_t k = 0; k < n; k++) squares += b[k] * b[k];
    const double left = sqrt(squares),
                 tolerance = 10.0 * fmax(f->config.atol, f->config.rtol * sqrt(rhs_squares));
    if (!(left <= tolerance)) {
      info->converged = 0;
      info->reason = (int)KSP_DIVERGED_BREAKDOWN;
      info->residual_norm = left;
      snprintf(info->reason_text, sizeof info->reason_text, "TRUE_RESIDUAL_ABOVE_TOLERANCE");
#pragma omp critical(cphys_fluid_petsc)
      {
        if (!f->failed || sample < f->failed_sample) {
          f->failed = 1, f->failed_sample = sample;
          snprintf(f->failure, sizeof f->failure,
                   "%s pressure solve %d of sample %td did not converge: the divergence left, %g, is above "
                   "the tolerance (atol %g) although the solver reported %s",
                   what, solve, sample, left, f->config.atol, KSPConvergedReasons[reason]);
        }
      }
    }
  }
  return 0;
}

void fluid_failures_begin(CPhysFluid f) {
  f->failed = 0, f->failed_sample = 0, f->failure[0] = '\0';
}

int fluid_failures_end(CPhysFluid f, int ierr) {
  if (ierr || !f->failed) return ierr;
  return CPhysSetError(CPHYS_ERROR_NOT_CONVERGED, "fluid_project", "%s", f->failure);
}

int fluid_project_batch_locked(CPhysFluid f, ptrdiff_t batch, double *staggered) {
  double *p = fluid_slot(f, FLUID_SLOT_PRESSURE);
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_FORWARD, batch, 1));
  for (ptrdiff_t s = 0; s < batch; s++) {
    memset(p, 0, (size_t)f->n * sizeof *p);
    CPhysCall(fluid_project_locked(f, staggered + s * 2 * f->n, p,
                                   fluid_stats_at(f, CPHYS_FLUID_PASS_FORWARD, s, 0), "projection", s, 0));
  }
  return 0;
}
