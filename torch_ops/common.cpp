// The physgrad op library: shared glue and the library-wide ops (version,
// solver options, statistics).
#include "common.h"

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <sstream>

#include "cphys/environment.h"

// cphys/src/petsc_env.h (internal to cphys, which this library does not
// include: it needs PETSc's headers): the options nothing has read so far.
extern "C" int CPhysGetUnusedOptions(char *names, size_t size, size_t *length);

namespace physgrad {

namespace {
const char *const kGradModeNames[] = {"adjoint", "physical", "newton", "lbfgs", "inverse_gradient"};
}

const char *grad_mode_name(GradMode mode) {
  return kGradModeNames[static_cast<int>(mode)];
}

namespace {
GradMode parse_mode(c10::string_view mode, const char *op, const GradMode *offered, size_t count) {
  std::ostringstream names;
  for (size_t k = 0; k < count; k++) {
    if (mode == grad_mode_name(offered[k])) return offered[k];
    names << (names.tellp() > 0 ? ", " : "") << "'" << grad_mode_name(offered[k]) << "'";
  }
  TORCH_CHECK_VALUE(count > 0, "physgrad.", op, " has no gradient modes (it is not differentiable)");
  TORCH_CHECK_VALUE(false, "physgrad.", op, ": unknown grad_mode '", std::string(mode), "'; this op offers ",
                    names.str());
}
}  // namespace

GradMode parse_grad_mode(c10::string_view mode, const char *op, std::initializer_list<GradMode> offered) {
  return parse_mode(mode, op, offered.begin(), offered.size());
}

std::string op_label(const OpDescriptor &op) {
  return std::string(op.ns) == "physgrad" ? std::string(op.name) : std::string(op.ns) + "." + op.name;
}

GradMode parse_grad_mode(c10::string_view mode, const OpDescriptor &op) {
  return parse_mode(mode, op_label(op).c_str(), op.modes.data(), op.modes.size());
}

OnFailure parse_on_failure(c10::string_view value, const char *op) {
  if (value == "raise") return OnFailure::Raise;
  if (value == "warn") return OnFailure::Warn;
  TORCH_CHECK_VALUE(false, "physgrad.", op, ": on_failure must be 'raise' or 'warn', got '",
                    std::string(value), "'");
}

void check_cphys(int code, const char *op, OnFailure on_failure, bool warn) {
  if (code == CPHYS_SUCCESS) return;
  const std::string message = CPhysGetLastErrorMessage();
  if (code == CPHYS_ERROR_NOT_CONVERGED && on_failure == OnFailure::Warn) {
    if (warn)
      TORCH_WARN("physgrad.", op, ": ", message,
                 " (on_failure='warn': returning the last iterate; see physgrad.solve_stats)");
    return;
  }
  if (code == CPHYS_ERROR_ARGUMENT) TORCH_CHECK_VALUE(false, "physgrad.", op, ": ", message);
  TORCH_CHECK(false, "physgrad.", op, ": ", message);
}

void follow_torch_threads() {
  CPhysSetThreads(at::get_num_threads());
}

at::Tensor as_double(const at::Tensor &tensor, const char *op, const char *argument,
                     std::initializer_list<int64_t> allowed_dims) {
  TORCH_CHECK_VALUE(tensor.defined(), "physgrad.", op, ": ", argument, " is undefined");
  TORCH_CHECK_VALUE(tensor.device().is_cpu(), "physgrad.", op, ": ", argument,
                    " must be a CPU tensor, got device ", tensor.device());
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, "physgrad.", op, ": ", argument,
                   " must be float32 or float64, got ", dtype);
  bool dims_ok = false;
  std::ostringstream expected;
  for (int64_t dims : allowed_dims) {
    dims_ok = dims_ok || tensor.dim() == dims;
    expected << (expected.tellp() > 0 ? " or " : "") << dims;
  }
  TORCH_CHECK_VALUE(dims_ok, "physgrad.", op, ": ", argument, " must have ", expected.str(),
                    " dimensions, got shape ", tensor.sizes());
  // An expanded (stride 0) tensor can be huge without owning memory; its
  // float64 contiguous copy would not be.
  check_memory(static_cast<double>(tensor.numel()) * sizeof(double), op,
               std::string(argument) + " of shape " + c10::str(tensor.sizes()) + " (as contiguous float64)");
  return tensor.to(at::kDouble).contiguous();
}

