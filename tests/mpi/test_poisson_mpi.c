/* Distributed Poisson object under MPI: agrees with the single-process CPhysPoisson.
 *
 * Run on any number of ranks (ctest runs it with `mpiexec -n 2`):
 *   mpiexec -n 2 test_poisson_mpi [ny nx]
 * Every rank builds the same global fields from a seed, works on its own
 * block, and rank 0 gathers the blocks (MPI_Gatherv) and compares them with
 * CPhysPoisson's answer on the whole grid: the solve to the solver tolerance,
 * the Laplacian and the physical gradient (which need the halo exchange) to
 * rounding.  With ny nx given, the comparisons run at that size only. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cphys/environment.h"
#include "cphys/poisson.h"
#include "cphys/poisson_mpi.h"

static int rank, ranks;

typedef struct {
  ptrdiff_t ys, ym, xs, xm;
} Block;

static Block local_block(CPhysPoissonMPI p) {
  Block b = {0, 0, 0, 0};
  CHECK_OK(CPhysPoissonMPIGetLocalRange(p, &b.ys, &b.ym, &b.xs, &b.xm));
  return b;
}

/* This rank's block of a global [ny, nx] field. */
static double *take_block(const double *global, ptrdiff_t nx, Block b) {
  double *block = malloc(sizeof(double) * (size_t)(b.ym * b.xm));
  for (ptrdiff_t j = 0; j < b.ym; j++)
    memcpy(block + j * b.xm, global + (b.ys + j) * nx + b.xs, sizeof(double) * (size_t)b.xm);
  return block;
}

