/* libFuzzer target: the fluid object (cphys/fluid.h) on tiny periodic grids
 * (up to 8 x 8 cells, up to 3 steps, batch up to 2): Create with fuzzed
 * configurations, then a fuzzed sequence of Forward (recorded or not),
 * Adjoint (reusing the tape or not), PhysicalInverse, the `lbfgs` mode, the
 * building blocks and the tape/statistics readers.  Beyond the common invariants: m_t finite on
 * success (fluid.h checks it), the inverse's estimate and the adjoint's
 * gradients finite on success, statistics readable for what the last call did. */
#include "cphys/environment.h"
#include "cphys/fluid.h"
#include "fuzz_common.h"

enum { MAX_AXIS = 8, MAX_BATCH = 2, MAX_STEPS = 3 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC();
  return 0;
}

static ptrdiff_t fuzz_axis(FuzzInput *in) {
  const int v = fuzz_int(in, 1, MAX_AXIS + 8);
  return v > MAX_AXIS ? 3 + v % (MAX_AXIS - 2) : v; /* mostly >= 3 */
}

static CPhysFluidConfig fuzz_config(FuzzInput *in) {
  CPhysFluidConfig c = CPhysFluidDefaultConfig();
  c.shape[0] = fuzz_axis(in), c.shape[1] = fuzz_axis(in);
  c.spacing[0] = fuzz_positive(in, 2.0), c.spacing[1] = fuzz_positive(in, 2.0);
  c.dt = fuzz_positive(in, 0.25);
  c.steps = fuzz_int(in, -1, MAX_STEPS);
  if (fuzz_bool(in)) c.atol = fuzz_double(in);
  if (fuzz_bool(in)) c.rtol = fuzz_double(in);
  c.max_iterations = fuzz_int(in, -1, 200);
  c.limiter = (CPhysFluidLimiter)fuzz_int(in, -1, 3);
  c.energy = (CPhysFluidEnergy)fuzz_int(in, -1, 3);
  if (fuzz_bool(in)) {
    c.vortex_sigma = fuzz_positive(in, 4.0);
    c.vortex_center[0] = fuzz_double(in), c.vortex_center[1] = fuzz_double(in);
    c.vortex_gain = fuzz_double(in);
    c.marker_destination[0] = fuzz_double(in), c.marker_destination[1] = fuzz_double(in);
  }
  c.destination_from_target = fuzz_bool(in);
  return c;
}

