// eyefast/sh.h: real spherical-harmonics direction encoding (tcnn/instant-ngp basis), degree 1..4,
// forward and backward.
//
// Contract: dirs [N, 3] are used as given (unit directions expected, not renormalised);
// out [N, D*D] with the basis, order and signs of eyefast/reference/sh.py (degree D counts bands,
// as tcnn does). Backward: grad_dirs[i] = sum_j grad_out[i, j] * d out_j / d dirs[i].
#pragma once

#include "eyefast/common.h"

namespace eyefast {

// All 16 coefficients (bands 0..3) at (x, y, z), and when d is non-null their partial derivatives
// d[3*j + k] = d out_j / d x_k.
template <typename T>
EF_HD void sh_eval16(T x, T y, T z, T o[16], T* d) {
  const T C0 = T(0.28209479177387814), C1 = T(0.48860251190291987), C2a = T(1.0925484305920792),
          C2b = T(0.94617469575755997), C2c = T(0.31539156525251999), C2d = T(0.54627421529603959),
          C3a = T(0.59004358992664352), C3b = T(2.8906114426405538), C3c = T(0.45704579946446572),
          C3d = T(0.3731763325901154), C3e = T(1.4453057213202769);
  const T x2 = x * x, y2 = y * y, z2 = z * z;
  o[0] = C0;
  o[1] = -C1 * y;
  o[2] = C1 * z;
  o[3] = -C1 * x;
  o[4] = C2a * x * y;
  o[5] = -C2a * y * z;
  o[6] = C2b * z2 - C2c;
  o[7] = -C2a * x * z;
  o[8] = C2d * (x2 - y2);
  o[9] = -C3a * y * (T(3) * x2 - y2);
  o[10] = C3b * x * y * z;
  o[11] = C3c * y * (T(1) - T(5) * z2);
  o[12] = C3d * z * (T(5) * z2 - T(3));
  o[13] = C3c * x * (T(1) - T(5) * z2);
  o[14] = C3e * z * (x2 - y2);
  o[15] = C3a * x * (T(3) * y2 - x2);
  if (!d) return;
  const T dd[48] = {
      T(0), T(0), T(0),                                                   // 0
      T(0), -C1, T(0),                                                    // 1
      T(0), T(0), C1,                                                     // 2
      -C1, T(0), T(0),                                                    // 3
      C2a * y, C2a * x, T(0),                                             // 4
      T(0), -C2a * z, -C2a * y,                                           // 5
      T(0), T(0), T(2) * C2b * z,                                         // 6
      -C2a * z, T(0), -C2a * x,                                           // 7
      T(2) * C2d * x, -T(2) * C2d * y, T(0),                              // 8
      -T(6) * C3a * x * y, -C3a * (T(3) * x2 - T(3) * y2), T(0),          // 9
      C3b * y * z, C3b * x * z, C3b * x * y,                              // 10
      T(0), C3c * (T(1) - T(5) * z2), -T(10) * C3c * y * z,               // 11
      T(0), T(0), C3d * (T(15) * z2 - T(3)),                              // 12
      C3c * (T(1) - T(5) * z2), T(0), -T(10) * C3c * x * z,               // 13
      T(2) * C3e * x * z, -T(2) * C3e * y * z, C3e * (x2 - y2),           // 14
      C3a * (T(3) * y2 - T(3) * x2), T(6) * C3a * x * y, T(0),            // 15
  };
  for (int j = 0; j < 48; ++j) d[j] = dd[j];
}

template <typename T>
struct ShForward {
  const T* dirs;  // [N, 3]
  int32_t m;      // D*D outputs
  T* out;         // [N, m]
  EF_HD void operator()(int64_t i) const {
    T o[16];
    sh_eval16(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], o, static_cast<T*>(nullptr));
    for (int j = 0; j < m; ++j) out[i * m + j] = o[j];
  }
};

template <typename T>
struct ShBackward {
  const T* dirs;      // [N, 3]
  const T* grad_out;  // [N, m]
  int32_t m;
  T* grad_dirs;       // [N, 3]
  EF_HD void operator()(int64_t i) const {
    T o[16], d[48];
    sh_eval16(dirs[3 * i], dirs[3 * i + 1], dirs[3 * i + 2], o, d);
    T g0 = T(0), g1 = T(0), g2 = T(0);
    for (int j = 0; j < m; ++j) {
      const T g = grad_out[i * m + j];
      g0 += g * d[3 * j];
      g1 += g * d[3 * j + 1];
      g2 += g * d[3 * j + 2];
    }
    grad_dirs[3 * i] = g0;
    grad_dirs[3 * i + 1] = g1;
    grad_dirs[3 * i + 2] = g2;
  }
};

namespace cpu {
template <typename T>
void sh_encode_forward(const T* dirs, int64_t n, int32_t degree, T* out);
template <typename T>
void sh_encode_backward(const T* dirs, int64_t n, int32_t degree, const T* grad_out, T* grad_dirs);
}  // namespace cpu
namespace cuda {
template <typename T>
int sh_encode_forward(const T* dirs, int64_t n, int32_t degree, T* out, void* stream);
template <typename T>
int sh_encode_backward(const T* dirs, int64_t n, int32_t degree, const T* grad_out, T* grad_dirs, void* stream);
}  // namespace cuda

}  // namespace eyefast
