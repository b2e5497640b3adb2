/* Discrete adjoint of the fluid forward map, from the tape (entry point: CPhysFluidAdjoint in fluid.c). */
#include <math.h>
#include <string.h>

#include "fluid_internal.h"

/* v_out = s W with s = sqrt(E0 / E), E0 = |v_in|^2, E = |W|^2 per group.
 * With c = <g, W>:  g_W = s g - (s c / E) W  and  g_v_in += (s c / E0) v_in.
 * At E = 0 the forward map leaves W unchanged and so does its adjoint; at
 * E0 = 0 (s = 0) the dependence on v_in is not differentiable and is taken as 0. */
static void rescale_adjoint(CPhysFluid f, const double *v_in, const double *w, const double *g_out,
                            double *g_w, double *g_v_in) {
  ptrdiff_t begin[2], end[2];
  const int groups = fluid_energy_groups(f, begin, end);
  if (groups == 0) memcpy(g_w, g_out, (size_t)(2 * f->n) * sizeof *g_w);
  for (int g = 0; g < groups; g++) {
    double energy0 = 0.0, energy = 0.0, c = 0.0;
    for (ptrdiff_t k = begin[g]; k < end[g]; k++) {
      energy0 += v_in[k] * v_in[k];
      energy += w[k] * w[k];
      c += g_out[k] * w[k];
    }
    if (energy == 0.0) {
      memcpy(g_w + begin[g], g_out + begin[g], (size_t)(end[g] - begin[g]) * sizeof *g_w);
      continue;
    }
    const double s = sqrt(energy0 / energy), a = s * c / energy;
    for (ptrdiff_t k = begin[g]; k < end[g]; k++) g_w[k] = s * g_out[k] - a * w[k];
    if (energy0 > 0.0) {
      const double b = s * c / energy0;
      for (ptrdiff_t k = begin[g]; k < end[g]; k++) g_v_in[k] += b * v_in[k];
    }
  }
}

static void zero(double *a, ptrdiff_t count) {
  memset(a, 0, (size_t)count * sizeof *a);
}

static double norm2(const double *a, ptrdiff_t count) {
  double s = 0.0;
  for (ptrdiff_t k = 0; k < count; k++) s += a[k] * a[k];
  return sqrt(s);
}

/* The projection is linear, P(g) = P(a g) / a; the solve runs on a g scaled to
 * the norm of the forward velocity `like`, so that the absolute tolerance gives
 * the adjoint the forward's relative accuracy whatever the scale of the loss
 * (a small gradient would otherwise meet atol unprojected). */
static int project_adjoint_locked(CPhysFluid f, double *g, const double *like, double *q, ptrdiff_t s,
                                  int solve) {
  const ptrdiff_t count = 2 * f->n;
  const double norm_g = norm2(g, count), norm_like = norm2(like, count);
  const double a = norm_g > 0.0 && norm_like > 0.0 ? norm_like / norm_g : 1.0;
  if (a != 1.0)
    for (ptrdiff_t k = 0; k < count; k++) g[k] *= a;
  CPhysCall(fluid_project_locked(f, g, q, fluid_stats_at(f, CPHYS_FLUID_PASS_ADJOINT, s, solve), "adjoint", s,
                                 solve));
  if (a != 1.0)
    for (ptrdiff_t k = 0; k < count; k++) g[k] /= a;
  return 0;
}

/* Step k backwards: g_v [2n] (adjoint of V_{k+1}; it also collects the marker
 * advection's velocity adjoint) and g_m [n] (of M_{k+1}) in, g_vk [2n] (of V_k)
 * and g_mk [n] (of M_k) out. */
