/* Strong scaling of the distributed Poisson solve (CPhysPoissonMPI, PETSc DMDA).
 *
 *   mpiexec -n R bench_poisson_mpi [n] [repeats] [solver] [extra PETSc options...]
 *
 * solves one n x n grid (default 2048; unit square, rtol 1e-10 as in the
 * default configuration) `repeats` times (default 3) with CG and the
 * preconditioner `solver`:
 *   gamg  algebraic multigrid (the object's default);
 *   mg    geometric multigrid on the DMDA hierarchy, Galerkin coarse operators,
 *         as many levels as (n - 1) can be halved while the coarsest grid keeps
 *         at least 9 nodes per axis, so n should be 2^k + 1 (e.g. 2049);
 *   icc   ICC(0) on one rank, block Jacobi with ICC(0) blocks on several
 *         (CPhysPoisson's default; iterations grow with n);
 *   none  the options given after it, under the prefix physgrad_poisson_.
 * Prints one line per run: setup (Create: assembly, KSPSetUp) and solve
 * times (the slowest rank; best and median of the repeats), the busiest rank's
 * CPU time in the fastest solve (with busy-polling MPI it includes waiting),
 * iterations, and
 * the relative residual |L y - x| / |x| measured with the halo-exchange stencil.
 * Every rank gets the same options (CPhysSetOptions in each process). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cphys/environment.h"
#include "cphys/poisson_mpi.h"

static int rank, ranks;

static int fail(const char *what, int code) {
  fprintf(stderr, "rank %d: %s failed: %s: %s\n", rank, what, CPhysErrorName(code),
          CPhysGetLastErrorMessage());
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

/* A reproducible right-hand side in [-1, 1) that depends on the global node only, not on the split. */
static double rhs_value(long long j, long long i) {
  unsigned long long h = (unsigned long long)(j * 1000003LL + i) * 0x9E3779B97F4A7C15ULL;
  h ^= h >> 31, h *= 0xBF58476D1CE4E5B9ULL, h ^= h >> 29;
  return (double)(h >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
}

static double slowest(double seconds) {
  double max = 0.0;
  MPI_Allreduce(&seconds, &max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return max;
}

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int mg_levels(long long n) {
  int levels = 1;
  while ((n - 1) % 2 == 0 && (n - 1) / 2 + 1 >= 9) n = (n - 1) / 2 + 1, levels++;
  return levels;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const long long n = argc > 1 ? atoll(argv[1]) : 2048;
  const int repeats = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 3;
  const char *solver = argc > 3 ? argv[3] : "gamg";
  char options[1024] = "";
  if (strcmp(solver, "gamg") == 0) {
    snprintf(options, sizeof options, "-physgrad_poisson_pc_type gamg");
  } else if (strcmp(solver, "mg") == 0) {
    if (mg_levels(n) < 3) {
      if (rank == 0) fprintf(stderr, "mg: the DMDA of %lld nodes cannot be coarsened; use n = 2^k + 1\n", n);
      MPI_Finalize();
      return 2;
    }
    snprintf(options, sizeof options,
             "-physgrad_poisson_pc_type mg -physgrad_poisson_pc_mg_levels %d "
             "-physgrad_poisson_pc_mg_galerkin pmat",
             mg_levels(n));
  } else if (strcmp(solver, "icc") == 0) {
    snprintf(options, sizeof options, "-physgrad_poisson_pc_type %s -physgrad_poisson_sub_pc_type icc",
             ranks == 1 ? "icc" : "bjacobi");
  } else if (strcmp(solver, "none") != 0) {
    if (rank == 0) fprintf(stderr, "unknown solver %s (gamg, mg, icc, none)\n", solver);
    MPI_Finalize();
    return 2;
  }
  for (int k = 4; k < argc; k++) {
    strncat(options, " ", sizeof options - strlen(options) - 1);
    strncat(options, argv[k], sizeof options - strlen(options) - 1);
  }
  int ierr = CPhysSetOptions(options);
  if (ierr) return fail("CPhysSetOptions", ierr);

  CPhysPoissonConfig config = CPhysPoissonDefaultConfig();
  config.shape[0] = config.shape[1] = n;
  config.spacing[0] = config.spacing[1] = 1.0 / (double)(n + 1);
  MPI_Barrier(MPI_COMM_WORLD);
  double start = MPI_Wtime();
  CPhysPoissonMPI poisson;
  if ((ierr = CPhysPoissonMPICreate(MPI_COMM_WORLD, &config, &poisson))) return fail("Create", ierr);
  const double setup = slowest(MPI_Wtime() - start);

  ptrdiff_t ys, ym, xs, xm;
  CPhysPoissonMPIGetLocalRange(poisson, &ys, &ym, &xs, &xm);
  const size_t local = (size_t)(ym * xm);
  double *x = malloc(sizeof(double) * local), *y = malloc(sizeof(double) * local);
  double *back = malloc(sizeof(double) * local), *times = malloc(sizeof(double) * (size_t)repeats);
  for (ptrdiff_t j = 0; j < ym; j++)
    for (ptrdiff_t i = 0; i < xm; i++) x[j * xm + i] = rhs_value(ys + j, xs + i);
  CPhysSolveInfo info;
  double cpu = INFINITY; /* the busiest rank's CPU time in the fastest solve */
  for (int r = 0; r < repeats; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double cpu_start = cpu_seconds();
    start = MPI_Wtime();
    if ((ierr = CPhysPoissonMPISolve(poisson, x, y, &info))) return fail("Solve", ierr);
    times[r] = slowest(MPI_Wtime() - start);
    cpu = fmin(cpu, slowest(cpu_seconds() - cpu_start));
  }
  qsort(times, (size_t)repeats, sizeof(double), compare_doubles);

  MPI_Barrier(MPI_COMM_WORLD);
  start = MPI_Wtime();
  if ((ierr = CPhysPoissonMPIApplyLaplacian(poisson, y, back))) return fail("ApplyLaplacian", ierr);
  const double stencil = slowest(MPI_Wtime() - start);
  double sums[2] = {0.0, 0.0}, total[2];
  for (size_t k = 0; k < local; k++) sums[0] += (back[k] - x[k]) * (back[k] - x[k]), sums[1] += x[k] * x[k];
  MPI_Allreduce(sums, total, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);

  if (rank == 0)
    printf(
        "n=%lld ranks=%d solver=%s setup=%.3fs solve_best=%.3fs solve_median=%.3fs cpu_per_rank=%.3fs its=%d "
        "rel_residual=%.1e laplacian=%.4fs options=\"%s\"\n",
        n, ranks, solver, setup, times[0], times[repeats / 2], cpu, info.iterations,
        sqrt(total[0] / total[1]), stencil, options);
  free(x), free(y), free(back), free(times);
  CPhysPoissonMPIDestroy(&poisson);
  MPI_Finalize();
  return 0;
}
