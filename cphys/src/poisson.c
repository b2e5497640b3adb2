/* Poisson object: 5-point Laplacian, PETSc KSP solves, stencil application. */
#include "cphys/poisson.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "finite.h"
#include "petsc_env.h"
#include "poisson_internal.h"
#include "threads.h"

struct CPhysPoisson_private {
  CPhysPoissonConfig config;
  char prefix[128];
  ptrdiff_t size;      /* ny * nx */
  Mat minus_laplacian; /* SPD: -L */
  KSP ksp;
  Vec rhs, solution; /* work vectors; the solution is copied out per sample */
  Vec residual;      /* work vector of the true-residual check */
};

CPhysPoissonConfig CPhysPoissonDefaultConfig(void) {
  CPhysPoissonConfig config = {{64, 64}, {1.0, 1.0}, 1e-10, 1e-50, 10000, "physgrad_poisson_"};
  return config;
}

int CPhysPoissonCheckConfig(const CPhysPoissonConfig *c) {
  CPhysCheck(c != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(c->shape[0] >= 1 && c->shape[1] >= 1, CPHYS_ERROR_ARGUMENT,
             "shape must be at least [1, 1], got [%td, %td]", c->shape[0], c->shape[1]);
  CPhysCheck(c->shape[0] <= PETSC_MAX_INT / c->shape[1], CPHYS_ERROR_MEMORY,
             "grid [%td, %td] has more nodes than PETSc can index", c->shape[0], c->shape[1]);
  for (int axis = 0; axis < 2; axis++)
    CPhysCheck(isfinite(c->spacing[axis]) && c->spacing[axis] > 0.0, CPHYS_ERROR_ARGUMENT,
               "spacing[%d] must be positive and finite, got %g", axis, c->spacing[axis]);
  /* The stencil weights 1/h^2 must neither overflow (PETSc's ICC shift loop
   * never ends on an infinite matrix) nor underflow to 0 (a singular matrix). */
  const double wy = 1.0 / (c->spacing[0] * c->spacing[0]), wx = 1.0 / (c->spacing[1] * c->spacing[1]);
  CPhysCheck(isnormal(wy) && isnormal(wx) && isfinite(2.0 * (wx + wy)), CPHYS_ERROR_ARGUMENT,
             "spacing [%g, %g] is out of range: 1/spacing^2 must be a finite, nonzero double", c->spacing[0],
             c->spacing[1]);
  CPhysCheck(isfinite(c->rtol) && c->rtol > 0.0 && c->rtol < 1.0, CPHYS_ERROR_ARGUMENT,
             "rtol must be in (0, 1), got %g", c->rtol);
  CPhysCheck(isfinite(c->atol) && c->atol >= 0.0, CPHYS_ERROR_ARGUMENT, "atol must be >= 0, got %g", c->atol);
  CPhysCheck(c->max_iterations >= 1, CPHYS_ERROR_ARGUMENT, "max_iterations must be >= 1, got %d",
             c->max_iterations);
  CPhysCheck(c->options_prefix == NULL || strlen(c->options_prefix) < 127, CPHYS_ERROR_ARGUMENT,
             "options_prefix is longer than 126 characters");
  return 0;
}

static int assemble_locked(CPhysPoisson p) {
  const PetscInt ny = (PetscInt)p->config.shape[0], nx = (PetscInt)p->config.shape[1];
  const double wy = 1.0 / (p->config.spacing[0] * p->config.spacing[0]);
  const double wx = 1.0 / (p->config.spacing[1] * p->config.spacing[1]);
  CPhysPetscCall(MatCreateSeqAIJ(PETSC_COMM_SELF, ny * nx, ny * nx, 5, NULL, &p->minus_laplacian));
  for (PetscInt j = 0; j < ny; j++) {
    for (PetscInt i = 0; i < nx; i++) {
      PetscInt row = j * nx + i, columns[5], count = 0;
      PetscScalar values[5];
      columns[count] = row, values[count++] = 2.0 * (wx + wy);
      if (i > 0) columns[count] = row - 1, values[count++] = -wx;
      if (i < nx - 1) columns[count] = row + 1, values[count++] = -wx;
      if (j > 0) columns[count] = row - nx, values[count++] = -wy;
      if (j < ny - 1) columns[count] = row + nx, values[count++] = -wy;
      CPhysPetscCall(MatSetValues(p->minus_laplacian, 1, &row, count, columns, values, INSERT_VALUES));
    }
  }
  CPhysPetscCall(MatAssemblyBegin(p->minus_laplacian, MAT_FINAL_ASSEMBLY));
  CPhysPetscCall(MatAssemblyEnd(p->minus_laplacian, MAT_FINAL_ASSEMBLY));
  CPhysPetscCall(MatSetOption(p->minus_laplacian, MAT_SPD, PETSC_TRUE));
  return 0;
}

/* Up to this many nodes the default preconditioner is a sparse Cholesky
 * factorization; beyond, GAMG (see create_solver_locked). */
enum { CHOLESKY_MAX_NODES = 512 * 512 };

static int create_solver_locked(CPhysPoisson p) {
  PC pc;
  CPhysPetscCall(KSPCreate(PETSC_COMM_SELF, &p->ksp));
  CPhysPetscCall(KSPSetOperators(p->ksp, p->minus_laplacian, p->minus_laplacian));
  CPhysPetscCall(KSPSetType(p->ksp, KSPCG));
  CPhysPetscCall(KSPGetPC(p->ksp, &pc));
  /* The default preconditioner, chosen by measurement (benchmarks/RESULTS.md):
   * PETSc's own sparse Cholesky factorization of the matrix, made once here.
   * CG then converges in one iteration to rounding level; at the paper's 80 x 60
   * a batch of 64 solves took 22 ms instead of 445 ms with ICC(0) (87
   * iterations at rtol 1e-10), for ~8 ms of setup.  The factor's fill and setup
   * time grow faster than the grid (512 x 512: ~11 s setup, 0.15 s per solve,
   * 200 MB), so larger grids get algebraic multigrid, whose iteration count
   * does not grow with the grid (ICC(0)'s does: 559 iterations at 512 x 512).
   * Any -<prefix>pc_type overrides this. */
  CPhysPetscCall(PCSetType(pc, p->size <= CHOLESKY_MAX_NODES ? PCCHOLESKY : PCGAMG));
  CPhysPetscCall(
      KSPSetTolerances(p->ksp, p->config.rtol, p->config.atol, PETSC_DEFAULT, p->config.max_iterations));
  if (p->prefix[0]) CPhysPetscCall(KSPSetOptionsPrefix(p->ksp, p->prefix));
  CPhysPetscCall(KSPSetFromOptions(p->ksp));
  /* An option may tighten the configuration's rtol/atol, never loosen them:
   * -<prefix>ksp_rtol 0.5 must not turn a call's rtol into a 50% error.  (The
   * iteration limit stays the option's: too few iterations is reported as
   * non-convergence, not returned as a solution.) */
  CPhysCall(cphys_ksp_keep_tolerances(p->ksp, p->config.rtol, p->config.atol));
  /* Geometric multigrid needs a grid hierarchy, which this object has no DM to
   * give; PETSc would crash in KSPSetUp.  GAMG builds its own hierarchy. */
  PetscBool multigrid = PETSC_FALSE;
  CPhysPetscCall(PetscObjectTypeCompare((PetscObject)pc, PCMG, &multigrid));
  if (multigrid) {
    PetscInt levels = 1;
    CPhysPetscCall(PCMGGetLevels(pc, &levels));
    CPhysCheck(levels <= 1, CPHYS_ERROR_UNSUPPORTED,
               "-%spc_type mg needs a grid hierarchy this single-process solver does not have; "
               "use -%spc_type gamg (algebraic multigrid) instead",
               p->prefix, p->prefix);
  }
  CPhysPetscCall(KSPSetUp(p->ksp));
  CPhysPetscCall(MatCreateVecs(p->minus_laplacian, &p->solution, &p->rhs));
  CPhysPetscCall(VecDuplicate(p->rhs, &p->residual));
  return 0;
}

static int create_locked(CPhysPoisson p) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  CPhysCall(assemble_locked(p));
  CPhysCall(create_solver_locked(p));
  return 0;
}

