// physgrad::poisson: schema and CPU kernels (forward, backward of every mode).
//   y = laplace^-1 x on [B, ny, nx] (or [B, 1, ny, nx]) with zero Dirichlet boundary.
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "common.h"
#include "cphys/poisson.h"

namespace physgrad {
namespace {

constexpr const char *kOp = "poisson";
const std::initializer_list<GradMode> kModes = {GradMode::Adjoint, GradMode::Physical, GradMode::Lbfgs};

struct SolverKey {
  int64_t ny, nx;
  double dy, dx, rtol;
  int64_t max_iterations;
  bool operator<(const SolverKey &o) const {
    return std::tie(ny, nx, dy, dx, rtol, max_iterations) <
           std::tie(o.ny, o.nx, o.dy, o.dx, o.rtol, o.max_iterations);
  }
};

ObjectCache<SolverKey, CPhysPoisson> &solvers() {
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

// The grid of `x` ([B, ny, nx] or [B, 1, ny, nx]) as a contiguous float64 [B, ny, nx] tensor.
at::Tensor grid_input(const at::Tensor &x, const char *argument) {
  at::Tensor grid = as_double(x, kOp, argument, {3, 4});
  if (grid.dim() == 4) {
    TORCH_CHECK_VALUE(grid.size(1) == 1, "physgrad.poisson: a 4-D ", argument,
                      " must be [B, 1, ny, nx], got shape ", x.sizes());
    grid = grid.squeeze(1);
  }
  TORCH_CHECK_VALUE(grid.size(1) >= 1 && grid.size(2) >= 1, "physgrad.poisson: ", argument,
                    " must have at least one node per axis, got shape ", x.sizes());
  return grid;
}

struct Options {
  at::ArrayRef<double> spacing;
  double rtol;
  int64_t max_iterations;
  OnFailure on_failure;
};

Options parse_options(at::ArrayRef<double> spacing, double rtol, int64_t max_iterations,
                      c10::string_view on_failure) {
  TORCH_CHECK_VALUE(spacing.size() == 2, "physgrad.poisson: spacing must be [dy, dx], got ", spacing);
  // Checked before the solver cache: a NaN key compares equal to every cached one.
  for (double h : spacing)
    TORCH_CHECK_VALUE(std::isfinite(h) && h > 0.0, "physgrad.poisson: spacing must be positive and finite, got ",
                      spacing);
  TORCH_CHECK_VALUE(std::isfinite(rtol) && rtol > 0.0 && rtol < 1.0, "physgrad.poisson: rtol must be in (0, 1), got ",
                    rtol);
  TORCH_CHECK_VALUE(max_iterations >= 1 && max_iterations <= INT32_MAX,
                    "physgrad.poisson: max_iterations must be in [1, 2^31), got ", max_iterations);
  return Options{spacing, rtol, max_iterations, parse_on_failure(on_failure, kOp)};
}

std::shared_ptr<CPhysPoisson_private> solver_for(const at::Tensor &grid, const Options &o) {
  return solvers().get(SolverKey{grid.size(1), grid.size(2), o.spacing[0], o.spacing[1], o.rtol,
                                 o.max_iterations},
                       kOp);
}

// Runs a batched solve (forward or adjoint) and records its statistics.
at::Tensor solve(const at::Tensor &rhs, const Options &o, const char *phase,
                 int (*solver_call)(CPhysPoisson, ptrdiff_t, const double *, double *, CPhysSolveInfo *)) {
  auto solver = solver_for(rhs, o);
  at::Tensor out = at::empty_like(rhs);
  std::vector<CPhysSolveInfo> info(rhs.size(0));
  const int code = solver_call(solver.get(), rhs.size(0), rhs.data_ptr<double>(), out.data_ptr<double>(),
                               info.data());
  record_solve_info(kOp, phase, info);
  check_cphys(code, kOp, o.on_failure, std::string(phase) != "forward");
  return out;
}

at::Tensor poisson_forward(const at::Tensor &x, c10::string_view grad_mode, double y_step,
                           at::ArrayRef<double> spacing, double rtol, int64_t max_iterations,
                           int64_t lbfgs_iterations, c10::string_view on_failure) {
  parse_grad_mode(grad_mode, kOp, kModes);
  // Backward options are checked here too, so a bad one fails where the op is called.
  TORCH_CHECK_VALUE(std::isfinite(y_step), "physgrad.poisson: y_step must be finite, got ", y_step);
  TORCH_CHECK_VALUE(lbfgs_iterations >= 1 && lbfgs_iterations <= INT32_MAX,
                    "physgrad.poisson: lbfgs_iterations must be >= 1, got ", lbfgs_iterations);
  const Options o = parse_options(spacing, rtol, max_iterations, on_failure);
  at::Tensor grid = grid_input(x, "x");
  return solve(grid, o, "forward", CPhysPoissonSolve).to(x.scalar_type()).view(x.sizes());
}

// The backward of every mode; g = dL/dy, x and y the forward's input and output.
at::Tensor poisson_backward(const at::Tensor &g, const at::Tensor &x, const at::Tensor &y,
                            c10::string_view grad_mode, double y_step, at::ArrayRef<double> spacing,
                            double rtol, int64_t max_iterations, int64_t lbfgs_iterations,
                            c10::string_view on_failure) {
  follow_torch_threads();
  const GradMode mode = parse_grad_mode(grad_mode, kOp, kModes);
  const Options o = parse_options(spacing, rtol, max_iterations, on_failure);
  at::Tensor g_grid = grid_input(g, "grad_y");
  TORCH_CHECK_VALUE(g.sizes() == x.sizes() && y.sizes() == x.sizes(), "physgrad.poisson_backward: grad_y ",
                    g.sizes(), " and y ", y.sizes(), " must have the shape of x ", x.sizes());
  at::Tensor dx;
  switch (mode) {
    case GradMode::Adjoint:
      dx = solve(g_grid, o, "adjoint", CPhysPoissonAdjoint);
      break;
    case GradMode::Physical: {
      auto solver = solver_for(g_grid, o);
      dx = at::empty_like(g_grid);
      const int code = CPhysPoissonPhysicalGradient(solver.get(), g_grid.size(0), y_step,
                                                    g_grid.data_ptr<double>(), dx.data_ptr<double>());
      // cphys checks g in the stencil's pass; a non-finite g is then named as
      // every other mode names it (grad_y[b][j][i] = value).
      if (code == CPHYS_ERROR_NONFINITE) check_finite(g_grid, kOp, "grad_y");
      check_cphys(code, kOp);
      break;
    }
    default: {
      auto solver = solver_for(g_grid, o);
      CPhysLeastSquaresProblem problem;
      check_cphys(CPhysPoissonGetLeastSquaresProblem(solver.get(), &problem), kOp);
      dx = lbfgs_physical_gradient(problem, kOp, grid_input(x, "x"), grid_input(y, "y"), g_grid, y_step,
                                   lbfgs_iterations, o.on_failure);
    }
  }
  return dx.to(x.scalar_type()).view(x.sizes());
}

}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  m.def(
      "poisson(Tensor x, str grad_mode=\"physical\", float y_step=1.0, float[2] spacing=[1.0, 1.0], "
      "float rtol=1e-10, int max_iterations=10000, int lbfgs_iterations=32, str on_failure=\"raise\") "
      "-> Tensor");
  m.def(
      "poisson_backward(Tensor grad_y, Tensor x, Tensor y, str grad_mode, float y_step, float[2] spacing, "
      "float rtol, int max_iterations, int lbfgs_iterations, str on_failure) -> Tensor");
}

TORCH_LIBRARY_IMPL(physgrad, CPU, m) {
  m.impl("poisson", physgrad::poisson_forward);
  m.impl("poisson_backward", physgrad::poisson_backward);
}

TORCH_LIBRARY_IMPL(physgrad, Autograd, m) { physgrad::register_physics_autograd(m, "poisson"); }
