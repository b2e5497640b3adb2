/* Periodic bilinear resampling and MacCormack advection on the MAC grid, with adjoints.
 *
 * All node sets (centres, x-faces, y-faces) are ny x nx periodic lattices with
 * the same spacing, so the advection works in index units of the advected
 * grid: the departure point of node (i, j) is (i - ux dt / dx, j - uy dt / dy).
 * The entry points of the resampling (CPhysFluidCentredToStaggered, ...) are in fluid.c. */
#include <math.h>
#include <string.h>

#include "fluid_internal.h"

typedef struct {
  ptrdiff_t i0, i1, j0, j1; /* the 2 x 2 nodes around the point */
  double wx, wy;            /* weights of i1 and j1 */
} Stencil;

/* Floor of s wrapped into [0, n) and the fraction.  A non-finite or absurdly
 * large position (only from an already broken velocity) yields a NaN weight so
 * that the NaN travels on to a check instead of becoming an invalid index. */
static inline ptrdiff_t wrap_floor(double s, ptrdiff_t n, double *w) {
  if (!(fabs(s) < 4.0e15)) {
    *w = NAN;
    return 0;
  }
  double fl = floor(s);
  *w = s - fl;
  ptrdiff_t i = (ptrdiff_t)fl % n;
  return i < 0 ? i + n : i;
}

static inline Stencil locate(ptrdiff_t nx, ptrdiff_t ny, double sx, double sy) {
  Stencil st;
  st.i0 = wrap_floor(sx, nx, &st.wx);
  st.j0 = wrap_floor(sy, ny, &st.wy);
  st.i1 = st.i0 + 1 == nx ? 0 : st.i0 + 1;
  st.j1 = st.j0 + 1 == ny ? 0 : st.j0 + 1;
  return st;
}

static inline void corners(const double *g, ptrdiff_t nx, const Stencil *st, double c[4]) {
  c[0] = g[st->j0 * nx + st->i0];
  c[1] = g[st->j0 * nx + st->i1];
  c[2] = g[st->j1 * nx + st->i0];
  c[3] = g[st->j1 * nx + st->i1];
}

static inline double bilerp(const double c[4], const Stencil *st) {
  return (1.0 - st->wy) * ((1.0 - st->wx) * c[0] + st->wx * c[1]) +
         st->wy * ((1.0 - st->wx) * c[2] + st->wx * c[3]);
}

/* g[corners] += weight * value, the transpose of bilerp. */
static inline void scatter(double *g, ptrdiff_t nx, const Stencil *st, double value) {
  g[st->j0 * nx + st->i0] += (1.0 - st->wy) * (1.0 - st->wx) * value;
  g[st->j0 * nx + st->i1] += (1.0 - st->wy) * st->wx * value;
  g[st->j1 * nx + st->i0] += st->wy * (1.0 - st->wx) * value;
  g[st->j1 * nx + st->i1] += st->wy * st->wx * value;
}

static inline ptrdiff_t corner_index(ptrdiff_t nx, const Stencil *st, int k) {
  return (k & 2 ? st->j1 : st->j0) * nx + (k & 1 ? st->i1 : st->i0);
}

void fluid_node_velocity(CPhysFluid f, FluidGridKind kind, const double *v, double *ux, double *uy) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  const double *vx = v, *vy = v + f->n;
  for (ptrdiff_t j = 0; j < ny; j++) {
    const ptrdiff_t jm = j == 0 ? ny - 1 : j - 1, jp = j == ny - 1 ? 0 : j + 1;
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t im = i == 0 ? nx - 1 : i - 1, ip = i == nx - 1 ? 0 : i + 1, p = j * nx + i;
      switch (kind) {
        case FLUID_CENTRED:
          ux[p] = 0.5 * (vx[p] + vx[j * nx + ip]);
          uy[p] = 0.5 * (vy[p] + vy[jp * nx + i]);
          break;
        case FLUID_XFACE: /* (i dx, (j + 1/2) dy): vy from the faces left/right, below/above */
          ux[p] = vx[p];
          uy[p] = 0.25 * (vy[j * nx + im] + vy[p] + vy[jp * nx + im] + vy[jp * nx + i]);
          break;
        case FLUID_YFACE: /* ((i + 1/2) dx, j dy) */
          ux[p] = 0.25 * (vx[jm * nx + i] + vx[jm * nx + ip] + vx[p] + vx[j * nx + ip]);
          uy[p] = vy[p];
          break;
      }
    }
  }
}

void fluid_node_velocity_adjoint(CPhysFluid f, FluidGridKind kind, const double *g_ux, const double *g_uy,
                                 double *g_v) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  double *gx = g_v, *gy = g_v + f->n;
  for (ptrdiff_t j = 0; j < ny; j++) {
    const ptrdiff_t jm = j == 0 ? ny - 1 : j - 1, jp = j == ny - 1 ? 0 : j + 1;
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t im = i == 0 ? nx - 1 : i - 1, ip = i == nx - 1 ? 0 : i + 1, p = j * nx + i;
      const double a = g_ux[p], b = g_uy[p];
      switch (kind) {
        case FLUID_CENTRED:
          gx[p] += 0.5 * a, gx[j * nx + ip] += 0.5 * a;
          gy[p] += 0.5 * b, gy[jp * nx + i] += 0.5 * b;
          break;
        case FLUID_XFACE:
          gx[p] += a;
          gy[j * nx + im] += 0.25 * b, gy[p] += 0.25 * b;
          gy[jp * nx + im] += 0.25 * b, gy[jp * nx + i] += 0.25 * b;
          break;
        case FLUID_YFACE:
          gx[jm * nx + i] += 0.25 * a, gx[jm * nx + ip] += 0.25 * a;
          gx[p] += 0.25 * a, gx[j * nx + ip] += 0.25 * a;
          gy[p] += b;
          break;
      }
    }
  }
}

