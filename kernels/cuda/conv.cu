// conv2d on CUDA: per image an im2col kernel and one cuBLAS GEMM (through
// cuda::gemm, the CPU's GEMM layout); col2im gathers every input element's window
// entries in a fixed order (no atomics); the bias gradient is one block per filter.
#include "kernels/cuda/cnn.h"

#include "kernels/cuda/common.cuh"

namespace lockstep::cuda {
namespace {

using detail::first_index;
using detail::grid_stride;
using detail::kThreads;

// col (patch, OH*OW) of one image x (C, H, W): one thread per col element.
__global__ void im2col_kernel(Conv2dGeometry g, const float* x, float* col) {
  const int64_t total = g.patch * g.out_pixels;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t row = i / g.out_pixels, pix = i % g.out_pixels;
    const int64_t c = row / (g.kernel_h * g.kernel_w), k = row % (g.kernel_h * g.kernel_w);
    const int64_t ih = (pix / g.out_w) * g.stride_h - g.pad_top + k / g.kernel_w;
    const int64_t iw = (pix % g.out_w) * g.stride_w - g.pad_left + k % g.kernel_w;
    const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
    col[i] = inside ? x[(c * g.height + ih) * g.width + iw] : 0.0f;
  }
}

// dx (C, H, W) of one image: each element sums the col entries of every window
// position that read it, kernel rows then columns in order.
__global__ void col2im_kernel(Conv2dGeometry g, const float* col, float* dx) {
  const int64_t total = g.in_channels * g.height * g.width;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t c = i / (g.height * g.width), ih = (i / g.width) % g.height, iw = i % g.width;
    float sum = 0.0f;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const int64_t th = ih + g.pad_top - ki;  // oh * stride_h
      if (th < 0 || th % g.stride_h != 0 || th / g.stride_h >= g.out_h) continue;
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const int64_t tw = iw + g.pad_left - kj;
        if (tw < 0 || tw % g.stride_w != 0 || tw / g.stride_w >= g.out_w) continue;
        const int64_t row = (c * g.kernel_h + ki) * g.kernel_w + kj;
        sum += col[row * g.out_pixels + (th / g.stride_h) * g.out_w + tw / g.stride_w];
      }
    }
    dx[i] = sum;
  }
}

// y_n (F, P) += bias per filter row.
__global__ void add_bias_kernel(float* y, const float* bias, int64_t filters, int64_t pixels) {
  for (int64_t i = first_index(); i < filters * pixels; i += grid_stride()) y[i] += bias[i / pixels];
}

// db[f] = beta db[f] + sum over images and pixels of dy: one block per filter.
__global__ void conv_bias_grad_kernel(Conv2dGeometry g, const float* dy, float* db, float beta) {
  const int64_t f = blockIdx.x, count = g.batch * g.out_pixels;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t n = i / g.out_pixels, p = i % g.out_pixels;
    sum += dy[(n * g.filters + f) * g.out_pixels + p];
  }
  sum = detail::block_sum(sum);
  if (threadIdx.x == 0) db[f] = beta == 0.0f ? sum : beta * db[f] + sum;
}

const float* columns(const CudaContext& ctx, const Conv2dGeometry& g, const float* x_n, float* ws) {
  if (g.pointwise) return x_n;
  LOCKSTEP_CUDA_LAUNCH(ctx, g.patch * g.out_pixels, "im2col_kernel", im2col_kernel, g, x_n, ws);
  return ws;
}

}  // namespace

int64_t conv2d_workspace_size(const Conv2dGeometry& g) {
  return g.pointwise ? 0 : g.patch * g.out_pixels;
}

void conv2d_forward(const CudaContext& ctx, const Conv2dGeometry& g, const float* x,
                    const float* w, const float* bias, float* y, float* workspace) {
  const int64_t in_size = g.in_channels * g.height * g.width, out_size = g.filters * g.out_pixels;
  for (int64_t n = 0; n < g.batch; ++n) {
    const float* col = columns(ctx, g, x + n * in_size, workspace);
    float* y_n = y + n * out_size;
    gemm(ctx, false, false, g.filters, g.out_pixels, g.patch, 1.0f, w, g.patch, col, g.out_pixels,
         0.0f, y_n, g.out_pixels);
    if (bias != nullptr)
      LOCKSTEP_CUDA_LAUNCH(ctx, out_size, "add_bias_kernel", add_bias_kernel, y_n, bias, g.filters, g.out_pixels);
  }
}

void conv2d_backward_data(const CudaContext& ctx, const Conv2dGeometry& g, const float* dy,
                          const float* w, float* dx, float* workspace) {
  const int64_t in_size = g.in_channels * g.height * g.width, out_size = g.filters * g.out_pixels;
  for (int64_t n = 0; n < g.batch; ++n) {
    float* dcol = g.pointwise ? dx + n * in_size : workspace;
    gemm(ctx, true, false, g.patch, g.out_pixels, g.filters, 1.0f, w, g.patch, dy + n * out_size,
         g.out_pixels, 0.0f, dcol, g.out_pixels);
    if (!g.pointwise) LOCKSTEP_CUDA_LAUNCH(ctx, in_size, "col2im_kernel", col2im_kernel, g, dcol, dx + n * in_size);
  }
}

void conv2d_backward_weights(const CudaContext& ctx, const Conv2dGeometry& g, const float* x,
                             const float* dy, float* dw, float* db, float beta,
                             float* workspace) {
  const int64_t in_size = g.in_channels * g.height * g.width, out_size = g.filters * g.out_pixels;
  for (int64_t n = 0; n < g.batch; ++n) {
    const float* col = columns(ctx, g, x + n * in_size, workspace);
    gemm(ctx, false, true, g.filters, g.patch, g.out_pixels, 1.0f, dy + n * out_size,
         g.out_pixels, col, g.out_pixels, n == 0 ? beta : 1.0f, dw, g.patch);
  }
  if (db == nullptr) return;
  conv_bias_grad_kernel<<<static_cast<unsigned>(g.filters), kThreads, 0, ctx.stream>>>(g, dy, db,
                                                                                     beta);
  LOCKSTEP_CUDA_CHECK_LAUNCH("conv_bias_grad_kernel");
}

}  // namespace lockstep::cuda
