"""Plain-PyTorch references for benchmarks/bench_ops.py: what a user would write
without physgrad, for the same discretizations and tolerances as the ops.

* :class:`PoissonCG`: batched conjugate gradients on ``-laplace(y) = -x`` with the
  5-point stencil as a ``conv2d`` (zero padding = the zero Dirichlet boundary one
  spacing outside the interior nodes, cphys/poisson.h), stopping when every
  sample's residual ``||r||_2 <= rtol ||x||_2`` (PhiFlow's ``Solve('CG', rtol, 0)``);
  the backward is one more CG solve (implicit differentiation, as PhiFlow).
* :func:`heat`: ``irfft2(rfft2(x) * exp(-|k|^2 nu_t))`` with autograd's FFT backward.
* :class:`TorchFluid`: cphys/fluid.h's MAC grid and step order in torch ops:
  MacCormack advection with the clamp limiter (bilinear gathers), pressure
  projection by batched plain CG (PhiFlow's solver) to ``atol`` on ``||div v||_2``,
  warm-started, total-energy rescale, marker advection; the projection's
  backward projects the incoming gradient (it is an orthogonal projector), the
  rest is autograd.
* :func:`sine`, :func:`wave_packet`: the closed forms with autograd.

Every reference computes in the dtype it is given (the benchmark uses float64,
as the ops do internally).
"""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F


def batched_cg(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, tolerance: torch.Tensor,
               max_iterations: int, x0: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, int]:
    """Solves ``apply(x) = b`` (SPD, batched over dim 0) by CG until every sample's
    ``||b - apply(x)||_2 <= tolerance`` ([B]); converged samples stop moving.
    Returns ``(x, iterations)``."""
    dims = tuple(range(1, b.dim()))
    shape = (-1,) + (1,) * (b.dim() - 1)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b.clone() if x0 is None else b - apply(x)
    p = r.clone()
    rr = (r * r).sum(dims)
    tolerance2 = tolerance * tolerance
    active = rr > tolerance2
    iterations = 0
    while bool(active.any()) and iterations < max_iterations:
        ap = apply(p)
        alpha = torch.where(active, rr / (p * ap).sum(dims), torch.zeros_like(rr))
        x.add_(alpha.view(shape) * p)
        r.sub_(alpha.view(shape) * ap)
        rr_new = (r * r).sum(dims)
        beta = torch.where(active, rr_new / rr, torch.zeros_like(rr))
        p = r + beta.view(shape) * p
        rr = rr_new
        active = rr > tolerance2
        iterations += 1
    return x, iterations


# ---------------------------------------------------------------- Poisson
class PoissonCG:
    """``y = laplace^-1 x`` on ``[B, ny, nx]`` interior nodes, zero Dirichlet boundary."""

    def __init__(self, spacing: Tuple[float, float] = (1.0, 1.0), rtol: float = 1e-10,
                 max_iterations: int = 10000, dtype: torch.dtype = torch.float64):
        wy, wx = 1.0 / spacing[0] ** 2, 1.0 / spacing[1] ** 2
        # -laplace: SPD, so plain CG applies.
        self.kernel = torch.tensor([[0.0, -wy, 0.0], [-wx, 2.0 * (wx + wy), -wx], [0.0, -wy, 0.0]],
                                   dtype=dtype).view(1, 1, 3, 3)
        self.rtol, self.max_iterations = rtol, max_iterations
        self.iterations = 0

    def minus_laplace(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y.unsqueeze(1), self.kernel, padding=1).squeeze(1)

    def solve(self, x: torch.Tensor) -> torch.Tensor:
        tolerance = self.rtol * x.flatten(1).norm(dim=1)
        y, self.iterations = batched_cg(self.minus_laplace, -x, tolerance, self.max_iterations)
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _PoissonFunction.apply(x, self)