void check_memory(double bytes, const char *op, const std::string &what) {
  static const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  TORCH_CHECK_VALUE(physical <= 0.0 || bytes <= physical, "physgrad.", op, ": ", what, " needs ", bytes / 1e9,
                    " GB, more than this machine's ", physical / 1e9,
                    " GB of memory; use a smaller size or batch");
}

void check_finite(const at::Tensor &tensor, const char *op, const char *argument) {
  const at::Tensor bad = tensor.isfinite().logical_not().reshape(-1).nonzero();
  if (bad.size(0) == 0) return;
  // The first offender as argument[i][j]... = value, as cphys names its inputs.
  int64_t flat = bad[0][0].item<int64_t>();
  const double value = tensor.reshape(-1)[flat].item<double>();
  std::string index;
  for (int64_t d = tensor.dim() - 1; d >= 0; d--) {
    index = "[" + std::to_string(flat % tensor.size(d)) + "]" + index;
    flat /= tensor.size(d);
  }
  TORCH_CHECK(false, "physgrad.", op, ": ", argument, index, " = ", value, " is not finite");
}

namespace {
at::Tensor run_lbfgs(const CPhysLeastSquaresProblem &problem, const char *op, const std::string &prefix,
                     const at::Tensor &x, const at::Tensor &y, const at::Tensor &g, double y_step,
                     int64_t iterations, OnFailure on_failure) {
  check_lbfgs_iterations(iterations, op);
  CPhysLeastSquaresConfig config = {};
  config.max_iterations = static_cast<int>(iterations);
  config.options_prefix = prefix.c_str();
  at::Tensor dx = at::empty_like(x);
  std::vector<CPhysSolveInfo> info(x.size(0));
  const int code = CPhysQuasiNewtonPhysicalGradient(&config, &problem, x.size(0), x.data_ptr<double>(),
                                                    y.data_ptr<double>(), g.data_ptr<double>(), y_step,
                                                    dx.data_ptr<double>(), info.data());
  record_solve_info(op, "lbfgs", info);
  check_cphys(code, op, on_failure);
  return dx;
}
}  // namespace

at::Tensor lbfgs_physical_gradient(const CPhysLeastSquaresProblem &problem, const char *op,
                                   const at::Tensor &x, const at::Tensor &y, const at::Tensor &g,
                                   double y_step, int64_t iterations, OnFailure on_failure) {
  return run_lbfgs(problem, op, std::string("physgrad_") + op + "_lbfgs_", x, y, g, y_step, iterations,
                   on_failure);
}

at::Tensor lbfgs_physical_gradient(const CPhysLeastSquaresProblem &problem, const OpDescriptor &op,
                                   const at::Tensor &x, const at::Tensor &y, const at::Tensor &g,
                                   double y_step, int64_t iterations, OnFailure on_failure) {
  return run_lbfgs(problem, op_label(op).c_str(), std::string(op.options_prefix) + "lbfgs_", x, y, g, y_step,
                   iterations, on_failure);
}

