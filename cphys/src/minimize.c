/* Least-squares minimization  1/2 ||P(x) - target||^2  on PETSc TAO (LMVM / BLMVM). */
#include "cphys/minimize.h"

#include <float.h>
#include <math.h>
#include <petsctao.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "finite.h"
#include "petsc_env.h"

#if defined(PETSC_USE_COMPLEX) || !defined(PETSC_USE_REAL_DOUBLE)
#error "cphys copies double arrays into PETSc vectors: PETSc must be built with real double scalars"
#endif

/* What the TAO callback needs; `error` carries a failed callback's cphys code
 * through TaoSolve, which only understands PetscErrorCode. */
typedef struct {
  CPhysForwardFn forward;
  CPhysAdjointFn adjoint;
  void *context;
  const double *target; /* [m] */
  ptrdiff_t n, m;
  double *residual;          /* [m] work: P(x), then P(x) - target */
  double roundoff_objective; /* 1/2 ||r||^2 with every |r_i| a few ulps of |target_i| */
  double *best_x;            /* [n] the point of the lowest objective evaluated so far */
  double best_f;             /* its objective; INFINITY before the first evaluation */
  int error;                 /* 0, or the cphys code that stopped the solve */
} LeastSquaresProblem;

/* A callback may fail with a bare code (the typedefs ask for no message).  The
 * code is returned as it is; when the thread's message did not change, it gets
 * one naming the callback instead of an empty or an earlier failure's message. */
static int callback_result(int code, const char *which, const char *message_before) {
  if (code && strcmp(CPhysGetLastErrorMessage(), message_before) == 0)
    return CPhysSetError(code, "CPhysLeastSquaresMinimize", "the %s callback failed with %s and no message",
                         which, CPhysErrorName(code));
  return code;
}

/* f = 1/2 ||P(x) - target||^2 and g = J(x)^T (P(x) - target).  x, g: [n]. */
static int evaluate(LeastSquaresProblem *p, const double *x, double *f, double *g) {
  char message_before[1024];
  snprintf(message_before, sizeof message_before, "%s", CPhysGetLastErrorMessage());
  CPhysCall(callback_result(p->forward(p->context, x, p->residual), "forward", message_before));
  double sum = 0.0;
  for (ptrdiff_t i = 0; i < p->m; i++) {
    p->residual[i] -= p->target[i];
    sum += p->residual[i] * p->residual[i];
  }
  *f = 0.5 * sum;
  CPhysCheck(isfinite(*f), CPHYS_ERROR_NONFINITE, "objective 1/2 ||P(x) - target||^2 is %g", *f);
  CPhysCall(callback_result(p->adjoint(p->context, x, p->residual, g), "adjoint", message_before));
  const ptrdiff_t bad = cphys_first_non_finite(g, p->n);
  CPhysCheck(bad < 0, CPHYS_ERROR_NONFINITE, "gradient entry %td is %g", bad, g[bad]);
  return 0;
}

static PetscErrorCode objective_and_gradient(Tao tao, Vec X, PetscReal *f, Vec G, void *ctx) {
  LeastSquaresProblem *p = ctx;
  const PetscScalar *x;
  PetscScalar *g;
  (void)tao;
  PetscFunctionBeginUser;
  PetscCall(VecGetArrayRead(X, &x));
  PetscCall(VecGetArray(G, &g));
  p->error = evaluate(p, x, f, g);
  if (!p->error && *f < p->best_f) {
    p->best_f = *f;
    memcpy(p->best_x, x, (size_t)p->n * sizeof(double));
  }
  PetscCall(VecRestoreArray(G, &g));
  PetscCall(VecRestoreArrayRead(X, &x));
  /* Any nonzero code unwinds TaoSolve; the cphys message is already recorded on this thread. */
  PetscFunctionReturn(p->error ? PETSC_ERR_USER : 0);
}

