/* libFuzzer target: the Poisson object (cphys/poisson.h) on grids up to 16 x 16:
 * Create with fuzzed configurations, Solve, Adjoint, ApplyLaplacian,
 * PhysicalGradient, GetConfig, the least-squares problem (and the `lbfgs` mode
 * through the minimizer), Destroy.
 * Solve and Adjoint promise: success means every sample converged, so y is
 * finite and info says converged; NOT_CONVERGED still fills info for every sample. */
#include "cphys/environment.h"
#include "cphys/poisson.h"
#define CPHYS_MINIMIZE_FUZZ_HELPERS
#include "fuzz_common.h"

enum { MAX_AXIS = 16, MAX_BATCH = 3 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC();
  return 0;
}

static ptrdiff_t fuzz_axis(FuzzInput *in) {
  const int v = fuzz_int(in, -2, MAX_AXIS + 16);
  return v > MAX_AXIS ? 1 + v % MAX_AXIS : v; /* mostly valid, sometimes <= 0 */
}

static const char *fuzz_prefix(FuzzInput *in, char buffer[16]) {
  switch (fuzz_int(in, 0, 7)) {
    case 0:
      return NULL;
    case 1: { /* a short arbitrary prefix, possibly invalid for PETSc */
      const int length = fuzz_int(in, 0, 8);
      for (int k = 0; k < length; k++) buffer[k] = (char)(32 + fuzz_u8(in) % 95);
      buffer[length] = '\0';
      return buffer;
    }
    default:
      return "physgrad_poisson_";
  }
}

static void check_infos(const CPhysSolveInfo *info, ptrdiff_t batch, int code, const char *what) {
  for (ptrdiff_t s = 0; s < batch; s++) {
    FUZZ_CHECK(info[s].iterations >= 0, "%s: sample %td reports %d iterations", what, s, info[s].iterations);
    FUZZ_CHECK(memchr(info[s].reason_text, '\0', sizeof info[s].reason_text) != NULL,
               "%s: reason_text of sample %td is not terminated", what, s);
    if (code == 0) FUZZ_CHECK(info[s].converged, "%s succeeded but sample %td did not converge", what, s);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  char prefix[16];
  CPhysPoissonConfig config = CPhysPoissonDefaultConfig();
  config.shape[0] = fuzz_axis(&in), config.shape[1] = fuzz_axis(&in);
  config.spacing[0] = fuzz_positive(&in, 1.0), config.spacing[1] = fuzz_positive(&in, 1.0);
  config.rtol = fuzz_bool(&in) ? 1e-10 : fuzz_double(&in);
  config.atol = fuzz_bool(&in) ? 1e-50 : fuzz_double(&in);
  config.max_iterations = fuzz_int(&in, -1, 300);
  config.options_prefix = fuzz_prefix(&in, prefix);

  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "config: shape [%td, %td] spacing [%a, %a] rtol %a atol %a max_iterations %d prefix %s\n",
            config.shape[0], config.shape[1], config.spacing[0], config.spacing[1], config.rtol, config.atol,
            config.max_iterations, config.options_prefix ? config.options_prefix : "(null)");
  CPhysPoisson poisson = (CPhysPoisson)&in; /* must be overwritten */
  const int created = fuzz_call(CPhysPoissonCreate(&config, &poisson));
  if (created) {
    FUZZ_CHECK(poisson == NULL, "a failed Create left a non-NULL handle");
    return 0;
  }
  FUZZ_CHECK(config.shape[0] >= 1 && config.shape[1] >= 1, "Create accepted shape [%td, %td]",
             config.shape[0], config.shape[1]);
  CPhysPoissonConfig got;
  fuzz_call(CPhysPoissonGetConfig(poisson, &got));
  FUZZ_CHECK(got.shape[0] == config.shape[0] && got.shape[1] == config.shape[1],
             "GetConfig changed the shape");

  const size_t cells = (size_t)(config.shape[0] * config.shape[1]);
  const int rounds = fuzz_int(&in, 1, 3);
  for (int round = 0; round < rounds; round++) {
    const ptrdiff_t batch = fuzz_int(&in, -1, MAX_BATCH);
    const size_t total = cells * (size_t)(batch > 0 ? batch : 0);
    double *x = fuzz_array(&in, total), *y = fuzz_zeros(total);
    CPhysSolveInfo info[MAX_BATCH];
    const int op = fuzz_int(&in, 0, 4);
    const int pass_null = fuzz_int(&in, 0, 15) == 0;
    int code = 0;
    switch (op) {
      case 0:
        code = fuzz_call(CPhysPoissonSolve(poisson, batch, pass_null ? NULL : x, y, info));
        if (batch > 0 && !pass_null && code != CPHYS_ERROR_ARGUMENT) check_infos(info, batch, code, "Solve");
        if (!code) FUZZ_CHECK_FINITE(y, total, "CPhysPoissonSolve");
        break;
      case 1:
        code = fuzz_call(
            CPhysPoissonAdjoint(poisson, batch, x, pass_null ? NULL : y, fuzz_bool(&in) ? info : NULL));
        if (!code) FUZZ_CHECK_FINITE(y, total, "CPhysPoissonAdjoint");
        break;
      case 2:
        code = fuzz_call(CPhysPoissonApplyLaplacian(pass_null ? NULL : poisson, batch, x, y));
        break;
      case 3: {
        const double y_step = fuzz_bool(&in) ? 1.0 : fuzz_double(&in);
        code = fuzz_call(CPhysPoissonPhysicalGradient(poisson, batch, y_step, pass_null ? NULL : x, y));
        if (!code) FUZZ_CHECK(isfinite(y_step), "PhysicalGradient accepted y_step = %g", y_step);
        break;
      }
      case 4: {
        CPhysLeastSquaresProblem problem;
        code = fuzz_call(CPhysPoissonGetLeastSquaresProblem(poisson, pass_null ? NULL : &problem));
        if (!code) {
          FUZZ_CHECK(problem.n == (ptrdiff_t)cells && problem.m == (ptrdiff_t)cells, "problem sizes");
          if (batch > 0) {
            code = fuzz_check_result(problem.forward(problem.context, x, y), "problem.forward");
            code = fuzz_check_result(problem.adjoint(problem.context, x, x, y), "problem.adjoint");
          }
          if (batch >= 0 && cells <= 64) fuzz_quasi_newton(&in, &problem, batch, x, y);
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
  fuzz_call(CPhysPoissonDestroy(&poisson));
  FUZZ_CHECK(poisson == NULL, "Destroy did not clear the handle");
  fuzz_call(CPhysPoissonDestroy(&poisson));
  fuzz_call(CPhysPoissonDestroy(NULL));
  return 0;
}