at::Tensor physical_gradient(const CPhysInverseProblem &problem, const OpDescriptor &op, const at::Tensor &x,
                             const at::Tensor &y, const at::Tensor &g, double y_step, OnFailure on_failure) {
  const std::string label = op_label(op);
  const int64_t batch = x.size(0);
  TORCH_CHECK(
      x.numel() == batch * problem.n && y.numel() == batch * problem.m && g.numel() == y.numel() &&
          x.is_contiguous() && y.is_contiguous() && g.is_contiguous() && x.scalar_type() == at::kDouble &&
          y.scalar_type() == at::kDouble && g.scalar_type() == at::kDouble,
      "physgrad.", label, ": physical_gradient needs contiguous float64 x [", batch, ", ", problem.n,
      "], y and grad_y [", batch, ", ", problem.m, "], got ", x.sizes(), ", ", y.sizes(), ", ", g.sizes());
  at::Tensor dx = at::empty({batch, problem.n}, x.options());
  std::vector<CPhysSolveInfo> info(batch);
  const int code =
      problem.physical_gradient(problem.context, batch, x.data_ptr<double>(), y.data_ptr<double>(),
                                g.data_ptr<double>(), y_step, dx.data_ptr<double>(), info.data());
  if (code == CPHYS_SUCCESS || code == CPHYS_ERROR_NOT_CONVERGED) record_solve_info(label, "physical", info);
  // A non-finite incoming gradient is named as every mode names it (grad_y[b][...] = value).
  if (code == CPHYS_ERROR_NONFINITE) check_finite(g, label.c_str(), "grad_y");
  check_cphys(code, label.c_str(), on_failure);
  return dx;
}

void check_y_step(double y_step, const char *op) {
  TORCH_CHECK_VALUE(std::isfinite(y_step), "physgrad.", op, ": y_step must be finite, got ", y_step);
}

void check_lbfgs_iterations(int64_t iterations, const char *op) {
  TORCH_CHECK_VALUE(iterations >= 1 && iterations <= INT32_MAX, "physgrad.", op,
                    ": lbfgs_iterations must be in [1, 2^31), got ", iterations);
}

std::array<double, 3> parse_spacing(at::ArrayRef<double> spacing, int dims, const char *op) {
  const char *axes = dims == 3 ? "[dz, dy, dx]" : dims == 2 ? "[dy, dx]" : "one value per axis";
  TORCH_CHECK_VALUE(spacing.size() == 1 || static_cast<int>(spacing.size()) == dims, "physgrad.", op,
                    ": spacing must be ", axes, " for this ", dims,
                    "-D grid (or one value for every axis), got ", spacing);
  std::array<double, 3> per_axis{0.0, 0.0, 0.0};
  for (int a = 0; a < dims; a++) {
    const double h = spacing[spacing.size() == 1 ? 0 : a];
    TORCH_CHECK_VALUE(std::isfinite(h) && h > 0.0, "physgrad.", op,
                      ": spacing must be positive and finite, got ", spacing);
    per_axis[a] = h;
  }
  return per_axis;
}

ModeOptions parse_mode_options(const OpDescriptor &op, c10::string_view grad_mode, double y_step,
                               int64_t lbfgs_iterations, c10::string_view on_failure) {
  const std::string label = op_label(op);
  const GradMode mode = parse_grad_mode(grad_mode, op);
  check_y_step(y_step, label.c_str());
  check_lbfgs_iterations(lbfgs_iterations, label.c_str());
  return ModeOptions{mode, y_step, lbfgs_iterations, parse_on_failure(on_failure, label.c_str())};
}

namespace {
struct SolveRecord {
  std::string phase;
  std::vector<CPhysSolveInfo> info;
};
thread_local std::map<std::string, SolveRecord> last_solves;

std::mutex &clearers_mutex() {
  static std::mutex mutex;
  return mutex;
}
// Cached objects per op by default: the paper's experiments use one or two
// configurations per op; a Cholesky factor of a 128x128 grid is ~6.5 MB.
constexpr int64_t kDefaultCacheLimit = 16;

struct CacheHooks {
  std::function<void()> clear;
  std::function<size_t()> size;
};
std::vector<CacheHooks> &caches() {
  static std::vector<CacheHooks> list;
  return list;
}
std::atomic<int64_t> &limit_value() {
  static std::atomic<int64_t> limit{kDefaultCacheLimit};
  return limit;
}
}  // namespace

void record_solve_info(const std::string &op, const std::string &phase, std::vector<CPhysSolveInfo> info) {
  last_solves[op] = SolveRecord{phase, std::move(info)};
}

