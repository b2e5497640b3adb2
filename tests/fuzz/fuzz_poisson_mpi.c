/* libFuzzer target: the distributed Poisson object (cphys/poisson_mpi.h) on one
 * rank (MPI_COMM_SELF or MPI_COMM_WORLD of the single fuzzing process), grids up
 * to 16 x 16: Create with fuzzed configurations, Solve, Adjoint,
 * ApplyLaplacian, PhysicalGradient, GetLocalRange, GetConfig, Destroy.  The
 * invariants are CPhysPoisson's (fuzz_poisson.c): success means converged and
 * finite; the block of the only rank is the whole grid. */
#include "cphys/environment.h"
#include "cphys/poisson_mpi.h"
#include "fuzz_common.h"

enum { MAX_AXIS = 16 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC();
  return 0;
}

static ptrdiff_t fuzz_axis(FuzzInput *in) {
  const int v = fuzz_int(in, -2, MAX_AXIS + 16);
  return v > MAX_AXIS ? 1 + v % MAX_AXIS : v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  CPhysPoissonConfig config = CPhysPoissonDefaultConfig();
  config.shape[0] = fuzz_axis(&in), config.shape[1] = fuzz_axis(&in);
  config.spacing[0] = fuzz_positive(&in, 1.0), config.spacing[1] = fuzz_positive(&in, 1.0);
  config.rtol = fuzz_bool(&in) ? 1e-10 : fuzz_double(&in);
  config.atol = fuzz_bool(&in) ? 1e-50 : fuzz_double(&in);
  config.max_iterations = fuzz_int(&in, -1, 300);
  config.options_prefix = fuzz_bool(&in) ? NULL : "physgrad_poisson_";
  const MPI_Comm comm = fuzz_bool(&in) ? MPI_COMM_SELF : MPI_COMM_WORLD;
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "config: shape [%td, %td] spacing [%a, %a] rtol %a atol %a max_iterations %d\n",
            config.shape[0], config.shape[1], config.spacing[0], config.spacing[1], config.rtol, config.atol,
            config.max_iterations);

  CPhysPoissonMPI poisson = (CPhysPoissonMPI)&in;
  if (fuzz_call(CPhysPoissonMPICreate(comm, fuzz_int(&in, 0, 31) ? &config : NULL, &poisson))) {
    FUZZ_CHECK(poisson == NULL, "a failed Create left a non-NULL handle");
    return 0;
  }
  ptrdiff_t ys = -1, ym = -1, xs = -1, xm = -1;
  fuzz_call(CPhysPoissonMPIGetLocalRange(poisson, &ys, &ym, &xs, &xm));
  FUZZ_CHECK(ys == 0 && xs == 0 && ym == config.shape[0] && xm == config.shape[1],
             "one rank owns [%td + %td, %td + %td] of [%td, %td]", ys, ym, xs, xm, config.shape[0],
             config.shape[1]);
  CPhysPoissonConfig got;
  fuzz_call(CPhysPoissonMPIGetConfig(poisson, &got));
  FUZZ_CHECK(got.shape[0] == config.shape[0] && got.shape[1] == config.shape[1],
             "GetConfig changed the shape");

  const size_t cells = (size_t)(ym * xm);
  const int rounds = fuzz_int(&in, 1, 3);
  for (int round = 0; round < rounds; round++) {
    double *x = fuzz_array(&in, cells), *y = fuzz_zeros(cells);
    const int pass_null = fuzz_int(&in, 0, 15) == 0;
    CPhysSolveInfo info;
    int code = 0;
    switch (fuzz_int(&in, 0, 3)) {
      case 0:
        code = fuzz_call(CPhysPoissonMPISolve(poisson, pass_null ? NULL : x, y, &info));
        if (!code) FUZZ_CHECK(info.converged, "Solve succeeded without converging");
        if (!code) FUZZ_CHECK_FINITE(y, cells, "CPhysPoissonMPISolve");
        break;
      case 1:
        code = fuzz_call(
            CPhysPoissonMPIAdjoint(poisson, x, pass_null ? NULL : y, fuzz_bool(&in) ? &info : NULL));
        if (!code) FUZZ_CHECK_FINITE(y, cells, "CPhysPoissonMPIAdjoint");
        break;
      case 2:
        code = fuzz_call(CPhysPoissonMPIApplyLaplacian(pass_null ? NULL : poisson, x, y));
        break;
      case 3: {
        const double y_step = fuzz_bool(&in) ? 1.0 : fuzz_double(&in);
        code = fuzz_call(CPhysPoissonMPIPhysicalGradient(poisson, y_step, pass_null ? NULL : x, y));
        if (!code) FUZZ_CHECK(isfinite(y_step), "PhysicalGradient accepted y_step = %g", y_step);
        break;
      }
    }
    if (pass_null) FUZZ_CHECK(code == CPHYS_ERROR_ARGUMENT, "a NULL argument was accepted");
    free(x);
    free(y);
  }
  fuzz_call(CPhysPoissonMPIDestroy(&poisson));
  FUZZ_CHECK(poisson == NULL, "Destroy did not clear the handle");
  fuzz_call(CPhysPoissonMPIDestroy(NULL));
  return 0;
}
