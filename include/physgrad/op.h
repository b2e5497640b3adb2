// physgrad's public C++ API for ops defined outside the library (an "extension"):
// the glue the built-in ops use, so that an op from another shared library gets
// the same autograd kernel, gradient modes, statistics, failure policy,
// TorchScript and C++ deployment.  Installed as <physgrad/op.h>; CMake:
// find_package(physgrad) and link physgrad::ops (docs/adding-an-op.md, "C route").
//
// An extension's glue file:
//
//   #include <physgrad/op.h>
//   PHYSGRAD_EXTENSION(myops)                 // myops::physgrad_abi(), checked by physgrad.load_library
//   TORCH_LIBRARY(myops, m) {
//     m.def("my_op(Tensor x, str grad_mode=\"physical\", float y_step=1.0, ...) -> Tensor");
//     m.def("my_op_backward(Tensor grad_y, Tensor x, Tensor y, str grad_mode, float y_step, ...) -> Tensor");
//   }
//   TORCH_LIBRARY_IMPL(myops, CPU, m) { m.impl("my_op", &forward); m.impl("my_op_backward", &backward); }
//   TORCH_LIBRARY_IMPL(myops, Autograd, m) { physgrad::register_physics_autograd(m, "my_op"); }
//
// Stability: these declarations change only with physgrad's minor version
// (physgradConfigVersion.cmake: SameMinorVersion); physgrad.load_library refuses
// a library built against another physgrad version or another torch.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/string_view.h>
#include <torch/library.h>
#include <torch/version.h>

#include <array>
#include <initializer_list>
#include <string>
#include <vector>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/physical_gradient.h"
#include "physgrad/version.h"

// Exported from libphysgrad_ops.so whatever visibility the library is built with.
#define PHYSGRAD_API __attribute__((visibility("default")))