int CPhysPoissonCreate(const CPhysPoissonConfig *config, CPhysPoisson *poisson) {
  CPhysCheck(poisson != NULL, CPHYS_ERROR_ARGUMENT, "poisson (output handle) must not be NULL");
  *poisson = NULL;
  CPhysCall(CPhysPoissonCheckConfig(config));
  CPhysPoisson p = calloc(1, sizeof *p);
  CPhysCheck(p != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the Poisson object");
  p->config = *config;
  if (config->options_prefix) strcpy(p->prefix, config->options_prefix);
  p->config.options_prefix = p->prefix;
  p->size = config->shape[0] * config->shape[1];
  CPhysLibraryLock();
  int ierr = create_locked(p);
  CPhysLibraryUnlock();
  if (ierr) {
    CPhysPoissonDestroy(&p);
    return ierr;
  }
  *poisson = p;
  return 0;
}

int CPhysPoissonDestroy(CPhysPoisson *poisson) {
  if (!poisson || !*poisson) return 0;
  CPhysPoisson p = *poisson;
  CPhysLibraryLock();
  /* Destroy must not fail half-way: PETSc's destroy errors are ignored here. */
  if (p->ksp) KSPDestroy(&p->ksp);
  if (p->minus_laplacian) MatDestroy(&p->minus_laplacian);
  if (p->rhs) VecDestroy(&p->rhs);
  if (p->solution) VecDestroy(&p->solution);
  if (p->residual) VecDestroy(&p->residual);
  CPhysLibraryUnlock();
  free(p);
  *poisson = NULL;
  return 0;
}

static int check_batch(CPhysPoisson p, ptrdiff_t batch, const void *in, const void *out) {
  CPhysCheck(p != NULL, CPHYS_ERROR_ARGUMENT, "the Poisson object is NULL");
  CPhysCheck(batch >= 0, CPHYS_ERROR_ARGUMENT, "batch must be >= 0, got %td", batch);
  CPhysCheck(batch == 0 || (in != NULL && out != NULL), CPHYS_ERROR_ARGUMENT,
             "input and output arrays must not be NULL");
  return 0;
}

/* Solves -L y = -x, i.e. y = L^-1 x, sample by sample. */
static int solve_locked(CPhysPoisson p, ptrdiff_t batch, const double *x, double *y, CPhysSolveInfo *info,
                        ptrdiff_t *first_failure, CPhysSolveInfo *failure) {
  for (ptrdiff_t s = 0; s < batch; s++) {
    const double *xs = x + s * p->size;
    double *ys = y + s * p->size;
    PetscScalar *b;
    KSPConvergedReason reason;
    CPhysSolveInfo sample_info;
    /* The problem is linear: solve for x / 2^e with max |x / 2^e| in [1, 2), so
     * that CG's dot products neither overflow (|x| ~ 1e300) nor underflow and
     * meet the absolute tolerance at 0 (|x| ~ 1e-300).  Scaling by a power of 2
     * is exact: other inputs get bitwise the same result. */
    double largest = 0.0;
    for (ptrdiff_t k = 0; k < p->size; k++) largest = fmax(largest, fabs(xs[k]));
    const int exponent = isfinite(largest) && largest > 0.0 ? ilogb(largest) : 0;
    CPhysPetscCall(VecGetArrayWrite(p->rhs, &b));
    for (ptrdiff_t k = 0; k < p->size; k++) b[k] = -ldexp(xs[k], -exponent);
    CPhysPetscCall(VecRestoreArrayWrite(p->rhs, &b));
    CPhysPetscCall(VecPlaceArray(p->solution, ys));
    PetscErrorCode perr = KSPSolve(p->ksp, p->rhs, p->solution);
    /* The true residual |b - A y| (KSP's own may be preconditioned, or an option
     * such as -ksp_type preonly may stop without solving): a solve is converged
     * only when it meets max(rtol |b|, atol), with a margin of 10 for rounding. */
    PetscReal true_residual = 0.0, rhs_norm = 0.0;
    if (!perr) perr = MatMult(p->minus_laplacian, p->solution, p->residual);
    if (!perr) perr = VecAYPX(p->residual, -1.0, p->rhs);
    if (!perr) perr = VecNorm(p->residual, NORM_2, &true_residual);
    if (!perr) perr = VecNorm(p->rhs, NORM_2, &rhs_norm);
    VecResetArray(p->solution);
    if (perr) return CPhysPetscError(perr, __func__, "KSPSolve");
    int overflow = 0;
    for (ptrdiff_t k = 0; exponent != 0 && k < p->size; k++) {
      ys[k] = ldexp(ys[k], exponent);
      overflow = overflow || !isfinite(ys[k]);
    }
    CPhysPetscCall(KSPGetConvergedReason(p->ksp, &reason));
    /* A solution beyond the double range is not a solution. */
    if (overflow && reason > 0) reason = KSP_DIVERGED_NANORINF;
    CPhysKSPDescribe(p->ksp, reason, &sample_info);
    const double tolerance = 10.0 * fmax(p->config.rtol * (double)rhs_norm, p->config.atol);
    if (reason > 0 && !((double)true_residual <= tolerance)) {
      sample_info.converged = 0;
      sample_info.reason = (int)KSP_DIVERGED_BREAKDOWN;
      /* the true residual is what failed: report it (KSP's own said converged) */
      snprintf(sample_info.reason_text, sizeof sample_info.reason_text, "TRUE_RESIDUAL_ABOVE_TOLERANCE");
      sample_info.residual_norm = (double)true_residual;
      reason = KSP_DIVERGED_BREAKDOWN;
    }
    sample_info.residual_norm = ldexp(sample_info.residual_norm, exponent);
    if (info) info[s] = sample_info;
    if (reason <= 0 && *first_failure < 0) *first_failure = s, *failure = sample_info;
  }
  return 0;
}

static int solve(CPhysPoisson p, ptrdiff_t batch, const double *x, double *y, CPhysSolveInfo *info,
                 const char *what) {
  CPhysCall(check_batch(p, batch, x, y));
  ptrdiff_t first_failure = -1;
  CPhysSolveInfo failure;
  CPhysLibraryLock();
  int ierr = solve_locked(p, batch, x, y, info, &first_failure, &failure);
  CPhysLibraryUnlock();
  if (ierr) return ierr;
  CPhysCheck(first_failure < 0, CPHYS_ERROR_NOT_CONVERGED,
             "%s of sample %td did not converge: %s after %d iterations (residual %g)", what, first_failure,
             failure.reason_text, failure.iterations, failure.residual_norm);
  return 0;
}

int CPhysPoissonSolve(CPhysPoisson poisson, ptrdiff_t batch, const double *x, double *y,
                      CPhysSolveInfo *info) {
  return solve(poisson, batch, x, y, info, "Poisson solve");
}

int CPhysPoissonAdjoint(CPhysPoisson poisson, ptrdiff_t batch, const double *dy, double *dx,
                        CPhysSolveInfo *info) {
  return solve(poisson, batch, dy, dx, info, "Poisson adjoint solve");
}

/* x = scale * L y with the zero boundary; the same stencil as the matrix. */
/* The 5-point stencil of one node; absent neighbours (outside the grid) are 0. */
static inline double stencil(double wx, double wy, double left, double right, double down, double up,
                             double centre) {
  return wx * (left + right - 2.0 * centre) + wy * (down + up - 2.0 * centre);
}

/* x = scale L y for one sample.  Interior rows run a branch-free inner loop
 * (vectorized); the same expression everywhere, so every node is computed
 * exactly as the generic loop computes it. */
static void laplacian_sample(ptrdiff_t ny, ptrdiff_t nx, double wx, double wy, const double *ys, double *xs) {
  for (ptrdiff_t j = 0; j < ny; j++) {
    const double *c = ys + j * nx;
    double *o = xs + j * nx;
    if (j == 0 || j == ny - 1 || nx < 3) {
      for (ptrdiff_t i = 0; i < nx; i++) {
        const double left = i > 0 ? c[i - 1] : 0.0, right = i < nx - 1 ? c[i + 1] : 0.0;
        const double down = j > 0 ? c[i - nx] : 0.0, up = j < ny - 1 ? c[i + nx] : 0.0;
        o[i] = stencil(wx, wy, left, right, down, up, c[i]);
      }
      continue;
    }
    const double *d = c - nx, *u = c + nx;
    o[0] = stencil(wx, wy, 0.0, c[1], d[0], u[0], c[0]);
    for (ptrdiff_t i = 1; i < nx - 1; i++) o[i] = stencil(wx, wy, c[i - 1], c[i + 1], d[i], u[i], c[i]);
    o[nx - 1] = stencil(wx, wy, c[nx - 2], 0.0, d[nx - 1], u[nx - 1], c[nx - 1]);
  }
}

/* x = scale L y over the batch; with `check`, returns the flat index of the
 * first non-finite y (PTRDIFF_MAX: none) in *bad_input and of the first
 * non-finite x in *bad_output (inputs checked before their sample is used). */
static void apply_laplacian(const CPhysPoisson p, ptrdiff_t batch, double scale, const double *y, double *x,
                            int check, ptrdiff_t *bad_input, ptrdiff_t *bad_output) {
  const ptrdiff_t ny = p->config.shape[0], nx = p->config.shape[1], size = p->size;
  const double wy = scale / (p->config.spacing[0] * p->config.spacing[0]);
  const double wx = scale / (p->config.spacing[1] * p->config.spacing[1]);
  ptrdiff_t first_in = PTRDIFF_MAX, first_out = PTRDIFF_MAX;
  /* ~1 ns per node: only large batches or grids are worth a second thread
   * (none in a forked child: cphys_loop_threads). */
  const int threads = cphys_loop_threads(batch, 1e-9 * (double)size);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static) \
    reduction(min                                                               \
              : first_in, first_out)
  for (ptrdiff_t s = 0; s < batch; s++) {
    const double *ys = y + s * size;
    double *xs = x + s * size;
    if (check) {
      const ptrdiff_t bad = cphys_first_non_finite(ys, size);
      if (bad >= 0) {
        if (s * size + bad < first_in) first_in = s * size + bad;
        continue;
      }
    }
    laplacian_sample(ny, nx, wx, wy, ys, xs);
    if (check) {
      const ptrdiff_t bad = cphys_first_non_finite(xs, size);
      if (bad >= 0 && s * size + bad < first_out) first_out = s * size + bad;
    }
  }
  if (bad_input) *bad_input = first_in;
  if (bad_output) *bad_output = first_out;
}