Grid grid_input(const at::Tensor &tensor, const char *op, const char *argument, const char *point) {
  at::Tensor t = as_double(tensor, op, argument, {3, 4, 5});
  if (t.dim() == 5) {
    TORCH_CHECK_VALUE(t.size(1) == 1, "physgrad.", op, ": a 5-D ", argument,
                      " must be [B, 1, nz, ny, nx], got shape ", tensor.sizes());
    t = t.squeeze(1);
  } else if (t.dim() == 4 && t.size(1) == 1) {
    t = t.squeeze(1);
  }
  Grid grid{static_cast<int>(t.dim()) - 1, {0, 0, 0}, t};
  for (int a = 0; a < grid.dims; a++) {
    grid.shape[a] = t.size(a + 1);
    TORCH_CHECK_VALUE(grid.shape[a] >= 1, "physgrad.", op, ": ", argument, " must have at least one ", point,
                      " per axis, got shape ", tensor.sizes());
  }
  return grid;
}

const char *const kBoundaryNames[5] = {"dirichlet", "neumann", "periodic", "dirichlet/neumann",
                                       "neumann/dirichlet"};

namespace {
// One axis's entry: a name, or with `per_side` two names "lower/upper".
int parse_axis_boundary(std::string entry, bool per_side, const char *op, const char *choices,
                        const std::string &all) {
  const size_t slash = entry.find('/');
  std::vector<std::string> parts{entry.substr(0, slash)};
  if (slash != std::string::npos) parts.push_back(entry.substr(slash + 1));
  std::vector<int> ends;
  for (std::string name : parts) {
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    int found = -1;
    for (int b = 0; b < 3; b++)
      if (name == kBoundaryNames[b]) found = b;
    TORCH_CHECK_VALUE(
        found >= 0 && (per_side || slash == std::string::npos), "physgrad.", op, ": boundary must be ",
        choices, " (or one per axis, e.g. 'neumann,periodic'",
        per_side ? "; or one per side of an axis, lower end first, e.g. 'dirichlet/neumann'" : "", "), got '",
        all, "'");
    ends.push_back(found);
  }
  if (ends.size() == 1 || ends[0] == ends[1]) return ends[0];
  TORCH_CHECK_VALUE(ends[0] != CPHYS_BOUNDARY_PERIODIC && ends[1] != CPHYS_BOUNDARY_PERIODIC, "physgrad.", op,
                    ": a periodic axis is periodic at both ends; '", entry, "' in boundary '", all,
                    "' pairs it with another condition");
  return ends[0] == CPHYS_BOUNDARY_DIRICHLET ? CPHYS_BOUNDARY_DIRICHLET_NEUMANN
                                             : CPHYS_BOUNDARY_NEUMANN_DIRICHLET;
}
}  // namespace