void fluid_maccormack(CPhysFluid f, const double *field, const double *ux, const double *uy, double *semi,
                      double *out, unsigned char *branches) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  const double cx = f->config.dt / f->dx, cy = f->config.dt / f->dy;
  const CPhysFluidLimiter limiter = f->config.limiter;
  double c[4];
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      Stencil st = locate(nx, ny, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
      corners(field, nx, &st, c);
      semi[p] = bilerp(c, &st);
    }
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      Stencil fwd = locate(nx, ny, (double)i + ux[p] * cx, (double)j + uy[p] * cy);
      corners(semi, nx, &fwd, c);
      double value = semi[p] + 0.5 * (field[p] - bilerp(c, &fwd));
      unsigned char branch = FLUID_BRANCH_CORRECTED;
      if (limiter != CPHYS_FLUID_LIMITER_NONE) {
        Stencil bwd = locate(nx, ny, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
        corners(field, nx, &bwd, c);
        int kmin = 0, kmax = 0;
        for (int k = 1; k < 4; k++) {
          if (c[k] < c[kmin]) kmin = k;
          if (c[k] > c[kmax]) kmax = k;
        }
        int k = value < c[kmin] ? kmin : value > c[kmax] ? kmax : -1;
        if (k >= 0 && limiter == CPHYS_FLUID_LIMITER_CLAMP) {
          value = c[k];
          branch = (unsigned char)(1 + k);
        } else if (k >= 0) {
          value = semi[p];
          branch = FLUID_BRANCH_SEMI;
        }
      }
      out[p] = value;
      if (branches) branches[p] = branch;
    }
}

/* d bilerp / d s (index units) along x and y. */
static inline void bilerp_gradient(const double c[4], const Stencil *st, double *dsx, double *dsy) {
  *dsx = (1.0 - st->wy) * (c[1] - c[0]) + st->wy * (c[3] - c[2]);
  *dsy = (1.0 - st->wx) * (c[2] - c[0]) + st->wx * (c[3] - c[1]);
}

void fluid_maccormack_adjoint(CPhysFluid f, const double *field, const double *ux, const double *uy,
                              const unsigned char *branches, const double *g_out, double *g_field,
                              double *g_ux, double *g_uy) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  const double cx = f->config.dt / f->dx, cy = f->config.dt / f->dy;
  double *semi = fluid_slot(f, FLUID_SLOT_SEMI), *g_semi = fluid_slot(f, FLUID_SLOT_GSEMI);
  double c[4], dsx, dsy;
  /* The backward-lookup field is cheaper to recompute than to keep on the tape. */
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      Stencil st = locate(nx, ny, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
      corners(field, nx, &st, c);
      semi[p] = bilerp(c, &st);
    }
  memset(g_semi, 0, (size_t)f->n * sizeof *g_semi);
  /* Pass 1: the limiter and the correction; g_semi collects from every node's
   * forward lookup before pass 2 can use it. */
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      const double g = g_out[p];
      const unsigned char branch = branches[p];
      if (g == 0.0) continue;
      if (branch == FLUID_BRANCH_SEMI) {
        g_semi[p] += g;
        continue;
      }
      if (branch != FLUID_BRANCH_CORRECTED) {
        /* The bound is a grid value; which one depends on u only piecewise-constantly. */
        Stencil bwd = locate(nx, ny, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
        g_field[corner_index(nx, &bwd, branch - 1)] += g;
        continue;
      }
      g_semi[p] += g;
      g_field[p] += 0.5 * g;
      const double g_back = -0.5 * g;
      Stencil fwd = locate(nx, ny, (double)i + ux[p] * cx, (double)j + uy[p] * cy);
      scatter(g_semi, nx, &fwd, g_back);
      corners(semi, nx, &fwd, c);
      bilerp_gradient(c, &fwd, &dsx, &dsy);
      g_ux[p] += g_back * dsx * cx;
      g_uy[p] += g_back * dsy * cy;
    }
  /* Pass 2: the backward lookup semi = field(p - u dt). */
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      const double g = g_semi[p];
      if (g == 0.0) continue;
      Stencil bwd = locate(nx, ny, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
      scatter(g_field, nx, &bwd, g);
      corners(field, nx, &bwd, c);
      bilerp_gradient(c, &bwd, &dsx, &dsy);
      g_ux[p] -= g * dsx * cx;
      g_uy[p] -= g * dsy * cy;
    }
}

void fluid_centred_to_staggered(CPhysFluid f, const double *centred, double *staggered) {
  const ptrdiff_t nx = f->nx, ny = f->ny, n = f->n;
  for (ptrdiff_t j = 0; j < ny; j++) {
    const ptrdiff_t jm = j == 0 ? ny - 1 : j - 1;
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t im = i == 0 ? nx - 1 : i - 1, p = j * nx + i;
      staggered[p] = 0.5 * (centred[j * nx + im] + centred[p]);
      staggered[n + p] = 0.5 * (centred[n + jm * nx + i] + centred[n + p]);
    }
  }
}

void fluid_centred_to_staggered_adjoint(CPhysFluid f, const double *g_staggered, double *g_centred) {
  /* S^T averages each centre's two faces: the centred node-velocity stencil. */
  fluid_node_velocity(f, FLUID_CENTRED, g_staggered, g_centred, g_centred + f->n);
}