class _PoissonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, solver):
        ctx.solver = solver
        return solver.solve(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.solver.solve(g), None  # laplace is symmetric: the adjoint is the same solve


# ---------------------------------------------------------------- heat
def heat_kernel(shape: Tuple[int, int], nu_t: float, spacing: Tuple[float, float] = (1.0, 1.0),
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``exp(-|k|^2 nu_t)`` on the half spectrum of ``rfft2``, ``[ny, nx // 2 + 1]``."""
    ky = 2.0 * math.pi * torch.fft.fftfreq(shape[0], spacing[0], dtype=dtype)
    kx = 2.0 * math.pi * torch.fft.rfftfreq(shape[1], spacing[1], dtype=dtype)
    return torch.exp(-(ky[:, None] ** 2 + kx[None, :] ** 2) * nu_t)


def heat(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Periodic diffusion of ``[B, ny, nx]``; autograd differentiates the FFTs."""
    return torch.fft.irfft2(torch.fft.rfft2(x) * kernel, s=x.shape[-2:])


# ---------------------------------------------------------------- sine, wave packet
def sine(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.sin(a / x)


def wave_packet(params: torch.Tensor, samples: int = 256, frequency: float = 4.0,
                sigma: float = 20.0) -> torch.Tensor:
    xi = torch.arange(samples, dtype=params.dtype)
    position, amplitude = params[:, :1], params[:, 1:]
    return amplitude * torch.sin(frequency * xi) * torch.exp(-(xi - position) ** 2 / (2 * sigma ** 2))


# ---------------------------------------------------------------- fluid
def _shift(f: torch.Tensor, dj: int, di: int) -> torch.Tensor:
    """``out[j, i] = f[j + dj, i + di]`` periodically."""
    return torch.roll(f, shifts=(-dj, -di), dims=(-2, -1))


class TorchFluid:
    """cphys/fluid.h's forward map m_t = P(v0; m0) in torch ops (see the module docstring).

    v0: ``[B, 2, ny, nx]`` cell-centred (channel 0: x), m0: ``[B, ny, nx]``.
    Staggered: vx at x-faces ``(i dx, (j + 1/2) dy)``, vy at y-faces ``((i + 1/2) dx, j dy)``.
    """

    def __init__(self, shape: Tuple[int, int], spacing: Tuple[float, float] = (2.0, 2.0), dt: float = 0.25,
                 steps: int = 8, atol: float = 1e-4, max_iterations: int = 1000,
                 dtype: torch.dtype = torch.float64):
        self.ny, self.nx = shape
        self.dy, self.dx = spacing
        self.dt, self.steps, self.atol, self.max_iterations = dt, steps, atol, max_iterations
        wy, wx = 1.0 / self.dy ** 2, 1.0 / self.dx ** 2
        self.kernel = torch.tensor([[0.0, -wy, 0.0], [-wx, 2.0 * (wx + wy), -wx], [0.0, -wy, 0.0]],
                                   dtype=dtype).view(1, 1, 3, 3)
        self.jj = torch.arange(self.ny, dtype=dtype)[:, None].expand(self.ny, self.nx)
        self.ii = torch.arange(self.nx, dtype=dtype)[None, :].expand(self.ny, self.nx)
        self.cg_iterations = 0

    # -- pressure
    def minus_laplace(self, p: torch.Tensor) -> torch.Tensor:
        padded = F.pad(p.unsqueeze(1), (1, 1, 1, 1), mode="circular")
        return F.conv2d(padded, self.kernel).squeeze(1)

    def divergence(self, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
        return (_shift(vx, 0, 1) - vx) / self.dx + (_shift(vy, 1, 0) - vy) / self.dy

    def project_raw(self, vx, vy, p0, tolerance):
        div = self.divergence(vx, vy)
        b = div.mean(dim=(-2, -1), keepdim=True) - div  # -laplace p = -div v, made consistent
        p, iterations = batched_cg(self.minus_laplace, b, tolerance, self.max_iterations, p0)
        self.cg_iterations += iterations
        return vx - (p - _shift(p, 0, -1)) / self.dx, vy - (p - _shift(p, -1, 0)) / self.dy, p

    # -- advection
    def sample(self, field: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor):
        """Periodic bilinear samples at index positions; also the four corner values."""
        batch = field.shape[0]
        fx, fy = torch.floor(sx), torch.floor(sy)
        wx, wy = sx - fx, sy - fy
        i0 = torch.remainder(fx.long(), self.nx)
        j0 = torch.remainder(fy.long(), self.ny)
        i1, j1 = torch.remainder(i0 + 1, self.nx), torch.remainder(j0 + 1, self.ny)
        flat = field.reshape(batch, -1)

        def at(j, i):
            return flat.gather(1, (j * self.nx + i).reshape(batch, -1)).view_as(field)

        c00, c01, c10, c11 = at(j0, i0), at(j0, i1), at(j1, i0), at(j1, i1)
        value = (1 - wy) * ((1 - wx) * c00 + wx * c01) + wy * ((1 - wx) * c10 + wx * c11)
        return value, (c00, c01, c10, c11)

    def maccormack(self, field, ux, uy):
        cx, cy = self.dt / self.dx, self.dt / self.dy
        semi, corners = self.sample(field, self.ii - ux * cx, self.jj - uy * cy)
        back, _ = self.sample(semi, self.ii + ux * cx, self.jj + uy * cy)
        value = semi + 0.5 * (field - back)
        stacked = torch.stack(corners)
        return torch.maximum(torch.minimum(value, stacked.amax(0)), stacked.amin(0))  # clamp limiter

    @staticmethod
    def xface_velocity(vx, vy):
        return vx, 0.25 * (_shift(vy, 0, -1) + vy + _shift(vy, 1, -1) + _shift(vy, 1, 0))

    @staticmethod
    def yface_velocity(vx, vy):
        return 0.25 * (_shift(vx, -1, 0) + _shift(vx, -1, 1) + vx + _shift(vx, 0, 1)), vy

    @staticmethod
    def centre_velocity(vx, vy):
        return 0.5 * (vx + _shift(vx, 0, 1)), 0.5 * (vy + _shift(vy, 1, 0))

    # -- the map
    def __call__(self, v0: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
        cx, cy = v0[:, 0], v0[:, 1]
        vx, vy = 0.5 * (_shift(cx, 0, -1) + cx), 0.5 * (_shift(cy, -1, 0) + cy)
        zero = torch.zeros_like(m0)
        vx, vy, _ = _Projection.apply(vx, vy, zero, self)
        p, m = zero, m0
        for _ in range(self.steps):
            energy0 = (vx * vx).sum((-2, -1)) + (vy * vy).sum((-2, -1))
            wx = self.maccormack(vx, *self.xface_velocity(vx, vy))
            wy = self.maccormack(vy, *self.yface_velocity(vx, vy))
            wx, wy, p = _Projection.apply(wx, wy, p, self)
            energy = (wx * wx).sum((-2, -1)) + (wy * wy).sum((-2, -1))
            safe = torch.where(energy > 0, energy, torch.ones_like(energy))  # a zero field stays zero
            scale = torch.where(energy > 0, torch.sqrt(energy0 / safe), torch.ones_like(energy))[:, None, None]
            vx, vy = scale * wx, scale * wy
            m = self.maccormack(m, *self.centre_velocity(vx, vy))
        return m


class _Projection(torch.autograd.Function):
    """v - grad p (p the warm-started pressure); its backward is the same projection."""

    @staticmethod
    def forward(ctx, vx, vy, p0, fluid):
        ctx.fluid = fluid
        tolerance = torch.full((vx.shape[0],), fluid.atol, dtype=vx.dtype)
        vx, vy, p = fluid.project_raw(vx, vy, p0, tolerance)
        ctx.norm = torch.sqrt((vx * vx).sum((-2, -1)) + (vy * vy).sum((-2, -1)))
        ctx.mark_non_differentiable(p)
        return vx, vy, p

    @staticmethod
    def backward(ctx, gx, gy, gp):
        fluid = ctx.fluid
        # The forward's accuracy relative to the field's size (cphys scales the same way).
        g_norm = torch.sqrt((gx * gx).sum((-2, -1)) + (gy * gy).sum((-2, -1)))
        tolerance = fluid.atol * g_norm / torch.clamp(ctx.norm, min=1e-300)
        gx, gy, _ = fluid.project_raw(gx, gy, None, torch.clamp(tolerance, min=1e-300))
        return gx, gy, None, None


class FftwFloor:
    """FFTW's own r2c and c2r transforms (libfftw3 through ctypes, batched
    FFTW_ESTIMATE plans, as the heat op's plans): the floor of the heat op
    measured in the same process as the op, on torch tensors.  ``pair(x)``
    transforms x [B, ny, nx] (float64, contiguous) into a spectrum and back into
    a new tensor, which is what a forward or a backward of the op must do at
    least: read its input, write a new output."""

    FFTW_ESTIMATE = 1 << 6

    def __init__(self, batch: int, shape):
        import ctypes
        import ctypes.util
        name = ctypes.util.find_library("fftw3") or "libfftw3.so.3"
        self.lib = lib = ctypes.CDLL(name)
        ny, nx = shape
        self.cells, self.modes = ny * nx, ny * (nx // 2 + 1)
        n = (ctypes.c_int * 2)(ny, nx)
        plan = ctypes.c_void_p
        lib.fftw_plan_many_dft_r2c.restype = plan
        lib.fftw_plan_many_dft_c2r.restype = plan
        args = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                ctypes.c_uint]
        lib.fftw_plan_many_dft_r2c.argtypes = args
        lib.fftw_plan_many_dft_c2r.argtypes = args
        lib.fftw_execute_dft_r2c.argtypes = [plan, ctypes.c_void_p, ctypes.c_void_p]
        lib.fftw_execute_dft_c2r.argtypes = [plan, ctypes.c_void_p, ctypes.c_void_p]
        lib.fftw_alignment_of.argtypes = [ctypes.c_void_p]
        lib.fftw_alignment_of.restype = ctypes.c_int
        lib.fftw_destroy_plan.argtypes = [plan]
        real = torch.empty(batch, ny, nx, dtype=torch.float64)
        self.spectrum = torch.empty(batch, self.modes, 2, dtype=torch.float64)
        self.r2c = lib.fftw_plan_many_dft_r2c(2, n, batch, real.data_ptr(), None, 1, self.cells,
                                              self.spectrum.data_ptr(), None, 1, self.modes, self.FFTW_ESTIMATE)
        self.c2r = lib.fftw_plan_many_dft_c2r(2, n, batch, self.spectrum.data_ptr(), None, 1, self.modes,
                                              real.data_ptr(), None, 1, self.cells, self.FFTW_ESTIMATE)
        if not self.r2c or not self.c2r:
            raise RuntimeError("FFTW could not plan the floor's transforms")
        self.alignment = lib.fftw_alignment_of(real.data_ptr())

    def pair(self, x: torch.Tensor) -> torch.Tensor:
        """x -> rfft -> irfft (unnormalized) into a new tensor."""
        y = torch.empty_like(x)
        if self.lib.fftw_alignment_of(x.data_ptr()) != self.alignment or \
                self.lib.fftw_alignment_of(y.data_ptr()) != self.alignment:
            raise RuntimeError("the floor's arrays lost the planned alignment")
        self.lib.fftw_execute_dft_r2c(self.r2c, x.data_ptr(), self.spectrum.data_ptr())
        self.lib.fftw_execute_dft_c2r(self.c2r, self.spectrum.data_ptr(), y.data_ptr())
        return y

    def __del__(self):
        for plan in (getattr(self, "r2c", None), getattr(self, "c2r", None)):
            if plan:
                self.lib.fftw_destroy_plan(plan)
