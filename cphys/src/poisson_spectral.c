/* Spectral Poisson object: configuration, eigenvalues, FFTW plans, the direct
 * solve (transforms, tridiagonal elimination or eigenvalue division), the
 * least-squares problem of the `lbfgs` mode.  The stencil: poisson_stencil.c. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "finite.h"
#include "petsc_env.h"
#include "poisson_spectral_internal.h"
#include "threads.h"

CPhysPoissonSpectralConfig CPhysPoissonSpectralDefaultConfig(void) {
  CPhysPoissonSpectralConfig config = {
      2,
      {64, 64, 0},
      {1.0, 1.0, 0.0},
      {CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET, CPHYS_BOUNDARY_DIRICHLET}};
  return config;
}

int CPhysPoissonSpectralCheckConfig(const CPhysPoissonSpectralConfig *c) {
  CPhysCheck(c != NULL, CPHYS_ERROR_ARGUMENT, "config must not be NULL");
  CPhysCheck(c->dims == 2 || c->dims == 3, CPHYS_ERROR_ARGUMENT, "dims must be 2 or 3, got %d", c->dims);
  ptrdiff_t nodes = 1;
  double diagonal = 0.0;
  for (int a = 0; a < c->dims; a++) {
    CPhysCheck(c->shape[a] >= 1, CPHYS_ERROR_ARGUMENT, "shape[%d] must be >= 1, got %td", a, c->shape[a]);
    /* FFTW's plan interface counts in int. */
    CPhysCheck(c->shape[a] <= INT_MAX / 2 - 1 && nodes <= INT_MAX / c->shape[a], CPHYS_ERROR_ARGUMENT,
               "a grid of more than %d nodes exceeds FFTW's int sizes", INT_MAX);
    nodes *= c->shape[a];
    CPhysCheck(
        c->boundary[a] >= CPHYS_BOUNDARY_DIRICHLET && c->boundary[a] <= CPHYS_BOUNDARY_NEUMANN_DIRICHLET,
        CPHYS_ERROR_ARGUMENT, "boundary[%d] is not a CPhysBoundary (%d)", a, (int)c->boundary[a]);
    CPhysCheck(isfinite(c->spacing[a]) && c->spacing[a] > 0.0, CPHYS_ERROR_ARGUMENT,
               "spacing[%d] must be positive and finite, got %g", a, c->spacing[a]);
    diagonal += 4.0 / (c->spacing[a] * c->spacing[a]);
  }
  /* As CPhysPoisson: 1/h^2 must neither overflow nor underflow to 0 (a zero operator). */
  int in_range = isfinite(diagonal);
  for (int a = 0; a < c->dims; a++) in_range = in_range && isnormal(1.0 / (c->spacing[a] * c->spacing[a]));
  if (!in_range && c->dims == 2)
    return CPhysSetError(CPHYS_ERROR_ARGUMENT, __func__,
                         "spacing [%g, %g] is out of range: 1/spacing^2 must be a finite, nonzero double",
                         c->spacing[0], c->spacing[1]);
  CPhysCheck(in_range, CPHYS_ERROR_ARGUMENT,
             "spacing [%g, %g, %g] is out of range: 1/spacing^2 must be a finite, nonzero double",
             c->spacing[0], c->spacing[1], c->spacing[2]);
  return 0;
}

/* Per axis: 4/h^2 sin^2(theta_p) for each mode in FFTW's output order (a mixed
 * axis: the order of CPhysPoissonSpectralMixedMode), and the normalization of
 * the transform pair (forward then backward = N times identity; 1 for the
 * orthonormal dense transform of a mixed axis). */
static double axis_eigenvalues(ptrdiff_t n, double h, CPhysBoundary boundary, double *eigen) {
  const double pi = acos(-1.0), weight = 4.0 / (h * h);
  for (ptrdiff_t p = 0; p < n; p++) {
    double theta;
    if (boundary == CPHYS_BOUNDARY_DIRICHLET)
      theta = pi * (double)(p + 1) / (2.0 * (double)(n + 1));
    else if (boundary == CPHYS_BOUNDARY_NEUMANN)
      theta = pi * (double)p / (2.0 * (double)n);
    else if (boundary == CPHYS_BOUNDARY_PERIODIC) /* bin p holds frequency p or n - p: the same sin^2 */
      theta = pi * (double)p / (double)n;
    else
      theta = CPhysPoissonSpectralMixedTheta(n, p) / 2.0;
    const double s = sin(theta);
    eigen[p] = weight * s * s;
  }
  if (boundary == CPHYS_BOUNDARY_DIRICHLET) return 2.0 * (double)(n + 1);
  if (boundary == CPHYS_BOUNDARY_NEUMANN) return 2.0 * (double)n;
  if (boundary == CPHYS_BOUNDARY_PERIODIC) return (double)n;
  return 1.0;
}

