/* libFuzzer target: the wave-packet object (cphys/wave_packet.h) with up to
 * 32 samples and batch up to 3: Create, Forward, Adjoint, the damped
 * Gauss-Newton step (fuzzed damping, in place or not), its iteration (the op's
 * `physical` mode) and the L-BFGS-B fit
 * (fuzzed starts, bounds, iteration limits).  Beyond the common invariants:
 * Gauss-Newton steps are finite with one of the documented reasons, and a
 * bounded fit ends inside its bounds. */
#include "cphys/environment.h"
#include "cphys/wave_packet.h"
#include "fuzz_common.h"

enum { MAX_SAMPLES = 32, MAX_BATCH = 3 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC();
  return 0;
}

/* Parameters (xi0, A): mostly inside the paper's ranges, sometimes anything. */
static void fuzz_params(FuzzInput *in, double *params, ptrdiff_t batch) {
  for (ptrdiff_t b = 0; b < batch; b++) {
    if (fuzz_int(in, 0, 3)) {
      params[2 * b] = fuzz_u8(in) / 8.0;
      params[2 * b + 1] = (double)(int8_t)fuzz_u8(in) / 32.0;
    } else {
      params[2 * b] = fuzz_double(in);
      params[2 * b + 1] = fuzz_double(in);
    }
  }
}

static void gauss_newton(FuzzInput *in, CPhysWavePacket packet, ptrdiff_t batch, double *params,
                         const double *target) {
  CPhysWavePacketGaussNewtonConfig config = CPhysWavePacketGaussNewtonDefaultConfig();
  if (fuzz_bool(in)) {
    config.damping = fuzz_bool(in) ? 0.0 : fuzz_double(in);
    config.damping_increase = fuzz_bool(in) ? 10.0 : fuzz_double(in);
    config.max_tries = fuzz_int(in, -1, 20);
  }
  const int use_defaults = fuzz_int(in, 0, 3) == 0, in_place = fuzz_bool(in), want_info = fuzz_bool(in);
  double dparams[2 * MAX_BATCH];
  CPhysSolveInfo info[MAX_BATCH];
  double *out = in_place ? params : dparams;
  const int code = fuzz_call(CPhysWavePacketGaussNewton(packet, use_defaults ? NULL : &config, batch, params,
                                                        target, out, want_info ? info : NULL));
  if (code) return;
  FUZZ_CHECK_FINITE(out, 2 * (size_t)batch, "CPhysWavePacketGaussNewton");
  for (ptrdiff_t b = 0; want_info && b < batch; b++) {
    const int reason = info[b].reason;
    FUZZ_CHECK(reason == 1 || reason == 2 || reason == -1, "Gauss-Newton reason %d", reason);
    FUZZ_CHECK(info[b].converged == (reason > 0), "converged %d with reason %d", info[b].converged, reason);
    if (reason == -1) FUZZ_CHECK(out[2 * b] == 0.0 && out[2 * b + 1] == 0.0, "a rejected step is not 0");
  }
}

static void gauss_newton_solve(FuzzInput *in, CPhysWavePacket packet, ptrdiff_t batch, double *params,
                               const double *target) {
  CPhysWavePacketGaussNewtonSolveConfig config = CPhysWavePacketGaussNewtonSolveDefaultConfig();
  if (fuzz_bool(in)) {
    config.step.damping = fuzz_bool(in) ? 0.0 : fuzz_double(in);
    config.step.max_tries = fuzz_int(in, -1, 20);
    config.max_steps = fuzz_int(in, -1, 30);
    config.output_rtol = fuzz_bool(in) ? 1e-10 : fuzz_double(in);
  }
  const int want_info = fuzz_bool(in);
  double dparams[2 * MAX_BATCH];
  CPhysSolveInfo info[MAX_BATCH];
  const int code = fuzz_call(CPhysWavePacketGaussNewtonSolve(
      packet, fuzz_int(in, 0, 3) ? &config : NULL, batch, params, target, dparams, want_info ? info : NULL));
  if (code) return;
  for (ptrdiff_t b = 0; want_info && b < batch; b++) {
    const int reason = info[b].reason;
    FUZZ_CHECK(reason == 1 || reason == 2 || reason == 3 || reason == -1, "Gauss-Newton solve reason %d",
               reason);
    FUZZ_CHECK(info[b].converged == (reason > 0), "converged %d with reason %d", info[b].converged, reason);
  }
}