/* The whole [ny, nx] field on rank 0, assembled from every rank's block (NULL elsewhere). */
static double *gather_to_root(const double *block, ptrdiff_t ny, ptrdiff_t nx, Block b) {
  /* calloc: MPI_Gather fills `all` on rank 0 only, and every rank sums it below (UBSan). */
  long long mine[4] = {b.ys, b.ym, b.xs, b.xm}, *all = calloc(4 * (size_t)ranks, sizeof(long long));
  MPI_Gather(mine, 4, MPI_LONG_LONG, all, 4, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  int *counts = malloc(sizeof(int) * (size_t)ranks), *offsets = malloc(sizeof(int) * (size_t)ranks);
  int total = 0;
  for (int q = 0; q < ranks; q++)
    counts[q] = (int)(all[4 * q + 1] * all[4 * q + 3]), offsets[q] = total, total += counts[q];
  double *packed = rank == 0 ? malloc(sizeof(double) * (size_t)(ny * nx)) : NULL;
  MPI_Gatherv(block, (int)(b.ym * b.xm), MPI_DOUBLE, packed, counts, offsets, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  double *global = NULL;
  if (rank == 0) {
    CHECK(total == ny * nx, "the blocks cover %d nodes, the grid has %td", total, ny * nx);
    global = calloc((size_t)(ny * nx), sizeof(double));
    for (int q = 0; q < ranks; q++) {
      const long long ys = all[4 * q], ym = all[4 * q + 1], xs = all[4 * q + 2], xm = all[4 * q + 3];
      for (long long j = 0; j < ym; j++)
        memcpy(global + (ys + j) * nx + xs, packed + offsets[q] + j * xm, sizeof(double) * (size_t)xm);
    }
  }
  free(all), free(counts), free(offsets), free(packed);
  return global;
}

static double global_dot(const double *a, const double *b, ptrdiff_t n) {
  double mine = 0.0, sum = 0.0;
  for (ptrdiff_t k = 0; k < n; k++) mine += a[k] * b[k];
  MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return sum;
}

/* Distributed solve, Laplacian and physical gradient of the global field f against CPhysPoisson's.
 * `exact` (may be NULL) is the known solution, checked on rank 0. */
static void compare_with_single_process(const CPhysPoissonConfig *config, const double *f,
                                        const double *exact) {
  const ptrdiff_t ny = config->shape[0], nx = config->shape[1], n = ny * nx;
  CPhysPoissonMPI distributed;
  CHECK_OK(CPhysPoissonMPICreate(MPI_COMM_WORLD, config, &distributed));
  if (!distributed) return;
  const Block b = local_block(distributed);
  const ptrdiff_t local_n = b.ym * b.xm;
  double *f_block = take_block(f, nx, b), *y_block = malloc(sizeof(double) * (size_t)local_n);
  double *lap_block = malloc(sizeof(double) * (size_t)local_n),
         *pg_block = malloc(sizeof(double) * (size_t)local_n);
  CPhysSolveInfo info;
  CHECK_OK(CPhysPoissonMPISolve(distributed, f_block, y_block, &info));
  CHECK(info.converged && info.iterations > 0, "distributed solve: %s after %d iterations", info.reason_text,
        info.iterations);
  CHECK_OK(CPhysPoissonMPIApplyLaplacian(distributed, y_block, lap_block));
  CHECK_OK(CPhysPoissonMPIPhysicalGradient(distributed, 0.25, y_block, pg_block));
  /* L(P(f)) = f block by block: the halo carries the neighbours' values. */
  CHECK(max_abs_diff(lap_block, f_block, (size_t)local_n) < 1e-8 * fmax(1.0, max_abs(f, (size_t)n)),
        "rank %d: L(P(f)) differs from f by %g", rank, max_abs_diff(lap_block, f_block, (size_t)local_n));

  double *y = gather_to_root(y_block, ny, nx, b), *lap = gather_to_root(lap_block, ny, nx, b);
  double *pg = gather_to_root(pg_block, ny, nx, b);
  if (rank == 0) {
    /* The reference uses CPhysPoisson's own solver (CG + ICC), whatever the options say. */
    CPhysPoissonConfig single_config = *config;
    single_config.options_prefix = NULL;
    CPhysPoisson single;
    CHECK_OK(CPhysPoissonCreate(&single_config, &single));
    double *y_ref = malloc(sizeof(double) * (size_t)n), *lap_ref = malloc(sizeof(double) * (size_t)n);
    double *pg_ref = malloc(sizeof(double) * (size_t)n);
    CHECK_OK(CPhysPoissonSolve(single, 1, f, y_ref, NULL));
    /* The stencils see the same (gathered) input, so they must agree to rounding. */
    CHECK_OK(CPhysPoissonApplyLaplacian(single, 1, y, lap_ref));
    CHECK_OK(CPhysPoissonPhysicalGradient(single, 1, 0.25, y, pg_ref));
    const double scale = max_abs(y_ref, (size_t)n), solve_error = max_abs_diff(y, y_ref, (size_t)n);
    const double lap_error = max_abs_diff(lap, lap_ref, (size_t)n),
                 pg_error = max_abs_diff(pg, pg_ref, (size_t)n);
    printf(
        "[%td x %td on %d ranks, rank 0 owns rows %td+%td, columns %td+%td, %s] solve: %d its, |y - "
        "y_single| = %.2e (|y| = %.2e); "
        "|L y - L_single y| = %.2e; |pg - pg_single| = %.2e\n",
        ny, nx, ranks, b.ys, b.ym, b.xs, b.xm, config->options_prefix ? config->options_prefix : "-",
        info.iterations, solve_error, scale, lap_error, pg_error);
    CHECK(solve_error <= 1e-8 * scale, "distributed and single-process solutions differ by %g (|y| %g)",
          solve_error, scale);
    CHECK(lap_error <= 1e-13 * max_abs(lap_ref, (size_t)n), "Laplacians differ by %g", lap_error);
    CHECK(pg_error <= 1e-13 * max_abs(pg_ref, (size_t)n), "physical gradients differ by %g", pg_error);
    if (exact) {
      const double exact_error = max_abs_diff(y, exact, (size_t)n);
      CHECK(exact_error <= 1e-8 * max_abs(exact, (size_t)n), "distance to the exact solution %g",
            exact_error);
    }
    free(y_ref), free(lap_ref), free(pg_ref);
    CPhysPoissonDestroy(&single);
  }
  free(f_block), free(y_block), free(lap_block), free(pg_block), free(y), free(lap), free(pg);
  CPhysPoissonMPIDestroy(&distributed);
  CHECK(distributed == NULL, "Destroy must set the handle to NULL");
}

static double *random_field(ptrdiff_t n, unsigned long long seed) {
  double *f = malloc(sizeof(double) * (size_t)n);
  for (ptrdiff_t k = 0; k < n; k++) f[k] = test_random(&seed);
  return f;
}

/* sin(pi p (i+1)/(nx+1)) sin(pi q (j+1)/(ny+1)) is an exact discrete eigenfunction (test_poisson.c). */
static void test_eigenfunction(ptrdiff_t ny, ptrdiff_t nx) {
  const double dy = 0.5, dx = 1.5;
  const int p = 3, q = 2;
  const double eigenvalue = -4.0 / (dx * dx) * pow(sin(M_PI * p / (2.0 * (nx + 1))), 2) -
                            4.0 / (dy * dy) * pow(sin(M_PI * q / (2.0 * (ny + 1))), 2);
  double *f = malloc(sizeof(double) * (size_t)(ny * nx)), *exact = malloc(sizeof(double) * (size_t)(ny * nx));
  for (ptrdiff_t j = 0; j < ny; j++)
    for (ptrdiff_t i = 0; i < nx; i++)
      f[j * nx + i] = sin(M_PI * p * (i + 1) / (nx + 1.0)) * sin(M_PI * q * (j + 1) / (ny + 1.0)),
                 exact[j * nx + i] = f[j * nx + i] / eigenvalue;
  compare_with_single_process(&(CPhysPoissonConfig){{ny, nx}, {dy, dx}, 1e-12, 0.0, 1000, NULL}, f, exact);
  free(f), free(exact);
}

/* Wide and tall grids split the other axis, so both halo directions are exercised. */
static void test_random_fields(ptrdiff_t ny, ptrdiff_t nx) {
  double *f = random_field(ny * nx, 42);
  compare_with_single_process(&(CPhysPoissonConfig){{ny, nx}, {1.0, 0.7}, 1e-12, 0.0, 1000, NULL}, f, NULL);
  free(f);
  f = random_field(ny * nx, 43);
  compare_with_single_process(&(CPhysPoissonConfig){{nx, ny}, {0.3, 0.2}, 1e-12, 0.0, 1000, NULL}, f, NULL);
  free(f);
}

static void test_adjoint_is_symmetric(void) {
  const CPhysPoissonConfig config = {{23, 31}, {0.3, 0.2}, 1e-13, 0.0, 1000, NULL};
  CPhysPoissonMPI p;
  CHECK_OK(CPhysPoissonMPICreate(MPI_COMM_WORLD, &config, &p));
  if (!p) return;
  const Block b = local_block(p);
  double *u_all = random_field(23 * 31, 7), *v_all = random_field(23 * 31, 8);
  double *u = take_block(u_all, 31, b), *v = take_block(v_all, 31, b);
  double *pu = malloc(sizeof(double) * (size_t)(b.ym * b.xm)),
         *pv = malloc(sizeof(double) * (size_t)(b.ym * b.xm));
  CHECK_OK(CPhysPoissonMPISolve(p, u, pu, NULL));
  CHECK_OK(CPhysPoissonMPIAdjoint(p, v, pv, NULL));
  const double left = global_dot(pu, v, b.ym * b.xm), right = global_dot(u, pv, b.ym * b.xm);
  CHECK(fabs(left - right) < 1e-10 * fabs(left), "<P u, v> = %.15g but <u, P v> = %.15g", left, right);
  free(u_all), free(v_all), free(u), free(v), free(pu), free(pv);
  CPhysPoissonMPIDestroy(&p);
}

/* Failures are reported on every rank, never left as a rank waiting for the others. */
static void test_errors_fail_on_every_rank(void) {
  CPhysPoissonMPI p = NULL;
  CHECK_FAILS(
      CPhysPoissonMPICreate(MPI_COMM_WORLD, &(CPhysPoissonConfig){{0, 4}, {1, 1}, 1e-8, 0, 10, NULL}, &p),
      CPHYS_ERROR_ARGUMENT);
  CHECK(p == NULL, "a failed Create must leave the handle NULL");
  /* Found by fuzzing (fuzz_poisson, then checked here with -pc_type icc on one rank):
   * 1/dy^2 overflowed to inf and the ICC factorization never returned. */
  CHECK_FAILS(CPhysPoissonMPICreate(MPI_COMM_WORLD,
                                    &(CPhysPoissonConfig){{14, 15}, {1e-300, 2.25}, 1e-10, 0, 37, NULL}, &p),
              CPHYS_ERROR_ARGUMENT);
  /* Only the last rank is wrong (on one rank: the only one). */
  const double spacing = rank == ranks - 1 ? -1.0 : 1.0;
  CHECK_FAILS(CPhysPoissonMPICreate(MPI_COMM_WORLD,
                                    &(CPhysPoissonConfig){{8, 8}, {1, spacing}, 1e-8, 0, 10, NULL}, &p),
              CPHYS_ERROR_ARGUMENT);
  if (ranks > 1) {
    const ptrdiff_t rows = rank == 0 ? 8 : 9;
    CHECK_FAILS(CPhysPoissonMPICreate(MPI_COMM_WORLD,
                                      &(CPhysPoissonConfig){{rows, 8}, {1, 1}, 1e-8, 0, 10, NULL}, &p),
                CPHYS_ERROR_ARGUMENT);
    CHECK(strstr(CPhysGetLastErrorMessage(), "differs between ranks") != NULL, "message: %s",
          CPhysGetLastErrorMessage());
  }
  CHECK(p == NULL, "a failed Create must leave the handle NULL");

  CHECK_OK(CPhysPoissonMPICreate(MPI_COMM_WORLD, &(CPhysPoissonConfig){{16, 16}, {1, 1}, 1e-10, 0, 100, NULL},
                                 &p));
  if (!p) return;
  const Block b = local_block(p);
  double *x = malloc(sizeof(double) * (size_t)(b.ym * b.xm)),
         *y = malloc(sizeof(double) * (size_t)(b.ym * b.xm));
  for (ptrdiff_t k = 0; k < b.ym * b.xm; k++) x[k] = 1.0;
  /* A NaN on rank 0 alone fails the solve on every rank with PETSc's reason. */
  if (rank == 0) x[0] = NAN;
  CPhysSolveInfo info;
  CHECK_FAILS(CPhysPoissonMPISolve(p, x, y, &info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(!info.converged && strstr(CPhysGetLastErrorMessage(), "NAN") != NULL, "rank %d: %s", rank,
        CPhysGetLastErrorMessage());
  x[0] = 1.0;
  /* A NULL block on the last rank fails the call everywhere before any communication. */
  CHECK_FAILS(CPhysPoissonMPISolve(p, rank == ranks - 1 ? NULL : x, y, NULL), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonMPIApplyLaplacian(p, x, rank == ranks - 1 ? NULL : y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonMPIPhysicalGradient(p, rank == 0 ? INFINITY : 1.0, x, y), CPHYS_ERROR_ARGUMENT);
  CHECK_FAILS(CPhysPoissonMPISolve(NULL, x, y, NULL), CPHYS_ERROR_ARGUMENT);
  /* The object still works after the failures. */
  CHECK_OK(CPhysPoissonMPISolve(p, x, y, &info));
  CPhysPoissonMPIDestroy(&p);
  CHECK_OK(CPhysPoissonMPIDestroy(NULL));

  /* An iteration limit too small for the tolerance is reported, not hidden. */
  CHECK_OK(
      CPhysPoissonMPICreate(MPI_COMM_WORLD, &(CPhysPoissonConfig){{30, 30}, {1, 1}, 1e-12, 0, 2, NULL}, &p));
  if (!p) return;
  const Block c = local_block(p);
  double *all = random_field(900, 3), *big = take_block(all, 30, c),
         *out = malloc(sizeof(double) * (size_t)(c.ym * c.xm));
  CHECK_FAILS(CPhysPoissonMPISolve(p, big, out, &info), CPHYS_ERROR_NOT_CONVERGED);
  CHECK(info.iterations == 2 && strstr(info.reason_text, "ITS") != NULL, "reason %s after %d iterations",
        info.reason_text, info.iterations);
  free(x), free(y), free(all), free(big), free(out);
  CPhysPoissonMPIDestroy(&p);
}

/* Options are read per process at Create: every rank inserts the same ones. */
static void test_options_prefix_selects_the_solver(void) {
  CHECK_OK(CPhysSetOptions(
      "-cphys_mpi_test_ksp_type richardson -cphys_mpi_test_pc_type jacobi -cphys_mpi_test_ksp_max_it 3"));
  CPhysPoissonMPI p;
  CHECK_OK(CPhysPoissonMPICreate(
      MPI_COMM_WORLD, &(CPhysPoissonConfig){{16, 16}, {1, 1}, 1e-12, 0, 100, "cphys_mpi_test_"}, &p));
  if (p) {
    const Block b = local_block(p);
    double *x = malloc(sizeof(double) * (size_t)(b.ym * b.xm)),
           *y = malloc(sizeof(double) * (size_t)(b.ym * b.xm));
    for (ptrdiff_t k = 0; k < b.ym * b.xm; k++) x[k] = 1.0;
    CPhysSolveInfo info;
    CHECK_FAILS(CPhysPoissonMPISolve(p, x, y, &info), CPHYS_ERROR_NOT_CONVERGED);
    CHECK(info.iterations == 3, "-cphys_mpi_test_ksp_max_it 3 was not applied (%d iterations)",
          info.iterations);
    free(x), free(y);
    CPhysPoissonMPIDestroy(&p);
  }
  CHECK_OK(CPhysClearOptions());

  /* Geometric multigrid on the DMDA hierarchy (33 = 2^5 + 1 nodes coarsen 4 times). */
  CHECK_OK(CPhysSetOptions(
      "-cphys_mpi_mg_pc_type mg -cphys_mpi_mg_pc_mg_levels 4 -cphys_mpi_mg_pc_mg_galerkin pmat"));
  double *f = random_field(33 * 33, 5);
  compare_with_single_process(&(CPhysPoissonConfig){{33, 33}, {1.0, 1.0}, 1e-12, 0.0, 200, "cphys_mpi_mg_"},
                              f, NULL);
  free(f);
  CHECK_OK(CPhysClearOptions());
}

int main(int argc, char **argv) {
  /* The normal MPI program: it starts MPI, cphys starts PETSc on top of it. */
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (argc == 3) {
    const ptrdiff_t ny = atol(argv[1]), nx = atol(argv[2]);
    test_eigenfunction(ny, nx);
    test_random_fields(ny, nx);
  } else {
    test_eigenfunction(40, 29);
    test_random_fields(37, 52);
    test_adjoint_is_symmetric();
    test_errors_fail_on_every_rank();
    test_options_prefix_selects_the_solver();
  }
  int failures = 0;
  MPI_Allreduce(&check_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  check_failures = failures;
  if (rank != 0) return failures ? EXIT_FAILURE : EXIT_SUCCESS;
  CHECK_REPORT();
}
