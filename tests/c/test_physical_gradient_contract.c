/* The one contract of every op's physical gradient (cphys/physical_gradient.h):
 * each op's CPhysInverseProblem, called through the same generic code, gives
 * bitwise the op's own physical gradient for the target y - y_step g, fills the
 * per-sample statistics and refuses bad arguments the same way. */
#include <string.h>

#include "check.h"
#include "cphys/fluid.h"
#include "cphys/heat.h"
#include "cphys/poisson.h"
#include "cphys/poisson_spectral.h"
#include "cphys/sine.h"
#include "cphys/wave_packet.h"

#define BATCH 3

static unsigned long long rng_state = 12345;
static double uniform(double low, double high) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return low + (high - low) * (double)(rng_state >> 11) / 9007199254740992.0;
}
static double *random_array(ptrdiff_t count, double low, double high) {
  double *a = malloc(sizeof(double) * (size_t)count);
  for (ptrdiff_t k = 0; k < count; k++) a[k] = uniform(low, high);
  return a;
}

/* What a caller of the contract does, the same for every op: dx and info for (x, y, g). */
static int call(const CPhysInverseProblem *p, const double *x, const double *y, const double *g,
                double y_step, double *dx, CPhysSolveInfo *info) {
  return p->physical_gradient(p->context, BATCH, x, y, g, y_step, dx, info);
}

static void check_bitwise(const char *op, const double *a, const double *b, ptrdiff_t count) {
  CHECK(memcmp(a, b, sizeof(double) * (size_t)count) == 0, "%s: the contract's dx differs from the op's own",
        op);
}

static void check_info(const char *op, const CPhysSolveInfo *info, const char *reason) {
  for (int s = 0; s < BATCH; s++) {
    CHECK(info[s].converged == 1, "%s: sample %d not converged", op, s);
    if (reason) CHECK(strcmp(info[s].reason_text, reason) == 0, "%s: reason %s", op, info[s].reason_text);
  }
}

/* The common argument checks: a non-finite y_step is refused by every op. */
static void check_refuses_nan_step(const char *op, const CPhysInverseProblem *p, const double *x,
                                   const double *y, const double *g, double *dx) {
  CHECK_FAILS(call(p, x, y, g, NAN, dx, NULL), CPHYS_ERROR_ARGUMENT);
  (void)op;
}

static void test_heat(void) {
  CPhysHeatConfig config = CPhysHeatDefaultConfig();
  config.shape[0] = 6, config.shape[1] = 8, config.nu_t = 2.0;
  CPhysHeat heat;
  CHECK_OK(CPhysHeatCreate(&config, &heat));
  CPhysInverseProblem p;
  CHECK_OK(CPhysHeatGetInverseProblem(heat, &p));
  CHECK(p.n == 48 && p.m == 48, "heat sizes %td %td", p.n, p.m);
  double *x = random_array(BATCH * p.n, -1, 1), *y = random_array(BATCH * p.m, -1, 1);
  double *g = random_array(BATCH * p.m, -1, 1), *dx = malloc(sizeof(double) * BATCH * p.n);
  double *step = malloc(sizeof(double) * BATCH * p.m), *expected = malloc(sizeof(double) * BATCH * p.n);
  for (ptrdiff_t k = 0; k < BATCH * p.m; k++) step[k] = 0.7 * g[k];
  CHECK_OK(CPhysHeatPhysicalGradient(heat, BATCH, step, expected));
  CPhysSolveInfo info[BATCH];
  CHECK_OK(call(&p, x, y, g, 0.7, dx, info));
  check_bitwise("heat", dx, expected, BATCH * p.n);
  check_info("heat", info, "DIRECT");
  check_refuses_nan_step("heat", &p, x, y, g, dx);
  CHECK_FAILS(CPhysHeatGetInverseProblem(heat, NULL), CPHYS_ERROR_ARGUMENT);
  free(x), free(y), free(g), free(dx), free(step), free(expected);
  CHECK_OK(CPhysHeatDestroy(&heat));
}