static int step_adjoint_locked(CPhysFluid f, ptrdiff_t s, int k, double *g_v, const double *g_m, double *g_vk,
                               double *g_mk, double *g_w, double *q) {
  const ptrdiff_t n = f->n;
  double *ux = fluid_slot(f, FLUID_SLOT_UX), *uy = fluid_slot(f, FLUID_SLOT_UY);
  double *gux = fluid_slot(f, FLUID_SLOT_GUX), *guy = fluid_slot(f, FLUID_SLOT_GUY);
  const double *vk = fluid_tape_velocity(f, s, k), *vk1 = fluid_tape_velocity(f, s, k + 1);
  const double *wk = fluid_tape_projected(f, s, k), *mk = fluid_tape_marker(f, s, k);
  const unsigned char *branches = fluid_tape_branches(f, s, k);
  /* 6. marker advection with V_{k+1} */
  fluid_node_velocity(f, FLUID_CENTRED, vk1, ux, uy);
  zero(g_mk, n), zero(gux, n), zero(guy, n);
  fluid_maccormack_adjoint(f, FLUID_CENTRED, mk, ux, uy, branches + 2 * n, g_m, g_mk, gux, guy);
  fluid_node_velocity_adjoint(f, FLUID_CENTRED, gux, guy, g_v);
  /* 5. energy rescale */
  zero(g_vk, 2 * n);
  rescale_adjoint(f, vk, wk, g_v, g_w, g_vk);
  /* 4. projection: self-adjoint */
  CPhysCall(project_adjoint_locked(f, g_w, wk, q, s, k + 1));
  /* 3. viscosity: (I - nu dt L)^-1 is symmetric */
  if (f->config.viscosity > 0.0) fluid_diffuse(f, g_w);
  /* 2. self-advection: V_k is both the advected field and the velocity */
  for (int c = 0; c < 2; c++) {
    const FluidGridKind kind = c == 0 ? FLUID_XFACE : FLUID_YFACE;
    fluid_node_velocity(f, kind, vk, ux, uy);
    zero(gux, n), zero(guy, n);
    fluid_maccormack_adjoint(f, kind, vk + c * n, ux, uy, branches + c * n, g_w + c * n, g_vk + c * n, gux,
                             guy);
    fluid_node_velocity_adjoint(f, kind, gux, guy, g_vk);
  }
  return 0;
}

typedef struct {
  const double *g_mt;
  double *g_v0, *g_m0;
} AdjointArgs;

static int adjoint_sample_locked(CPhysFluid f, ptrdiff_t s, void *context) {
  const AdjointArgs *args = context;
  const ptrdiff_t n = f->n;
  double *g_v[2] = {fluid_slot(f, FLUID_SLOT_VELOCITY), fluid_slot(f, FLUID_SLOT_VELOCITY_NEXT)};
  double *g_m[2] = {fluid_slot(f, FLUID_SLOT_MARKER), fluid_slot(f, FLUID_SLOT_MARKER_NEXT)};
  double *g_w = fluid_slot(f, FLUID_SLOT_PROJECTED), *q = fluid_slot(f, FLUID_SLOT_PRESSURE);
  memcpy(g_m[0], args->g_mt + s * n, (size_t)n * sizeof *args->g_mt);
  zero(g_v[0], 2 * n), zero(q, n);
  int a = 0;
  for (int k = f->config.steps - 1; k >= 0; k--, a = 1 - a)
    CPhysCall(step_adjoint_locked(f, s, k, g_v[a], g_m[a], g_v[1 - a], g_m[1 - a], g_w, q));
  /* V_0 = P S v0 */
  zero(q, n);
  CPhysCall(project_adjoint_locked(f, g_v[a], fluid_tape_velocity(f, s, 0), q, s, 0));
  fluid_centred_to_staggered_adjoint(f, g_v[a], args->g_v0 + s * 2 * n);
  if (args->g_m0) memcpy(args->g_m0 + s * n, g_m[a], (size_t)n * sizeof *args->g_m0);
  return 0;
}

int fluid_adjoint_locked(CPhysFluid f, ptrdiff_t batch, const double *g_mt, double *g_v0, double *g_m0) {
  AdjointArgs args = {g_mt, g_v0, g_m0};
  CPhysCall(fluid_stats_reset(f, CPHYS_FLUID_PASS_ADJOINT, batch, f->config.steps + 1));
  return fluid_for_samples_locked(f, batch, adjoint_sample_locked, &args);
}
