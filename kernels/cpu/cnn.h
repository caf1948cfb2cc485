// CPU kernels of convolutional models: conv2d (im2col + gemm), max/avg/global-average
// pooling and batch normalization split for synchronized statistics. The geometry
// structs are shared with kernels/cuda/cnn.h, which declares the same operations
// with the same names and arguments (a CudaContext first, device pointers).
// Layout is (N, C, H, W) as stored, row-major; every function is single-threaded
// and sums in a fixed order, so a result is bitwise the same on every run.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep {

// Keras padding: kValid uses only whole windows, out = (in - k) / s + 1;
// kSame gives out = ceil(in / s), with pad_total = max((out - 1) s + k - in, 0) split
// as pad_before = pad_total / 2 (the extra one, if any, after), as TF does.
enum class Padding { kValid, kSame };

// The shapes of one conv2d call. Build with conv2d_geometry() (it validates and
// fills the derived fields). Weights are (filters, in_channels, kernel_h, kernel_w),
// i.e. a (filters, patch) matrix with patch = in_channels * kernel_h * kernel_w;
// the bias is (filters); input (batch, in_channels, height, width); output
// (batch, filters, out_h, out_w).
struct Conv2dGeometry {
  int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  int64_t filters = 0, kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1;
  Padding padding = Padding::kValid;
  // Derived.
  int64_t out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  int64_t patch = 0;        // in_channels * kernel_h * kernel_w
  int64_t out_pixels = 0;   // out_h * out_w
  bool pointwise = false;   // 1x1, stride 1, no padding: the input is its own im2col
};

// Throws std::invalid_argument naming the bad value (non-positive size or stride,
// a kernel larger than a valid-padded input).
Conv2dGeometry conv2d_geometry(int64_t batch, int64_t in_channels, int64_t height, int64_t width,
                               int64_t filters, int64_t kernel_h, int64_t kernel_w,
                               int64_t stride_h, int64_t stride_w, Padding padding);

// The shapes of one max/avg pooling call: valid padding only (Keras' default).
// Input (batch, channels, height, width), output (batch, channels, out_h, out_w)
// with out = (in - pool) / stride + 1.
struct Pool2dGeometry {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t pool_h = 0, pool_w = 0, stride_h = 1, stride_w = 1;
  int64_t out_h = 0, out_w = 0;  // derived
};

// Throws std::invalid_argument naming the bad value (non-positive size or stride,
// a window larger than the input).
Pool2dGeometry pool2d_geometry(int64_t batch, int64_t channels, int64_t height, int64_t width,
                               int64_t pool_h, int64_t pool_w, int64_t stride_h, int64_t stride_w);

namespace cpu {

// Floats of scratch one conv2d call needs (forward, backward_data and
// backward_weights alike): one image's im2col matrix (patch, out_pixels) and its
// zero-padded copy (in_channels, (out_h-1) stride_h + kernel_h, (out_w-1) stride_w +
// kernel_w); 0 for a pointwise convolution. Callers allocate it once per layer.
int64_t conv2d_workspace_size(const Conv2dGeometry& g);

// y (N, F, OH, OW) = conv(x (N, C, H, W), w (F, C, KH, KW)) + bias (F).
// Per image: y_n (F, OH*OW) = w (F, patch) * im2col(x_n) (patch, OH*OW): the long
// dimension (pixels) is the GEMM's n. bias may be null (no bias, e.g. before batch
// norm). workspace holds conv2d_workspace_size(g) floats (may be null when 0).
void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                    float* y, float* workspace);

// dx (N, C, H, W) = conv2d's gradient with respect to x, given dy (N, F, OH, OW):
// per image dcol (patch, OH*OW) = w^T dy_n, scattered back (col2im, adding the
// overlaps in a fixed order). dx is overwritten.
void conv2d_backward_data(const Conv2dGeometry& g, const float* dy, const float* w, float* dx,
                          float* workspace);

// dw (F, C, KH, KW) = beta * dw + sum over images of dy_n (F, OH*OW) * im2col(x_n)^T;
// db (F) = beta * db + sum of dy over images and pixels (db may be null for no bias).
// Images are added in index order. beta == 0 never reads dw or db.
void conv2d_backward_weights(const Conv2dGeometry& g, const float* x, const float* dy, float* dw,
                             float* db, float beta, float* workspace);

