// Shared glue of the physgrad torch ops: gradient modes, input checks, cphys
// error translation, solver statistics, object caches.  No numerics here.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <array>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cphys/error.h"
#include "cphys/minimize.h"
#include "cphys/poisson_spectral.h" /* CPhysBoundary */
#include "physgrad/op.h"

namespace physgrad {

// GradMode, OnFailure, parse_grad_mode, parse_on_failure, check_cphys, as_double,
// check_finite, lbfgs_physical_gradient, record_solve_info and
// register_physics_autograd are the public extension API: physgrad/op.h.

// cphys's batch loops (OpenMP, cphys/environment.h) use torch's intra-op thread
// count, at::get_num_threads() (torch.set_num_threads), for calls from this
// thread; every kernel that runs such a loop calls this first.
void follow_torch_threads();

// Throws a ValueError unless `bytes`, the memory a call is about to allocate for
// `what` (e.g. "x", "samples"), fits in the machine's physical memory: a request
// that can never be met fails before any allocation, not by the OOM killer.
void check_memory(double bytes, const char *op, const std::string &what);

// A field input of the grid ops (poisson, heat): 2 or 3 axes, their sizes, and
// the data as a contiguous float64 [B, <shape>].  [B, ny, nx] and [B, 1, ny, nx]
// are 2-D; [B, nz, ny, nx] (nz > 1) and [B, 1, nz, ny, nx] are 3-D.  `point`
// names a grid point in messages ("node", "cell").
struct Grid {
  int dims;
  std::array<int64_t, 3> shape;
  at::Tensor data;
};
Grid grid_input(const at::Tensor &tensor, const char *op, const char *argument, const char *point);

// The names of CPhysBoundary's values, in its order ("dirichlet/neumann": per side).
extern const char *const kBoundaryNames[5];
// `text`: one boundary name for every axis, or one per axis separated by commas
// ("neumann,periodic"); with `per_side`, an axis may also name its two ends,
// lower first ("dirichlet/neumann,periodic"; periodic only at both).  Axes
// beyond `dims` get `fill`.  `choices` lists the names in the op's order of
// mention for the error message.
std::array<CPhysBoundary, 3> parse_boundary(c10::string_view text, int dims, const char *op,
                                            const char *choices, CPhysBoundary fill, bool per_side = false);

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
