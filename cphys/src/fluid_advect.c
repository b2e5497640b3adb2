/* Bilinear resampling and MacCormack advection on the MAC grid, with adjoints.
 *
 * All node sets (centres, x-faces, y-faces) are ny x nx lattices with the same
 * spacing, so the advection works in index units of the advected grid: the
 * departure point of node (i, j) is (i - ux dt / dx, j - uy dt / dy).  Along a
 * periodic axis the lattice wraps.  Along a closed one (walls at both ends) a
 * position is clamped into the box and the field continues by its ghost rule
 * (AxisRule): 0 on the wall faces of the normal velocity component, a mirror
 * (free-slip velocity, marker) or a negative mirror (no-slip velocity) half a
 * cell beyond the walls for the nodes between them.
 * The entry points of the resampling (CPhysFluidCentredToStaggered, ...) are in fluid.c. */
#include <math.h>
#include <string.h>

#include "fluid_internal.h"

/* How a node grid continues along one axis: periodically, or between walls at both ends. */
typedef struct {
  ptrdiff_t n;
  int closed;   /* walls at both ends */
  int on_walls; /* nodes k dh: node 0 (and node n, not stored) lie on the walls, where the value is 0 */
  double ghost; /* nodes (k + 1/2) dh: the value beyond a wall is ghost times its mirror */
} AxisRule;

static AxisRule axis_rule(CPhysFluid f, FluidGridKind kind, int axis) {
  AxisRule r;
  r.n = axis == 0 ? f->ny : f->nx;
  r.closed = f->walls[axis];
  /* The component normal to this axis's walls lives on faces on them; the other one is tangential. */
  r.on_walls = kind == (axis == 0 ? FLUID_YFACE : FLUID_XFACE);
  r.ghost = kind == (axis == 0 ? FLUID_XFACE : FLUID_YFACE) ? f->tangential_ghost[axis] : 1.0;
  return r;
}