namespace physgrad {

// The gradient modes of the contract (README, "The gradient-mode contract").
enum class GradMode { Adjoint, Physical, Newton, Lbfgs, InverseGradient };

// "adjoint", "physical", "newton", "lbfgs", "inverse_gradient".
PHYSGRAD_API const char *grad_mode_name(GradMode mode);
// Parses `mode` for op `op`; an unknown mode, or one the op does not offer, is a
// ValueError ("physgrad.<op>: unknown grad_mode ...") that lists the modes the op offers.
PHYSGRAD_API GradMode parse_grad_mode(c10::string_view mode, const char *op,
                                      std::initializer_list<GradMode> offered);

// What an op does when an inner solver does not converge: "raise" or "warn".
enum class OnFailure { Raise, Warn };
PHYSGRAD_API OnFailure parse_on_failure(c10::string_view value, const char *op);

// Throws a c10::Error carrying the cphys message (CPhysGetLastErrorMessage) when
// `code` is not CPHYS_SUCCESS: a ValueError for CPHYS_ERROR_ARGUMENT, else a
// RuntimeError.  Under OnFailure::Warn, CPHYS_ERROR_NOT_CONVERGED is not an error
// (the outputs hold each sample's last iterate): it warns when `warn` is set.
// Extension C code reports its failures the cphys way (CPhysCheck/CPhysSetError).
// Forward kernels pass warn = false: a warning from a torch.ops call bypasses
// Python's warning handler (it would go to stderr); Python wrappers warn instead
// (physgrad.extensions.after_forward).
PHYSGRAD_API void check_cphys(int code, const char *op, OnFailure on_failure = OnFailure::Raise,
                              bool warn = true);

// Validates a floating tensor argument (CPU, float32/float64, dense, one of
// `allowed_dims` dimensions, fits in memory) and returns it as a contiguous
// float64 tensor.
PHYSGRAD_API at::Tensor as_double(const at::Tensor &tensor, const char *op, const char *argument,
                                  std::initializer_list<int64_t> allowed_dims);
// Throws a RuntimeError naming the first non-finite element ("x[1][2] = nan is not finite").
PHYSGRAD_API void check_finite(const at::Tensor &tensor, const char *op, const char *argument);

// The `lbfgs` mode over a least-squares problem (one sample's forward and
// adjoint, cphys/minimize.h): `iterations` TAO quasi-Newton steps per sample on
// 1/2 ||P(x') - (y - y_step g)||^2 from x; returns x - x_n.  x: [B, n], y and g:
// [B, m] (any trailing shape of n and m elements), contiguous float64.  Records
// the statistics (phase "lbfgs") under `op`; TAO options prefix "physgrad_<op>_lbfgs_".
PHYSGRAD_API at::Tensor lbfgs_physical_gradient(const CPhysLeastSquaresProblem &problem, const char *op,
                                                const at::Tensor &x, const at::Tensor &y, const at::Tensor &g,
                                                double y_step, int64_t iterations, OnFailure on_failure);

// Per-thread statistics of the last solve of op `op` (phase: "forward",
// "adjoint", "physical", ...; one CPhysSolveInfo per sample), which
// physgrad.solve_stats(op) returns in Python.
PHYSGRAD_API void record_solve_info(const std::string &op, const std::string &phase,
                                    std::vector<CPhysSolveInfo> info);

// ---- One declaration per op ------------------------------------------------
//
// Every op, built-in or extension, is declared once by an OpDescriptor: its
// schemas, the gradient modes it offers and its options prefix.  define_op
// registers the schemas (and CPU-only guards for other devices and layouts),
// and records the descriptor in the library's catalog, from which
// parse_grad_mode checks modes, Python's physgrad.op_info reports them and
// physgrad.set_solver_options knows the prefixes (docs/adding-an-op.md).
struct OpDescriptor {
  // the op namespace ("physgrad" for the built-in ops; an extension's own)
  const char *ns;
  // the op's name, as in its schema
  const char *name;
  // "name(Tensor x, ..., str grad_mode=\"physical\", float y_step=1.0, ...) -> Tensor"
  const char *schema;
  // "name_backward(Tensor grad_y, <the forward's tensors>, Tensor y, <options>) -> Tensor" (or
  // Tensor[]: one per input), or nullptr for an op without autograd
  const char *backward_schema;
  // the gradient modes the op offers (empty for an op without autograd)
  std::vector<GradMode> modes;
  // PETSc options prefix of the op's solvers ("physgrad_<op>_" by convention; the
  // lbfgs mode reads "<prefix>lbfgs_"); "" when the op reads no options
  const char *options_prefix;
  // whether solvers other than the lbfgs mode's (a forward or inverse solver)
  // read options under options_prefix itself (false: only "<prefix>lbfgs_" is read)
  bool own_solver_options = true;
};

// Declares `op` in the library `m` (call it in TORCH_LIBRARY / TORCH_LIBRARY_FRAGMENT
// of op.ns).  Registering one qualified name twice is a RuntimeError.
PHYSGRAD_API void define_op(torch::Library &m, const OpDescriptor &op);
// The descriptor registered as "<ns>::<name>"; a ValueError for an unknown name.
PHYSGRAD_API const OpDescriptor &op_descriptor(const std::string &qualified_name);
// The op's name in messages and in physgrad.solve_stats: "<name>" for the
// built-in ops, "<ns>.<name>" for an extension's.
PHYSGRAD_API std::string op_label(const OpDescriptor &op);
// parse_grad_mode over the modes `op` declares.
PHYSGRAD_API GradMode parse_grad_mode(c10::string_view mode, const OpDescriptor &op);

// ---- Shared option checks (one message each) -------------------------------

// y_step must be finite: "physgrad.<op>: y_step must be finite, got ...".
PHYSGRAD_API void check_y_step(double y_step, const char *op);
// lbfgs_iterations must be in [1, 2^31).
PHYSGRAD_API void check_lbfgs_iterations(int64_t iterations, const char *op);
// A grid spacing: one positive finite value for every axis, or one per axis
// (`dims` of them, in axis order z, y, x); returns it per axis (unused axes 0).
PHYSGRAD_API std::array<double, 3> parse_spacing(at::ArrayRef<double> spacing, int dims, const char *op);

// The options every physics op shares, checked at once.
struct ModeOptions {
  GradMode mode;
  double y_step;
  int64_t lbfgs_iterations;
  OnFailure on_failure;
};
PHYSGRAD_API ModeOptions parse_mode_options(const OpDescriptor &op, c10::string_view grad_mode, double y_step,
                                            int64_t lbfgs_iterations = 32,
                                            c10::string_view on_failure = "raise");

// The `physical` mode over an op's inverse problem (cphys/physical_gradient.h,
// the one C contract of every op's physical gradient): per sample
// dx = x - P^-1(y - y_step g | x).  x: [B, n], y and g: [B, m] (any trailing
// shape of n and m elements), contiguous float64.  Records the statistics
// (phase "physical") under op_label(op), names a non-finite g
// ("grad_y[1][2] = nan is not finite"), and follows on_failure for a sample
// whose inverse solver did not converge.  Returns dx as [B, n].
PHYSGRAD_API at::Tensor physical_gradient(const CPhysInverseProblem &problem, const OpDescriptor &op,
                                          const at::Tensor &x, const at::Tensor &y, const at::Tensor &g,
                                          double y_step, OnFailure on_failure);

// The `lbfgs` mode for a declared op: statistics under op_label(op), TAO options
// prefix "<op.options_prefix>lbfgs_".
PHYSGRAD_API at::Tensor lbfgs_physical_gradient(const CPhysLeastSquaresProblem &problem,
                                                const OpDescriptor &op, const at::Tensor &x,
                                                const at::Tensor &y, const at::Tensor &g, double y_step,
                                                int64_t iterations, OnFailure on_failure);

// Autograd for a physics op `name` of the library `m` registers (docs/decisions.md,
// "one autograd kernel"):
//   forward schema   name(Tensor in_1, ..., Tensor in_k, <options>) -> Tensor
//   backward schema  name_backward(Tensor grad_y, Tensor in_1, ..., Tensor in_k, Tensor y, <options>)
//                        -> Tensor  (k = 1)  or  Tensor[]  (one per input; undefined: no gradient)
// Registers one boxed Autograd kernel for both; the backward op refuses double
// backward.  Call it in TORCH_LIBRARY_IMPL(<namespace>, Autograd, m).
PHYSGRAD_API void register_physics_autograd(torch::Library &m, const char *name);

}  // namespace physgrad

