// conv2d on the CPU: the geometry (Keras same/valid padding), im2col/col2im for one
// image, and forward/backward as one gemm() per image with the pixels as the long
// GEMM dimension. Pointwise (1x1, stride 1, unpadded) convolutions skip im2col.
#include "kernels/cpu/cnn.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cpu/ops.h"

namespace lockstep {
namespace {

void require_positive(const char* what, int64_t value, const char* op) {
  if (value <= 0) {
    throw std::invalid_argument(std::string("lockstep ") + op + ": " + what + " must be > 0, got " +
                                std::to_string(value));
  }
}

// Output size and padding before, one spatial axis.
void conv_axis(int64_t in, int64_t k, int64_t s, Padding padding, const char* axis,
               int64_t* out, int64_t* pad_before) {
  if (padding == Padding::kSame) {
    *out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>((*out - 1) * s + k - in, 0);
    *pad_before = total / 2;
    return;
  }
  if (k > in) {
    throw std::invalid_argument(std::string("lockstep conv2d: kernel ") + axis + " " +
                                std::to_string(k) + " exceeds the input's " + std::to_string(in) +
                                " with valid padding (use padding: same or a smaller kernel)");
  }
  *out = (in - k) / s + 1;
  *pad_before = 0;
}

}  // namespace

Conv2dGeometry conv2d_geometry(int64_t batch, int64_t in_channels, int64_t height, int64_t width,
                               int64_t filters, int64_t kernel_h, int64_t kernel_w,
                               int64_t stride_h, int64_t stride_w, Padding padding) {
  const char* op = "conv2d";
  require_positive("batch", batch, op);
  require_positive("in_channels", in_channels, op);
  require_positive("height", height, op);
  require_positive("width", width, op);
  require_positive("filters", filters, op);
  require_positive("kernel_h", kernel_h, op);
  require_positive("kernel_w", kernel_w, op);
  require_positive("stride_h", stride_h, op);
  require_positive("stride_w", stride_w, op);
  Conv2dGeometry g;
  g.batch = batch, g.in_channels = in_channels, g.height = height, g.width = width;
  g.filters = filters, g.kernel_h = kernel_h, g.kernel_w = kernel_w;
  g.stride_h = stride_h, g.stride_w = stride_w, g.padding = padding;
  conv_axis(height, kernel_h, stride_h, padding, "height", &g.out_h, &g.pad_top);
  conv_axis(width, kernel_w, stride_w, padding, "width", &g.out_w, &g.pad_left);
  g.patch = in_channels * kernel_h * kernel_w;
  g.out_pixels = g.out_h * g.out_w;
  g.pointwise = kernel_h == 1 && kernel_w == 1 && stride_h == 1 && stride_w == 1 &&
                g.pad_top == 0 && g.pad_left == 0;
  return g;
}

namespace cpu {
namespace {

// The output columns [lo, hi) of one kernel column kj whose input column is inside
// the image: iw = ow * stride - pad_left + kj in [0, width).
void valid_columns(const Conv2dGeometry& g, int64_t kj, int64_t* lo, int64_t* hi) {
  const int64_t shift = g.pad_left - kj;  // iw = ow * s - shift
  *lo = shift > 0 ? (shift + g.stride_w - 1) / g.stride_w : 0;
  *hi = std::min(g.out_w, (g.width + shift + g.stride_w - 1) / g.stride_w);
  *lo = std::min(*lo, g.out_w);
  *hi = std::max(*hi, *lo);
}

// col (patch, OH*OW) of one image x (C, H, W); zeros where the window hangs over the
// padding.
void im2col(const Conv2dGeometry& g, const float* x, float* col) {
  const int64_t ow_n = g.out_w, sw = g.stride_w;
  for (int64_t c = 0; c < g.in_channels; ++c) {
    const float* plane = x + c * g.height * g.width;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        const int64_t iw0 = kj - g.pad_left;
        for (int64_t oh = 0; oh < g.out_h; ++oh, col += ow_n) {
          const int64_t ih = oh * g.stride_h - g.pad_top + ki;
          if (ih < 0 || ih >= g.height) {
            std::fill(col, col + ow_n, 0.0f);
            continue;
          }
          const float* src = plane + ih * g.width;  // src[ow * sw + iw0], ow in [lo, hi)
          std::fill(col, col + lo, 0.0f);
          if (sw == 1) {
            std::copy(src + (lo + iw0), src + (hi + iw0), col + lo);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) col[ow] = src[ow * sw + iw0];
          }
          std::fill(col + hi, col + ow_n, 0.0f);
        }
      }
    }
  }
}

