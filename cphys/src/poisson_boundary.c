/* Prescribed Dirichlet values as a source: the lift rhs = x - B g and its
 * adjoint (cphys/poisson_boundary.h). */
#include "cphys/poisson_boundary.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "poisson_spectral_internal.h"

/* A 2-D grid as 3-D with a leading axis of one node and no ring (no sides). */
typedef struct {
  int dims, first; /* first: the first real axis (1 in 2-D, 0 in 3-D) */
  ptrdiff_t n[3], ring[3];
  ptrdiff_t grid_stride[3], ring_stride[3];
  ptrdiff_t size, ring_size;
  double weight[3]; /* 1 / h^2 */
  CPhysBoundary boundary[3];
} Geometry;

static Geometry geometry_of(const CPhysPoissonSpectralConfig *c) {
  Geometry g;
  g.dims = c->dims;
  g.first = 3 - c->dims;
  for (int k = 0; k < 3; k++) {
    const int a = k - g.first; /* the config's axis, or < 0 for the added one */
    g.n[k] = a >= 0 ? c->shape[a] : 1;
    g.ring[k] = a >= 0 ? c->shape[a] + 2 : 1;
    g.weight[k] = a >= 0 ? 1.0 / (c->spacing[a] * c->spacing[a]) : 0.0;
    g.boundary[k] = a >= 0 ? c->boundary[a] : CPHYS_BOUNDARY_PERIODIC;
  }
  g.grid_stride[2] = g.ring_stride[2] = 1;
  for (int k = 1; k >= 0; k--) {
    g.grid_stride[k] = g.grid_stride[k + 1] * g.n[k + 1];
    g.ring_stride[k] = g.ring_stride[k + 1] * g.ring[k + 1];
  }
  g.size = g.grid_stride[0] * g.n[0];
  g.ring_size = g.ring_stride[0] * g.ring[0];
  return g;
}

/* k: the axis in the 3-D numbering (z, y, x). */
static const char *side_name(int k, int upper) {
  static const char *const names[2][3] = {{"z-", "y-", "x-"}, {"z+", "y+", "x+"}};
  return names[upper][k];
}

/* One face: side `upper` of axis k.  For each of its nodes, the grid node next
 * to it (grid offset) and its offset in the ring grid; visit(grid, ring). */
#define FOR_EACH_FACE_NODE(g, k, upper, grid_offset, ring_offset, body)                \
  do {                                                                                 \
    ptrdiff_t lo_[3], hi_[3];                                                          \
    for (int m_ = 0; m_ < 3; m_++) lo_[m_] = 0, hi_[m_] = (g)->n[m_];                  \
    lo_[k] = (upper) ? (g)->n[k] - 1 : 0, hi_[k] = lo_[k] + 1;                         \
    for (ptrdiff_t i0_ = lo_[0]; i0_ < hi_[0]; i0_++)                                  \
      for (ptrdiff_t i1_ = lo_[1]; i1_ < hi_[1]; i1_++)                                \
        for (ptrdiff_t i2_ = lo_[2]; i2_ < hi_[2]; i2_++) {                            \
          const ptrdiff_t i_[3] = {i0_, i1_, i2_};                                     \
          ptrdiff_t grid_offset = 0, ring_offset = 0;                                  \
          for (int m_ = 0; m_ < 3; m_++) {                                             \
            const ptrdiff_t r_ = m_ == (k)            ? ((upper) ? (g)->n[m_] + 1 : 0) \
                                 : (g)->ring[m_] == 1 ? 0                              \
                                                      : i_[m_] + 1;                    \
            grid_offset += i_[m_] * (g)->grid_stride[m_];                              \
            ring_offset += r_ * (g)->ring_stride[m_];                                  \
          }                                                                            \
          body;                                                                        \
        }                                                                              \
  } while (0)

static int check_arguments(const CPhysPoissonSpectralConfig *config, ptrdiff_t batch, const void *in,
                           const void *out, const char *caller) {
  if (config == NULL) return CPhysSetError(CPHYS_ERROR_ARGUMENT, caller, "config must not be NULL");
  CPhysCall(CPhysPoissonSpectralCheckConfig(config));
  if (batch < 0) return CPhysSetError(CPHYS_ERROR_ARGUMENT, caller, "batch must be >= 0, got %td", batch);
  if (batch > 0 && (in == NULL || out == NULL))
    return CPhysSetError(CPHYS_ERROR_ARGUMENT, caller, "input and output arrays must not be NULL");
  const Geometry g = geometry_of(config);
  if (batch > PTRDIFF_MAX / (ptrdiff_t)sizeof(double) / g.ring_size)
    return CPhysSetError(CPHYS_ERROR_MEMORY, caller, "batch %td of grids of %td nodes cannot be addressed",
                         batch, g.ring_size);
  return 0;
}

int CPhysPoissonBoundaryLift(const CPhysPoissonSpectralConfig *config, ptrdiff_t batch, const double *values,
                             const double *x, double *rhs) {
  CPhysCall(check_arguments(config, batch, values, rhs, __func__));
  CPhysCheck(batch == 0 || x != NULL, CPHYS_ERROR_ARGUMENT, "x must not be NULL");
  const Geometry g = geometry_of(config);
  for (ptrdiff_t s = 0; s < batch; s++) {
    const double *vs = values + s * g.ring_size;
    double *rs = rhs + s * g.size;
    if (rs != x + s * g.size) memcpy(rs, x + s * g.size, (size_t)g.size * sizeof(double));
    for (int k = g.first; k < 3; k++) {
      for (int upper = 0; upper < 2; upper++) {
        if (CPhysBoundaryOfSide(g.boundary[k], upper) != CPHYS_BOUNDARY_DIRICHLET) continue;
        const double w = g.weight[k];
        FOR_EACH_FACE_NODE(&g, k, upper, grid, ring, {
          const double v = vs[ring];
          CPhysCheck(isfinite(v), CPHYS_ERROR_NONFINITE,
                     "values[%td] (sample %td, side %s) is not finite (%g)", s * g.ring_size + ring, s,
                     side_name(k, upper), v);
          rs[grid] -= w * v;
        });
      }
    }
  }
  return 0;
}

int CPhysPoissonBoundaryLiftAdjoint(const CPhysPoissonSpectralConfig *config, ptrdiff_t batch,
                                    const double *g_in, double *dvalues) {
  CPhysCall(check_arguments(config, batch, g_in, dvalues, __func__));
  const Geometry g = geometry_of(config);
  memset(dvalues, 0, (size_t)(batch * g.ring_size) * sizeof(double));
  for (ptrdiff_t s = 0; s < batch; s++) {
    const double *gs = g_in + s * g.size;
    double *ds = dvalues + s * g.ring_size;
    for (int k = g.first; k < 3; k++)
      for (int upper = 0; upper < 2; upper++) {
        if (CPhysBoundaryOfSide(g.boundary[k], upper) != CPHYS_BOUNDARY_DIRICHLET) continue;
        const double w = g.weight[k];
        FOR_EACH_FACE_NODE(&g, k, upper, grid, ring, { ds[ring] = -w * gs[grid]; });
      }
  }
  return 0;
}
