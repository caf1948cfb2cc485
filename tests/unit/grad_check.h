// What the kernel tests share: central differences of a loss in double, and a
// closeness check with a relative tolerance that names the failing element.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace lockstep::testing {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

// d loss / d v[i] for every element of v, by central differences of step h.
inline DVec numeric_grad(DVec& v, const std::function<double()>& loss, double h) {
  DVec grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = loss();
    v[i] = keep - h;
    const double down = loss();
    v[i] = keep;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

inline void expect_close(const Vec& got, const DVec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " element " << i;
  }
}

}  // namespace lockstep::testing
