// physgrad::heat: schema and CPU kernels (forward, backward of every mode).
//   y = F^-1(F(x) exp(-|k|^2 nu_t)) on a 2-D [B, ny, nx] ([B, 1, ny, nx]) or 3-D
//   [B, nz, ny, nx] ([B, 1, nz, ny, nx]) grid, periodic, zero Dirichlet or Neumann
//   per axis (F: the DFT, or the sine / cosine transforms of cphys/heat.h).
#include "cphys/heat.h"

#include <torch/library.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"

namespace physgrad {
namespace {

const OpDescriptor kHeat{
    "physgrad",
    "heat",
    "heat(Tensor x, float nu_t=8.0, str grad_mode=\"physical\", float y_step=1.0, "
    "float[] spacing=[1.0, 1.0], int lbfgs_iterations=32, str on_failure=\"raise\", "
    "str boundary=\"periodic\", float noise_floor=0.0) -> Tensor",
    "heat_backward(Tensor grad_y, Tensor x, Tensor y, float nu_t, str grad_mode, float y_step, "
    "float[] spacing, int lbfgs_iterations, str on_failure, str boundary=\"periodic\", "
    "float noise_floor=0.0) -> Tensor",
    {GradMode::Adjoint, GradMode::Physical, GradMode::Lbfgs},
    "physgrad_heat_",
    /*own_solver_options=*/false};
constexpr const char *kOp = "heat";

struct HeatKey {
  int dims;
  std::array<int64_t, 3> shape;
  std::array<double, 3> spacing;
  std::array<CPhysBoundary, 3> boundary;
  double nu_t, noise_floor;
  bool operator<(const HeatKey &o) const {
    return std::tie(dims, shape, spacing, boundary, nu_t, noise_floor) <
           std::tie(o.dims, o.shape, o.spacing, o.boundary, o.nu_t, o.noise_floor);
  }
};

ObjectCache<HeatKey, CPhysHeat> &objects() {
  static ObjectCache<HeatKey, CPhysHeat> cache(
      [](const HeatKey &k, CPhysHeat *h) {
        CPhysHeatConfig config = CPhysHeatDefaultConfig();
        config.dims = k.dims;
        for (int a = 0; a < k.dims; a++) {
          config.shape[a] = k.shape[a], config.spacing[a] = k.spacing[a];
          config.boundary[a] = k.boundary[a];
        }
        config.nu_t = k.nu_t;
        config.noise_absolute = k.noise_floor;
        return CPhysHeatCreate(&config, h);
      },
      [](CPhysHeat *h) { return CPhysHeatDestroy(h); });
  return cache;
}

// Throws for a failed cphys call on `argument`, naming it (e.g. a NaN in grad_y).
void check_call(int code, const char *argument) {
  if (code == CPHYS_SUCCESS) return;
  check_cphys(code, (std::string(kOp) + ": " + argument).c_str());
}

struct Options : ModeOptions {
  double nu_t, noise_floor;
  std::array<double, 3> spacing;
  std::array<CPhysBoundary, 3> boundary;
};

// Validates every option where the op is called, so a bad one fails in the forward.
Options parse_options(const Grid &grid, double nu_t, c10::string_view grad_mode, double y_step,
                      at::ArrayRef<double> spacing, int64_t lbfgs_iterations, c10::string_view on_failure,
                      c10::string_view boundary, double noise_floor) {
  Options o;
  static_cast<ModeOptions &>(o) = parse_mode_options(kHeat, grad_mode, y_step, lbfgs_iterations, on_failure);
  o.nu_t = nu_t;
  TORCH_CHECK_VALUE(std::isfinite(nu_t) && nu_t >= 0.0, "physgrad.heat: nu_t must be finite and >= 0, got ",
                    nu_t);
  TORCH_CHECK_VALUE(std::isfinite(noise_floor) && noise_floor >= 0.0,
                    "physgrad.heat: noise_floor must be finite and >= 0, got ", noise_floor);
  o.noise_floor = noise_floor;
  o.spacing = parse_spacing(spacing, grid.dims, kOp);
  o.boundary = parse_boundary(boundary, grid.dims, kOp, "'periodic', 'dirichlet' or 'neumann'",
                              CPHYS_BOUNDARY_PERIODIC);
  return o;
}

std::shared_ptr<CPhysHeat_private> object_for(const Grid &grid, const Options &o) {
  return objects().get(HeatKey{grid.dims, grid.shape, o.spacing, o.boundary, o.nu_t, o.noise_floor}, kOp);
}

// The forward is exact (no iterations), but it records statistics so that
// solve_stats("heat") after a forward describes that forward.
void record_exact_forward(int64_t batch) {
  CPhysSolveInfo exact = {};
  exact.converged = 1;
  snprintf(exact.reason_text, sizeof exact.reason_text, "%s", "DIRECT");
  record_solve_info(kOp, "forward", std::vector<CPhysSolveInfo>(batch, exact));
}

at::Tensor heat_forward(const at::Tensor &x, double nu_t, c10::string_view grad_mode, double y_step,
                        at::ArrayRef<double> spacing, int64_t lbfgs_iterations, c10::string_view on_failure,
                        c10::string_view boundary, double noise_floor) {
  follow_torch_threads();
  const Grid grid = grid_input(x, kOp, "x", "cell");
  const Options o = parse_options(grid, nu_t, grad_mode, y_step, spacing, lbfgs_iterations, on_failure,
                                  boundary, noise_floor);
  auto heat = object_for(grid, o);
  const at::Tensor &data = grid.data;
  at::Tensor y = at::empty_like(data);
  check_call(CPhysHeatForward(heat.get(), data.size(0), data.data_ptr<double>(), y.data_ptr<double>()), "x");
  record_exact_forward(data.size(0));
  return y.to(x.scalar_type()).view(x.sizes());
}

// The backward of every mode; g = dL/dy, x and y the forward's input and output.
at::Tensor heat_backward(const at::Tensor &g, const at::Tensor &x, const at::Tensor &y, double nu_t,
                         c10::string_view grad_mode, double y_step, at::ArrayRef<double> spacing,
                         int64_t lbfgs_iterations, c10::string_view on_failure, c10::string_view boundary,
                         double noise_floor) {
  follow_torch_threads();
  const Grid grad_grid = grid_input(g, kOp, "grad_y", "cell");
  const Options o = parse_options(grad_grid, nu_t, grad_mode, y_step, spacing, lbfgs_iterations, on_failure,
                                  boundary, noise_floor);
  const at::Tensor &g_grid = grad_grid.data;
  TORCH_CHECK_VALUE(g.sizes() == x.sizes(), "physgrad.heat_backward: grad_y has shape ", g.sizes(),
                    " but x has shape ", x.sizes());
  TORCH_CHECK_VALUE(y.sizes() == x.sizes(), "physgrad.heat_backward: y has shape ", y.sizes(),
                    " but x has shape ", x.sizes());
  auto heat = object_for(grad_grid, o);
  const int64_t batch = g_grid.size(0);
  at::Tensor dx;
  switch (o.mode) {
    case GradMode::Adjoint:
      dx = at::empty_like(g_grid);
      check_call(CPhysHeatAdjoint(heat.get(), batch, g_grid.data_ptr<double>(), dx.data_ptr<double>()),
                 "grad_y");
      break;
    case GradMode::Physical: {
      CPhysInverseProblem problem;
      check_call(CPhysHeatGetInverseProblem(heat.get(), &problem), "x");
      dx = physical_gradient(problem, kHeat, grid_input(x, kOp, "x", "cell").data,
                             grid_input(y, kOp, "y", "cell").data, g_grid, o.y_step, o.on_failure);
      break;
    }
    default: {
      CPhysLeastSquaresProblem problem;
      check_call(CPhysHeatGetLeastSquaresProblem(heat.get(), &problem), "x");
      dx = lbfgs_physical_gradient(problem, kHeat, grid_input(x, kOp, "x", "cell").data,
                                   grid_input(y, kOp, "y", "cell").data, g_grid, o.y_step, o.lbfgs_iterations,
                                   o.on_failure);
    }
  }
  return dx.to(x.scalar_type()).view(x.sizes());
}

}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  physgrad::define_op(m, physgrad::kHeat);
}

TORCH_LIBRARY_IMPL(physgrad, CPU, m) {
  m.impl("heat", physgrad::heat_forward);
  m.impl("heat_backward", physgrad::heat_backward);
}

TORCH_LIBRARY_IMPL(physgrad, Autograd, m) {
  physgrad::register_physics_autograd(m, "heat");
}
