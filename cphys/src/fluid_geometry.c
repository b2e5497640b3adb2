/* Measurements on the fluid's box: the centre of mass of a marker (circular mean on a
 * periodic axis, plain mean between walls) and the unit vortex of the physical inverse's prior. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cphys_internal.h"
#include "fluid_internal.h"

int fluid_unit_vortex_create(CPhysFluid f) {
  const ptrdiff_t nx = f->nx, ny = f->ny, n = f->n;
  const double lx = (double)nx * f->dx, ly = (double)ny * f->dy;
  const double cx = f->config.vortex_center[0] * lx, cy = f->config.vortex_center[1] * ly;
  const double inv_two_sigma2 = 0.5 / (f->config.vortex_sigma * f->config.vortex_sigma);
  f->unit_vortex = malloc((size_t)(2 * n) * sizeof *f->unit_vortex);
  CPhysCheck(f->unit_vortex != NULL, CPHYS_ERROR_MEMORY, "cannot allocate the unit vortex");
  double norm2 = 0.0;
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const double rx = fluid_box_delta(f, 0, ((double)i + 0.5) * f->dx - cx);
      const double ry = fluid_box_delta(f, 1, ((double)j + 0.5) * f->dy - cy);
      /* r = 0 must not meet a 1 / sigma^2 that overflowed (0 * inf); W is 0 there anyway. */
      const double r2 = rx * rx + ry * ry, falloff = r2 == 0.0 ? 1.0 : exp(-r2 * inv_two_sigma2);
      const double wx = -falloff * ry, wy = falloff * rx;
      f->unit_vortex[j * nx + i] = wx;
      f->unit_vortex[n + j * nx + i] = wy;
      norm2 += wx * wx + wy * wy; /* not falloff^2 r^2: 0 * inf where r^2 overflows */
    }
  f->unit_vortex_norm2 = norm2;
  return 0;
}

/* One axis of the circular mean: the phase of sum_k w_k exp(2 pi i (k + 1/2) / count). */
static double circular_axis(const double *weights, ptrdiff_t count, double spacing, double total,
                            int *defined) {
  double c = 0.0, s = 0.0;
  for (ptrdiff_t k = 0; k < count; k++) {
    const double angle = 2.0 * CPHYS_PI * ((double)k + 0.5) / (double)count;
    c += weights[k] * cos(angle);
    s += weights[k] * sin(angle);
  }
  const double period = (double)count * spacing;
  if (!(hypot(c, s) > 1e-12 * total)) {
    *defined = 0;
    return 0.5 * period;
  }
  double position = atan2(s, c) / (2.0 * CPHYS_PI) * period;
  return position < 0.0 ? position + period : position;
}

/* One axis between walls: the plain mean of the cell centres (k + 1/2) spacing, in [0, L]; undefined
 * when the weights sum to (almost) zero. */
static double plain_axis(const double *weights, ptrdiff_t count, double spacing, double total, int *defined) {
  double mass = 0.0, moment = 0.0;
  for (ptrdiff_t k = 0; k < count; k++) {
    mass += weights[k];
    moment += weights[k] * ((double)k + 0.5) * spacing;
  }
  if (!(fabs(mass) > 1e-12 * total)) {
    *defined = 0;
    return 0.5 * (double)count * spacing;
  }
  return moment / mass;
}

void fluid_centre_of_mass(CPhysFluid f, const double *marker, double centre[2], int *defined) {
  const ptrdiff_t nx = f->nx, ny = f->ny;
  /* Column and row sums: nx + ny trigonometric calls instead of 2 n. */
  double *columns = fluid_slot(f, FLUID_SLOT_COLUMNS), *rows = fluid_slot(f, FLUID_SLOT_ROWS);
  double total = 0.0;
  memset(columns, 0, (size_t)nx * sizeof *columns);
  for (ptrdiff_t j = 0; j < ny; j++) {
    double row = 0.0;
    for (ptrdiff_t i = 0; i < nx; i++) {
      const double m = marker[j * nx + i];
      columns[i] += m, row += m, total += fabs(m);
    }
    rows[j] = row;
  }
  *defined = 1;
  centre[0] = (f->walls[1] ? plain_axis : circular_axis)(columns, nx, f->dx, total, defined);
  centre[1] = (f->walls[0] ? plain_axis : circular_axis)(rows, ny, f->dy, total, defined);
  if (!*defined) centre[0] = 0.5 * (double)nx * f->dx, centre[1] = 0.5 * (double)ny * f->dy;
}
