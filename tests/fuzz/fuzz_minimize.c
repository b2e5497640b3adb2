/* libFuzzer target: the TAO least-squares minimizer (cphys/minimize.h) on a
 * small problem, y = A x + q sin(x) (n, m <= 4), with fuzzed matrices, starts,
 * targets, bounds, tolerances and iteration limits, and callbacks that fail on
 * a fuzzed evaluation with a fuzzed code (with or without a message of their
 * own).  Beyond the common invariants: a callback's code comes back as it is;
 * on success the iterate is finite and inside the bounds. */
#include "cphys/environment.h"
#include "cphys/minimize.h"
#include "fuzz_common.h"

enum { MAX_N = 4, MAX_M = 4, MAX_BATCH = 2 };

typedef struct {
  ptrdiff_t n, m;
  double a[MAX_M * MAX_N], q;
  int fail_at;   /* evaluation (forward or adjoint) that fails; -1: none */
  int fail_code; /* its cphys code */
  int fail_with_message;
  int calls;
} Problem;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_INITIALIZE_PETSC();
  return 0;
}

static int injected_failure(Problem *p, const char *where) {
  if (p->calls++ != p->fail_at) return 0;
  if (p->fail_with_message) return CPhysSetError(p->fail_code, where, "injected failure");
  return p->fail_code;
}

static int forward(void *context, const double *x, double *y) {
  Problem *p = context;
  const int code = injected_failure(p, "fuzz forward");
  if (code) return code;
  for (ptrdiff_t j = 0; j < p->m; j++) {
    double sum = p->q * sin(x[j % p->n]);
    for (ptrdiff_t i = 0; i < p->n; i++) sum += p->a[j * p->n + i] * x[i];
    y[j] = sum;
  }
  return 0;
}

static int adjoint(void *context, const double *x, const double *dy, double *dx) {
  Problem *p = context;
  const int code = injected_failure(p, "fuzz adjoint");
  if (code) return code;
  for (ptrdiff_t i = 0; i < p->n; i++) dx[i] = 0.0;
  for (ptrdiff_t j = 0; j < p->m; j++) {
    dx[j % p->n] += p->q * cos(x[j % p->n]) * dy[j];
    for (ptrdiff_t i = 0; i < p->n; i++) dx[i] += p->a[j * p->n + i] * dy[j];
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzInput in = fuzz_input(data, size);
  Problem p;
  memset(&p, 0, sizeof p);
  p.n = fuzz_int(&in, 0, MAX_N), p.m = fuzz_int(&in, 0, MAX_M);
  fuzz_fill(&in, p.a, MAX_M * MAX_N);
  p.q = fuzz_bool(&in) ? 0.0 : fuzz_double(&in);
  p.fail_at = fuzz_int(&in, 0, 3) ? -1 : fuzz_int(&in, 0, 40);
  p.fail_code = fuzz_int(&in, 1, 8);
  p.fail_with_message = fuzz_bool(&in);

  double lower[MAX_N], upper[MAX_N];
  fuzz_fill(&in, lower, MAX_N);
  for (int i = 0; i < MAX_N; i++)
    upper[i] = fuzz_bool(&in) ? lower[i] + fuzz_u8(&in) / 16.0 : fuzz_double(&in);
  if (fuzz_bool(&in)) lower[0] = -INFINITY;
  CPhysLeastSquaresConfig config = {0};
  config.max_iterations = fuzz_int(&in, -1, 30);
  config.gradient_atol = fuzz_bool(&in) ? 1e-10 : fuzz_double(&in);
  config.gradient_rtol = fuzz_bool(&in) ? 0.0 : fuzz_double(&in);
  const int bounds = fuzz_int(&in, 0, 3); /* bit 0: lower, bit 1: upper */
  config.lower = bounds & 1 ? lower : NULL;
  config.upper = bounds & 2 ? upper : NULL;
  config.options_prefix = fuzz_bool(&in) ? NULL : "physgrad_fuzz_";

  double x[MAX_N * MAX_BATCH], target[MAX_M * MAX_BATCH];
  fuzz_fill(&in, x, MAX_N * MAX_BATCH);
  fuzz_fill(&in, target, MAX_M * MAX_BATCH);

  if (getenv("FUZZ_VERBOSE")) {
    fprintf(stderr, "n %td m %td q %g fail_at %d max_iterations %d atol %g rtol %g bounds %d\n", p.n, p.m,
            p.q, p.fail_at, config.max_iterations, config.gradient_atol, config.gradient_rtol, bounds);
    for (ptrdiff_t i = 0; i < p.n; i++)
      fprintf(stderr, "  x[%td] = %a in [%a, %a]\n", i, x[i], lower[i], upper[i]);
    for (ptrdiff_t j = 0; j < p.m; j++) {
      fprintf(stderr, "  target[%td] = %a, A row:", j, target[j]);
      for (ptrdiff_t i = 0; i < p.n; i++) fprintf(stderr, " %a", p.a[j * p.n + i]);
      fprintf(stderr, "\n");
    }
  }
  if (fuzz_bool(&in)) {
    CPhysSolveInfo info;
    const int code = fuzz_call(CPhysLeastSquaresMinimize(&config, p.n, p.m, forward, adjoint, &p, target, x,
                                                         fuzz_bool(&in) ? &info : NULL));
    if (p.fail_at >= 0 && p.calls > p.fail_at)
      FUZZ_CHECK(code == p.fail_code, "the callback's %s came back as %s", CPhysErrorName(p.fail_code),
                 CPhysErrorName(code));
    if (!code) {
      FUZZ_CHECK_FINITE(x, (size_t)p.n, "CPhysLeastSquaresMinimize");
      for (ptrdiff_t i = 0; i < p.n; i++)
        FUZZ_CHECK((!config.lower || x[i] >= lower[i]) && (!config.upper || x[i] <= upper[i]),
                   "x[%td] = %g outside its bounds", i, x[i]);
    }
  } else {
    const CPhysLeastSquaresProblem problem = {p.n, p.m, forward, adjoint, &p};
    const ptrdiff_t batch = fuzz_int(&in, -1, MAX_BATCH);
    double y[MAX_M * MAX_BATCH], g[MAX_M * MAX_BATCH], dx[MAX_N * MAX_BATCH];
    fuzz_fill(&in, g, MAX_M * MAX_BATCH);
    memset(y, 0, sizeof y);
    for (int s = 0; s < MAX_BATCH && p.n > 0; s++) forward(&p, x + s * MAX_N, y + s * MAX_M);
    p.calls = 0;
    const double y_step = fuzz_bool(&in) ? 1.0 : fuzz_double(&in);
    CPhysSolveInfo info[MAX_BATCH];
    /* Rows of the batch are n and m apart. */
    double xs[MAX_N * MAX_BATCH], ys[MAX_M * MAX_BATCH];
    for (ptrdiff_t s = 0; s < MAX_BATCH; s++) {
      memcpy(xs + s * (p.n ? p.n : 1), x + s * MAX_N, (size_t)p.n * sizeof *x);
      memcpy(ys + s * (p.m ? p.m : 1), y + s * MAX_M, (size_t)p.m * sizeof *y);
    }
    fuzz_call(CPhysQuasiNewtonPhysicalGradient(&config, &problem, batch, xs, ys, g, y_step, dx,
                                               fuzz_bool(&in) ? info : NULL));
  }
  return 0;
}