static void fit(FuzzInput *in, CPhysWavePacket packet, ptrdiff_t batch, double *params,
                const double *target) {
  CPhysWavePacketFitConfig config = CPhysWavePacketFitDefaultConfig();
  config.max_iterations = fuzz_int(in, -1, 25);
  config.use_initial = fuzz_bool(in);
  config.bounded = fuzz_bool(in);
  if (fuzz_bool(in)) {
    for (int k = 0; k < 2; k++) {
      config.initial[k] = fuzz_double(in);
      config.lower[k] = fuzz_double(in);
      config.upper[k] = fuzz_bool(in) ? config.lower[k] + 1.0 : fuzz_double(in);
    }
  }
  if (fuzz_bool(in)) config.gradient_atol = fuzz_double(in);
  if (fuzz_bool(in)) config.gradient_rtol = fuzz_double(in);
  config.options_prefix = fuzz_bool(in) ? NULL : config.options_prefix;
  CPhysSolveInfo info[MAX_BATCH];
  const int code =
      fuzz_call(CPhysWavePacketFit(packet, &config, batch, target, params, fuzz_bool(in) ? info : NULL));
  if (code) return;
  FUZZ_CHECK(config.max_iterations >= 1, "Fit accepted max_iterations %d", config.max_iterations);
  FUZZ_CHECK_FINITE(params, 2 * (size_t)batch, "CPhysWavePacketFit");
  if (config.bounded)
    for (ptrdiff_t b = 0; b < batch; b++)
      for (int k = 0; k < 2; k++)
        FUZZ_CHECK(params[2 * b + k] >= config.lower[k] && params[2 * b + k] <= config.upper[k],
                   "fitted parameter %d = %g of example %td is outside [%g, %g]", k, params[2 * b + k], b,
                   config.lower[k], config.upper[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  CPhysWavePacketConfig config = CPhysWavePacketDefaultConfig();
  config.n_samples = fuzz_int(&in, -1, MAX_SAMPLES);
  config.frequency = fuzz_bool(&in) ? 4.0 : fuzz_double(&in);
  config.sigma = fuzz_bool(&in) ? 4.0 : fuzz_positive(&in, 4.0);
  CPhysWavePacket packet = (CPhysWavePacket)&in;
  if (fuzz_call(CPhysWavePacketCreate(&config, &packet))) {
    FUZZ_CHECK(packet == NULL, "a failed Create left a non-NULL handle");
    return 0;
  }
  const size_t n = (size_t)config.n_samples;
  const int rounds = fuzz_int(&in, 1, 3);
  for (int round = 0; round < rounds; round++) {
    const ptrdiff_t batch = fuzz_int(&in, -1, MAX_BATCH);
    const size_t b = batch > 0 ? (size_t)batch : 0;
    double params[2 * MAX_BATCH], *series = fuzz_array(&in, n * b), *out = fuzz_zeros(n * b);
    double dparams[2 * MAX_BATCH];
    fuzz_params(&in, params, (ptrdiff_t)b);
    switch (fuzz_int(&in, 0, 5)) {
      case 0:
        fuzz_call(CPhysWavePacketForward(packet, batch, params, out));
        break;
      case 1:
        fuzz_call(CPhysWavePacketAdjoint(packet, batch, params, series, fuzz_bool(&in) ? params : dparams));
        break;
      case 2:
        gauss_newton(&in, packet, batch, params, series);
        break;
      case 3:
        fit(&in, packet, batch, params, series);
        break;
      case 5:
        gauss_newton_solve(&in, packet, batch, params, series);
        break;
      case 4: {
        CPhysLeastSquaresProblem problem;
        fuzz_call(CPhysWavePacketGetLeastSquaresProblem(packet, &problem));
        FUZZ_CHECK(problem.n == 2 && problem.m == (ptrdiff_t)n, "problem sizes %td, %td", problem.n,
                   problem.m);
        CPhysWavePacketConfig got;
        fuzz_call(CPhysWavePacketGetConfig(packet, &got));
        break;
      }
    }
    free(series);
    free(out);
  }
  fuzz_call(CPhysWavePacketDestroy(&packet));
  FUZZ_CHECK(packet == NULL, "Destroy did not clear the handle");
  return 0;
}
