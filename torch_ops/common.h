// Shared glue of the physgrad torch ops: gradient modes, input checks, cphys
// error translation, solver statistics, object caches.  No numerics here.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>
#include <c10/util/string_view.h>

#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cphys/error.h"
#include "cphys/minimize.h"

namespace physgrad {

enum class GradMode { Adjoint, Physical, Newton, Lbfgs, InverseGradient };

const char *grad_mode_name(GradMode mode);
// Parses `mode` for op `op`; an unknown mode, or one the op does not offer, is an
// error that lists the modes the op offers.
GradMode parse_grad_mode(c10::string_view mode, const char *op, std::initializer_list<GradMode> offered);

// What an op does when an inner solver does not converge.
enum class OnFailure { Raise, Warn };
OnFailure parse_on_failure(c10::string_view value, const char *op);

// Throws a c10::Error carrying the cphys message when `code` is not success.
// Under OnFailure::Warn, CPHYS_ERROR_NOT_CONVERGED is not an error (the outputs
// hold each sample's last iterate): it warns when `warn` is set.  Forward
// kernels pass warn = false because torch.ops calls bypass Python's warning
// handler (the warning would go to stderr); the Python wrappers warn instead.
void check_cphys(int code, const char *op, OnFailure on_failure = OnFailure::Raise, bool warn = true);

// cphys's batch loops (OpenMP, cphys/environment.h) use torch's intra-op thread
// count, at::get_num_threads() (torch.set_num_threads), for calls from this
// thread; every kernel that runs such a loop calls this first.
void follow_torch_threads();

// Validates a floating tensor argument (CPU, float32/float64, `dims` dimensions
// among `allowed_dims`) and returns it as a contiguous float64 tensor.
at::Tensor as_double(const at::Tensor &tensor, const char *op, const char *argument,
                     std::initializer_list<int64_t> allowed_dims);
// Throws a ValueError unless `bytes`, the memory a call is about to allocate for
// `what` (e.g. "x", "samples"), fits in the machine's physical memory: a request
// that can never be met fails before any allocation, not by the OOM killer.
void check_memory(double bytes, const char *op, const std::string &what);
// Throws a RuntimeError naming the first non-finite element ("x[1][2] = nan is
// not finite"), as cphys does, for inputs no cphys call checks itself.
void check_finite(const at::Tensor &tensor, const char *op, const char *argument);

// The `lbfgs` mode of any op: `iterations` TAO quasi-Newton steps per sample on
// 1/2 ||P(x') - (y - y_step g)||^2 from x; returns x - x_n.  x: [B, ...n], y and
// g: [B, ...m], contiguous float64.  TAO options prefix "physgrad_<op>_lbfgs_".
at::Tensor lbfgs_physical_gradient(const CPhysLeastSquaresProblem &problem, const char *op, const at::Tensor &x,
                                   const at::Tensor &y, const at::Tensor &g, double y_step, int64_t iterations,
                                   OnFailure on_failure);

// Per-thread statistics of the last solve of each op, readable from Python.
void record_solve_info(const std::string &op, const std::string &phase, std::vector<CPhysSolveInfo> info);

// Autograd for a physics op `name` (see docs/decisions.md, "one autograd kernel"):
//   forward schema   name(Tensor in_1, ..., Tensor in_k, <options>) -> Tensor
//   backward schema  name_backward(Tensor grad_y, Tensor in_1, ..., Tensor in_k, Tensor y, <options>)
//                        -> Tensor  (k = 1)  or  Tensor[]  (one per input; undefined: no gradient)
// Registers a boxed Autograd kernel for both; the backward op refuses double backward.
void register_physics_autograd(torch::Library &m, const char *name);

// Object caches keyed by configuration; cleared when solver options change,
// since PETSc reads options when an object is created.  Each cache keeps at
// most cache_limit() objects (per op), dropping the least recently used one
// beyond that (a spacing, tolerance or nu_t per call must not grow memory
// without bound); physgrad.set_cache_limit changes the limit.
void register_cache(std::function<void()> clear, std::function<size_t()> size);
void clear_all_caches();
int64_t cache_limit();
// Objects held by all caches together (for tests and physgrad.cache_info()).
int64_t cached_objects();

template <typename Key, typename Object>
class ObjectCache {
 public:
  using Handle = std::shared_ptr<typename std::remove_pointer<Object>::type>;
  ObjectCache(std::function<int(const Key &, Object *)> create, std::function<int(Object *)> destroy)
      : create_(std::move(create)), destroy_(std::move(destroy)) {
    register_cache([this] { clear(); }, [this] { return size(); });
  }
  // Returns the cached object for `key`, creating it on first use.  Objects are
  // never destroyed while in use: an evicted or cleared object lives on until
  // the last call holding its handle returns.
  Handle get(const Key &key, const char *op) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto found = objects_.find(key);
    if (found != objects_.end()) {
      found->second.last_use = ++clock_;
      return found->second.handle;
    }
    Object object = nullptr;
    check_cphys(create_(key, &object), op);
    auto destroy = destroy_;
    Handle handle(object, [destroy](Object o) { destroy(&o); });
    const int64_t limit = cache_limit();
    while (!objects_.empty() && static_cast<int64_t>(objects_.size()) >= limit) {
      auto oldest = objects_.begin();
      for (auto it = objects_.begin(); it != objects_.end(); ++it)
        if (it->second.last_use < oldest->second.last_use) oldest = it;
      objects_.erase(oldest);
    }
    objects_.emplace(key, Entry{handle, ++clock_});
    return handle;
  }
  void clear() {
    std::lock_guard<std::mutex> guard(mutex_);
    objects_.clear();
  }
  size_t size() {
    std::lock_guard<std::mutex> guard(mutex_);
    return objects_.size();
  }

 private:
  struct Entry {
    Handle handle;
    uint64_t last_use;
  };
  std::function<int(const Key &, Object *)> create_;
  std::function<int(Object *)> destroy_;
  std::mutex mutex_;
  uint64_t clock_ = 0;
  std::map<Key, Entry> objects_;
};

}  // namespace physgrad