/* Eigenvalues of every axis, and the elimination's pivots:  along the first
 * axis mode q solves  o y[j-1] + d_q y[j] + o y[j+1] = r[j]  with o = 1/h0^2 and
 * d_q = -2 o - inner_eigen[q] (plus o at an end whose side is Neumann: the
 * ghost is the node itself); the pivots are p_0 = d_q, p_j = d_q - o^2 / p_{j-1}
 * (all negative: with a Dirichlet side -L is positive definite), stored as 1 / p_j. */
static int fill_tables(CPhysPoissonSpectral p) {
  const CPhysPoissonSpectralConfig *c = &p->config;
  double *eigen[3] = {NULL, NULL, NULL};
  double normalization[3] = {1.0, 1.0, 1.0};
  int ierr = 0;
  for (int a = 0; a < c->dims && !ierr; a++) {
    eigen[a] = malloc((size_t)c->shape[a] * sizeof(double));
    if (!eigen[a])
      ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate eigenvalues");
    else
      normalization[a] = axis_eigenvalues(c->shape[a], c->spacing[a], c->boundary[a], eigen[a]);
  }
  if (!ierr) {
    const ptrdiff_t n2 = c->dims == 3 ? c->shape[2] : 1;
    for (ptrdiff_t q = 0; q < p->inner; q++)
      p->inner_eigen[q] = c->dims == 3 ? eigen[1][q / n2] + eigen[2][q % n2] : eigen[1][q];
    memcpy(p->axis0_eigen, eigen[0], (size_t)p->n0 * sizeof(double));
    p->inner_scale = 1.0 / (normalization[1] * normalization[2]);
    p->total_scale = p->inner_scale / normalization[0];
  }
  for (int a = 0; a < 3; a++) free(eigen[a]);
  if (ierr || !p->eliminate) return ierr;
  const double o = 1.0 / (c->spacing[0] * c->spacing[0]);
  const double lower = CPhysBoundaryOfSide(c->boundary[0], 0) == CPHYS_BOUNDARY_NEUMANN ? o : 0.0;
  const double upper = CPhysBoundaryOfSide(c->boundary[0], 1) == CPHYS_BOUNDARY_NEUMANN ? o : 0.0;
  for (ptrdiff_t q = 0; q < p->inner; q++) {
    const double d = -2.0 * o - p->inner_eigen[q];
    double pivot = d + lower + (p->n0 == 1 ? upper : 0.0);
    p->pivot_inverse[q] = 1.0 / pivot;
    for (ptrdiff_t j = 1; j < p->n0; j++) {
      pivot = d + (j == p->n0 - 1 ? upper : 0.0) - o * o / pivot;
      p->pivot_inverse[j * p->inner + q] = 1.0 / pivot;
    }
  }
  return 0;
}

