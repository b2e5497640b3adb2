// physgrad::fluid: schema and CPU kernels (forward, backward of every mode),
// physgrad::fluid_sequence (the states of a run, for plots), and the centre of
// mass and unit vortex of the physical inverse (for the data generator).
//   m_t = P(v0; m0): incompressible flow on a MAC grid (periodic, or walls) transports the
//   marker m0 [B, ny, nx] (or [B, 1, ny, nx]) with the initial cell-centred
//   velocity v0 [B, 2, ny, nx] (channel 0 = vx, 1 = vy); see cphys/fluid.h.
//
// Threading: a cphys fluid object owns work arrays, the tape of its last
// recorded run and the statistics of its last call, and is not safe to use from
// two threads at once; so each cached object has a mutex, held for the call and
// the reading of its statistics.  (cphys also holds its library lock for the
// whole of every fluid call that solves, so fluid calls on different objects
// run one at a time as well.)
#include "cphys/fluid.h"

#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <tuple>

#include "common.h"

namespace physgrad {
namespace {

const OpDescriptor kFluid{
    "physgrad",
    "fluid",
    "fluid(Tensor v0, Tensor m0, int steps=8, float dt=0.25, float[2] spacing=[2.0, 2.0], "
    "str grad_mode=\"physical\", float y_step=1.0, float pressure_atol=1e-4, int "
    "pressure_max_iterations=1000, "
    "int lbfgs_iterations=32, str on_failure=\"raise\", str energy=\"total\", float viscosity=0.0, "
    "str boundary=\"periodic\") -> Tensor",
    "fluid_backward(Tensor grad_y, Tensor v0, Tensor m0, Tensor y, int steps, float dt, float[2] spacing, "
    "str grad_mode, float y_step, float pressure_atol, int pressure_max_iterations, int lbfgs_iterations, "
    "str on_failure, str energy=\"total\", float viscosity=0.0, str boundary=\"periodic\") -> Tensor[]",
    {GradMode::Adjoint, GradMode::Physical, GradMode::Lbfgs},
    "physgrad_fluid_"};
const OpDescriptor kFluidSequence{
    "physgrad",
    "fluid_sequence",
    "fluid_sequence(Tensor v0, Tensor m0, int steps, float dt, float[2] spacing, float pressure_atol, "
    "int pressure_max_iterations, str energy=\"total\", float viscosity=0.0, str boundary=\"periodic\") -> "
    "(Tensor, Tensor)",
    nullptr,
    {},
    "physgrad_fluid_"};
const OpDescriptor kFluidCentreOfMass{
    "physgrad",
    "fluid_centre_of_mass",
    "fluid_centre_of_mass(Tensor marker, float[2] spacing, str boundary=\"periodic\") -> Tensor",
    nullptr,
    {},
    ""};
const OpDescriptor kFluidUnitVortex{"physgrad",
                                    "fluid_unit_vortex",
                                    "fluid_unit_vortex(int ny, int nx, float[2] spacing) -> Tensor",
                                    nullptr,
                                    {},
                                    ""};
constexpr const char *kOp = "fluid";

struct FluidKey {
  int64_t ny, nx;
  double dy, dx, dt;
  int64_t steps;
  double atol;
  int64_t max_iterations;
  int energy;  // CPhysFluidEnergy
  double viscosity;
  int boundary_y, boundary_x;  // CPhysFluidBoundary
  bool operator<(const FluidKey &o) const {
    return std::tie(ny, nx, dy, dx, dt, steps, atol, max_iterations, energy, viscosity, boundary_y,
                    boundary_x) < std::tie(o.ny, o.nx, o.dy, o.dx, o.dt, o.steps, o.atol, o.max_iterations,
                                           o.energy, o.viscosity, o.boundary_y, o.boundary_x);
  }
};

// A cached fluid object and the mutex that gives it to one call at a time.
struct FluidSolver {
  CPhysFluid fluid = nullptr;
  std::mutex mutex;
};

ObjectCache<FluidKey, FluidSolver *> &solvers() {
  static ObjectCache<FluidKey, FluidSolver *> cache(
      [](const FluidKey &k, FluidSolver **out) {
        CPhysFluidConfig config = CPhysFluidDefaultConfig();
        config.shape[0] = k.ny, config.shape[1] = k.nx;
        config.spacing[0] = k.dy, config.spacing[1] = k.dx;
        config.dt = k.dt;
        config.steps = static_cast<int>(k.steps);
        config.atol = k.atol;
        config.max_iterations = static_cast<int>(k.max_iterations);
        config.energy = static_cast<CPhysFluidEnergy>(k.energy);
        config.viscosity = k.viscosity;
        config.boundary[0] = static_cast<CPhysFluidBoundary>(k.boundary_y);
        config.boundary[1] = static_cast<CPhysFluidBoundary>(k.boundary_x);
        std::unique_ptr<FluidSolver> solver(new FluidSolver);
        const int code = CPhysFluidCreate(&config, &solver->fluid);
        if (code == CPHYS_SUCCESS) *out = solver.release();
        return code;
      },
      [](FluidSolver **solver) {
        if (*solver) CPhysFluidDestroy(&(*solver)->fluid);
        delete *solver;
        *solver = nullptr;
        return 0;
      });
  return cache;
}

struct Options {
  int64_t steps;
  double dt, dy, dx, atol;
  int64_t max_iterations;
  int energy;  // CPhysFluidEnergy
  double viscosity;
  int boundary[2];  // CPhysFluidBoundary per axis [y, x]
};

// The energy-rescale convention of every step (cphys/fluid.h, CPhysFluidEnergy).
int parse_energy(c10::string_view energy, const std::string &name) {
  if (energy == "total") return CPHYS_FLUID_ENERGY_TOTAL;
  if (energy == "per_component") return CPHYS_FLUID_ENERGY_PER_COMPONENT;
  if (energy == "none") return CPHYS_FLUID_ENERGY_NONE;
  TORCH_CHECK_VALUE(false, name, ": energy must be 'total', 'per_component' or 'none', got '",
                    std::string(energy), "'");
}

std::string op_name(const char *op) {
  return std::string("physgrad.") + op;
}

// The box's sides (cphys/fluid.h, CPhysFluidBoundary): one name for both axes, or one per axis
// in the order y, x ("free_slip,periodic": walls at the bottom and top, periodic in x).
void parse_fluid_boundary(c10::string_view text, const std::string &name, int boundary[2]) {
  static const char *const kNames[3] = {"periodic", "free_slip", "no_slip"};
  const std::string all(text);
  std::vector<int> axes;
  size_t start = 0;
  while (true) {
    const size_t comma = all.find(',', start);
    std::string word = all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    word.erase(0, word.find_first_not_of(' '));
    word.erase(word.find_last_not_of(' ') + 1);
    int found = -1;
    for (int b = 0; b < 3; b++)
      if (word == kNames[b]) found = b;
    TORCH_CHECK_VALUE(found >= 0, name,
                      ": boundary must be 'periodic', 'free_slip' or 'no_slip', or one per axis in the "
                      "order y, x (e.g. 'free_slip,periodic'), got '",
                      all, "'");
    axes.push_back(found);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  TORCH_CHECK_VALUE(axes.size() <= 2, name, ": boundary '", all, "' names ", axes.size(),
                    " axes, but the fluid's grid has 2 (y, x)");
  boundary[0] = axes[0], boundary[1] = axes[axes.size() - 1];
}

Options parse_options(const char *op, int64_t steps, double dt, at::ArrayRef<double> spacing, double atol,
                      int64_t max_iterations, c10::string_view energy, double viscosity,
                      c10::string_view boundary) {
  const std::string name = op_name(op);
  TORCH_CHECK_VALUE(steps >= 1 && steps <= 100000, name, ": steps must be in [1, 100000], got ", steps);
  TORCH_CHECK_VALUE(std::isfinite(dt) && dt > 0.0, name, ": dt must be positive and finite, got ", dt);
  const std::array<double, 3> h = parse_spacing(spacing, 2, op);
  TORCH_CHECK_VALUE(std::isfinite(atol) && atol > 0.0, name,
                    ": pressure_atol must be positive and finite, got ", atol);
  TORCH_CHECK_VALUE(max_iterations >= 1 && max_iterations <= INT32_MAX, name,
                    ": pressure_max_iterations must be in [1, 2^31), got ", max_iterations);
  const int energy_mode = parse_energy(energy, name);
  TORCH_CHECK_VALUE(std::isfinite(viscosity) && viscosity >= 0.0, name,
                    ": viscosity must be >= 0 and finite, got ", viscosity);
  TORCH_CHECK_VALUE(viscosity == 0.0 || energy_mode == CPHYS_FLUID_ENERGY_NONE, name, ": viscosity ",
                    viscosity,
                    " needs energy='none': the energy rescale would restore the energy the "
                    "viscosity dissipates (energy is '",
                    std::string(energy), "')");
  Options o{steps, dt, h[0], h[1], atol, max_iterations, energy_mode, viscosity, {0, 0}};
  parse_fluid_boundary(boundary, name, o.boundary);
  return o;
}

// v0 as contiguous float64 [B, 2, ny, nx] and m0 as [B, ny, nx], checked against each other.
struct Inputs {
  at::Tensor v0, m0;
  int64_t batch, ny, nx;
};

Inputs parse_inputs(const at::Tensor &v0, const at::Tensor &m0, const char *op) {
  const std::string name = op_name(op);
  at::Tensor v = as_double(v0, op, "v0", {4});
  TORCH_CHECK_VALUE(v.size(1) == 2, name, ": v0 must be [B, 2, ny, nx] (channel 0 = vx, 1 = vy), got shape ",
                    v0.sizes());
  at::Tensor m = as_double(m0, op, "m0", {3, 4});
  if (m.dim() == 4) {
    TORCH_CHECK_VALUE(m.size(1) == 1, name, ": a 4-D m0 must be [B, 1, ny, nx], got shape ", m0.sizes());
    m = m.squeeze(1);
  }
  TORCH_CHECK_VALUE(m.size(0) == v.size(0), name, ": m0 has batch ", m.size(0), " but v0 has batch ",
                    v.size(0));
  TORCH_CHECK_VALUE(m.size(1) == v.size(2) && m.size(2) == v.size(3), name, ": m0's grid [", m.size(1), ", ",
                    m.size(2), "] differs from v0's grid [", v.size(2), ", ", v.size(3), "]");
  TORCH_CHECK_VALUE(v.size(2) >= 3 && v.size(3) >= 3, name,
                    ": v0 and m0 need at least 3 cells per axis (periodic stencils), got grid [", v.size(2),
                    ", ", v.size(3), "]");
  return Inputs{v, m, v.size(0), v.size(2), v.size(3)};
}

// Refuses a call whose buffers cannot fit in memory, before anything is
// allocated (v0 and m0 are copied to float64 first, so this runs before
// parse_inputs, on v0's sizes): inputs and output (4 doubles per cell and
// sample), `extra` more doubles per cell and sample, and for a recorded run the
// tape ((5 steps + 6) doubles and 3 steps bytes per cell and sample).
void check_call_memory(const at::Tensor &v0, const Options &o, const char *op, bool recorded,
                       double extra = 0.0) {
  if (!v0.defined() || v0.dim() != 4) return;  // parse_inputs reports the shape
  const double cells =
      static_cast<double>(v0.size(0)) * static_cast<double>(v0.size(2)) * static_cast<double>(v0.size(3));
  const double steps = static_cast<double>(o.steps);
  double bytes = cells * sizeof(double) * (4.0 + extra);
  if (recorded) bytes += cells * ((5.0 * steps + 6.0) * sizeof(double) + 3.0 * steps);
  check_memory(bytes, op,
               "a batch of " + std::to_string(v0.size(0)) + " on a [" + std::to_string(v0.size(2)) + ", " +
                   std::to_string(v0.size(3)) + "] grid with steps = " + std::to_string(o.steps));
}

std::shared_ptr<FluidSolver> solver_for(const Inputs &in, const Options &o, const char *op) {
  return solvers().get(FluidKey{in.ny, in.nx, o.dy, o.dx, o.dt, o.steps, o.atol, o.max_iterations, o.energy,
                                o.viscosity, o.boundary[0], o.boundary[1]},
                       op);
}

// One CPhysSolveInfo per sample for the passes of the last call (CPhysFluidSummarizeSolves).
std::vector<CPhysSolveInfo> pass_info(CPhysFluid fluid, std::initializer_list<CPhysFluidPass> passes,
                                      int64_t batch) {
  std::vector<CPhysSolveInfo> summary(batch);
  check_cphys(CPhysFluidSummarizeSolves(fluid, passes.begin(), static_cast<int>(passes.size()), batch,
                                        summary.data()),
              kOp);
  return summary;
}

// Statistics are recorded when the call ran its solves (success or a deferred
// non-convergence); after other errors they would describe an earlier call.
void record(int code, CPhysFluid fluid, const char *phase, std::initializer_list<CPhysFluidPass> passes,
            int64_t batch) {
  if (code == CPHYS_SUCCESS || code == CPHYS_ERROR_NOT_CONVERGED)
    record_solve_info(kOp, phase, pass_info(fluid, passes, batch));
}

at::Tensor fluid_forward(const at::Tensor &v0, const at::Tensor &m0, int64_t steps, double dt,
                         at::ArrayRef<double> spacing, c10::string_view grad_mode, double y_step,
                         double pressure_atol, int64_t pressure_max_iterations, int64_t lbfgs_iterations,
                         c10::string_view on_failure, c10::string_view energy, double viscosity,
                         c10::string_view boundary) {
  const ModeOptions mode_options =
      parse_mode_options(kFluid, grad_mode, y_step, lbfgs_iterations, on_failure);
  const GradMode mode = mode_options.mode;
  const OnFailure failure = mode_options.on_failure;
  // Only the adjoint differentiates the marker (as the sine's a): a marker that
  // requires grad would silently get none.
  TORCH_CHECK_VALUE(
      mode == GradMode::Adjoint || !m0.requires_grad(),
      "physgrad.fluid: m0 requires grad, but m0 is data: only grad_mode='adjoint' differentiates "
      "m0 (grad_mode is '",
      std::string(grad_mode), "'); pass m0.detach()");
  const Options o = parse_options(kOp, steps, dt, spacing, pressure_atol, pressure_max_iterations, energy,
                                  viscosity, boundary);
  check_call_memory(v0, o, kOp, mode == GradMode::Adjoint);
  const Inputs in = parse_inputs(v0, m0, kOp);
  auto solver = solver_for(in, o, kOp);
  at::Tensor m_t = at::empty({in.batch, in.ny, in.nx}, in.m0.options());
  {
    std::lock_guard<std::mutex> guard(solver->mutex);
    // The adjoint backward reuses the tape of a run from the same inputs, the
    // physical backward the centres and final velocity of one (its forward run).
    const int keep = mode == GradMode::Adjoint    ? CPHYS_FLUID_RECORD_TAPE
                     : mode == GradMode::Physical ? CPHYS_FLUID_RECORD_INVERSE
                                                  : CPHYS_FLUID_RECORD_NONE;
    follow_torch_threads();
    const int code = CPhysFluidForward(solver->fluid, in.batch, in.v0.data_ptr<double>(),
                                       in.m0.data_ptr<double>(), m_t.data_ptr<double>(), keep);
    record(code, solver->fluid, "forward", {CPHYS_FLUID_PASS_FORWARD}, in.batch);
    check_cphys(code, kOp, failure, /*warn=*/false);
  }
  return m_t.to(v0.scalar_type()).view(m0.sizes());
}

// The backward of every mode: [dv0, dm0]; dm0 only in the adjoint mode (the
// marker is data to the physical and lbfgs modes), undefined otherwise.
std::vector<at::Tensor> fluid_backward(const at::Tensor &grad_y, const at::Tensor &v0, const at::Tensor &m0,
                                       const at::Tensor &y, int64_t steps, double dt,
                                       at::ArrayRef<double> spacing, c10::string_view grad_mode,
                                       double y_step, double pressure_atol, int64_t pressure_max_iterations,
                                       int64_t lbfgs_iterations, c10::string_view on_failure,
                                       c10::string_view energy, double viscosity, c10::string_view boundary) {
  constexpr const char *kBackward = "fluid_backward";
  const ModeOptions mode_options =
      parse_mode_options(kFluid, grad_mode, y_step, lbfgs_iterations, on_failure);
  const GradMode mode = mode_options.mode;
  const OnFailure failure = mode_options.on_failure;
  const Options o = parse_options(kBackward, steps, dt, spacing, pressure_atol, pressure_max_iterations,
                                  energy, viscosity, boundary);
  check_call_memory(v0, o, kBackward, /*recorded=*/true, /*extra=*/3.0);
  const Inputs in = parse_inputs(v0, m0, kBackward);
  TORCH_CHECK_VALUE(grad_y.sizes() == m0.sizes(), "physgrad.fluid_backward: grad_y has shape ",
                    grad_y.sizes(), " but m0 has shape ", m0.sizes());
  TORCH_CHECK_VALUE(y.sizes() == m0.sizes(), "physgrad.fluid_backward: y has shape ", y.sizes(),
                    " but m0 has shape ", m0.sizes());
  const at::Tensor g = as_double(grad_y, kBackward, "grad_y", {3, 4}).reshape({in.batch, in.ny, in.nx});
  auto solver = solver_for(in, o, kBackward);
  at::Tensor dv0 = at::empty_like(in.v0), dm0;
  std::lock_guard<std::mutex> guard(solver->mutex);
  CPhysFluid fluid = solver->fluid;
  follow_torch_threads();
  int code = CPHYS_SUCCESS;
  switch (mode) {
    case GradMode::Adjoint:
      dm0 = at::empty_like(in.m0);
      code = CPhysFluidAdjoint(fluid, in.batch, in.v0.data_ptr<double>(), in.m0.data_ptr<double>(),
                               g.data_ptr<double>(), dv0.data_ptr<double>(), dm0.data_ptr<double>());
      record(code, fluid, "adjoint", {CPHYS_FLUID_PASS_ADJOINT}, in.batch);
      break;
    case GradMode::Physical: {
      const at::Tensor y_double = as_double(y, kBackward, "y", {3, 4}).reshape({in.batch, in.ny, in.nx});
      CPhysInverseProblem problem;
      check_cphys(CPhysFluidGetInverseProblem(fluid, in.batch, in.m0.data_ptr<double>(), &problem), kOp);
      const int64_t cells = in.ny * in.nx;
      dv0 = physical_gradient(problem, kFluid, in.v0.reshape({in.batch, 2 * cells}),
                              y_double.reshape({in.batch, cells}), g.reshape({in.batch, cells}), y_step,
                              failure)
                .view(in.v0.sizes());
      break;
    }
    default: {
      const at::Tensor y_double = as_double(y, kBackward, "y", {3, 4}).reshape({in.batch, in.ny, in.nx});
      CPhysLeastSquaresProblem problem;
      check_cphys(CPhysFluidGetLeastSquaresProblem(fluid, in.batch, in.m0.data_ptr<double>(), &problem), kOp);
      const int64_t cells = in.ny * in.nx;
      dv0 = lbfgs_physical_gradient(problem, kFluid, in.v0.reshape({in.batch, 2 * cells}),
                                    y_double.reshape({in.batch, cells}), g.reshape({in.batch, cells}), y_step,
                                    lbfgs_iterations, failure)
                .view(in.v0.sizes());
    }
  }
  check_cphys(code, kOp, failure);
  return {dv0.to(v0.scalar_type()).view(v0.sizes()),
          dm0.defined() ? dm0.to(m0.scalar_type()).view(m0.sizes()) : at::Tensor()};
}

// Every state of the forward run: markers [B, steps + 1, ny, nx] and the
// velocity at the cell centres [B, steps + 1, 2, ny, nx] (state 0: m0 and the
// projected v0; state k: after step k).  Not differentiable.
std::tuple<at::Tensor, at::Tensor> fluid_sequence(const at::Tensor &v0, const at::Tensor &m0, int64_t steps,
                                                  double dt, at::ArrayRef<double> spacing,
                                                  double pressure_atol, int64_t pressure_max_iterations,
                                                  c10::string_view energy, double viscosity,
                                                  c10::string_view boundary) {
  constexpr const char *kSequence = "fluid_sequence";
  const Options o = parse_options(kSequence, steps, dt, spacing, pressure_atol, pressure_max_iterations,
                                  energy, viscosity, boundary);
  check_call_memory(v0, o, kSequence, /*recorded=*/true, 3.0 * (static_cast<double>(steps) + 1.0));
  const Inputs in = parse_inputs(v0, m0, kSequence);
  auto solver = solver_for(in, o, kSequence);
  const int64_t states = steps + 1, n = in.ny * in.nx;
  at::Tensor markers = at::empty({in.batch, states, in.ny, in.nx}, in.m0.options());
  at::Tensor velocities = at::empty({in.batch, states, 2, in.ny, in.nx}, in.m0.options());
  at::Tensor m_t = at::empty({in.batch, in.ny, in.nx}, in.m0.options());
  at::Tensor staggered = at::empty({2, in.ny, in.nx}, in.m0.options());
  {
    std::lock_guard<std::mutex> guard(solver->mutex);
    CPhysFluid fluid = solver->fluid;
    follow_torch_threads();
    const int code = CPhysFluidForward(fluid, in.batch, in.v0.data_ptr<double>(), in.m0.data_ptr<double>(),
                                       m_t.data_ptr<double>(), CPHYS_FLUID_RECORD_TAPE);
    check_cphys(code, kSequence);
    for (int64_t s = 0; s < in.batch; s++) {
      for (int64_t k = 0; k < states; k++) {
        const int64_t state = s * states + k;
        check_cphys(CPhysFluidGetState(fluid, s, static_cast<int>(k), staggered.data_ptr<double>(),
                                       markers.data_ptr<double>() + state * n),
                    kSequence);
        check_cphys(CPhysFluidStaggeredToCentred(fluid, 1, staggered.data_ptr<double>(),
                                                 velocities.data_ptr<double>() + state * 2 * n),
                    kSequence);
      }
    }
  }
  return std::make_tuple(markers.to(v0.scalar_type()), velocities.to(v0.scalar_type()));
}

// The fluid object of a grid with the op's default step settings (the centre
// of mass and the unit vortex depend on the grid only).
std::shared_ptr<FluidSolver> grid_solver(int64_t ny, int64_t nx, at::ArrayRef<double> spacing, const char *op,
                                         c10::string_view boundary = "periodic") {
  const Options o = parse_options(op, 8, 0.25, spacing, 1e-4, 1000, "total", 0.0, boundary);
  TORCH_CHECK_VALUE(ny >= 3 && nx >= 3, op_name(op), ": the grid needs at least 3 cells per axis, got [", ny,
                    ", ", nx, "]");
  return solver_for(Inputs{at::Tensor(), at::Tensor(), 0, ny, nx}, o, op);
}

// The centre of mass [B, 2] (x, y) that the physical inverse uses (circular
// mean on a periodic axis, plain mean between walls), for data generators that
// must agree with it.  Not differentiable.
at::Tensor fluid_centre_of_mass(const at::Tensor &marker, at::ArrayRef<double> spacing,
                                c10::string_view boundary) {
  constexpr const char *kCentre = "fluid_centre_of_mass";
  const at::Tensor m = as_double(marker, kCentre, "marker", {3});
  auto solver = grid_solver(m.size(1), m.size(2), spacing, kCentre, boundary);
  at::Tensor centre = at::empty({m.size(0), 2}, m.options());
  std::lock_guard<std::mutex> guard(solver->mutex);
  check_cphys(CPhysFluidCentreOfMass(solver->fluid, m.size(0), m.data_ptr<double>(),
                                     centre.data_ptr<double>(), nullptr),
              kCentre);
  return centre.to(marker.scalar_type());
}

// The physical inverse's unit vortex at the cell centres, [2, ny, nx] float64.
at::Tensor fluid_unit_vortex(int64_t ny, int64_t nx, at::ArrayRef<double> spacing) {
  constexpr const char *kVortex = "fluid_unit_vortex";
  auto solver = grid_solver(ny, nx, spacing, kVortex);
  at::Tensor vortex = at::empty({2, ny, nx}, at::TensorOptions().dtype(at::kDouble));
  check_cphys(CPhysFluidUnitVortex(solver->fluid, vortex.data_ptr<double>()), kVortex);
  return vortex;
}

}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  physgrad::define_op(m, physgrad::kFluid);
  physgrad::define_op(m, physgrad::kFluidSequence);
  physgrad::define_op(m, physgrad::kFluidCentreOfMass);
  physgrad::define_op(m, physgrad::kFluidUnitVortex);
  // No tensor argument to dispatch on: its (only) kernel serves every backend.
  m.impl("fluid_unit_vortex", TORCH_FN(physgrad::fluid_unit_vortex));
}

TORCH_LIBRARY_IMPL(physgrad, CPU, m) {
  m.impl("fluid", physgrad::fluid_forward);
  m.impl("fluid_backward", physgrad::fluid_backward);
  m.impl("fluid_sequence", physgrad::fluid_sequence);
  m.impl("fluid_centre_of_mass", physgrad::fluid_centre_of_mass);
}

TORCH_LIBRARY_IMPL(physgrad, Autograd, m) {
  physgrad::register_physics_autograd(m, "fluid");
}
