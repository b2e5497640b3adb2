/* The fluid's sample loop on several threads: bitwise the serial results, the
 * serial statistics, and the serial error (the lowest failing sample's). */
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/fluid.h"

enum { NY = 16, NX = 12, N = NY * NX, STEPS = 3, BATCH = 24, SOLVES = STEPS + 1 };

typedef struct {
  double m_t[BATCH * N], g_v0[BATCH * 2 * N], g_m0[BATCH * N], dv0[BATCH * 2 * N];
  CPhysSolveInfo forward[BATCH * SOLVES], adjoint[BATCH * SOLVES], reverse[BATCH * STEPS];
} Results;

static CPhysFluidConfig config(void) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = NY, c.shape[1] = NX, c.steps = STEPS;
  return c;
}

static void inputs(double *v0, double *m0, double *g) {
  unsigned long long state = 11;
  for (int k = 0; k < BATCH * 2 * N; k++) v0[k] = 3.0 * test_random(&state);
  for (int k = 0; k < BATCH * N; k++) m0[k] = test_random(&state) > 0.2 ? 1.0 : 0.0;
  for (int k = 0; k < BATCH * N; k++) g[k] = test_random(&state);
}

static void get_stats(CPhysFluid fluid, CPhysFluidPass pass, int solves, CPhysSolveInfo *out) {
  for (int s = 0; s < BATCH; s++)
    for (int k = 0; k < solves; k++)
      CHECK_OK(CPhysFluidGetSolveInfo(fluid, pass, s, k, out + s * solves + k));
}

static void run(CPhysFluid fluid, int threads, Results *r) {
  static double v0[BATCH * 2 * N], m0[BATCH * N], g[BATCH * N], target[BATCH * N];
  inputs(v0, m0, g);
  memset(r, 0, sizeof *r);
  CHECK_OK(CPhysSetThreads(threads));
  CHECK_OK(CPhysFluidForward(fluid, BATCH, v0, m0, r->m_t, CPHYS_FLUID_RECORD_TAPE));
  get_stats(fluid, CPHYS_FLUID_PASS_FORWARD, SOLVES, r->forward);
  CHECK_OK(CPhysFluidAdjoint(fluid, BATCH, v0, m0, g, r->g_v0, r->g_m0));
  get_stats(fluid, CPHYS_FLUID_PASS_ADJOINT, SOLVES, r->adjoint);
  for (int k = 0; k < BATCH * N; k++) target[k] = r->m_t[k] - 0.5 * g[k];
  /* The inverse twice: with its own forward run, and from the forward's record. */
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, BATCH, v0, m0, target, NULL, r->dv0));
  CHECK_OK(CPhysFluidForward(fluid, BATCH, v0, m0, r->m_t, CPHYS_FLUID_RECORD_INVERSE));
  double dv0_recorded[BATCH * 2 * N];
  CHECK_OK(CPhysFluidPhysicalInverse(fluid, BATCH, v0, m0, target, NULL, dv0_recorded));
  CHECK(!memcmp(dv0_recorded, r->dv0, sizeof dv0_recorded), "%d threads: the recorded inverse differs",
        threads);
  get_stats(fluid, CPHYS_FLUID_PASS_REVERSE, STEPS, r->reverse);
  CHECK_OK(CPhysSetThreads(0));
}

static int same_stats(const CPhysSolveInfo *a, const CPhysSolveInfo *b, int count) {
  for (int k = 0; k < count; k++)
    if (a[k].iterations != b[k].iterations || a[k].converged != b[k].converged ||
        memcmp(&a[k].residual_norm, &b[k].residual_norm, sizeof(double)))
      return 0;
  return 1;
}

static void test_threads_equal_one_thread_bitwise(void) {
  CPhysFluidConfig c = config();
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  if (!fluid) return;
  static Results serial, parallel;
  run(fluid, 1, &serial);
  for (int threads = 2; threads <= 4; threads += 2) {
    run(fluid, threads, &parallel);
    CHECK(!memcmp(serial.m_t, parallel.m_t, sizeof serial.m_t), "%d threads: m_t differs", threads);
    CHECK(!memcmp(serial.g_v0, parallel.g_v0, sizeof serial.g_v0), "%d threads: g_v0 differs", threads);
    CHECK(!memcmp(serial.g_m0, parallel.g_m0, sizeof serial.g_m0), "%d threads: g_m0 differs", threads);
    CHECK(!memcmp(serial.dv0, parallel.dv0, sizeof serial.dv0), "%d threads: dv0 differs", threads);
    CHECK(same_stats(serial.forward, parallel.forward, BATCH * SOLVES) &&
              same_stats(serial.adjoint, parallel.adjoint, BATCH * SOLVES) &&
              same_stats(serial.reverse, parallel.reverse, BATCH * STEPS),
          "%d threads: the solve statistics differ", threads);
  }
  CHECK(max_abs(serial.g_v0, BATCH * 2 * N) > 0.0 && max_abs(serial.dv0, BATCH * 2 * N) > 0.0,
        "the gradients are zero: the comparison proves nothing");
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

/* Every solve fails (one ICC(0) iteration to atol 1e-12): every thread defers
 * failures; the call reports the serial loop's (sample 0, solve 0) and every
 * sample still ran to the end. */
static void test_deferred_failure_is_the_lowest_sample_on_any_thread_count(void) {
  CPhysFluidConfig c = config();
  c.max_iterations = 1, c.atol = 1e-12;
  CPhysFluid fluid = NULL;
  CHECK_OK(CPhysSetOptions("-physgrad_fluid_pc_type icc"));
  CHECK_OK(CPhysFluidCreate(&c, &fluid));
  CHECK_OK(CPhysClearOptions());
  if (!fluid) return;
  static double v0[BATCH * 2 * N], m0[BATCH * N], g[BATCH * N], m_t[2][BATCH * N];
  char messages[2][1024];
  inputs(v0, m0, g);
  for (int run = 0; run < 2; run++) {
    CHECK_OK(CPhysSetThreads(run == 0 ? 1 : 2));
    for (int k = 0; k < BATCH * N; k++) m_t[run][k] = NAN;
    CHECK_FAILS(CPhysFluidForward(fluid, BATCH, v0, m0, m_t[run], 0), CPHYS_ERROR_NOT_CONVERGED);
    snprintf(messages[run], sizeof messages[run], "%s", CPhysGetLastErrorMessage());
    CPhysSolveInfo info;
    CHECK_OK(CPhysFluidGetSolveInfo(fluid, CPHYS_FLUID_PASS_FORWARD, BATCH - 1, STEPS, &info));
    CHECK(info.iterations == 1 && !info.converged, "run %d: the last sample's last solve did not run", run);
  }
  CHECK_OK(CPhysSetThreads(0));
  CHECK(strstr(messages[0], "forward pressure solve 0 of sample 0 ") != NULL, "serial message: %s",
        messages[0]);
  CHECK(!strcmp(messages[0], messages[1]), "messages differ:\n  1 thread:  %s\n  2 threads: %s", messages[0],
        messages[1]);
  CHECK(!memcmp(m_t[0], m_t[1], sizeof m_t[0]), "the outputs of the failing call differ");
  CHECK_OK(CPhysFluidDestroy(&fluid));
}

int main(void) {
  test_threads_equal_one_thread_bitwise();
  test_deferred_failure_is_the_lowest_sample_on_any_thread_count();
  CHECK_REPORT();
}