typedef struct {
  ptrdiff_t i0, i1, j0, j1; /* the 2 x 2 nodes around the point */
  double wx, wy;            /* weights of i1 and j1 */
  double factor[4];         /* corner k's value is factor[k] times the node's: 1 inside, the ghost
                               factor beyond a wall, 0 on a wall */
  double sx, sy;            /* 1, or 0 where the position was clamped to the walls (no derivative) */
  int periodic;             /* both axes periodic: factors and slopes are all 1 and are skipped */
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

/* One axis of a stencil: nodes k0, k1, the weight w of k1, the corner factors f0, f1 and the
 * slope (0 when clamped).  Between walls a position is clamped into the box (a departure point
 * beyond a wall, from a velocity interpolated near it, takes the value at the wall). */
static inline void locate_axis(const AxisRule *r, double s, ptrdiff_t *k0, ptrdiff_t *k1, double *w,
                               double *f0, double *f1, double *slope) {
  *f0 = *f1 = *slope = 1.0;
  if (!r->closed) {
    *k0 = wrap_floor(s, r->n, w);
    *k1 = *k0 + 1 == r->n ? 0 : *k0 + 1;
    return;
  }
  if (!(fabs(s) < 4.0e15)) {
    *w = NAN, *k0 = 0, *k1 = 1;
    return;
  }
  const double lo = r->on_walls ? 0.0 : -0.5, hi = (double)r->n - (r->on_walls ? 0.0 : 0.5);
  if (s < lo) s = lo, *slope = 0.0;
  if (s > hi) s = hi, *slope = 0.0;
  double fl = floor(s);
  if (fl > (double)(r->n - 1)) fl = (double)(r->n - 1); /* s = n on a wall: node n - 1 with weight 1 */
  *w = s - fl;
  ptrdiff_t a = (ptrdiff_t)fl, b = a + 1;
  if (r->on_walls) {
    if (a == 0) *f0 = 0.0;
    if (b == r->n) *f1 = 0.0, b = r->n - 1;
  } else {
    if (a < 0) *f0 = r->ghost, a = 0;
    if (b == r->n) *f1 = r->ghost, b = r->n - 1;
  }
  *k0 = a, *k1 = b;
}

static inline Stencil locate(const AxisRule *rx, const AxisRule *ry, double sx, double sy) {
  Stencil st;
  st.periodic = !rx->closed && !ry->closed;
  if (st.periodic) { /* the periodic box's hot path: no factors */
    st.i0 = wrap_floor(sx, rx->n, &st.wx);
    st.j0 = wrap_floor(sy, ry->n, &st.wy);
    st.i1 = st.i0 + 1 == rx->n ? 0 : st.i0 + 1;
    st.j1 = st.j0 + 1 == ry->n ? 0 : st.j0 + 1;
    return st;
  }
  double fx0, fx1, fy0, fy1;
  locate_axis(rx, sx, &st.i0, &st.i1, &st.wx, &fx0, &fx1, &st.sx);
  locate_axis(ry, sy, &st.j0, &st.j1, &st.wy, &fy0, &fy1, &st.sy);
  st.factor[0] = fy0 * fx0, st.factor[1] = fy0 * fx1, st.factor[2] = fy1 * fx0, st.factor[3] = fy1 * fx1;
  return st;
}

static inline void corners(const double *g, ptrdiff_t nx, const Stencil *st, double c[4]) {
  if (st->periodic) {
    c[0] = g[st->j0 * nx + st->i0];
    c[1] = g[st->j0 * nx + st->i1];
    c[2] = g[st->j1 * nx + st->i0];
    c[3] = g[st->j1 * nx + st->i1];
    return;
  }
  c[0] = st->factor[0] * g[st->j0 * nx + st->i0];
  c[1] = st->factor[1] * g[st->j0 * nx + st->i1];
  c[2] = st->factor[2] * g[st->j1 * nx + st->i0];
  c[3] = st->factor[3] * g[st->j1 * nx + st->i1];
}

static inline double bilerp(const double c[4], const Stencil *st) {
  return (1.0 - st->wy) * ((1.0 - st->wx) * c[0] + st->wx * c[1]) +
         st->wy * ((1.0 - st->wx) * c[2] + st->wx * c[3]);
}

/* g[corners] += weight * value, the transpose of bilerp. */
static inline void scatter(double *g, ptrdiff_t nx, const Stencil *st, double value) {
  if (st->periodic) {
    g[st->j0 * nx + st->i0] += (1.0 - st->wy) * (1.0 - st->wx) * value;
    g[st->j0 * nx + st->i1] += (1.0 - st->wy) * st->wx * value;
    g[st->j1 * nx + st->i0] += st->wy * (1.0 - st->wx) * value;
    g[st->j1 * nx + st->i1] += st->wy * st->wx * value;
    return;
  }
  g[st->j0 * nx + st->i0] += (1.0 - st->wy) * (1.0 - st->wx) * (st->factor[0] * value);
  g[st->j0 * nx + st->i1] += (1.0 - st->wy) * st->wx * (st->factor[1] * value);
  g[st->j1 * nx + st->i0] += st->wy * (1.0 - st->wx) * (st->factor[2] * value);
  g[st->j1 * nx + st->i1] += st->wy * st->wx * (st->factor[3] * value);
}

static inline ptrdiff_t corner_index(ptrdiff_t nx, const Stencil *st, int k) {
  return (k & 2 ? st->j1 : st->j0) * nx + (k & 1 ? st->i1 : st->i0);
}

static inline double face(CPhysFluid f, const double *v, int c, ptrdiff_t j, ptrdiff_t i) {
  double factor;
  const ptrdiff_t k = fluid_face_node(f, c, j, i, &factor);
  return factor * v[c * f->n + k];
}

/* The transpose of face(): g_v[node] += factor * value. */
static inline void face_add(CPhysFluid f, double *g_v, int c, ptrdiff_t j, ptrdiff_t i, double value) {
  double factor;
  const ptrdiff_t k = fluid_face_node(f, c, j, i, &factor);
  g_v[c * f->n + k] += factor * value;
}

/* The periodic box's node velocities: the same values as the general loops below, without the
 * walls' index rules (the kernels run several times per step). */
static void periodic_node_velocity(CPhysFluid f, FluidGridKind kind, const double *v, double *ux,
                                   double *uy) {
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
        case FLUID_XFACE:
          ux[p] = vx[p];
          uy[p] = 0.25 * (vy[j * nx + im] + vy[p] + vy[jp * nx + im] + vy[jp * nx + i]);
          break;
        case FLUID_YFACE:
          ux[p] = 0.25 * (vx[jm * nx + i] + vx[jm * nx + ip] + vx[p] + vx[j * nx + ip]);
          uy[p] = vy[p];
          break;
      }
    }
  }
}

