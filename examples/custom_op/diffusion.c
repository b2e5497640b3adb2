/* 1-D implicit diffusion (see diffusion.h). */
#include "diffusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Diffusion1D_private {
  Diffusion1DConfig config;
  double *upper; /* [n] Thomas elimination: the modified super-diagonal */
  double *pivot; /* [n] 1 / the modified diagonal */
};

int Diffusion1DCreate(const Diffusion1DConfig *config, Diffusion1D *diffusion) {
  CPhysCheck(config && diffusion, CPHYS_ERROR_ARGUMENT, "config and diffusion must not be NULL");
  *diffusion = NULL;
  CPhysCheck(config->n >= 1, CPHYS_ERROR_ARGUMENT, "n must be >= 1, got %td", config->n);
  CPhysCheck(isfinite(config->nu) && config->nu >= 0.0, CPHYS_ERROR_ARGUMENT,
             "nu must be finite and >= 0, got %g", config->nu);
  CPhysCheck(config->steps >= 1, CPHYS_ERROR_ARGUMENT, "steps must be >= 1, got %d", config->steps);
  Diffusion1D d = calloc(1, sizeof *d);
  CPhysCheck(d, CPHYS_ERROR_MEMORY, "cannot allocate the object");
  d->config = *config;
  d->upper = malloc((size_t)config->n * sizeof(double));
  d->pivot = malloc((size_t)config->n * sizeof(double));
  if (!d->upper || !d->pivot) {
    Diffusion1DDestroy(&d);
    return CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate %td doubles", 2 * config->n);
  }
  /* (I - nu L): diagonal 1 + 2 nu, off-diagonals -nu; diagonally dominant, so
   * elimination without pivoting is stable. */
  const double nu = config->nu;
  double upper = 0.0;
  for (ptrdiff_t i = 0; i < config->n; i++) {
    const double diagonal = 1.0 + 2.0 * nu + nu * upper;
    d->pivot[i] = 1.0 / diagonal;
    upper = -nu / diagonal;
    d->upper[i] = upper;
  }
  *diffusion = d;
  return CPHYS_SUCCESS;
}

int Diffusion1DDestroy(Diffusion1D *diffusion) {
  if (!diffusion || !*diffusion) return CPHYS_SUCCESS;
  free((*diffusion)->upper);
  free((*diffusion)->pivot);
  free(*diffusion);
  *diffusion = NULL;
  return CPHYS_SUCCESS;
}

/* One implicit step in place: v <- (I - nu L)^-1 v. */
static void implicit_step(const struct Diffusion1D_private *d, double *v) {
  const ptrdiff_t n = d->config.n;
  const double nu = d->config.nu;
  double previous = 0.0;
  for (ptrdiff_t i = 0; i < n; i++) previous = v[i] = (v[i] + nu * previous) * d->pivot[i];
  for (ptrdiff_t i = n - 2; i >= 0; i--) v[i] -= d->upper[i] * v[i + 1];
}

/* One explicit step: out = (I - nu L) v. */
static void explicit_step(const struct Diffusion1D_private *d, const double *v, double *out) {
  const ptrdiff_t n = d->config.n;
  const double nu = d->config.nu;
  for (ptrdiff_t i = 0; i < n; i++) {
    const double left = i > 0 ? v[i - 1] : 0.0, right = i + 1 < n ? v[i + 1] : 0.0;
    out[i] = (1.0 + 2.0 * nu) * v[i] - nu * (left + right);
  }
}

static int check_finite(const double *v, ptrdiff_t batch, ptrdiff_t n, const char *name, const char *func) {
  for (ptrdiff_t i = 0; i < batch * n; i++)
    if (!isfinite(v[i]))
      return CPhysSetError(CPHYS_ERROR_NONFINITE, func, "%s[%td][%td] = %g is not finite", name, i / n, i % n,
                           v[i]);
  return CPHYS_SUCCESS;
}

