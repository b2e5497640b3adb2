/* libFuzzer target: the spectral Poisson object (cphys/poisson_spectral.h) on 2-D
 * grids up to 12 x 12 and 3-D grids up to 6^3 with fuzzed boundaries and
 * spacings: Create, Solve (also in place), Adjoint, ApplyLaplacian,
 * PhysicalGradient, GetConfig, HasNullSpace, the least-squares problem (and
 * the `lbfgs` mode through the minimizer), Destroy.
 * Solve and Adjoint promise: success means every sample was solved, so y is
 * finite and info says DIRECT; NOT_CONVERGED still fills info for every sample. */
#include "cphys/environment.h"
#include "cphys/poisson_spectral.h"
#define CPHYS_MINIMIZE_FUZZ_HELPERS
#include "fuzz_common.h"

enum { MAX_AXIS_2D = 12, MAX_AXIS_3D = 6, MAX_BATCH = 3 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC(); /* the lbfgs mode runs TAO */
  return 0;
}

static void check_infos(const CPhysSolveInfo *info, ptrdiff_t batch, int code, const char *what) {
  for (ptrdiff_t s = 0; s < batch; s++) {
    FUZZ_CHECK(info[s].iterations == 0, "%s: sample %td reports %d iterations", what, s, info[s].iterations);
    FUZZ_CHECK(memchr(info[s].reason_text, '\0', sizeof info[s].reason_text) != NULL,
               "%s: reason_text of sample %td is not terminated", what, s);
    if (code == 0) FUZZ_CHECK(info[s].converged, "%s succeeded but sample %td failed", what, s);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  CPhysPoissonSpectralConfig config = CPhysPoissonSpectralDefaultConfig();
  config.dims = fuzz_int(&in, 1, 4);
  const int largest = config.dims == 3 ? MAX_AXIS_3D : MAX_AXIS_2D;
  for (int a = 0; a < 3; a++) {
    config.shape[a] = fuzz_int(&in, -1, largest);
    config.spacing[a] = fuzz_positive(&in, 1.0);
    config.boundary[a] = (CPhysBoundary)fuzz_int(&in, -1, 5);
  }
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "config: dims %d shape [%td, %td, %td] spacing [%a, %a, %a] boundary [%d, %d, %d]\n",
            config.dims, config.shape[0], config.shape[1], config.shape[2], config.spacing[0],
            config.spacing[1], config.spacing[2], (int)config.boundary[0], (int)config.boundary[1],
            (int)config.boundary[2]);
  CPhysPoissonSpectral poisson = (CPhysPoissonSpectral)&in; /* must be overwritten */
  if (fuzz_call(CPhysPoissonSpectralCreate(&config, &poisson))) {
    FUZZ_CHECK(poisson == NULL, "a failed Create left a non-NULL handle");
    return 0;
  }
  size_t nodes = 1;
  for (int a = 0; a < config.dims; a++) {
    FUZZ_CHECK(config.shape[a] >= 1 && config.boundary[a] >= 0 && config.boundary[a] <= 4,
               "Create accepted shape[%d] = %td, boundary %d", a, config.shape[a], (int)config.boundary[a]);
    nodes *= (size_t)config.shape[a];
  }
  CPhysPoissonSpectralConfig got;
  int null_space = -1;
  fuzz_call(CPhysPoissonSpectralGetConfig(poisson, &got));
  fuzz_call(CPhysPoissonSpectralHasNullSpace(poisson, &null_space));
  FUZZ_CHECK(got.dims == config.dims && null_space >= 0, "GetConfig / HasNullSpace");

  const int rounds = fuzz_int(&in, 1, 3);
  for (int round = 0; round < rounds; round++) {
    const ptrdiff_t batch = fuzz_int(&in, -1, MAX_BATCH);
    const size_t total = nodes * (size_t)(batch > 0 ? batch : 0);
    double *x = fuzz_array(&in, total), *y = fuzz_zeros(total);
    CPhysSolveInfo info[MAX_BATCH];
    const int op = fuzz_int(&in, 0, 4);
    const int pass_null = fuzz_int(&in, 0, 15) == 0;
    int code = 0;
    switch (op) {
      case 0: {
        double *out = fuzz_bool(&in) ? x : y; /* in place, or not */
        code = fuzz_call(CPhysPoissonSpectralSolve(poisson, batch, pass_null ? NULL : x, out, info));
        if (batch > 0 && !pass_null && code != CPHYS_ERROR_ARGUMENT) check_infos(info, batch, code, "Solve");
        if (!code) FUZZ_CHECK_FINITE(out, total, "CPhysPoissonSpectralSolve");
        break;
      }
      case 1:
        code = fuzz_call(CPhysPoissonSpectralAdjoint(poisson, batch, x, pass_null ? NULL : y,
                                                     fuzz_bool(&in) ? info : NULL));
        if (!code) FUZZ_CHECK_FINITE(y, total, "CPhysPoissonSpectralAdjoint");
        break;
      case 2:
        code = fuzz_call(CPhysPoissonSpectralApplyLaplacian(pass_null ? NULL : poisson, batch, x, y));
        break;
      case 3: {
        const double y_step = fuzz_bool(&in) ? 1.0 : fuzz_double(&in);
        code =
            fuzz_call(CPhysPoissonSpectralPhysicalGradient(poisson, batch, y_step, pass_null ? NULL : x, y));
        if (!code) FUZZ_CHECK(isfinite(y_step), "PhysicalGradient accepted y_step = %g", y_step);
        if (!code) FUZZ_CHECK_FINITE(y, total, "CPhysPoissonSpectralPhysicalGradient");
        break;
      }
      case 4: {
        CPhysLeastSquaresProblem problem;
        code = fuzz_call(CPhysPoissonSpectralGetLeastSquaresProblem(poisson, pass_null ? NULL : &problem));
        if (!code) {
          FUZZ_CHECK(problem.n == (ptrdiff_t)nodes && problem.m == (ptrdiff_t)nodes, "problem sizes");
          if (batch > 0) {
            code = fuzz_check_result(problem.forward(problem.context, x, y), "problem.forward");
            code = fuzz_check_result(problem.adjoint(problem.context, x, x, y), "problem.adjoint");
          }
          if (batch >= 0 && nodes <= 64) fuzz_quasi_newton(&in, &problem, batch, x, y);
        }
        break;
      }
    }
    const int bad_call = op == 4 ? pass_null : (batch < 0 || (pass_null && batch > 0));
    if (bad_call)
      FUZZ_CHECK(code == CPHYS_ERROR_ARGUMENT, "op %d accepted batch %td or a NULL argument", op, batch);
    free(x);
    free(y);
  }
  fuzz_call(CPhysPoissonSpectralDestroy(&poisson));
  FUZZ_CHECK(poisson == NULL, "Destroy did not clear the handle");
  fuzz_call(CPhysPoissonSpectralDestroy(&poisson));
  fuzz_call(CPhysPoissonSpectralDestroy(NULL));
  return 0;
}