// Max pooling. argmax (N, C, OH, OW) records, per output, the index inside its input
// plane (ih * W + iw) of the first maximum of the window in row-major order; the
// backward uses it. argmax may be null in inference.
void max_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax);
// dx (N, C, H, W) = 0, then dx[argmax] += dy for every output (overlapping windows add).
void max_pool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                         float* dx);

// Average pooling over the window (every window is whole: valid padding).
void avg_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y);
// dx is overwritten: each input gets dy / (pool_h pool_w) from every window holding it.
void avg_pool2d_backward(const Pool2dGeometry& g, const float* dy, float* dx);

// y (N, C) = mean over H*W of x (N, C, H, W), summed in double.
void global_avg_pool2d_forward(const float* x, float* y, int64_t batch, int64_t channels,
                               int64_t pixels);
// dx (N, C, H, W) = dy (N, C) / pixels broadcast.
void global_avg_pool2d_backward(const float* dy, float* dx, int64_t batch, int64_t channels,
                                int64_t pixels);

// Batch normalization over (N, H, W) per channel (pixels = H*W; a dense input is
// pixels = 1), split so the statistics can be synchronized across replicas:
//
//   train forward:  batch_norm_stats (local partials, 2C doubles)
//                   -> caller all-reduces the partials (sum; one fused buffer for all
//                      BN layers) and the row counts
//                   -> batch_norm_moments (global mean, var, inv_std)
//                   -> batch_norm_forward (normalize) + batch_norm_update_moving
//   backward:       batch_norm_backward_stats (local partials, 2C doubles; also the
//                      replica's dgamma, dbeta, which the gradient all-reduce sums)
//                   -> caller all-reduces the partials
//                   -> batch_norm_backward_data (dx)
//   inference:      batch_norm_inference (moving statistics)
//
// Without synchronization the caller skips the all-reduces: the same calls give
// per-replica statistics. Partials are doubles, summed per channel in image order
// then pixel order, so they are bitwise reproducible for a given split.
//
// The statistics partials are shifted sums: stats[c] = sum (x - shift[c]) and
// stats[C + c] = sum (x - shift[c])^2, with shift the moving mean (the same on every
// replica). The variance S2/M - (S1/M)^2 then cancels only (mean - shift)^2, which
// is small once the moving mean has warmed up, and is computed in double anyway:
// plain sums of x and x^2 lose everything for a channel whose mean is large against
// its spread. shift may be null (zero shift).
void batch_norm_stats(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                      const float* shift, double* stats);

// From the global partials and the global element count per channel
// (count = global batch * pixels): mean, biased variance var (as Keras normalizes
// with and stores in the moving variance) and inv_std = 1 / sqrt(var + eps), (C) each.
void batch_norm_moments(const double* stats, double count, const float* shift, int64_t channels,
                        float eps, float* mean, float* var, float* inv_std);

// y = gamma (x - mean) inv_std + beta, per channel. y may alias x.
void batch_norm_forward(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                        const float* mean, const float* inv_std, const float* gamma,
                        const float* beta, float* y);

// Keras: moving = momentum * moving + (1 - momentum) * batch value (default momentum
// 0.99), for the mean and the biased variance.
void batch_norm_update_moving(float* moving_mean, float* moving_var, const float* mean,
                              const float* var, int64_t channels, float momentum);

// y = gamma (x - moving_mean) / sqrt(moving_var + eps) + beta. y may alias x.
void batch_norm_inference(const float* x, int64_t batch, int64_t channels, int64_t pixels,
                          const float* moving_mean, const float* moving_var, const float* gamma,
                          const float* beta, float eps, float* y);

// Local backward partials, with xhat = (x - mean) inv_std recomputed from x:
// sums[c] = sum dy, sums[C + c] = sum dy xhat (doubles, fixed order), and this
// replica's parameter gradients dbeta = beta_acc * dbeta + sum dy,
// dgamma = beta_acc * dgamma + sum dy xhat (beta_acc == 0 never reads them).
void batch_norm_backward_stats(const float* dy, const float* x, int64_t batch, int64_t channels,
                               int64_t pixels, const float* mean, const float* inv_std,
                               double* sums, float* dgamma, float* dbeta, float beta_acc);

// dx = gamma inv_std (dy - S_dy / M - xhat S_dyxhat / M) with the GLOBAL sums and the
// global count M per channel. dx may alias dy.
void batch_norm_backward_data(const float* dy, const float* x, int64_t batch, int64_t channels,
                              int64_t pixels, const float* mean, const float* inv_std,
                              const float* gamma, const double* sums, double count, float* dx);

}  // namespace cpu
}  // namespace lockstep