int CPhysPoissonApplyLaplacian(CPhysPoisson poisson, ptrdiff_t batch, const double *y, double *x) {
  CPhysCall(check_batch(poisson, batch, y, x));
  apply_laplacian(poisson, batch, 1.0, y, x, 0, NULL, NULL);
  return 0;
}

int CPhysPoissonPhysicalGradient(CPhysPoisson poisson, ptrdiff_t batch, double y_step, const double *g,
                                 double *dx) {
  CPhysCall(check_batch(poisson, batch, g, dx));
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  ptrdiff_t bad_g, bad_dx;
  apply_laplacian(poisson, batch, y_step, g, dx, 1, &bad_g, &bad_dx);
  /* The lowest sample's failure, whichever kind (as a serial loop would stop). */
  const ptrdiff_t size = poisson->size;
  if (bad_g != PTRDIFF_MAX && (bad_dx == PTRDIFF_MAX || bad_g / size <= bad_dx / size))
    return CPhysSetError(CPHYS_ERROR_NONFINITE, __func__, "g[%td] is not finite (%g)", bad_g, g[bad_g]);
  CPhysCheck(bad_dx == PTRDIFF_MAX, CPHYS_ERROR_NONFINITE,
             "the physical gradient overflows at dx[%td] (y_step %g times the stencil of g)", bad_dx, y_step);
  return 0;
}