int CPhysPoissonSpectralCreate(const CPhysPoissonSpectralConfig *config, CPhysPoissonSpectral *poisson) {
  CPhysCheck(poisson != NULL, CPHYS_ERROR_ARGUMENT, "poisson (the output handle) must not be NULL");
  *poisson = NULL;
  CPhysCall(CPhysPoissonSpectralCheckConfig(config));
  CPhysPoissonSpectral p = calloc(1, sizeof *p);
  CPhysCheck(p != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the spectral Poisson object");
  p->config = *config;
  for (int a = config->dims; a < 3; a++)
    p->config.shape[a] = 0, p->config.spacing[a] = 0.0, p->config.boundary[a] = CPHYS_BOUNDARY_DIRICHLET;
  p->n0 = config->shape[0];
  p->inner = config->shape[1] * (config->dims == 3 ? config->shape[2] : 1);
  p->size = p->n0 * p->inner;
  p->nx = config->shape[config->dims - 1];
  p->rows = p->size / p->nx;
  /* A first axis with a Dirichlet side: tridiagonal elimination (mixed ones have no FFTW transform). */
  p->eliminate = CPhysBoundaryOfSide(config->boundary[0], 0) == CPHYS_BOUNDARY_DIRICHLET ||
                 CPhysBoundaryOfSide(config->boundary[0], 1) == CPHYS_BOUNDARY_DIRICHLET;
  p->null_space = 1;
  for (int a = 0; a < config->dims; a++)
    p->null_space = p->null_space && (config->boundary[a] == CPHYS_BOUNDARY_NEUMANN ||
                                      config->boundary[a] == CPHYS_BOUNDARY_PERIODIC);
  p->axis0_eigen = malloc((size_t)p->n0 * sizeof(double));
  p->inner_eigen = malloc((size_t)p->inner * sizeof(double));
  if (p->eliminate) p->pivot_inverse = malloc((size_t)p->size * sizeof(double));
  p->zero_row = calloc((size_t)config->shape[config->dims - 1], sizeof(double));
  int ierr = 0;
  if (!p->axis0_eigen || !p->inner_eigen || (p->eliminate && !p->pivot_inverse) || !p->zero_row)
    ierr = CPhysSetError(CPHYS_ERROR_MEMORY, __func__, "cannot allocate the tables of a grid of %td nodes",
                         p->size);
  if (!ierr) ierr = fill_tables(p);
  if (!ierr) ierr = CPhysPoissonSpectralMakeMixedBases(p);
  if (!ierr) {
    CPhysLibraryLock();
    ierr = CPhysPoissonSpectralPlanLocked(p);
    CPhysLibraryUnlock();
  }
  if (ierr) {
    CPhysPoissonSpectralDestroy(&p);
    return ierr;
  }
  *poisson = p;
  return 0;
}

int CPhysPoissonSpectralDestroy(CPhysPoissonSpectral *poisson) {
  if (!poisson || !*poisson) return 0;
  CPhysPoissonSpectral p = *poisson;
  /* fftw_destroy_plan is a planner routine: not thread-safe. */
  CPhysLibraryLock();
  CPhysPoissonSpectralDestroyPlansLocked(p);
  CPhysLibraryUnlock();
  free(p->axis0_eigen);
  free(p->inner_eigen);
  free(p->pivot_inverse);
  free(p->zero_row);
  for (int a = 0; a < 3; a++) free(p->mixed[a]);
  free(p);
  *poisson = NULL;
  return 0;
}

int CPhysPoissonSpectralGetConfig(CPhysPoissonSpectral poisson, CPhysPoissonSpectralConfig *config) {
  CPhysCheck(poisson != NULL && config != NULL, CPHYS_ERROR_ARGUMENT, "arguments must not be NULL");
  *config = poisson->config;
  return 0;
}

int CPhysPoissonSpectralHasNullSpace(CPhysPoissonSpectral poisson, int *has_null_space) {
  CPhysCheck(poisson != NULL && has_null_space != NULL, CPHYS_ERROR_ARGUMENT, "arguments must not be NULL");
  *has_null_space = poisson->null_space;
  return 0;
}

int CPhysPoissonSpectralCheckBatch(CPhysPoissonSpectral p, ptrdiff_t batch, const void *in, const void *out,
                                   const char *caller) {
  if (p == NULL) return CPhysSetError(CPHYS_ERROR_ARGUMENT, caller, "the spectral Poisson object is NULL");
  if (batch < 0) return CPhysSetError(CPHYS_ERROR_ARGUMENT, caller, "batch must be >= 0, got %td", batch);
  if (batch > 0 && (in == NULL || out == NULL))
    return CPhysSetError(CPHYS_ERROR_ARGUMENT, caller, "input and output arrays must not be NULL");
  if (batch > PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / p->size)
    return CPhysSetError(CPHYS_ERROR_MEMORY, caller, "batch %td of grids of %td nodes cannot be addressed",
                         batch, p->size);
  return 0;
}

/* Along the first (Dirichlet) axis, per mode q: forward elimination with the
 * inner normalization folded in, then back substitution; w: [n0, inner]. */
static void eliminate(const CPhysPoissonSpectral p, double *restrict w) {
  const ptrdiff_t n0 = p->n0, inner = p->inner;
  const double o = 1.0 / (p->config.spacing[0] * p->config.spacing[0]), s = p->inner_scale;
  const double *restrict pivot_inverse = p->pivot_inverse;
  for (ptrdiff_t q = 0; q < inner; q++) w[q] *= s;
  for (ptrdiff_t j = 1; j < n0; j++) {
    double *restrict row = w + j * inner;
    const double *restrict previous = row - inner, *restrict m = pivot_inverse + (j - 1) * inner;
    for (ptrdiff_t q = 0; q < inner; q++) row[q] = s * row[q] - o * m[q] * previous[q];
  }
  double *last = w + (n0 - 1) * inner;
  const double *m_last = pivot_inverse + (n0 - 1) * inner;
  for (ptrdiff_t q = 0; q < inner; q++) last[q] *= m_last[q];
  for (ptrdiff_t j = n0 - 2; j >= 0; j--) {
    double *restrict row = w + j * inner;
    const double *restrict next = row + inner, *restrict m = pivot_inverse + j * inner;
    for (ptrdiff_t q = 0; q < inner; q++) row[q] = (row[q] - o * next[q]) * m[q];
  }
}

/* In transform space: divide by the eigenvalues -(axis0 + inner) and normalize;
 * the constant mode (the null space's) is set to 0. */
static void divide_by_eigenvalues(const CPhysPoissonSpectral p, double *restrict w) {
  const ptrdiff_t inner = p->inner;
  const double minus_scale = -p->total_scale;
  for (ptrdiff_t k = 0; k < p->n0; k++) {
    double *restrict row = w + k * inner;
    const double e0 = p->axis0_eigen[k];
    ptrdiff_t q = 0;
    if (k == 0 && p->null_space) row[q++] = 0.0;
    for (; q < inner; q++) row[q] *= minus_scale / (e0 + p->inner_eigen[q]);
  }
}

/* Samples beyond this magnitude (or below its inverse) are solved scaled by a
 * power of 2, so that transform sums cannot overflow or underflow. */
static const double SAFE_MAGNITUDE = 0x1p+500;

/* dst = src (dst may be src) and *largest = max |src| in one pass; returns the
 * index of the first non-finite src value, or -1 (the probe of finite.h). */
static ptrdiff_t copy_measured(double *dst, const double *src, ptrdiff_t count, double *largest) {
  double probe[4] = {0.0, 0.0, 0.0, 0.0}, high[4] = {0.0, 0.0, 0.0, 0.0};
  ptrdiff_t i = 0;
  for (; i + 4 <= count; i += 4)
    for (int k = 0; k < 4; k++) {
      const double v = src[i + k], a = fabs(v);
      dst[i + k] = v;
      probe[k] += v * 0.0;
      high[k] = a > high[k] ? a : high[k];
    }
  for (; i < count; i++) {
    dst[i] = src[i], probe[0] += src[i] * 0.0;
    high[0] = fabs(src[i]) > high[0] ? fabs(src[i]) : high[0];
  }
  *largest = fmax(fmax(high[0], high[1]), fmax(high[2], high[3]));
  if (probe[0] == 0.0 && probe[1] == 0.0 && probe[2] == 0.0 && probe[3] == 0.0) return -1;
  return cphys_first_non_finite(src, count);
}

/* Solves one sample in w (aligned as the planning array), whose largest
 * magnitude is `largest`; returns 0, or -1 when the solution overflows (w then holds it). */
static int solve_in_place(const CPhysPoissonSpectral p, double *w, double largest, double *pad) {
  if (largest == 0.0) return 0;
  const int exponent = largest > SAFE_MAGNITUDE || largest < 1.0 / SAFE_MAGNITUDE ? ilogb(largest) : 0;
  if (exponent != 0)
    for (ptrdiff_t k = 0; k < p->size; k++) w[k] = ldexp(w[k], -exponent);
  CPhysPoissonSpectralInnerForward(p, w, pad);
  if (p->eliminate) {
    eliminate(p, w);
  } else {
    fftw_execute_r2r(p->axis0_forward, w, w);
    divide_by_eigenvalues(p, w);
    fftw_execute_r2r(p->axis0_backward, w, w);
  }
  CPhysPoissonSpectralInnerBackward(p, w, pad);
  if (exponent != 0)
    for (ptrdiff_t k = 0; k < p->size; k++) w[k] = ldexp(w[k], exponent);
  return cphys_first_non_finite(w, p->size) >= 0 ? -1 : 0;
}

static void describe(CPhysSolveInfo *info, int solved) {
  memset(info, 0, sizeof *info);
  info->converged = solved;
  info->reason = solved ? 0 : -1;
  info->residual_norm = solved ? 0.0 : NAN;
  strcpy(info->reason_text, solved ? "DIRECT" : "DIVERGED_NANORINF");
}

/* A thread's buffers, allocated on first need: a sample (for caller arrays of
 * another alignment) and the padded rows of the sine transform. */
typedef struct {
  double *sample, *pad;
} Buffers;

/* One sample: returns 1 when solved, 0 when its input or solution is not
 * finite, -1 when a buffer cannot be allocated. */
static int solve_sample(const CPhysPoissonSpectral p, const double *xs, double *ys, Buffers *buffers) {
  const ptrdiff_t size = p->size, pad_size = CPhysPoissonSpectralPadSize(p);
  const int aligned = fftw_alignment_of(ys) == 0;
  if (!aligned && !buffers->sample && !(buffers->sample = CPhysPoissonSpectralBufferAlloc(size))) return -1;
  if (pad_size && !buffers->pad && !(buffers->pad = CPhysPoissonSpectralBufferAlloc(pad_size))) return -1;
  double *w = aligned ? ys : buffers->sample;
  double largest;
  if (copy_measured(w, xs, size, &largest) >= 0) {
    for (ptrdiff_t k = 0; k < size; k++) ys[k] = NAN;
    return 0;
  }
  const int overflow = solve_in_place(p, w, largest, buffers->pad);
  if (!aligned) memcpy(ys, w, (size_t)size * sizeof(double));
  return overflow ? 0 : 1;
}

static int solve(CPhysPoissonSpectral p, ptrdiff_t batch, const double *x, double *y, CPhysSolveInfo *info,
                 const char *what, const char *caller) {
  CPhysCall(CPhysPoissonSpectralCheckBatch(p, batch, x, y, caller));
  if (batch == 0) return 0;
  const ptrdiff_t size = p->size;
  /* About 20 ns per node for the transforms and the copies. */
  const int threads = cphys_loop_threads(batch, 20e-9 * (double)size);
  ptrdiff_t first_failure = PTRDIFF_MAX, out_of_memory = PTRDIFF_MAX;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(min : first_failure, out_of_memory)
  {
    Buffers buffers = {NULL, NULL};
#pragma omp for schedule(static)
    for (ptrdiff_t s = 0; s < batch; s++) {
      if (out_of_memory != PTRDIFF_MAX) continue;
      const int solved = solve_sample(p, x + s * size, y + s * size, &buffers);
      if (solved < 0) out_of_memory = s;
      if (solved == 0 && s < first_failure) first_failure = s;
      if (info && solved >= 0) describe(&info[s], solved);
    }
    free(buffers.sample);
    free(buffers.pad);
  }
  if (out_of_memory != PTRDIFF_MAX)
    return CPhysSetError(CPHYS_ERROR_MEMORY, caller, "cannot allocate the buffers of a grid of %td nodes",
                         size);
  if (first_failure == PTRDIFF_MAX) return 0;
  const double *xs = x == y ? NULL : x + first_failure * size;
  const ptrdiff_t bad = xs ? cphys_first_non_finite(xs, size) : -1;
  if (bad >= 0)
    return CPhysSetError(CPHYS_ERROR_NOT_CONVERGED, caller,
                         "%s of sample %td did not converge: DIVERGED_NANORINF (input value %td is %g)", what,
                         first_failure, first_failure * size + bad, xs[bad]);
  return CPhysSetError(CPHYS_ERROR_NOT_CONVERGED, caller,
                       "%s of sample %td did not converge: DIVERGED_NANORINF (%s)", what, first_failure,
                       xs ? "the solution overflows the double range"
                          : "a non-finite input, or a solution beyond the double range");
}

int CPhysPoissonSpectralSolve(CPhysPoissonSpectral poisson, ptrdiff_t batch, const double *x, double *y,
                              CPhysSolveInfo *info) {
  return solve(poisson, batch, x, y, info, "Poisson solve", __func__);
}

int CPhysPoissonSpectralAdjoint(CPhysPoissonSpectral poisson, ptrdiff_t batch, const double *dy, double *dx,
                                CPhysSolveInfo *info) {
  /* L is symmetric with every boundary, and so is its (pseudo-)inverse. */
  return solve(poisson, batch, dy, dx, info, "Poisson adjoint solve", __func__);
}

static int forward_one(void *context, const double *x, double *y) {
  return CPhysPoissonSpectralSolve((CPhysPoissonSpectral)context, 1, x, y, NULL);
}

static int adjoint_one(void *context, const double *x, const double *dy, double *dx) {
  (void)x; /* the map is linear */
  return CPhysPoissonSpectralAdjoint((CPhysPoissonSpectral)context, 1, dy, dx, NULL);
}

int CPhysPoissonSpectralGetLeastSquaresProblem(CPhysPoissonSpectral poisson,
                                               CPhysLeastSquaresProblem *problem) {
  CPhysCheck(poisson != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT, "arguments must not be NULL");
  *problem = (CPhysLeastSquaresProblem){0}; /* select_sample and later members: none */
  problem->n = problem->m = poisson->size;
  problem->forward = forward_one;
  problem->adjoint = adjoint_one;
  problem->context = poisson;
  return 0;
}