/* Reads every statistic the last pass recorded, and one beyond. */
static void read_statistics(CPhysFluid fluid) {
  for (int pass = 0; pass < 3; pass++) {
    ptrdiff_t batch = -1;
    int solves = -1;
    fuzz_call(CPhysFluidGetSolveCount(fluid, (CPhysFluidPass)pass, &batch, &solves));
    FUZZ_CHECK(batch >= 0 && solves >= 0, "solve count %td x %d", batch, solves);
    for (ptrdiff_t s = 0; s <= batch; s++)
      for (int k = 0; k <= solves; k++) {
        CPhysSolveInfo info;
        const int code = fuzz_call(CPhysFluidGetSolveInfo(fluid, (CPhysFluidPass)pass, s, k, &info));
        FUZZ_CHECK((code == 0) == (s < batch && k < solves), "GetSolveInfo(%d, %td, %d) returned %s", pass, s,
                   k, CPhysErrorName(code));
      }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  CPhysFluidConfig config = fuzz_config(&in);
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr,
            "config: shape [%td, %td] spacing [%g, %g] dt %g steps %d atol %g rtol %g max_iterations %d "
            "limiter %d "
            "energy %d sigma %g centre (%g, %g) gain %g destination (%g, %g) from_target %d\n",
            config.shape[0], config.shape[1], config.spacing[0], config.spacing[1], config.dt, config.steps,
            config.atol, config.rtol, config.max_iterations, (int)config.limiter, (int)config.energy,
            config.vortex_sigma, config.vortex_center[0], config.vortex_center[1], config.vortex_gain,
            config.marker_destination[0], config.marker_destination[1], config.destination_from_target);
  CPhysFluid fluid = (CPhysFluid)&in;
  if (fuzz_call(CPhysFluidCreate(&config, &fluid))) {
    FUZZ_CHECK(fluid == NULL, "a failed Create left a non-NULL handle");
    return 0;
  }
  const size_t n = (size_t)(config.shape[0] * config.shape[1]);
  const int rounds = fuzz_int(&in, 1, 4);
  for (int round = 0; round < rounds; round++) {
    const ptrdiff_t batch = fuzz_int(&in, 0, MAX_BATCH);
    const size_t b = (size_t)batch;
    /* Velocities in length/time: fuzz_fill's moderate values move up to a few cells per step. */
    double *v0 = fuzz_array(&in, 2 * n * b), *m0 = fuzz_array(&in, n * b), *target = fuzz_array(&in, n * b);
    double *out_v = fuzz_zeros(2 * n * b), *out_v2 = fuzz_zeros(2 * n * b), *out_m = fuzz_zeros(n * b);
    const int inputs_finite = fuzz_all_finite(v0, 2 * n * b) && fuzz_all_finite(m0, n * b);
    const int op = fuzz_int(&in, 0, 10);
    int code = 0;
    switch (op) {
      case 0:
      case 1:
        code = fuzz_call(CPhysFluidForward(fluid, batch, v0, m0, out_m, fuzz_bool(&in)));
        if (!code) {
          FUZZ_CHECK(inputs_finite, "Forward accepted a non-finite input");
          FUZZ_CHECK_FINITE(out_m, n * b, "CPhysFluidForward");
        }
        if (!code && op == 1 && batch > 0 && fuzz_bool(&in)) {
          /* The adjoint right after a recorded forward of the same inputs reuses the tape. */
          code = fuzz_call(CPhysFluidForward(fluid, batch, v0, m0, out_m, 1));
          if (!code) code = fuzz_call(CPhysFluidAdjoint(fluid, batch, v0, m0, target, out_v, out_m));
          if (!code) FUZZ_CHECK_FINITE(out_v, 2 * n * b, "CPhysFluidAdjoint (taped)");
        }
        break;
      case 2:
        code =
            fuzz_call(CPhysFluidAdjoint(fluid, batch, v0, m0, target, out_v, fuzz_bool(&in) ? out_m : NULL));
        if (!code) {
          FUZZ_CHECK_FINITE(out_v, 2 * n * b, "CPhysFluidAdjoint");
          FUZZ_CHECK_FINITE(out_m, n * b, "CPhysFluidAdjoint (g_m0)");
        }
        break;
      case 3: {
        const int which = fuzz_int(&in, 0, 3); /* 0: neither (an argument error when batch > 0) */
        code = fuzz_call(CPhysFluidPhysicalInverse(fluid, batch, v0, m0, target, which & 1 ? out_v : NULL,
                                                   which & 2 ? out_v2 : NULL));
        if (which == 0 && batch > 0) FUZZ_CHECK(code != 0, "inverse without outputs accepted");
        if (!code) {
          FUZZ_CHECK(inputs_finite && fuzz_all_finite(target, n * b),
                     "PhysicalInverse accepted a non-finite input");
          if (which & 1) FUZZ_CHECK_FINITE(out_v, 2 * n * b, "CPhysFluidPhysicalInverse (v0_new)");
          if (which & 2) FUZZ_CHECK_FINITE(out_v2, 2 * n * b, "CPhysFluidPhysicalInverse (dv0)");
        }
        break;
      }
      case 4:
        code = fuzz_call(CPhysFluidStep(fluid, batch, v0, m0, fuzz_bool(&in) ? target : NULL));
        break;
      case 5:
        code = fuzz_call(CPhysFluidProject(fluid, batch, v0));
        break;
      case 6:
        fuzz_call(CPhysFluidCentredToStaggered(fluid, batch, v0, out_v));
        fuzz_call(CPhysFluidCentredToStaggeredAdjoint(fluid, batch, v0, out_v2));
        fuzz_call(CPhysFluidStaggeredToCentred(fluid, batch, out_v, out_v2));
        code = fuzz_call(CPhysFluidDivergence(fluid, batch, v0, out_m));
        break;
      case 7: {
        double centre[2 * MAX_BATCH];
        int defined[MAX_BATCH];
        code = fuzz_call(CPhysFluidCentreOfMass(fluid, batch, m0, centre, defined));
        if (!code)
          for (ptrdiff_t s = 0; s < batch; s++) {
            const double lx = (double)config.shape[1] * config.spacing[1];
            const double ly = (double)config.shape[0] * config.spacing[0];
            FUZZ_CHECK(centre[2 * s] >= 0.0 && centre[2 * s] <= lx && centre[2 * s + 1] >= 0.0 &&
                           centre[2 * s + 1] <= ly,
                       "centre (%g, %g) outside the box [%g, %g]", centre[2 * s], centre[2 * s + 1], lx, ly);
          }
        double vortex[2 * MAX_AXIS * MAX_AXIS];
        fuzz_call(CPhysFluidUnitVortex(fluid, vortex));
        FUZZ_CHECK_FINITE(vortex, 2 * n, "CPhysFluidUnitVortex");
        break;
      }
      case 8: {
        const ptrdiff_t sample = fuzz_int(&in, -1, MAX_BATCH);
        const int k = fuzz_int(&in, -1, MAX_STEPS + 1);
        double velocity[2 * MAX_AXIS * MAX_AXIS], marker[MAX_AXIS * MAX_AXIS];
        code = fuzz_call(CPhysFluidGetState(fluid, sample, k, fuzz_bool(&in) ? velocity : NULL, marker));
        if (!code)
          FUZZ_CHECK(k >= 0 && k <= config.steps && sample >= 0, "GetState(%td, %d) accepted", sample, k);
        break;
      }
      case 9:
        read_statistics(fluid);
        break;
      case 10: { /* the `lbfgs` mode: each evaluation a recorded forward and an adjoint run */
        CPhysLeastSquaresConfig lbfgs = {0};
        lbfgs.max_iterations = fuzz_int(&in, 0, 3);
        lbfgs.gradient_atol = fuzz_bool(&in) ? 0.0 : fuzz_double(&in);
        const double y_step = fuzz_bool(&in) ? 1.0 : fuzz_double(&in);
        CPhysSolveInfo info[MAX_BATCH];
        code = fuzz_call(CPhysFluidLbfgsPhysicalGradient(fluid, fuzz_int(&in, 0, 15) ? &lbfgs : NULL, batch,
                                                         v0, m0, target, out_m, y_step, out_v,
                                                         fuzz_bool(&in) ? info : NULL));
        if (!code) FUZZ_CHECK(inputs_finite, "Lbfgs accepted a non-finite input");
        break;
      }
    }
    (void)code;
    free(v0), free(m0), free(target), free(out_v), free(out_v2), free(out_m);
  }
  read_statistics(fluid);
  fuzz_call(CPhysFluidDestroy(&fluid));
  FUZZ_CHECK(fluid == NULL, "Destroy did not clear the handle");
  return 0;
}
