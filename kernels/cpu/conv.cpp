// conv2d on the CPU: the geometry (Keras same/valid padding), im2col/col2im for one
// image, and forward/backward as one gemm() per image with the pixels as the long
// GEMM dimension. Pointwise (1x1, stride 1, unpadded) convolutions skip im2col.
#include "kernels/cpu/cnn.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/cpu/ops.h"

namespace lockstep {
namespace {

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
  const std::pair<const char*, int64_t> sizes[] = {
      {"batch", batch},     {"in_channels", in_channels}, {"height", height},     {"width", width},
      {"filters", filters}, {"kernel_h", kernel_h},       {"kernel_w", kernel_w}, {"stride_h", stride_h},
      {"stride_w", stride_w}};
  for (const auto& [what, value] : sizes)
    if (value <= 0)
      throw std::invalid_argument(std::string("lockstep conv2d: ") + what + " must be > 0, got " +
                                  std::to_string(value));
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

// The padded image every window position reads: rows [0, padded_h), columns
// [0, padded_w), where padded row r is input row r - pad_top (zero outside the
// input). Windows then need no bounds checks.
int64_t padded_h(const Conv2dGeometry& g) { return (g.out_h - 1) * g.stride_h + g.kernel_h; }
int64_t padded_w(const Conv2dGeometry& g) { return (g.out_w - 1) * g.stride_w + g.kernel_w; }
int64_t padded_size(const Conv2dGeometry& g) { return g.in_channels * padded_h(g) * padded_w(g); }

// dst[0, n) = src[0, n): rows here are short (tens of floats), where a library call
// or a scalar tail per row cost more than the copy; AVX-512 masks cover the tail.
inline void copy_row(float* dst, const float* src, int64_t n) {
#if defined(__AVX512F__)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
#else
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
#endif
}

// dst[0, n) += src[0, n), element by element (the same sums as the scalar loop).
inline void add_row(float* dst, const float* src, int64_t n) {
#if defined(__AVX512F__)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), _mm512_maskz_loadu_ps(m, src + i));
    _mm512_mask_storeu_ps(dst + i, m, sum);
  }
#else
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
#endif
}

// The input column range [lo, hi) of padded columns [0, padded_w) (iw = c - pad_left).
void inside_columns(const Conv2dGeometry& g, int64_t* lo, int64_t* hi) {
  *lo = std::min(g.pad_left, padded_w(g));
  *hi = std::max(*lo, std::min(padded_w(g), g.width + g.pad_left));
}

// pad (C, padded_h, padded_w) = x (C, H, W) placed at (pad_top, pad_left), zeros
// around (and cropped where valid padding leaves input rows or columns unused).
void pad_image(const Conv2dGeometry& g, const float* x, float* pad) {
  const int64_t ph = padded_h(g), pw = padded_w(g);
  int64_t lo, hi;
  inside_columns(g, &lo, &hi);
  for (int64_t c = 0; c < g.in_channels; ++c) {
    for (int64_t r = 0; r < ph; ++r, pad += pw) {
      const int64_t ih = r - g.pad_top;
      if (ih < 0 || ih >= g.height) {
        for (int64_t j = 0; j < pw; ++j) pad[j] = 0.0f;
        continue;
      }
      const float* src = x + (c * g.height + ih) * g.width;  // padded column j is src[j - pad_left]
      for (int64_t j = 0; j < lo; ++j) pad[j] = 0.0f;
      copy_row(pad + lo, src + (lo - g.pad_left), hi - lo);
      for (int64_t j = hi; j < pw; ++j) pad[j] = 0.0f;
    }
  }
}

// dx (C, H, W) = the input part of pad (C, padded_h, padded_w); the inverse of
// pad_image for the gradient (padding positions dropped).
void unpad_image(const Conv2dGeometry& g, const float* pad, float* dx) {
  const int64_t ph = padded_h(g), pw = padded_w(g);
  int64_t lo, hi;
  inside_columns(g, &lo, &hi);
  std::fill(dx, dx + g.in_channels * g.height * g.width, 0.0f);  // rows/columns no window reads
  for (int64_t c = 0; c < g.in_channels; ++c) {
    for (int64_t r = 0; r < ph; ++r) {
      const int64_t ih = r - g.pad_top;
      if (ih < 0 || ih >= g.height) continue;
      float* dst = dx + (c * g.height + ih) * g.width;
      copy_row(dst + (lo - g.pad_left), pad + (c * ph + r) * pw + lo, hi - lo);
    }
  }
}

// col (patch, OH*OW) of one padded image: row (c, ki, kj), column (oh, ow) holds
// pad[c][oh * stride_h + ki][ow * stride_w + kj].
void im2col(const Conv2dGeometry& g, const float* pad, float* col) {
  const int64_t ph = padded_h(g), pw = padded_w(g), ow_n = g.out_w, sw = g.stride_w;
  for (int64_t c = 0; c < g.in_channels; ++c) {
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        for (int64_t oh = 0; oh < g.out_h; ++oh, col += ow_n) {
          const float* src = pad + (c * ph + oh * g.stride_h + ki) * pw + kj;
          if (sw == 1) {
            copy_row(col, src, ow_n);
          } else {
            for (int64_t ow = 0; ow < ow_n; ++ow) col[ow] = src[ow * sw];
          }
        }
      }
    }
  }
}