static int apply_inverse_operator(Diffusion1D d, ptrdiff_t batch, const double *in, double *out) {
  const ptrdiff_t n = d->config.n;
  if (out != in) memmove(out, in, (size_t)(batch * n) * sizeof(double));
  for (ptrdiff_t b = 0; b < batch; b++)
    for (int s = 0; s < d->config.steps; s++) implicit_step(d, out + b * n);
  return CPHYS_SUCCESS;
}

int Diffusion1DForward(Diffusion1D d, ptrdiff_t batch, const double *x, double *y) {
  CPhysCheck(d && x && y && batch >= 0, CPHYS_ERROR_ARGUMENT, "invalid arguments");
  CPhysCall(check_finite(x, batch, d->config.n, "x", __func__));
  return apply_inverse_operator(d, batch, x, y);
}

int Diffusion1DAdjoint(Diffusion1D d, ptrdiff_t batch, const double *g, double *dx) {
  CPhysCheck(d && g && dx && batch >= 0, CPHYS_ERROR_ARGUMENT, "invalid arguments");
  CPhysCall(check_finite(g, batch, d->config.n, "grad_y", __func__));
  return apply_inverse_operator(d, batch, g, dx);
}

int Diffusion1DPhysicalGradient(Diffusion1D d, ptrdiff_t batch, const double *x, const double *y,
                                const double *g, double y_step, double *dx, CPhysSolveInfo *info) {
  CPhysCheck(d && x && y && g && dx && batch >= 0, CPHYS_ERROR_ARGUMENT, "invalid arguments");
  CPhysCheck(isfinite(y_step), CPHYS_ERROR_ARGUMENT, "y_step must be finite, got %g", y_step);
  const ptrdiff_t n = d->config.n;
  CPhysCall(check_finite(g, batch, n, "grad_y", __func__));
  double *work = malloc(2 * (size_t)n * sizeof(double));
  CPhysCheck(work, CPHYS_ERROR_MEMORY, "cannot allocate %td doubles", 2 * n);
  for (ptrdiff_t b = 0; b < batch; b++) {
    double *a = work, *c = work + n;
    for (ptrdiff_t i = 0; i < n; i++) a[i] = y_step * g[b * n + i];
    for (int s = 0; s < d->config.steps; s++) {
      explicit_step(d, a, c);
      double *swap = a;
      a = c, c = swap;
    }
    memcpy(dx + b * n, a, (size_t)n * sizeof(double));
    if (info) {
      /* The residual of the step: ||P(x - dx) - (y - y_step g)||. */
      for (ptrdiff_t i = 0; i < n; i++) c[i] = x[b * n + i] - a[i];
      apply_inverse_operator(d, 1, c, c);
      double sum = 0.0;
      for (ptrdiff_t i = 0; i < n; i++) {
        const double r = c[i] - (y[b * n + i] - y_step * g[b * n + i]);
        sum += r * r;
      }
      memset(&info[b], 0, sizeof info[b]);
      info[b].iterations = d->config.steps;
      info[b].residual_norm = sqrt(sum);
      info[b].converged = isfinite(sum);
      snprintf(info[b].reason_text, sizeof info[b].reason_text, "%s", "EXACT_INVERSE");
    }
  }
  free(work);
  return CPHYS_SUCCESS;
}

static int problem_forward(void *context, const double *x, double *y) {
  return Diffusion1DForward((Diffusion1D)context, 1, x, y);
}

static int problem_adjoint(void *context, const double *x, const double *dy, double *dx) {
  (void)x; /* linear: J does not depend on x */
  return Diffusion1DAdjoint((Diffusion1D)context, 1, dy, dx);
}

int Diffusion1DGetLeastSquaresProblem(Diffusion1D d, CPhysLeastSquaresProblem *problem) {
  CPhysCheck(d && problem, CPHYS_ERROR_ARGUMENT, "diffusion and problem must not be NULL");
  *problem = (CPhysLeastSquaresProblem){0}; /* select_sample and later members: none */
  problem->n = problem->m = d->config.n;
  problem->forward = problem_forward;
  problem->adjoint = problem_adjoint;
  problem->context = d;
  return CPHYS_SUCCESS;
}
