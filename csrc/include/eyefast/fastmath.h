// eyefast/fastmath.h: float exp and log1p written for SIMD: branch-free (selects only), so the
// CPU loops that call them vectorise, and the same operations on every target (nvcc may contract
// some into FMAs, so CUDA can differ in the last bit). The double versions are libm's.
#pragma once

#include <string.h>

#include "eyefast/common.h"

namespace eyefast {

// exp. float: Cody-Waite reduction and a degree-6 polynomial (the Cephes
// coefficients), branch-free so that CPU loops vectorise; the same formula on every target (nvcc
// contracts some of it into FMAs, so CUDA may differ in the last bit). Max relative error 8e-8
// (about 1.3 ulp) against exp in double; inputs below ln(2^-126) give 0 (expf would give
// denormals), NaN stays NaN. double: exp.
EF_HD float ef_bits_float(int32_t b) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(b);
#else
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
#endif
}
EF_HD int32_t ef_float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(f);
#else
  int32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
#endif
}
// exp(xc) = p * 2^n for a clamped argument xc: Cody-Waite reduction r = xc - n ln 2, then the
// degree-6 polynomial p ~ exp(r).
EF_HD float ef_exp_reduced(float xc, int32_t& n_out) {
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;            // x - n ln 2
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  n_out = static_cast<int32_t>(n);
  return p * r * r + r + 1.0f;
}
EF_HD float ef_exp(float x) {
  const float lo = -87.33654f, hi = 88.72283f;  // exp(lo) = 2^-126 (smallest normal); exp(hi) = FLT_MAX
  int32_t ni;
  const float p = ef_exp_reduced(x < lo ? lo : (x > hi ? hi : x), ni);
  const int32_t n1 = ni >> 1, n2 = ni - n1;  // 2^n as two normal factors
  float y = (p * ef_bits_float((n1 + 127) << 23)) * ef_bits_float((n2 + 127) << 23);
  y = x < lo ? 0.0f : y;
  y = x > hi ? INFINITY : y;
  return x != x ? x : y;
}
EF_HD double ef_exp(double x) { return exp(x); }

// exp(x) for x <= 0 (or NaN), as ef_exp but with one scale factor (2^n is normal for n >= -126)
// and no overflow handling; bitwise equal to ef_exp there.
EF_HD float ef_exp_nonpos(float x) {
  const float lo = -87.33654f;
  int32_t ni;
  const float p = ef_exp_reduced(x < lo ? lo : x, ni);
  float y = p * ef_bits_float((ni + 127) << 23);
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}
EF_HD double ef_exp_nonpos(double x) { return exp(x); }

// log(1 + u) for u in [0, 1] (what softplus needs: u = exp(-|t|)); other u give garbage. The
// Cephes logf polynomial for log(1 + x), x in [sqrt(1/2) - 1, sqrt(2) - 1], applied to x = u
// (exact) below sqrt(2) - 1 and to x = (1 + u) / 2 - 1 = u / 2 - 1 / 2, plus ln 2, above. Max
// relative error 1.2e-7 against log1p in double. double: log1p.
EF_HD float ef_log1p_unit(float u) {
  // Below 2^-24, log1p(u) rounds to u: those u are returned as they are, and the polynomial runs on
  // 2^-24 instead. Its u^2 terms would be subnormal otherwise (from u < 2^-63), and x86 cores run
  // subnormal arithmetic through slow microcode: softplus(beta = 100) of activations beyond +-0.44
  // (a trained SDF network's usual range) took 2.5x as long.
  constexpr float kTiny = 5.9604645e-8f;  // 2^-24
  // max(u, 2^-24) on the bit patterns (ordered as the values for u >= 0; NaN stays NaN): a float
  // select here would let GCC turn x * x into a select of u * u and a constant, which computes the
  // subnormal product anyway; fmaxf does not vectorise.
  const int32_t ub = ef_float_bits(u), tb = ef_float_bits(kTiny);
  const float uc = ef_bits_float(ub > tb ? ub : tb);
  const bool hi = uc > 0.41421356f;
  const float x = hi ? 0.5f * uc - 0.5f : uc;
  const float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  float y = p * x * z;
  const float e = hi ? 1.0f : 0.0f;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  const float r = (x + y) + e * 0.693359375f;
  return u < kTiny ? u : r;
}
EF_HD double ef_log1p_unit(double u) { return log1p(u); }

}  // namespace eyefast