static void test_poisson(void) {
  CPhysPoissonConfig config = CPhysPoissonDefaultConfig();
  config.shape[0] = 5, config.shape[1] = 7;
  CPhysPoisson poisson;
  CHECK_OK(CPhysPoissonCreate(&config, &poisson));
  CPhysPoissonSpectralConfig sc = CPhysPoissonSpectralDefaultConfig();
  sc.dims = 2, sc.shape[0] = 5, sc.shape[1] = 7;
  CPhysPoissonSpectral spectral;
  CHECK_OK(CPhysPoissonSpectralCreate(&sc, &spectral));
  CPhysInverseProblem p, q;
  CHECK_OK(CPhysPoissonGetInverseProblem(poisson, &p));
  CHECK_OK(CPhysPoissonSpectralGetInverseProblem(spectral, &q));
  CHECK(p.n == 35 && q.n == 35 && p.m == 35 && q.m == 35, "poisson sizes");
  double *x = random_array(BATCH * 35, -1, 1), *y = random_array(BATCH * 35, -1, 1);
  double *g = random_array(BATCH * 35, -1, 1);
  double *dx = malloc(sizeof(double) * BATCH * 35), *dx2 = malloc(sizeof(double) * BATCH * 35);
  double *expected = malloc(sizeof(double) * BATCH * 35);
  CHECK_OK(CPhysPoissonPhysicalGradient(poisson, BATCH, 0.3, g, expected));
  CPhysSolveInfo info[BATCH];
  CHECK_OK(call(&p, x, y, g, 0.3, dx, info));
  check_bitwise("poisson", dx, expected, BATCH * 35);
  check_info("poisson", info, "DIRECT");
  CHECK_OK(call(&q, x, y, g, 0.3, dx2, info));
  check_bitwise("poisson spectral", dx2, expected, BATCH * 35); /* the same stencil, bitwise */
  check_info("poisson spectral", info, "DIRECT");
  check_refuses_nan_step("poisson", &p, x, y, g, dx);
  check_refuses_nan_step("poisson spectral", &q, x, y, g, dx);
  free(x), free(y), free(g), free(dx), free(dx2), free(expected);
  CHECK_OK(CPhysPoissonDestroy(&poisson));
  CHECK_OK(CPhysPoissonSpectralDestroy(&spectral));
}

static void test_sine(void) {
  enum { N = 4 }; /* elements per sample */
  double *a = random_array(BATCH * N, 0.5, 3.0), *x = random_array(BATCH * N, 0.5, 2.0);
  double *y = malloc(sizeof(double) * BATCH * N), *g = random_array(BATCH * N, -0.5, 0.5);
  double *target = malloc(sizeof(double) * BATCH * N), *dx = malloc(sizeof(double) * BATCH * N);
  double *expected = malloc(sizeof(double) * BATCH * N);
  CHECK_OK(CPhysSineForward(BATCH * N, a, x, y));
  for (int k = 0; k < BATCH * N; k++) target[k] = y[k] - 1.5 * g[k];
  CHECK_OK(CPhysSinePhysicalGradient(BATCH * N, a, x, target, expected));
  const CPhysSineData data = {a, N};
  CPhysInverseProblem p;
  CHECK_OK(CPhysSineGetInverseProblem(&data, &p));
  CHECK(p.n == N && p.m == N, "sine sizes %td %td", p.n, p.m);
  CPhysSolveInfo info[BATCH];
  CHECK_OK(call(&p, x, y, g, 1.5, dx, info));
  check_bitwise("sine", dx, expected, BATCH * N);
  check_info("sine", info, "DIRECT");
  check_refuses_nan_step("sine", &p, x, y, g, dx);
  const CPhysSineData empty = {a, 0};
  CHECK_FAILS(CPhysSineGetInverseProblem(&empty, &p), CPHYS_ERROR_ARGUMENT);
  free(a), free(x), free(y), free(g), free(target), free(dx), free(expected);
}

