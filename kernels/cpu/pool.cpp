// Pooling on the CPU: max (with the argmax its backward needs), average and global
// average, valid padding (Keras' default). Each output is computed in window order,
// so results do not depend on the batch split.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/cpu/cnn.h"

namespace lockstep {

Pool2dGeometry pool2d_geometry(int64_t batch, int64_t channels, int64_t height, int64_t width,
                               int64_t pool_h, int64_t pool_w, int64_t stride_h, int64_t stride_w) {
  const std::pair<const char*, int64_t> sizes[] = {
      {"batch", batch},   {"channels", channels}, {"height", height},     {"width", width},
      {"pool_h", pool_h}, {"pool_w", pool_w},     {"stride_h", stride_h}, {"stride_w", stride_w}};
  for (const auto& [what, value] : sizes)
    if (value <= 0)
      throw std::invalid_argument(std::string("lockstep pool2d: ") + what + " must be > 0, got " +
                                  std::to_string(value));
  if (pool_h > height || pool_w > width) {
    throw std::invalid_argument("lockstep pool2d: pool " + std::to_string(pool_h) + "x" +
                                std::to_string(pool_w) + " exceeds the input " +
                                std::to_string(height) + "x" + std::to_string(width) +
                                " (valid padding): use a smaller pool_size");
  }
  Pool2dGeometry g;
  g.batch = batch, g.channels = channels, g.height = height, g.width = width;
  g.pool_h = pool_h, g.pool_w = pool_w, g.stride_h = stride_h, g.stride_w = stride_w;
  g.out_h = (height - pool_h) / stride_h + 1;
  g.out_w = (width - pool_w) / stride_w + 1;
  return g;
}

namespace cpu {

void max_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y, int32_t* argmax) {
  const int64_t planes = g.batch * g.channels, in_size = g.height * g.width;
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = x + p * in_size;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t top = oh * g.stride_h * g.width + ow * g.stride_w;
        int64_t best = top;
        for (int64_t i = 0; i < g.pool_h; ++i) {
          for (int64_t j = 0; j < g.pool_w; ++j) {
            const int64_t at = top + i * g.width + j;
            if (plane[at] > plane[best]) best = at;  // strict: the first maximum wins
          }
        }
        *y++ = plane[best];
        if (argmax != nullptr) *argmax++ = static_cast<int32_t>(best);
      }
    }
  }
}

void max_pool2d_backward(const Pool2dGeometry& g, const float* dy, const int32_t* argmax,
                         float* dx) {
  const int64_t planes = g.batch * g.channels, in_size = g.height * g.width;
  const int64_t out_size = g.out_h * g.out_w;
  std::fill(dx, dx + planes * in_size, 0.0f);
  for (int64_t p = 0; p < planes; ++p) {
    float* plane = dx + p * in_size;
    for (int64_t o = 0; o < out_size; ++o) plane[argmax[p * out_size + o]] += dy[p * out_size + o];
  }
}

void avg_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y) {
  const int64_t planes = g.batch * g.channels, in_size = g.height * g.width;
  const float inv = 1.0f / static_cast<float>(g.pool_h * g.pool_w);
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = x + p * in_size;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const float* top = plane + oh * g.stride_h * g.width + ow * g.stride_w;
        float sum = 0.0f;
        for (int64_t i = 0; i < g.pool_h; ++i) {
          for (int64_t j = 0; j < g.pool_w; ++j) sum += top[i * g.width + j];
        }
        *y++ = sum * inv;
      }
    }
  }
}

void avg_pool2d_backward(const Pool2dGeometry& g, const float* dy, float* dx) {
  const int64_t planes = g.batch * g.channels, in_size = g.height * g.width;
  const float inv = 1.0f / static_cast<float>(g.pool_h * g.pool_w);
  std::fill(dx, dx + planes * in_size, 0.0f);
  for (int64_t p = 0; p < planes; ++p) {
    float* plane = dx + p * in_size;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        float* top = plane + oh * g.stride_h * g.width + ow * g.stride_w;
        const float share = *dy++ * inv;
        for (int64_t i = 0; i < g.pool_h; ++i) {
          for (int64_t j = 0; j < g.pool_w; ++j) top[i * g.width + j] += share;
        }
      }
    }
  }
}

void global_avg_pool2d_forward(const float* x, float* y, int64_t batch, int64_t channels,
                               int64_t pixels) {
  for (int64_t p = 0; p < batch * channels; ++p) {
    const float* plane = x + p * pixels;
    double sum = 0.0;
    for (int64_t i = 0; i < pixels; ++i) sum += plane[i];
    y[p] = static_cast<float>(sum / static_cast<double>(pixels));
  }
}

void global_avg_pool2d_backward(const float* dy, float* dx, int64_t batch, int64_t channels,
                                int64_t pixels) {
  const float inv = 1.0f / static_cast<float>(pixels);
  for (int64_t p = 0; p < batch * channels; ++p) {
    const float share = dy[p] * inv;
    std::fill(dx + p * pixels, dx + (p + 1) * pixels, share);
  }
}

}  // namespace cpu
}  // namespace lockstep
