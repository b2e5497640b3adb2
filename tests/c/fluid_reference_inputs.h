/* Inputs of the fluid's periodic reference (tests/c/fluid_periodic_reference.h): smooth
 * deterministic fields on a small grid, so that the reference outputs of the committed
 * periodic code can be recomputed bitwise by every later version (scripts/make_fluid_reference.c). */
#pragma once
#include <math.h>
#include <stddef.h>

#include "cphys/fluid.h"

enum { FLUID_REFERENCE_NY = 8, FLUID_REFERENCE_NX = 10, FLUID_REFERENCE_N = 80 };

/* Case 0: the paper's settings on the small grid; case 1: viscous (energy none). */
static inline CPhysFluidConfig fluid_reference_config(int viscous) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = FLUID_REFERENCE_NY, c.shape[1] = FLUID_REFERENCE_NX;
  c.spacing[0] = 1.5, c.spacing[1] = 2.0;
  c.steps = 3;
  c.dt = 0.4;
  c.atol = 1e-11;
  if (viscous) c.energy = CPHYS_FLUID_ENERGY_NONE, c.viscosity = 0.8;
  return c;
}

/* v0 [2, ny, nx], m0, target, g [ny, nx]. */
static inline void fluid_reference_inputs(double *v0, double *m0, double *target, double *g) {
  const ptrdiff_t ny = FLUID_REFERENCE_NY, nx = FLUID_REFERENCE_NX, n = FLUID_REFERENCE_N;
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++) {
      const double x = (double)i / (double)nx, y = (double)j / (double)ny;
      const ptrdiff_t p = j * nx + i;
      v0[p] = 3.0 * sin(6.283185307179586 * (y + 0.1)) + 1.3 * cos(12.566370614359172 * x + 0.4) + 0.7;
      v0[n + p] = -2.5 * cos(6.283185307179586 * (x + 0.3 * y)) + 0.9 * sin(12.566370614359172 * y) - 0.4;
      m0[p] = exp(-8.0 * ((x - 0.4) * (x - 0.4) + (y - 0.55) * (y - 0.55))) + 0.1 * cos(31.0 * (double)p);
      target[p] = exp(-8.0 * ((x - 0.5) * (x - 0.5) + (y - 0.5) * (y - 0.5)));
      g[p] = sin(7.0 * (double)p + 0.3);
    }
}