// dx (C, H, W) = sum of col's entries over every window position that reads each
// input (the transpose of im2col), rows in order. Overwrites dx.
void col2im(const Conv2dGeometry& g, const float* col, float* dx) {
  std::fill(dx, dx + g.in_channels * g.height * g.width, 0.0f);
  const int64_t ow_n = g.out_w, sw = g.stride_w;
  for (int64_t c = 0; c < g.in_channels; ++c) {
    float* plane = dx + c * g.height * g.width;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        int64_t lo, hi;
        valid_columns(g, kj, &lo, &hi);
        const int64_t iw0 = kj - g.pad_left;
        for (int64_t oh = 0; oh < g.out_h; ++oh, col += ow_n) {
          const int64_t ih = oh * g.stride_h - g.pad_top + ki;
          if (ih < 0 || ih >= g.height) continue;
          float* dst = plane + ih * g.width;
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow * sw + iw0] += col[ow];
        }
      }
    }
  }
}

// One image's im2col matrix: the input itself when pointwise, else built in ws.
const float* columns(const Conv2dGeometry& g, const float* x_n, float* ws) {
  if (g.pointwise) return x_n;
  im2col(g, x_n, ws);
  return ws;
}

}  // namespace

int64_t conv2d_workspace_size(const Conv2dGeometry& g) {
  return g.pointwise ? 0 : g.patch * g.out_pixels;
}

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias,
                    float* y, float* workspace) {
  const int64_t in_size = g.in_channels * g.height * g.width, out_size = g.filters * g.out_pixels;
  for (int64_t n = 0; n < g.batch; ++n) {
    const float* col = columns(g, x + n * in_size, workspace);
    float* y_n = y + n * out_size;
    // (F, P) = (F, patch) * (patch, P)
    gemm(false, false, g.filters, g.out_pixels, g.patch, 1.0f, w, g.patch, col, g.out_pixels,
         0.0f, y_n, g.out_pixels);
    if (bias == nullptr) continue;
    for (int64_t f = 0; f < g.filters; ++f) {
      float* row = y_n + f * g.out_pixels;
      const float b = bias[f];
      for (int64_t p = 0; p < g.out_pixels; ++p) row[p] += b;
    }
  }
}

void conv2d_backward_data(const Conv2dGeometry& g, const float* dy, const float* w, float* dx,
                          float* workspace) {
  const int64_t in_size = g.in_channels * g.height * g.width, out_size = g.filters * g.out_pixels;
  for (int64_t n = 0; n < g.batch; ++n) {
    float* dcol = g.pointwise ? dx + n * in_size : workspace;
    // (patch, P) = (F, patch)^T * (F, P)
    gemm(true, false, g.patch, g.out_pixels, g.filters, 1.0f, w, g.patch, dy + n * out_size,
         g.out_pixels, 0.0f, dcol, g.out_pixels);
    if (!g.pointwise) col2im(g, dcol, dx + n * in_size);
  }
}

void conv2d_backward_weights(const Conv2dGeometry& g, const float* x, const float* dy, float* dw,
                             float* db, float beta, float* workspace) {
  const int64_t in_size = g.in_channels * g.height * g.width, out_size = g.filters * g.out_pixels;
  for (int64_t n = 0; n < g.batch; ++n) {
    const float* col = columns(g, x + n * in_size, workspace);
    // (F, patch) += (F, P) * (patch, P)^T
    gemm(false, true, g.filters, g.patch, g.out_pixels, 1.0f, dy + n * out_size, g.out_pixels,
         col, g.out_pixels, n == 0 ? beta : 1.0f, dw, g.patch);
  }
  if (db == nullptr) return;
  for (int64_t f = 0; f < g.filters; ++f) {
    double sum = 0.0;
    for (int64_t n = 0; n < g.batch; ++n) {
      const float* row = dy + n * out_size + f * g.out_pixels;
      for (int64_t p = 0; p < g.out_pixels; ++p) sum += row[p];
    }
    db[f] = beta == 0.0f ? static_cast<float>(sum) : beta * db[f] + static_cast<float>(sum);
  }
}

}  // namespace cpu
}  // namespace lockstep