std::array<CPhysBoundary, 3> parse_boundary(c10::string_view text, int dims, const char *op,
                                            const char *choices, CPhysBoundary fill, bool per_side) {
  std::vector<CPhysBoundary> names;
  const std::string all(text);
  size_t start = 0;
  while (true) {
    const size_t comma = all.find(',', start);
    const std::string entry =
        all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    names.push_back(static_cast<CPhysBoundary>(parse_axis_boundary(entry, per_side, op, choices, all)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  TORCH_CHECK_VALUE(names.size() == 1 || static_cast<int>(names.size()) == dims, "physgrad.", op,
                    ": boundary '", all, "' names ", names.size(), " axes, but the grid has ", dims,
                    " (give one boundary for every axis, or one per axis in the order ",
                    dims == 3 ? "z, y, x)" : "y, x)");
  std::array<CPhysBoundary, 3> boundary{fill, fill, fill};
  for (int a = 0; a < dims; a++) boundary[a] = names[names.size() == 1 ? 0 : a];
  return boundary;
}

void register_cache(std::function<void()> clear, std::function<size_t()> size) {
  std::lock_guard<std::mutex> guard(clearers_mutex());
  caches().push_back(CacheHooks{std::move(clear), std::move(size)});
}

void clear_all_caches() {
  std::lock_guard<std::mutex> guard(clearers_mutex());
  for (auto &cache : caches()) cache.clear();
}

int64_t cache_limit() {
  return limit_value().load();
}

int64_t cached_objects() {
  std::lock_guard<std::mutex> guard(clearers_mutex());
  int64_t total = 0;
  for (auto &cache : caches()) total += static_cast<int64_t>(cache.size());
  return total;
}

namespace {
using Stats = std::tuple<std::string, std::vector<int64_t>, std::vector<double>, c10::List<bool>,
                         std::vector<std::string>>;

Stats solve_stats(c10::string_view op) {
  auto found = last_solves.find(std::string(op));
  TORCH_CHECK_VALUE(found != last_solves.end(), "physgrad.solve_stats: no solve of op '", std::string(op),
                    "' has run on this thread yet");
  Stats stats;
  std::get<0>(stats) = found->second.phase;
  for (const auto &info : found->second.info) {
    std::get<1>(stats).push_back(info.iterations);
    std::get<2>(stats).push_back(info.residual_norm);
    std::get<3>(stats).push_back(info.converged != 0);
    std::get<4>(stats).push_back(info.reason_text);
  }
  return stats;
}

void set_solver_options(c10::string_view options) {
  check_cphys(CPhysSetOptions(std::string(options).c_str()), "set_solver_options");
  clear_all_caches();
}

void clear_solver_options() {
  check_cphys(CPhysClearOptions(), "clear_solver_options");
  clear_all_caches();
}

// The options in PETSc's database that no object has read so far ("-name").
std::vector<std::string> unused_solver_options() {
  size_t length = 0;
  check_cphys(CPhysGetUnusedOptions(nullptr, 0, &length), "unused_solver_options");
  std::string list;
  for (;;) {  // another thread may add options between the two calls
    list.assign(length + 1, '\0');
    size_t needed = 0;
    check_cphys(CPhysGetUnusedOptions(&list[0], list.size(), &needed), "unused_solver_options");
    if (needed <= length) break;
    length = needed;
  }
  std::vector<std::string> names;
  std::istringstream words(list.c_str());
  for (std::string name; words >> name;) names.push_back(name);
  return names;
}

// Non-convergence of the last solve of `op` on this thread as a warning.
// Eager Python code warns itself (ops._after_forward); scripted code calls
// this instead, since TorchScript has only TORCH_WARN: a Python UserWarning
// when the scripted code runs under Python, c10's warning handler (stderr by
// default) in a C++ program.  The forward kernels cannot warn themselves: an
// eager torch.ops call would print the warning to stderr, bypassing Python's
// warnings.  Returns whether it warned.
bool warn_unconverged(c10::string_view op) {
  auto found = last_solves.find(std::string(op));
  if (found == last_solves.end()) return false;
  std::ostringstream samples, reasons;
  bool failed = false;
  for (size_t i = 0; i < found->second.info.size(); i++) {
    const CPhysSolveInfo &info = found->second.info[i];
    if (info.converged) continue;
    samples << (failed ? ", " : "") << i;
    reasons << (failed ? ", " : "") << info.reason_text;
    failed = true;
  }
  if (failed)
    TORCH_WARN("physgrad.", std::string(op), ": the ", found->second.phase,
               " solve did not converge for samples [", samples.str(), "] (", reasons.str(),
               "); on_failure='warn' returned the last iterate");
  return failed;
}

// The per-op limit of cached solver objects; a smaller limit applies at the
// next creation (objects beyond it are dropped, least recently used first).
void set_cache_limit(int64_t limit) {
  TORCH_CHECK_VALUE(limit >= 1 && limit <= 1000000,
                    "physgrad.set_cache_limit: limit must be in [1, 1000000], got ", limit);
  limit_value().store(limit);
}

std::tuple<int64_t, int64_t> cache_info() {
  return std::make_tuple(cache_limit(), cached_objects());
}

std::string version() {
  return PHYSGRAD_VERSION;
}
std::string torch_version() {
  return PHYSGRAD_TORCH_VERSION;
}
}  // namespace

}  // namespace physgrad

TORCH_LIBRARY(physgrad, m) {
  m.def("version() -> str", &physgrad::version);
  m.def("torch_version() -> str", &physgrad::torch_version);
  m.def("solve_stats(str op) -> (str, int[], float[], bool[], str[])", &physgrad::solve_stats);
  m.def("set_solver_options(str options) -> ()", &physgrad::set_solver_options);
  m.def("clear_solver_options() -> ()", &physgrad::clear_solver_options);
  m.def("unused_solver_options() -> str[]", &physgrad::unused_solver_options);
  // Conservative alias analysis: an op with side effects, which TorchScript's
  // dead-code elimination keeps although scripted code ignores its result.
  m.def(torch::schema("warn_unconverged(str op) -> bool", c10::AliasAnalysisKind::CONSERVATIVE),
        &physgrad::warn_unconverged);
  m.def("set_cache_limit(int limit) -> ()", &physgrad::set_cache_limit);
  m.def("cache_info() -> (int, int)", &physgrad::cache_info);
}

// physgrad's kernels are CPU kernels for strided tensors.  A tensor of another
// device or layout (meta, CUDA, sparse, ...) would otherwise get the
// dispatcher's "Could not run ... with arguments from the 'Meta' backend";
// define_op registers these kernels for those keys, which say what to do instead.
namespace physgrad {
namespace {
void cpu_only(const c10::OperatorHandle &op, torch::jit::Stack *stack) {
  std::string found = "a tensor of another device or layout";
  for (const c10::IValue &value : *stack) {
    if (value.isTensor() && value.toTensor().defined()) {
      const at::Tensor &tensor = value.toTensor();
      if (!tensor.device().is_cpu() || tensor.layout() != at::kStrided) {
        found =
            "a tensor on device " + c10::str(tensor.device()) + " with layout " + c10::str(tensor.layout());
        break;
      }
    }
  }
  std::string name = op.schema().name();
  // The op's label (op_label): "heat", or "<ns>.<name>" for an extension's op.
  const size_t separator = name.find("::");
  if (separator != std::string::npos)
    name = name.compare(0, separator, "physgrad") == 0 ? name.substr(separator + 2)
                                                       : name.replace(separator, 2, ".");
  TORCH_CHECK_VALUE(false, "physgrad.", name,
                    ": physgrad ops run on the CPU with dense (strided) tensors, got ", found,
                    "; move it with .cpu() (and .to_dense() for a sparse tensor)");
}

// The name in a schema string, "name(...) -> ...".
std::string schema_name(const char *schema) {
  const std::string text(schema);
  return text.substr(0, text.find('('));
}

// Whether a schema string takes a tensor argument.
bool takes_tensors(const char *schema) {
  const std::string text(schema);
  return text.substr(0, text.find("->")).find("Tensor") != std::string::npos;
}

void guard_devices(torch::Library &m, const std::string &name, bool differentiable) {
  const c10::DispatchKey keys[] = {c10::DispatchKey::Meta, c10::DispatchKey::CUDA,
                                   c10::DispatchKey::SparseCPU, c10::DispatchKey::SparseCsrCPU};
  for (c10::DispatchKey key : keys)
    m.impl(name.c_str(), torch::dispatch(key, torch::CppFunction::makeFromBoxedFunction<&cpu_only>()));
  // An op without an autograd kernel: a meta tensor reaches it through the
  // AutogradMeta key, which has no fallthrough.
  if (!differentiable)
    m.impl(name.c_str(), torch::dispatch(c10::DispatchKey::AutogradMeta,
                                         torch::CppFunction::makeFromBoxedFunction<&cpu_only>()));
}

struct Catalog {
  std::mutex mutex;
  // keyed by "<ns>::<name>"; descriptors own copies of their strings
  std::map<std::string, std::pair<OpDescriptor, std::array<std::string, 5>>> ops;
};
Catalog &catalog() {
  static Catalog instance;
  return instance;
}
}  // namespace

void define_op(torch::Library &m, const OpDescriptor &op) {
  TORCH_CHECK(op.ns != nullptr && op.name != nullptr && op.schema != nullptr && op.options_prefix != nullptr,
              "physgrad.define_op: the descriptor's ns, name, schema and options_prefix must be set");
  TORCH_CHECK(schema_name(op.schema) == op.name, "physgrad.define_op: the schema '", op.schema,
              "' does not declare op '", op.name, "'");
  TORCH_CHECK(
      op.backward_schema == nullptr || schema_name(op.backward_schema) == std::string(op.name) + "_backward",
      "physgrad.define_op: the backward schema of '", op.name, "' must declare '", op.name, "_backward'");
  TORCH_CHECK((op.backward_schema == nullptr) == op.modes.empty(), "physgrad.define_op: op '", op.name,
              "' needs gradient modes exactly when it has a backward schema");
  const std::string key = std::string(op.ns) + "::" + op.name;
  {
    Catalog &c = catalog();
    std::lock_guard<std::mutex> guard(c.mutex);
    TORCH_CHECK(c.ops.find(key) == c.ops.end(), "physgrad.define_op: op '", key, "' is declared twice");
    auto &entry = c.ops[key];
    entry.second = {op.ns, op.name, op.schema, op.backward_schema ? op.backward_schema : "",
                    op.options_prefix};
    entry.first = OpDescriptor{entry.second[0].c_str(),
                               entry.second[1].c_str(),
                               entry.second[2].c_str(),
                               op.backward_schema ? entry.second[3].c_str() : nullptr,
                               op.modes,
                               entry.second[4].c_str(),
                               op.own_solver_options};
  }
  m.def(op.schema);
  const bool differentiable = op.backward_schema != nullptr;
  if (differentiable) m.def(op.backward_schema);
  if (takes_tensors(op.schema)) {
    guard_devices(m, op.name, differentiable);
    if (differentiable) guard_devices(m, std::string(op.name) + "_backward", true);
  }
}

const OpDescriptor &op_descriptor(const std::string &qualified_name) {
  Catalog &c = catalog();
  std::lock_guard<std::mutex> guard(c.mutex);
  auto found = c.ops.find(qualified_name);
  TORCH_CHECK_VALUE(found != c.ops.end(), "physgrad: no op '", qualified_name, "' is declared");
  return found->second.first;  // entries are never removed
}

namespace {
// Every declared op (built-in, and extensions loaded so far), sorted by
// qualified name: names, schemas, backward schemas ("" none), modes (comma
// separated, in declaration order), options prefixes, and the prefixes its
// solvers read (comma separated: the prefix itself and/or "<prefix>lbfgs_").
using CatalogRows = std::tuple<std::vector<std::string>, std::vector<std::string>, std::vector<std::string>,
                               std::vector<std::string>, std::vector<std::string>, std::vector<std::string>>;
CatalogRows op_catalog() {
  Catalog &c = catalog();
  std::lock_guard<std::mutex> guard(c.mutex);
  CatalogRows rows;
  for (const auto &entry : c.ops) {
    const OpDescriptor &op = entry.second.first;
    std::string modes;
    for (GradMode mode : op.modes) modes += (modes.empty() ? "" : ",") + std::string(grad_mode_name(mode));
    std::get<0>(rows).push_back(entry.first);
    std::get<1>(rows).push_back(op.schema);
    std::get<2>(rows).push_back(op.backward_schema ? op.backward_schema : "");
    std::get<3>(rows).push_back(modes);
    std::get<4>(rows).push_back(op.options_prefix);
    std::string read;
    const std::string prefix(op.options_prefix);
    const bool lbfgs = std::find(op.modes.begin(), op.modes.end(), GradMode::Lbfgs) != op.modes.end();
    if (!prefix.empty() && op.own_solver_options) read = prefix;
    if (!prefix.empty() && lbfgs) read += (read.empty() ? "" : ",") + prefix + "lbfgs_";
    std::get<5>(rows).push_back(read);
  }
  return rows;
}

std::vector<std::string> grad_modes() {
  std::vector<std::string> names;
  for (int k = 0; k <= static_cast<int>(GradMode::InverseGradient); k++)
    names.push_back(grad_mode_name(static_cast<GradMode>(k)));
  return names;
}
}  // namespace
}  // namespace physgrad

TORCH_LIBRARY_FRAGMENT(physgrad, m) {
  m.def("op_catalog() -> (str[], str[], str[], str[], str[], str[])", &physgrad::op_catalog);
  m.def("grad_modes() -> str[]", &physgrad::grad_modes);
}