#define PHYSGRAD_STRINGIFY_(x) #x
#define PHYSGRAD_STRINGIFY(x) PHYSGRAD_STRINGIFY_(x)
// The libstdc++ ABI of the compiling code ("1": the C++11 std::string), which must match torch's.
#if defined(_GLIBCXX_USE_CXX11_ABI)
#define PHYSGRAD_CXX11_ABI PHYSGRAD_STRINGIFY(_GLIBCXX_USE_CXX11_ABI)
#else
#define PHYSGRAD_CXX11_ABI "0"
#endif

// Declares an extension library with op namespace `ns` (once, in one file):
// - the op ns::physgrad_abi() -> str[]: [physgrad version, torch version, C++11 ABI]
//   of the headers it was compiled with, for checks from TorchScript and C++;
// - a marker string in the library file, from which physgrad.load_library reads
//   the namespace and the versions *before* loading it (a library built against
//   another torch could crash while it loads; one whose namespace is taken would
//   abort the process in torch's registration).
#define PHYSGRAD_EXTENSION(ns)                                                                         \
  __attribute__((used)) static const char physgrad_extension_marker_##ns[] =                           \
      "physgrad-extension;namespace=" #ns ";physgrad=" PHYSGRAD_VERSION_STRING ";torch=" TORCH_VERSION \
      ";cxx11_abi=" PHYSGRAD_CXX11_ABI ";";                                                            \
  static std::vector<std::string> physgrad_extension_abi_##ns() {                                      \
    return {PHYSGRAD_VERSION_STRING, TORCH_VERSION, PHYSGRAD_CXX11_ABI};                               \
  }                                                                                                    \
  TORCH_LIBRARY_FRAGMENT(ns, physgrad_extension_library) {                                             \
    physgrad_extension_library.def("physgrad_abi() -> str[]", &physgrad_extension_abi_##ns);           \
  }