static int check_arguments(const CPhysLeastSquaresConfig *config, ptrdiff_t n, ptrdiff_t m,
                           CPhysForwardFn forward, CPhysAdjointFn adjoint, const double *target,
                           const double *x) {
  CPhysCheck(config != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(config->max_iterations > 0, CPHYS_ERROR_ARGUMENT, "max_iterations must be > 0, got %d",
             config->max_iterations);
  CPhysCheck(isfinite(config->gradient_atol) && config->gradient_atol >= 0.0, CPHYS_ERROR_ARGUMENT,
             "gradient_atol must be finite and >= 0, got %g", config->gradient_atol);
  CPhysCheck(isfinite(config->gradient_rtol) && config->gradient_rtol >= 0.0, CPHYS_ERROR_ARGUMENT,
             "gradient_rtol must be finite and >= 0, got %g", config->gradient_rtol);
  CPhysCheck(n >= 1 && n <= PETSC_MAX_INT, CPHYS_ERROR_ARGUMENT, "n must be in [1, %d], got %td",
             (int)PETSC_MAX_INT, n);
  CPhysCheck(m >= 1, CPHYS_ERROR_ARGUMENT, "m must be >= 1, got %td", m);
  CPhysCheck((size_t)m <= SIZE_MAX / sizeof(double), CPHYS_ERROR_MEMORY, "m = %td is too large", m);
  CPhysCheck(forward != NULL && adjoint != NULL, CPHYS_ERROR_ARGUMENT,
             "the forward and adjoint callbacks must not be NULL");
  CPhysCheck(target != NULL && x != NULL, CPHYS_ERROR_ARGUMENT, "target and x must not be NULL");
  const ptrdiff_t bad_target = cphys_first_non_finite(target, m), bad_x = cphys_first_non_finite(x, n);
  CPhysCheck(bad_target < 0, CPHYS_ERROR_NONFINITE, "target[%td] is %g", bad_target, target[bad_target]);
  CPhysCheck(bad_x < 0, CPHYS_ERROR_NONFINITE, "x[%td] (the start) is %g", bad_x, x[bad_x]);
  for (ptrdiff_t i = 0; i < n; i++) {
    double lo = config->lower ? config->lower[i] : -INFINITY;
    double hi = config->upper ? config->upper[i] : INFINITY;
    /* TAO's "no bound" is +-PETSC_INFINITY = +-DBL_MAX / 4 (also what an absent
     * bound is passed as): a finite bound beyond it, or a lower bound of +inf /
     * an upper bound of -inf, would make TAO's box empty and its answer lie
     * outside the caller's bounds. */
    const int lo_ok = isinf(lo) ? lo < 0.0 : fabs(lo) <= PETSC_INFINITY;
    const int hi_ok = isinf(hi) ? hi > 0.0 : fabs(hi) <= PETSC_INFINITY;
    CPhysCheck(!isnan(lo) && !isnan(hi) && lo <= hi && lo_ok && hi_ok, CPHYS_ERROR_ARGUMENT,
               "bounds of entry %td are [%g, %g] (need lower <= upper, finite bounds within +-%g, "
               "-inf only as a lower and +inf only as an upper bound)",
               i, lo, hi, (double)PETSC_INFINITY);
  }
  return 0;
}

/* Either bound may be absent; TAO wants both vectors, so an absent one is +-infinity. */
static int set_bounds_locked(Tao tao, const CPhysLeastSquaresConfig *config, Vec solution) {
  Vec lower, upper;
  PetscScalar *lo, *hi;
  CPhysPetscCall(VecDuplicate(solution, &lower));
  CPhysPetscCall(VecDuplicate(solution, &upper));
  CPhysPetscCall(VecGetArray(lower, &lo));
  CPhysPetscCall(VecGetArray(upper, &hi));
  PetscInt n;
  CPhysPetscCall(VecGetLocalSize(solution, &n));
  for (PetscInt i = 0; i < n; i++) {
    lo[i] = config->lower ? config->lower[i] : PETSC_NINFINITY;
    hi[i] = config->upper ? config->upper[i] : PETSC_INFINITY;
  }
  CPhysPetscCall(VecRestoreArray(lower, &lo));
  CPhysPetscCall(VecRestoreArray(upper, &hi));
  /* TAO keeps its own references to the bound vectors. */
  CPhysPetscCall(TaoSetVariableBounds(tao, lower, upper));
  CPhysPetscCall(VecDestroy(&lower));
  CPhysPetscCall(VecDestroy(&upper));
  return 0;
}

static void fill_info(Tao tao, CPhysSolveInfo *info) {
  PetscInt iterations = 0;
  PetscReal gradient_norm = 0.0;
  TaoConvergedReason reason = TAO_CONTINUE_ITERATING;
  TaoGetSolutionStatus(tao, &iterations, NULL, &gradient_norm, NULL, NULL, &reason);
  info->iterations = (int)iterations;
  info->residual_norm = gradient_norm;
  info->converged = reason > 0;
  info->reason = (int)reason;
  const char *name =
      (reason >= TAO_DIVERGED_USER && reason <= TAO_CONVERGED_USER) ? TaoConvergedReasons[reason] : NULL;
  snprintf(info->reason_text, sizeof info->reason_text, "%s", name && name[0] ? name : "UNKNOWN");
}

/* Configures and runs an already created Tao; the caller destroys it either way. */
static int solve_locked(Tao tao, Vec solution, const CPhysLeastSquaresConfig *config,
                        LeastSquaresProblem *problem, double *x, CPhysSolveInfo *info) {
  const int bounded = config->lower != NULL || config->upper != NULL;
  PetscScalar *start;
  CPhysPetscCall(VecGetArray(solution, &start));
  memcpy(start, x, (size_t)problem->n * sizeof(double));
  CPhysPetscCall(VecRestoreArray(solution, &start));
  CPhysPetscCall(TaoSetType(tao, bounded ? TAOBLMVM : TAOLMVM));
  CPhysPetscCall(TaoSetSolution(tao, solution));
  CPhysPetscCall(TaoSetObjectiveAndGradient(tao, NULL, objective_and_gradient, problem));
  if (bounded) CPhysCall(set_bounds_locked(tao, config, solution));
  CPhysPetscCall(TaoSetMaximumIterations(tao, config->max_iterations));
  /* The iteration count is the budget; line-search evaluations must not end the solve first. */
  CPhysPetscCall(TaoSetMaximumFunctionEvaluations(tao, PETSC_MAX_INT));
  /* 0 switches a test off (it then fires only on an exactly zero gradient). */
  CPhysPetscCall(TaoSetTolerances(tao, config->gradient_atol, config->gradient_rtol, 0.0));
  /* An objective at the rounding level of the target is a solution: stop there
   * (TAO_CONVERGED_MINF).  Iterating on, the More-Thuente line search compares
   * function values that are pure rounding noise and fails with a PETSc error
   * ("dx * (stp-stx) >= 0.0") instead of a convergence reason. */
  CPhysPetscCall(TaoSetFunctionLowerBound(tao, problem->roundoff_objective));
  if (config->options_prefix) CPhysPetscCall(TaoSetOptionsPrefix(tao, config->options_prefix));
  CPhysPetscCall(TaoSetFromOptions(tao));

  PetscErrorCode perr = TaoSolve(tao);
  if (problem->error) return problem->error; /* message set by the callback or by evaluate() */
  if (perr == PETSC_ERR_ARG_OUTOFRANGE && problem->best_f < INFINITY) {
    /* The More-Thuente line search (Tao_mcstep) raises its consistency checks,
     * e.g. "dx * (stp-stx) >= 0.0", as errors when the objective changes along
     * the search direction only at the rounding level (a flat region, far from
     * any feature of P).  That is a line-search failure: end the solve as TAO
     * ends one, at the best point evaluated, not converged. */
    memcpy(x, problem->best_x, (size_t)problem->n * sizeof(double));
    if (info) {
      fill_info(tao, info);
      info->converged = 0;
      info->reason = (int)TAO_DIVERGED_LS_FAILURE;
      snprintf(info->reason_text, sizeof info->reason_text, "%s",
               TaoConvergedReasons[TAO_DIVERGED_LS_FAILURE]);
    }
    return 0;
  }
  if (perr) return CPhysPetscError(perr, __func__, "TaoSolve(tao)");

  TaoConvergedReason reason;
  CPhysPetscCall(TaoGetConvergedReason(tao, &reason));
  CPhysCheck(reason != TAO_DIVERGED_NAN, CPHYS_ERROR_NONFINITE, "TAO stopped on a NaN or Inf");
  const PetscScalar *solved;
  CPhysPetscCall(VecGetArrayRead(solution, &solved));
  memcpy(x, solved, (size_t)problem->n * sizeof(double));
  CPhysPetscCall(VecRestoreArrayRead(solution, &solved));
  if (info) fill_info(tao, info);
  /* A bounded problem's answer is checked against its bounds before it is called
   * converged: an options-selected unbounded method (-tao_type lmvm) ignores them. */
  if (bounded && info) {
    for (ptrdiff_t k = 0; k < problem->n; k++) {
      const double lower = config->lower ? config->lower[k] : -INFINITY;
      const double upper = config->upper ? config->upper[k] : INFINITY;
      if (!(x[k] >= lower && x[k] <= upper)) {
        info->converged = 0;
        info->reason = (int)TAO_DIVERGED_USER;
        snprintf(info->reason_text, sizeof info->reason_text, "OUTSIDE_BOUNDS");
        break;
      }
    }
  }
  return 0;
}

/* A Tao is created and destroyed per call: its setup (a few vectors and the
 * LMVM matrix) is cheap next to the iterations, and no state leaks between
 * unrelated problems of different sizes. */
static int minimize_locked(const CPhysLeastSquaresConfig *config, LeastSquaresProblem *problem, double *x,
                           CPhysSolveInfo *info) {
  CPhysCall(CPhysPetscEnsureInitializedLocked());
  Vec solution = NULL;
  Tao tao = NULL;
  CPhysPetscCall(VecCreateSeq(PETSC_COMM_SELF, (PetscInt)problem->n, &solution));
  PetscErrorCode perr = TaoCreate(PETSC_COMM_SELF, &tao);
  int ierr = perr ? CPhysPetscError(perr, __func__, "TaoCreate")
                  : solve_locked(tao, solution, config, problem, x, info);
  /* Clean-up failures are reported only when the solve itself succeeded. */
  perr = TaoDestroy(&tao);
  if (!ierr && perr) ierr = CPhysPetscError(perr, __func__, "TaoDestroy(&tao)");
  perr = VecDestroy(&solution);
  if (!ierr && perr) ierr = CPhysPetscError(perr, __func__, "VecDestroy(&solution)");
  return ierr;
}

int CPhysLeastSquaresMinimize(const CPhysLeastSquaresConfig *config, ptrdiff_t n, ptrdiff_t m,
                              CPhysForwardFn forward, CPhysAdjointFn adjoint, void *context,
                              const double *target, double *x, CPhysSolveInfo *info) {
  CPhysCall(check_arguments(config, n, m, forward, adjoint, target, x));
  LeastSquaresProblem problem = {forward, adjoint, context, target, n, m, NULL, 0.0, NULL, INFINITY, 0};
  double target_norm_squared = 0.0;
  for (ptrdiff_t i = 0; i < m; i++) target_norm_squared += target[i] * target[i];
  problem.roundoff_objective = 0.5 * (4.0 * DBL_EPSILON) * (4.0 * DBL_EPSILON) * target_norm_squared;
  problem.residual = malloc((size_t)m * sizeof(double));
  problem.best_x = malloc((size_t)n * sizeof(double));
  if (!problem.residual || !problem.best_x) {
    free(problem.residual);
    free(problem.best_x);
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate %td residual and %td point entries",
                         m, n);
  }
  CPhysLibraryLock();
  int ierr = minimize_locked(config, &problem, x, info);
  CPhysLibraryUnlock();
  free(problem.residual);
  free(problem.best_x);
  return ierr;
}