int CPhysPoissonGetConfig(CPhysPoisson poisson, CPhysPoissonConfig *config) {
  CPhysCheck(poisson != NULL && config != NULL, CPHYS_ERROR_ARGUMENT, "arguments must not be NULL");
  *config = poisson->config;
  return 0;
}

static int forward_one(void *context, const double *x, double *y) {
  return CPhysPoissonSolve((CPhysPoisson)context, 1, x, y, NULL);
}

static int adjoint_one(void *context, const double *x, const double *dy, double *dx) {
  (void)x; /* the map is linear */
  return CPhysPoissonAdjoint((CPhysPoisson)context, 1, dy, dx, NULL);
}

int CPhysPoissonGetLeastSquaresProblem(CPhysPoisson poisson, CPhysLeastSquaresProblem *problem) {
  CPhysCheck(poisson != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "arguments must not be NULL");
  *problem = (CPhysLeastSquaresProblem){0}; /* select_sample and later members: none */
  problem->n = problem->m = poisson->size;
  problem->forward = forward_one;
  problem->adjoint = adjoint_one;
  problem->context = poisson;
  return 0;
}

/* ---- the physical-gradient contract (cphys/physical_gradient.h) ---- */

/* P^-1 is the stencil: dx = laplace(y_step g), direct; x and y are not needed. */
static int poisson_physical_gradient(void *context, ptrdiff_t batch, const double *x, const double *y,
                                     const double *g, double y_step, double *dx, CPhysSolveInfo *info) {
  (void)x, (void)y;
  CPhysCall(CPhysPoissonPhysicalGradient(context, batch, y_step, g, dx));
  CPhysSetDirectInfo(info, batch, "DIRECT");
  return 0;
}

int CPhysPoissonGetInverseProblem(CPhysPoisson poisson, CPhysInverseProblem *problem) {
  CPhysCheck(poisson != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT,
             "poisson and problem must not be NULL");
  *problem = (CPhysInverseProblem){poisson->size, poisson->size, poisson_physical_gradient, poisson};
  return 0;
}