static void periodic_node_velocity_adjoint(CPhysFluid f, FluidGridKind kind, const double *g_ux,
                                           const double *g_uy, double *g_v) {
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

void fluid_node_velocity(CPhysFluid f, FluidGridKind kind, const double *v, double *ux, double *uy) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  if (!f->any_walls) {
    periodic_node_velocity(f, kind, v, ux, uy);
    return;
  }
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      switch (kind) {
        case FLUID_CENTRED:
          ux[p] = 0.5 * (face(f, v, 0, j, i) + face(f, v, 0, j, i + 1));
          uy[p] = 0.5 * (face(f, v, 1, j, i) + face(f, v, 1, j + 1, i));
          break;
        case FLUID_XFACE: /* (i dx, (j + 1/2) dy): vy from the faces left/right, below/above */
          ux[p] = face(f, v, 0, j, i);
          uy[p] = 0.25 * (face(f, v, 1, j, i - 1) + face(f, v, 1, j, i) + face(f, v, 1, j + 1, i - 1) +
                          face(f, v, 1, j + 1, i));
          break;
        case FLUID_YFACE: /* ((i + 1/2) dx, j dy) */
          ux[p] = 0.25 * (face(f, v, 0, j - 1, i) + face(f, v, 0, j - 1, i + 1) + face(f, v, 0, j, i) +
                          face(f, v, 0, j, i + 1));
          uy[p] = face(f, v, 1, j, i);
          break;
      }
    }
}

void fluid_node_velocity_adjoint(CPhysFluid f, FluidGridKind kind, const double *g_ux, const double *g_uy,
                                 double *g_v) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  if (!f->any_walls) {
    periodic_node_velocity_adjoint(f, kind, g_ux, g_uy, g_v);
    return;
  }
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      const double a = g_ux[p], b = g_uy[p];
      switch (kind) {
        case FLUID_CENTRED:
          face_add(f, g_v, 0, j, i, 0.5 * a), face_add(f, g_v, 0, j, i + 1, 0.5 * a);
          face_add(f, g_v, 1, j, i, 0.5 * b), face_add(f, g_v, 1, j + 1, i, 0.5 * b);
          break;
        case FLUID_XFACE:
          face_add(f, g_v, 0, j, i, a);
          face_add(f, g_v, 1, j, i - 1, 0.25 * b), face_add(f, g_v, 1, j, i, 0.25 * b);
          face_add(f, g_v, 1, j + 1, i - 1, 0.25 * b), face_add(f, g_v, 1, j + 1, i, 0.25 * b);
          break;
        case FLUID_YFACE:
          face_add(f, g_v, 0, j - 1, i, 0.25 * a), face_add(f, g_v, 0, j - 1, i + 1, 0.25 * a);
          face_add(f, g_v, 0, j, i, 0.25 * a), face_add(f, g_v, 0, j, i + 1, 0.25 * a);
          face_add(f, g_v, 1, j, i, b);
          break;
      }
    }
}

