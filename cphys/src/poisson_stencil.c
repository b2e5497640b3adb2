/* The spectral Poisson object's Laplacian with each boundary (5 or 7 points),
 * and the physical gradient built on it.  For the 2-D zero Dirichlet grid every
 * node is computed with CPhysPoisson's expression, so both objects give bitwise
 * the same physical gradient. */
#include <math.h>
#include <stdint.h>

#include "finite.h"
#include "poisson_spectral_internal.h"
#include "threads.h"

/* One node: the second differences along x, y (and z), weights w = scale / h^2. */
static inline double node2(double wx, double wy, double left, double right, double down, double up,
                           double centre) {
  return wx * (left + right - 2.0 * centre) + wy * (down + up - 2.0 * centre);
}

static inline double node3(double wx, double wy, double wz, double left, double right, double down, double up,
                           double back, double front, double centre) {
  return node2(wx, wy, left, right, down, up, centre) + wz * (back + front - 2.0 * centre);
}

/* The row (or plane) of neighbour `index` along an axis of n of them, `stride`
 * apart from `base`; beyond the ends, what the boundary of that end puts there. */
static const double *neighbour(const double *base, ptrdiff_t index, ptrdiff_t n, ptrdiff_t stride,
                               CPhysBoundary axis, const double *self, const double *zeros) {
  if (index >= 0 && index < n) return base + index * stride;
  const CPhysBoundary boundary = CPhysBoundaryOfSide(axis, index >= n);
  if (boundary == CPHYS_BOUNDARY_DIRICHLET) return zeros;
  if (boundary == CPHYS_BOUNDARY_NEUMANN) return self;
  return base + (index < 0 ? n - 1 : 0) * stride;
}

typedef struct {
  ptrdiff_t nz, ny, nx;
  double wz, wy, wx; /* scale / h^2 per axis; wz unused in 2-D */
  CPhysBoundary bz, by, bx;
  int three_d;
  const double *zeros; /* [nx] */
} Stencil;

/* One row: c the row, d/u its neighbours along y, b/f along z (3-D only), o the output. */
static void stencil_row(const Stencil *st, const double *c, const double *d, const double *u, const double *b,
                        const double *f, double *o) {
  const ptrdiff_t nx = st->nx;
  const double wx = st->wx, wy = st->wy, wz = st->wz;
  const CPhysBoundary left = CPhysBoundaryOfSide(st->bx, 0), right = CPhysBoundaryOfSide(st->bx, 1);
  const double left_ghost = left == CPHYS_BOUNDARY_DIRICHLET ? 0.0
                            : left == CPHYS_BOUNDARY_NEUMANN ? c[0]
                                                             : c[nx - 1];
  const double right_ghost = right == CPHYS_BOUNDARY_DIRICHLET ? 0.0
                             : right == CPHYS_BOUNDARY_NEUMANN ? c[nx - 1]
                                                               : c[0];
  if (!st->three_d) {
    if (nx == 1) {
      o[0] = node2(wx, wy, left_ghost, right_ghost, d[0], u[0], c[0]);
      return;
    }
    o[0] = node2(wx, wy, left_ghost, c[1], d[0], u[0], c[0]);
    for (ptrdiff_t i = 1; i < nx - 1; i++) o[i] = node2(wx, wy, c[i - 1], c[i + 1], d[i], u[i], c[i]);
    o[nx - 1] = node2(wx, wy, c[nx - 2], right_ghost, d[nx - 1], u[nx - 1], c[nx - 1]);
    return;
  }
  if (nx == 1) {
    o[0] = node3(wx, wy, wz, left_ghost, right_ghost, d[0], u[0], b[0], f[0], c[0]);
    return;
  }
  o[0] = node3(wx, wy, wz, left_ghost, c[1], d[0], u[0], b[0], f[0], c[0]);
  for (ptrdiff_t i = 1; i < nx - 1; i++)
    o[i] = node3(wx, wy, wz, c[i - 1], c[i + 1], d[i], u[i], b[i], f[i], c[i]);
  o[nx - 1] =
      node3(wx, wy, wz, c[nx - 2], right_ghost, d[nx - 1], u[nx - 1], b[nx - 1], f[nx - 1], c[nx - 1]);
}

