// physgrad::poisson: schema and CPU kernels (forward, backward of every mode).
//   y = laplace^+ x on a 2-D [B, ny, nx] ([B, 1, ny, nx]) or 3-D [B, nz, ny, nx]
//   ([B, 1, nz, ny, nx]) grid with zero Dirichlet, Neumann or periodic boundaries
//   per axis.  Solvers: spectral (cphys/poisson_spectral.h, every problem) and
//   PETSc CG (cphys/poisson.h, 2-D zero Dirichlet); "auto" picks the spectral
//   one unless PETSc options of the op's prefix are set, which only PETSc reads.
#include "cphys/poisson.h"

#include <torch/library.h>

#include <array>
#include <atomic>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#include "cphys/environment.h"
#include "cphys/poisson_spectral.h"

namespace physgrad {
namespace {

const OpDescriptor kPoisson{
    "physgrad",
    "poisson",
    "poisson(Tensor x, str grad_mode=\"physical\", float y_step=1.0, float[] spacing=[1.0], float "
    "rtol=1e-10, "
    "int max_iterations=10000, int lbfgs_iterations=32, str on_failure=\"raise\", str "
    "boundary=\"dirichlet\", "
    "str solver=\"auto\") -> Tensor",
    "poisson_backward(Tensor grad_y, Tensor x, Tensor y, str grad_mode, float y_step, float[] spacing, "
    "float rtol, int max_iterations, int lbfgs_iterations, str on_failure, str boundary=\"dirichlet\", "
    "str solver=\"auto\") -> Tensor",
    {GradMode::Adjoint, GradMode::Physical, GradMode::Lbfgs},
    "physgrad_poisson_"};
constexpr const char *kOp = "poisson";

enum class Solver { Auto, Spectral, Petsc };

struct Options : ModeOptions {
  std::array<double, 3> spacing;
  std::array<CPhysBoundary, 3> boundary;
  double rtol;
  int64_t max_iterations;
  Solver solver;
};

Solver parse_solver(c10::string_view solver) {
  if (solver == "auto") return Solver::Auto;
  if (solver == "spectral") return Solver::Spectral;
  if (solver == "petsc") return Solver::Petsc;
  TORCH_CHECK_VALUE(false, "physgrad.poisson: solver must be 'auto', 'spectral' or 'petsc', got '",
                    std::string(solver), "'");
}

// Every option (the backward's too, so a bad one fails where the op is called)
// is checked before a solver cache is consulted (a NaN key would match any).
Options parse_options(const Grid &grid, c10::string_view grad_mode, double y_step,
                      at::ArrayRef<double> spacing, double rtol, int64_t max_iterations,
                      int64_t lbfgs_iterations, c10::string_view on_failure, c10::string_view boundary,
                      c10::string_view solver) {
  Options o;
  static_cast<ModeOptions &>(o) =
      parse_mode_options(kPoisson, grad_mode, y_step, lbfgs_iterations, on_failure);
  o.spacing = parse_spacing(spacing, grid.dims, kOp);
  TORCH_CHECK_VALUE(std::isfinite(rtol) && rtol > 0.0 && rtol < 1.0,
                    "physgrad.poisson: rtol must be in (0, 1), got ", rtol);
  TORCH_CHECK_VALUE(max_iterations >= 1 && max_iterations <= INT32_MAX,
                    "physgrad.poisson: max_iterations must be in [1, 2^31), got ", max_iterations);
  o.boundary = parse_boundary(boundary, grid.dims, kOp, "'dirichlet', 'neumann' or 'periodic'",
                              CPHYS_BOUNDARY_DIRICHLET, true);
  o.rtol = rtol;
  o.max_iterations = max_iterations;
  o.solver = parse_solver(solver);
  return o;
}

// ---- the PETSc object: 2-D zero Dirichlet ----

struct SolverKey {
  int64_t ny, nx;
  double dy, dx, rtol;
  int64_t max_iterations;
  bool operator<(const SolverKey &o) const {
    return std::tie(ny, nx, dy, dx, rtol, max_iterations) <
           std::tie(o.ny, o.nx, o.dy, o.dx, o.rtol, o.max_iterations);
  }
};

ObjectCache<SolverKey, CPhysPoisson> &petsc_solvers() {
  static ObjectCache<SolverKey, CPhysPoisson> cache(
      [](const SolverKey &k, CPhysPoisson *p) {
        CPhysPoissonConfig config = CPhysPoissonDefaultConfig();
        config.shape[0] = k.ny, config.shape[1] = k.nx;
        config.spacing[0] = k.dy, config.spacing[1] = k.dx;
        config.rtol = k.rtol;
        config.max_iterations = static_cast<int>(k.max_iterations);
        return CPhysPoissonCreate(&config, p);
      },
      [](CPhysPoisson *p) { return CPhysPoissonDestroy(p); });
  return cache;
}

std::shared_ptr<CPhysPoisson_private> petsc_solver(const Grid &g, const Options &o) {
  return petsc_solvers().get(
      SolverKey{g.shape[0], g.shape[1], o.spacing[0], o.spacing[1], o.rtol, o.max_iterations}, kOp);
}

// ---- the spectral object: every boundary, 2-D and 3-D ----

struct SpectralKey {
  int dims;
  std::array<int64_t, 3> shape;
  std::array<double, 3> spacing;
  std::array<int, 3> boundary;
  bool operator<(const SpectralKey &o) const {
    return std::tie(dims, shape, spacing, boundary) < std::tie(o.dims, o.shape, o.spacing, o.boundary);
  }
};

ObjectCache<SpectralKey, CPhysPoissonSpectral> &spectral_solvers() {
  static ObjectCache<SpectralKey, CPhysPoissonSpectral> cache(
      [](const SpectralKey &k, CPhysPoissonSpectral *p) {
        CPhysPoissonSpectralConfig config = CPhysPoissonSpectralDefaultConfig();
        config.dims = k.dims;
        for (int a = 0; a < k.dims; a++) {
          config.shape[a] = k.shape[a], config.spacing[a] = k.spacing[a];
          config.boundary[a] = static_cast<CPhysBoundary>(k.boundary[a]);
        }
        return CPhysPoissonSpectralCreate(&config, p);
      },
      [](CPhysPoissonSpectral *p) { return CPhysPoissonSpectralDestroy(p); });
  return cache;
}

std::shared_ptr<CPhysPoissonSpectral_private> spectral_solver(const Grid &g, const Options &o) {
  SpectralKey key{g.dims, g.shape, o.spacing, {o.boundary[0], o.boundary[1], o.boundary[2]}};
  return spectral_solvers().get(key, kOp);
}

// Whether PETSc's options hold a -physgrad_poisson_ option (not the lbfgs mode's
// TAO options): asked once, again after the options change (the caches are cleared then).
bool poisson_petsc_options_set() {
  static std::atomic<int> known{-1};
  static const bool registered = [] {
    register_cache([] { known = -1; }, [] { return size_t{0}; });
    return true;
  }();
  (void)registered;
  int value = known.load();
  if (value < 0) {
    const std::string lbfgs_prefix = std::string(kPoisson.options_prefix) + "lbfgs_";
    check_cphys(CPhysHasOptionsWithPrefix(kPoisson.options_prefix, lbfgs_prefix.c_str(), &value), kOp);
    known = value;
  }
  return value != 0;
}

Solver resolve_solver(const Grid &g, const Options &o) {
  const bool petsc_solves_it =
      g.dims == 2 && o.boundary[0] == CPHYS_BOUNDARY_DIRICHLET && o.boundary[1] == CPHYS_BOUNDARY_DIRICHLET;
  if (o.solver == Solver::Petsc) {
    TORCH_CHECK_VALUE(
        petsc_solves_it, "physgrad.poisson: solver='petsc' solves 2-D grids with zero Dirichlet ",
        "boundaries only; use solver='spectral' (or 'auto') for this ", g.dims, "-D grid with boundary '",
        kBoundaryNames[o.boundary[0]], "', '", kBoundaryNames[o.boundary[1]],
        g.dims == 3 ? std::string("', '") + kBoundaryNames[o.boundary[2]] : std::string(), "'");
    return Solver::Petsc;
  }
  if (o.solver == Solver::Spectral || !petsc_solves_it) return Solver::Spectral;
  return poisson_petsc_options_set() ? Solver::Petsc : Solver::Spectral;
}

// A batched solve (forward, or the adjoint: the same map) with its statistics recorded.
at::Tensor solve(const Grid &g, const at::Tensor &rhs, const Options &o, Solver solver, bool adjoint) {
  const char *phase = adjoint ? "adjoint" : "forward";
  at::Tensor out = at::empty_like(rhs);
  std::vector<CPhysSolveInfo> info(rhs.size(0));
  int code;
  if (solver == Solver::Petsc) {
    auto p = petsc_solver(g, o);
    code = (adjoint ? CPhysPoissonAdjoint : CPhysPoissonSolve)(p.get(), rhs.size(0), rhs.data_ptr<double>(),
                                                               out.data_ptr<double>(), info.data());
  } else {
    auto p = spectral_solver(g, o);
    code = (adjoint ? CPhysPoissonSpectralAdjoint : CPhysPoissonSpectralSolve)(
        p.get(), rhs.size(0), rhs.data_ptr<double>(), out.data_ptr<double>(), info.data());
  }
  record_solve_info(kOp, phase, info);
  check_cphys(code, kOp, o.on_failure, adjoint);
  return out;
}

at::Tensor poisson_forward(const at::Tensor &x, c10::string_view grad_mode, double y_step,
                           at::ArrayRef<double> spacing, double rtol, int64_t max_iterations,
                           int64_t lbfgs_iterations, c10::string_view on_failure, c10::string_view boundary,
                           c10::string_view solver) {
  follow_torch_threads();
  const Grid grid = grid_input(x, kOp, "x", "node");
  const Options o = parse_options(grid, grad_mode, y_step, spacing, rtol, max_iterations, lbfgs_iterations,
                                  on_failure, boundary, solver);
  return solve(grid, grid.data, o, resolve_solver(grid, o), false).to(x.scalar_type()).view(x.sizes());
}

// The backward of every mode; g = dL/dy, x and y the forward's input and output.
at::Tensor poisson_backward(const at::Tensor &g, const at::Tensor &x, const at::Tensor &y,
                            c10::string_view grad_mode, double y_step, at::ArrayRef<double> spacing,
                            double rtol, int64_t max_iterations, int64_t lbfgs_iterations,
                            c10::string_view on_failure, c10::string_view boundary,
                            c10::string_view solver_name) {
  follow_torch_threads();
  const Grid g_grid = grid_input(g, kOp, "grad_y", "node");
  TORCH_CHECK_VALUE(g.sizes() == x.sizes() && y.sizes() == x.sizes(), "physgrad.poisson_backward: grad_y ",
                    g.sizes(), " and y ", y.sizes(), " must have the shape of x ", x.sizes());
  const Options o = parse_options(g_grid, grad_mode, y_step, spacing, rtol, max_iterations, lbfgs_iterations,
                                  on_failure, boundary, solver_name);
  const Solver solver = resolve_solver(g_grid, o);
  const at::Tensor &gd = g_grid.data;
  at::Tensor dx;
  switch (o.mode) {
    case GradMode::Adjoint:
      dx = solve(g_grid, gd, o, solver, true);
      break;
    case GradMode::Physical: {
      CPhysInverseProblem problem;
      std::shared_ptr<CPhysPoisson_private> petsc;
      std::shared_ptr<CPhysPoissonSpectral_private> spectral;
      if (solver == Solver::Petsc) {
        petsc = petsc_solver(g_grid, o);
        check_cphys(CPhysPoissonGetInverseProblem(petsc.get(), &problem), kOp);
      } else {
        spectral = spectral_solver(g_grid, o);
        check_cphys(CPhysPoissonSpectralGetInverseProblem(spectral.get(), &problem), kOp);
      }
      dx = physical_gradient(problem, kPoisson, grid_input(x, kOp, "x", "node").data,
                             grid_input(y, kOp, "y", "node").data, gd, o.y_step, o.on_failure);
      break;
    }
    default: {
      CPhysLeastSquaresProblem problem;
      std::shared_ptr<CPhysPoisson_private> petsc;
      std::shared_ptr<CPhysPoissonSpectral_private> spectral;
      if (solver == Solver::Petsc) {
        petsc = petsc_solver(g_grid, o);
        check_cphys(CPhysPoissonGetLeastSquaresProblem(petsc.get(), &problem), kOp);
      } else {
        spectral = spectral_solver(g_grid, o);
        check_cphys(CPhysPoissonSpectralGetLeastSquaresProblem(spectral.get(), &problem), kOp);
      }
      dx = lbfgs_physical_gradient(problem, kPoisson, grid_input(x, kOp, "x", "node").data,
                                   grid_input(y, kOp, "y", "node").data, gd, o.y_step, o.lbfgs_iterations,
                                   o.on_failure);
    }
  }
  return dx.to(x.scalar_type()).view(x.sizes());
}

}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  physgrad::define_op(m, physgrad::kPoisson);
}

TORCH_LIBRARY_IMPL(physgrad, CPU, m) {
  m.impl("poisson", physgrad::poisson_forward);
  m.impl("poisson_backward", physgrad::poisson_backward);
}

TORCH_LIBRARY_IMPL(physgrad, Autograd, m) {
  physgrad::register_physics_autograd(m, "poisson");
}