void fluid_maccormack(CPhysFluid f, FluidGridKind kind, const double *field, const double *ux,
                      const double *uy, double *semi, double *out, unsigned char *branches) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  const double cx = f->config.dt / f->dx, cy = f->config.dt / f->dy;
  const CPhysFluidLimiter limiter = f->config.limiter;
  const AxisRule rx = axis_rule(f, kind, 1), ry = axis_rule(f, kind, 0);
  const int walls = f->any_walls;
  double c[4];
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      Stencil st = locate(&rx, &ry, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
      corners(field, nx, &st, c);
      semi[p] = (walls && fluid_wall_node(f, kind, j, i)) ? 0.0 : bilerp(c, &st);
    }
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      if (walls && fluid_wall_node(f, kind, j, i)) {
        out[p] = 0.0;
        if (branches) branches[p] = FLUID_BRANCH_CORRECTED;
        continue;
      }
      Stencil fwd = locate(&rx, &ry, (double)i + ux[p] * cx, (double)j + uy[p] * cy);
      corners(semi, nx, &fwd, c);
      double value = semi[p] + 0.5 * (field[p] - bilerp(c, &fwd));
      unsigned char branch = FLUID_BRANCH_CORRECTED;
      if (limiter != CPHYS_FLUID_LIMITER_NONE) {
        Stencil bwd = locate(&rx, &ry, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
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

/* d bilerp / d s (index units) along x and y; 0 along an axis where the position was clamped. */
static inline void bilerp_gradient(const double c[4], const Stencil *st, double *dsx, double *dsy) {
  *dsx = (1.0 - st->wy) * (c[1] - c[0]) + st->wy * (c[3] - c[2]);
  *dsy = (1.0 - st->wx) * (c[2] - c[0]) + st->wx * (c[3] - c[1]);
  if (!st->periodic) *dsx *= st->sx, *dsy *= st->sy;
}

void fluid_maccormack_adjoint(CPhysFluid f, FluidGridKind kind, const double *field, const double *ux,
                              const double *uy, const unsigned char *branches, const double *g_out,
                              double *g_field, double *g_ux, double *g_uy) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  const double cx = f->config.dt / f->dx, cy = f->config.dt / f->dy;
  const AxisRule rx = axis_rule(f, kind, 1), ry = axis_rule(f, kind, 0);
  const int walls = f->any_walls;
  double *semi = fluid_slot(f, FLUID_SLOT_SEMI), *g_semi = fluid_slot(f, FLUID_SLOT_GSEMI);
  double c[4], dsx, dsy;
  /* The backward-lookup field is cheaper to recompute than to keep on the tape. */
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      Stencil st = locate(&rx, &ry, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
      corners(field, nx, &st, c);
      semi[p] = (walls && fluid_wall_node(f, kind, j, i)) ? 0.0 : bilerp(c, &st);
    }
  memset(g_semi, 0, (size_t)f->n * sizeof *g_semi);
  /* Pass 1: the limiter and the correction; g_semi collects from every node's
   * forward lookup before pass 2 can use it.  Wall nodes are constant (0). */
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      const double g = g_out[p];
      const unsigned char branch = branches[p];
      if (g == 0.0 || (walls && fluid_wall_node(f, kind, j, i))) continue;
      if (branch == FLUID_BRANCH_SEMI) {
        g_semi[p] += g;
        continue;
      }
      if (branch != FLUID_BRANCH_CORRECTED) {
        /* The bound is a grid value; which one depends on u only piecewise-constantly. */
        Stencil bwd = locate(&rx, &ry, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
        g_field[corner_index(nx, &bwd, branch - 1)] += bwd.periodic ? g : bwd.factor[branch - 1] * g;
        continue;
      }
      g_semi[p] += g;
      g_field[p] += 0.5 * g;
      const double g_back = -0.5 * g;
      Stencil fwd = locate(&rx, &ry, (double)i + ux[p] * cx, (double)j + uy[p] * cy);
      scatter(g_semi, nx, &fwd, g_back);
      corners(semi, nx, &fwd, c);
      bilerp_gradient(c, &fwd, &dsx, &dsy);
      g_ux[p] += g_back * dsx * cx;
      g_uy[p] += g_back * dsy * cy;
    }
  /* Pass 2: the backward lookup semi = field(p - u dt) (a wall node's semi is the constant 0). */
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const ptrdiff_t p = j * nx + i;
      const double g = g_semi[p];
      if (g == 0.0 || (walls && fluid_wall_node(f, kind, j, i))) continue;
      Stencil bwd = locate(&rx, &ry, (double)i - ux[p] * cx, (double)j - uy[p] * cy);
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
      /* Faces on walls stay 0: they are not degrees of freedom. */
      staggered[p] = fluid_wall_node(f, FLUID_XFACE, j, i) ? 0.0 : 0.5 * (centred[j * nx + im] + centred[p]);
      staggered[n + p] =
          fluid_wall_node(f, FLUID_YFACE, j, i) ? 0.0 : 0.5 * (centred[n + jm * nx + i] + centred[n + p]);
    }
  }
}

void fluid_centred_to_staggered_adjoint(CPhysFluid f, const double *g_staggered, double *g_centred) {
  /* S^T averages each centre's two faces: the centred node-velocity stencil. */
  fluid_node_velocity(f, FLUID_CENTRED, g_staggered, g_centred, g_centred + f->n);
}