static void stencil_sample(const Stencil *st, const double *ys, double *xs) {
  const ptrdiff_t nx = st->nx, ny = st->ny, plane = ny * nx;
  for (ptrdiff_t k = 0; k < st->nz; k++) {
    const double *in_plane = ys + k * plane;
    for (ptrdiff_t j = 0; j < ny; j++) {
      const double *c = in_plane + j * nx;
      const double *d = neighbour(in_plane, j - 1, ny, nx, st->by, c, st->zeros);
      const double *u = neighbour(in_plane, j + 1, ny, nx, st->by, c, st->zeros);
      const double *b = NULL, *f = NULL;
      if (st->three_d) {
        b = neighbour(ys + j * nx, k - 1, st->nz, plane, st->bz, c, st->zeros);
        f = neighbour(ys + j * nx, k + 1, st->nz, plane, st->bz, c, st->zeros);
      }
      stencil_row(st, c, d, u, b, f, xs + k * plane + j * nx);
    }
  }
}

static Stencil make_stencil(const CPhysPoissonSpectral p, double scale) {
  const CPhysPoissonSpectralConfig *c = &p->config;
  Stencil st;
  st.three_d = c->dims == 3;
  const int x = c->dims - 1, y = c->dims - 2;
  st.nx = c->shape[x], st.ny = c->shape[y], st.nz = st.three_d ? c->shape[0] : 1;
  st.wx = scale / (c->spacing[x] * c->spacing[x]);
  st.wy = scale / (c->spacing[y] * c->spacing[y]);
  st.wz = st.three_d ? scale / (c->spacing[0] * c->spacing[0]) : 0.0;
  st.bx = c->boundary[x], st.by = c->boundary[y],
  st.bz = st.three_d ? c->boundary[0] : CPHYS_BOUNDARY_DIRICHLET;
  st.zeros = p->zero_row;
  return st;
}

/* x = scale L y over the batch; with `check`, the flat index of the first
 * non-finite y in *bad_input and of the first non-finite x in *bad_output
 * (PTRDIFF_MAX: none; inputs checked before their sample is used). */
static void apply_laplacian(const CPhysPoissonSpectral p, ptrdiff_t batch, double scale, const double *y,
                            double *x, int check, ptrdiff_t *bad_input, ptrdiff_t *bad_output) {
  const ptrdiff_t size = p->size;
  const Stencil st = make_stencil(p, scale);
  ptrdiff_t first_in = PTRDIFF_MAX, first_out = PTRDIFF_MAX;
  /* ~1 ns per node, as CPhysPoisson's stencil. */
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
    stencil_sample(&st, ys, xs);
    if (check) {
      const ptrdiff_t bad = cphys_first_non_finite(xs, size);
      if (bad >= 0 && s * size + bad < first_out) first_out = s * size + bad;
    }
  }
  if (bad_input) *bad_input = first_in;
  if (bad_output) *bad_output = first_out;
}

int CPhysPoissonSpectralApplyLaplacian(CPhysPoissonSpectral poisson, ptrdiff_t batch, const double *y,
                                       double *x) {
  CPhysCall(CPhysPoissonSpectralCheckBatch(poisson, batch, y, x, __func__));
  apply_laplacian(poisson, batch, 1.0, y, x, 0, NULL, NULL);
  return 0;
}

int CPhysPoissonSpectralPhysicalGradient(CPhysPoissonSpectral poisson, ptrdiff_t batch, double y_step,
                                         const double *g, double *dx) {
  CPhysCall(CPhysPoissonSpectralCheckBatch(poisson, batch, g, dx, __func__));
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

/* ---- the physical-gradient contract (cphys/physical_gradient.h) ---- */

/* P^-1 is the stencil: dx = laplace(y_step g), direct; x and y are not needed. */
static int spectral_physical_gradient(void *context, ptrdiff_t batch, const double *x, const double *y,
                                      const double *g, double y_step, double *dx, CPhysSolveInfo *info) {
  (void)x, (void)y;
  CPhysCall(CPhysPoissonSpectralPhysicalGradient(context, batch, y_step, g, dx));
  CPhysSetDirectInfo(info, batch, "DIRECT");
  return 0;
}

int CPhysPoissonSpectralGetInverseProblem(CPhysPoissonSpectral poisson, CPhysInverseProblem *problem) {
  CPhysCheck(poisson != NULL && problem != NULL, CPHYS_ERROR_ARGUMENT,
             "poisson and problem must not be NULL");
  *problem = (CPhysInverseProblem){poisson->size, poisson->size, spectral_physical_gradient, poisson};
  return 0;
}