static void test_wave_packet(void) {
  CPhysWavePacket packet;
  CHECK_OK(CPhysWavePacketCreate(&(CPhysWavePacketConfig){64, 4.0, 20.0}, &packet));
  CPhysInverseProblem p;
  CHECK_OK(CPhysWavePacketGetInverseProblem(packet, &p));
  CHECK(p.n == 2 && p.m == 64, "wave packet sizes %td %td", p.n, p.m);
  const double params[2 * BATCH] = {30.0, 2.0, 25.0, 1.5, 40.0, 3.0};
  double *y = malloc(sizeof(double) * BATCH * 64), *g = random_array(BATCH * 64, -0.1, 0.1);
  double *target = malloc(sizeof(double) * BATCH * 64);
  double dx[2 * BATCH], expected[2 * BATCH];
  CHECK_OK(CPhysWavePacketForward(packet, BATCH, params, y));
  for (int k = 0; k < BATCH * 64; k++) target[k] = y[k] - 2.0 * g[k];
  CPhysSolveInfo info[BATCH], expected_info[BATCH];
  CHECK_OK(CPhysWavePacketGaussNewtonSolve(packet, NULL, BATCH, params, target, expected, expected_info));
  CHECK_OK(call(&p, params, y, g, 2.0, dx, info));
  check_bitwise("wave packet", dx, expected, 2 * BATCH);
  for (int s = 0; s < BATCH; s++)
    CHECK(
        info[s].iterations == expected_info[s].iterations && info[s].converged == expected_info[s].converged,
        "wave packet: sample %d's statistics differ", s);
  check_refuses_nan_step("wave packet", &p, params, y, g, dx);
  free(y), free(g), free(target);
  CHECK_OK(CPhysWavePacketDestroy(&packet));
}

static void test_fluid(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = c.shape[1] = 16, c.steps = 2;
  CPhysFluid fluid;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  const ptrdiff_t n = 16 * 16;
  double *v0 = random_array(BATCH * 2 * n, -0.5, 0.5), *m0 = random_array(BATCH * n, 0.0, 1.0);
  double *y = malloc(sizeof(double) * BATCH * n), *g = random_array(BATCH * n, -0.1, 0.1);
  double *target = malloc(sizeof(double) * BATCH * n), *dv = malloc(sizeof(double) * BATCH * 2 * n);
  double *expected = malloc(sizeof(double) * BATCH * 2 * n);
  CHECK_OK(CPhysFluidForward(fluid, BATCH, v0, m0, y, CPHYS_FLUID_RECORD_NONE));
  for (ptrdiff_t k = 0; k < BATCH * n; k++) target[k] = y[k] - g[k];
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, BATCH, v0, m0, target, NULL, expected));
  CPhysInverseProblem p;
  CHECK_OK(CPhysFluidGetInverseProblem(fluid, BATCH, m0, &p));
  CHECK(p.n == 2 * n && p.m == n, "fluid sizes %td %td", p.n, p.m);
  CPhysSolveInfo info[BATCH];
  CHECK_OK(call(&p, v0, y, g, 1.0, dv, info));
  check_bitwise("fluid", dv, expected, BATCH * 2 * n);
  for (int s = 0; s < BATCH; s++)
    CHECK(info[s].converged == 1 && info[s].iterations > 0, "fluid: sample %d: %d iterations, converged %d",
          s, info[s].iterations, info[s].converged);
  check_refuses_nan_step("fluid", &p, v0, y, g, dv);
  /* the bound markers fix the batch */
  CHECK_FAILS(p.physical_gradient(p.context, BATCH - 1, v0, y, g, 1.0, dv, NULL), CPHYS_ERROR_ARGUMENT);
  free(v0), free(m0), free(y), free(g), free(target), free(dv), free(expected);
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

static void test_direct_info(void) {
  CPhysSolveInfo info[2];
  memset(info, 0xff, sizeof info);
  CPhysSetDirectInfo(info, 2, "EXPLICIT");
  CHECK(info[1].converged == 1 && info[1].iterations == 0 && info[1].residual_norm == 0.0 &&
            strcmp(info[1].reason_text, "EXPLICIT") == 0,
        "direct info");
  CPhysSetDirectInfo(NULL, 2, NULL); /* no statistics wanted: nothing happens */
}

int main(void) {
  test_heat();
  test_poisson();
  test_sine();
  test_wave_packet();
  test_fluid();
  test_direct_info();
  CHECK_REPORT();
}