// pad (C, padded_h, padded_w) = the sum of col's entries over every window position
// that reads each padded element (the transpose of im2col), rows in order.
void col2im(const Conv2dGeometry& g, const float* col, float* pad) {
  const int64_t ph = padded_h(g), pw = padded_w(g), ow_n = g.out_w, sw = g.stride_w;
  std::fill(pad, pad + padded_size(g), 0.0f);
  for (int64_t c = 0; c < g.in_channels; ++c) {
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        for (int64_t oh = 0; oh < g.out_h; ++oh, col += ow_n) {
          float* dst = pad + (c * ph + oh * g.stride_h + ki) * pw + kj;
          if (sw == 1) {
            add_row(dst, col, ow_n);
          } else {
            for (int64_t ow = 0; ow < ow_n; ++ow) dst[ow * sw] += col[ow];
          }
        }
      }
    }
  }
}

// lanes[i % kSumLanes] += v[i]: independent double chains (one chain is bound by
// the add latency), folded by the caller in lane order, so the sum is reproducible.
constexpr int kSumLanes = 8;
void add_to_lanes(const float* v, int64_t n, double* lanes) {
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    for (int l = 0; l < kSumLanes; ++l) lanes[l] += v[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) lanes[l] += v[i];
}

// One image's im2col matrix: the input itself when pointwise, else built in ws
// (the padded image goes after the matrix).
const float* columns(const Conv2dGeometry& g, const float* x_n, float* ws) {
  if (g.pointwise) return x_n;
  float* pad = ws + g.patch * g.out_pixels;
  pad_image(g, x_n, pad);
  im2col(g, pad, ws);
  return ws;
}

}  // namespace

int64_t conv2d_workspace_size(const Conv2dGeometry& g) {
  return g.pointwise ? 0 : g.patch * g.out_pixels + padded_size(g);
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
    if (g.pointwise) continue;
    float* pad = workspace + g.patch * g.out_pixels;
    col2im(g, dcol, pad);
    unpad_image(g, pad, dx + n * in_size);
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
    double lanes[kSumLanes] = {};
    for (int64_t n = 0; n < g.batch; ++n) {
      add_to_lanes(dy + n * out_size + f * g.out_pixels, g.out_pixels, lanes);
    }
    double sum = 0.0;
    for (double lane : lanes) sum += lane;
    db[f] = beta == 0.0f ? static_cast<float>(sum) : beta * db[f] + static_cast<float>(sum);
  }
}

}  // namespace cpu
}  // namespace lockstep
