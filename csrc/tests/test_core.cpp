// C++ tests of the torch-free core (run by ctest): the kernel bodies through the CPU launchers
// and the C API, with the built-in std::thread backend.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "eyefast/activation.h"
#include "eyefast/c_api.h"
#include "eyefast/fastmath.h"
#include "eyefast/hash_grid.h"
#include "eyefast/launch.h"
#include "eyefast/raster.h"
#include "eyefast/ray_sphere.h"
#include "eyefast/refract.h"
#include "eyefast/trace_eyes.h"

namespace {
int g_failures = 0;
#define EXPECT(cond)                                                      \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                       \
    }                                                                     \
  } while (0)

void test_parallel_for_covers_range() {
  const int64_t n = 100003;
  std::vector<int> hits(n, 0);
  struct Body {
    int* h;
    void operator()(int64_t i) const { h[i] += 1; }
  };
  eyefast::cpu::for_each(n, Body{hits.data()}, 1000);
  int bad = 0;
  for (int v : hits) bad += v != 1;
  EXPECT(bad == 0);
}

struct ModuloBody {
  template <class Acc>
  void operator()(int64_t i, const Acc& acc) const {
    acc.add(i % 3, 1.0);
  }
};

void test_accumulate_sums() {
  using Body = ModuloBody;
  float out[3] = {-1, -1, -1};
  eyefast::cpu::for_each_accumulate(300001, 3, Body{}, out, 1000);
  EXPECT(out[0] == 100001.f && out[1] == 100000.f && out[2] == 100000.f);
}

void test_ray_sphere_c_api() {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const int64_t n = 20000;
  std::vector<float> o(3 * n), d(3 * n), tn(n), tf(n), nrm(3 * n);
  std::vector<int32_t> idx(n);
  const float centers[6] = {-0.5f, 0.f, 4.f, 0.5f, 0.f, 4.f}, radii[2] = {0.4f, 0.4f};
  for (int64_t i = 0; i < n; ++i) {
    o[3 * i] = 0.1f * nd(rng), o[3 * i + 1] = 0.1f * nd(rng), o[3 * i + 2] = 0.f;
    d[3 * i] = 0.2f * nd(rng), d[3 * i + 1] = 0.2f * nd(rng), d[3 * i + 2] = 1.f;
  }
  EXPECT(eyefast_ray_sphere_intersect_f32(o.data(), d.data(), n, centers, radii, 2, tn.data(), tf.data(), idx.data(),
                                          nrm.data()) == EYEFAST_OK);
  int hits = 0, bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0) {
      bad += !(std::isinf(tn[i]) && std::isinf(tf[i]) && nrm[3 * i] == 0.f);
      continue;
    }
    ++hits;
    // The entry point lies on the chosen sphere and the normal is unit and outward-facing the ray.
    const float* c = centers + 3 * idx[i];
    float p[3], len2 = 0, nd2 = 0, ndotd = 0;
    for (int k = 0; k < 3; ++k) {
      p[k] = o[3 * i + k] + tn[i] * d[3 * i + k] - c[k];
      len2 += p[k] * p[k];
      nd2 += nrm[3 * i + k] * nrm[3 * i + k];
      ndotd += nrm[3 * i + k] * d[3 * i + k];
    }
    bad += std::fabs(std::sqrt(len2) - radii[idx[i]]) > 1e-4f || std::fabs(nd2 - 1.f) > 1e-5f || ndotd > 0 ||
           !(tf[i] >= tn[i]);
  }
  EXPECT(hits > n / 10 && hits < n);
  EXPECT(bad == 0);
  // Errors: code and a message naming the array.
  const float bad_r[2] = {0.4f, -1.f};
  EXPECT(eyefast_ray_sphere_intersect_f32(o.data(), d.data(), n, centers, bad_r, 2, tn.data(), tf.data(), idx.data(),
                                          nrm.data()) == EYEFAST_ERROR_BAD_VALUE);
  EXPECT(std::strstr(eyefast_last_error(), "radii") != nullptr);
  EXPECT(eyefast_ray_sphere_intersect_f32(nullptr, d.data(), n, centers, radii, 2, tn.data(), tf.data(), idx.data(),
                                          nrm.data()) == EYEFAST_ERROR_NULL_POINTER);
  EXPECT(std::strstr(eyefast_last_error(), "origins") != nullptr);
}

void test_refract_c_api() {
  const float n1 = 1.f, n2 = 1.5f;
  const float dir[3] = {0.f, 0.f, -1.f}, normal[3] = {0.f, 0.f, 1.f}, eta = n1 / n2;
  float out[3], refl;
  uint8_t tir;
  EXPECT(eyefast_refract_f32(dir, normal, &eta, 1, out, &refl, &tir) == EYEFAST_OK);
  const float r0 = ((n1 - n2) / (n1 + n2)) * ((n1 - n2) / (n1 + n2));
  EXPECT(std::fabs(refl - r0) < 1e-7f && tir == 0 && out[2] == -1.f);
  // Total internal reflection from inside glass at 60 degrees.
  const float d2[3] = {std::sin(1.0472f), 0.f, -std::cos(1.0472f)}, eta2 = n2 / n1;
  EXPECT(eyefast_refract_f32(d2, normal, &eta2, 1, out, &refl, &tir) == EYEFAST_OK);
  EXPECT(tir == 1 && refl == 1.f && std::fabs(out[2] - std::cos(1.0472f)) < 1e-6f);
  const float zero[3] = {0.f, 0.f, 0.f};
  EXPECT(eyefast_refract_f32(zero, normal, &eta, 1, out, &refl, &tir) == EYEFAST_ERROR_BAD_VALUE);
  EXPECT(std::strstr(eyefast_last_error(), "dirs") != nullptr);
}
void test_trace_eyes_c_api() {
  // One eye of radius 1 at the origin gazing at +z (model-eye ratios), one at x = 3 with ior < 1.
  const float eyes[24] = {0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 2.f, 0.6475f, 0.4608f, 0.4917f, 0.3083f, 1.336f,
                          3.f, 0.f, 0.f, 1.f, 0.f, 0.f, 1.f, 0.6475f, 0.4608f, 0.4917f, 0.3083f, 0.7f};
  const float o[12] = {0.f, 0.f, 5.f, 0.f, 0.9f, 5.f, 0.f, 5.f, 5.f, 3.48f, 0.f, 5.f};
  const float d[12] = {0.f, 0.f, -2.f, 0.f, 0.f, -1.f, 0.f, 0.f, -1.f, 0.f, 0.f, -1.f};
  float t[4], normal[12], refr[12], fres[4], t_iris[4], uv[8];
  int32_t eye[4], region[4];
  EXPECT(eyefast_trace_eyes_f32(o, d, 4, eyes, 2, t, eye, region, normal, refr, fres, t_iris, uv) == EYEFAST_OK);
  // Ray 0: the apex (z = 1.1083) at normal incidence: iris centre, R = ((n - 1) / (n + 1))^2.
  const float r0 = (0.336f / 2.336f) * (0.336f / 2.336f);
  EXPECT(region[0] == 2 && eye[0] == 0 && std::fabs(t[0] - (5.f - 1.1083f) / 2.f) < 1e-5f);
  EXPECT(std::fabs(fres[0] - r0) < 1e-6f && std::fabs(refr[2] + 1.f) < 1e-6f && std::fabs(t_iris[0] - 0.3083f) < 1e-5f);
  EXPECT(std::fabs(uv[0]) < 1e-6f && std::fabs(uv[1]) < 1e-6f);
  // Ray 1: sclera; ray 2: miss; ray 3: oblique on the ior < 1 cornea: total internal reflection.
  EXPECT(region[1] == 1 && fres[1] == 0.f && std::isinf(t_iris[1]));
  EXPECT(region[2] == 0 && eye[2] == -1 && std::isinf(t[2]) && normal[6] == 0.f);
  EXPECT(region[3] == 3 && eye[3] == 1 && fres[3] == 1.f);
  float bad[24];
  std::memcpy(bad, eyes, sizeof(bad));
  bad[12 + 11] = 0.f;  // eye 1: ior
  EXPECT(eyefast_trace_eyes_f32(o, d, 4, bad, 2, t, eye, region, normal, refr, fres, t_iris, uv) ==
         EYEFAST_ERROR_BAD_VALUE);
  EXPECT(std::strstr(eyefast_last_error(), "ior") != nullptr && std::strstr(eyefast_last_error(), "row 1") != nullptr);
}

void test_rasterize_c_api() {
  // A full-screen quad at depth 2 (two triangles sharing the diagonal) and a small near triangle.
  const int32_t H = 9, W = 13;
  const float verts[] = {-2, -2, 0, 2,  2, -2, 0, 2,  2, 2, 0, 2,  -2, 2, 0, 2,  // quad, w = 2
                         0, 0, 0, 1,    0.5f, 0, 0, 1, 0, 0.5f, 0, 1};          // NDC (0,0),(.5,0),(0,.5)
  const int32_t faces[] = {0, 1, 2, 0, 2, 3, 4, 5, 6};
  std::vector<int32_t> p2f(H * W, 99);
  std::vector<float> bary(3 * H * W, -1.f), depth(H * W, -1.f);
  EXPECT(eyefast_rasterize_f32(verts, 7, faces, 3, H, W, p2f.data(), bary.data(), depth.data()) == EYEFAST_OK);
  int quad = 0, near = 0, bad = 0;
  for (int p = 0; p < H * W; ++p) {
    quad += p2f[p] == 0 || p2f[p] == 1;
    near += p2f[p] == 2;
    bad += p2f[p] < 0 || std::fabs(bary[3 * p] + bary[3 * p + 1] + bary[3 * p + 2] - 1.f) > 1e-6f;
    bad += std::fabs(depth[p] - (p2f[p] == 2 ? 1.f : 2.f)) > 1e-6f;
  }
  EXPECT(bad == 0 && near > 0 && quad + near == H * W);
  // Pixel (7, 5) has its centre at NDC (2 * 7.5 / 13 - 1, 2 * 5.5 / 9 - 1) = (0.154, 0.222): inside the near one.
  EXPECT(p2f[5 * W + 7] == 2 && p2f[0] != 2);
  const int32_t bad_faces[] = {0, 1, 2, 0, 2, 7};
  EXPECT(eyefast_rasterize_f32(verts, 7, bad_faces, 2, H, W, p2f.data(), bary.data(), depth.data()) ==
         EYEFAST_ERROR_BAD_VALUE);
  EXPECT(std::strstr(eyefast_last_error(), "faces") != nullptr);
  EXPECT(eyefast_rasterize_f32(verts, 7, faces, 3, -1, W, p2f.data(), bary.data(), depth.data()) ==
         EYEFAST_ERROR_BAD_SIZE);
  EXPECT(std::strstr(eyefast_last_error(), "height") != nullptr);
}
// fastmath.h's float exp and log1p against libm in double, on a dense sweep of their domains; the
// softplus launcher against the formula in double.
void test_fastmath_and_softplus() {
  double worst_exp = 0, worst_log1p = 0;
  int nonpos_differs = 0;
  for (int k = 0; k <= 2000000; ++k) {
    const float x = -87.0f + 175.0f * static_cast<float>(k) / 2000000.0f;  // the normal range of exp
    const double e = std::exp(static_cast<double>(x));
    worst_exp = std::fmax(worst_exp, std::fabs(eyefast::ef_exp(x) - e) / e);
    const float xn = -90.0f * static_cast<float>(k) / 2000000.0f;  // [-90, 0]: bitwise as ef_exp
    nonpos_differs += eyefast::ef_exp_nonpos(xn) != eyefast::ef_exp(xn);
    const float u = static_cast<float>(k) / 2000000.0f;  // [0, 1]
    if (u > 0) {
      const double l = std::log1p(static_cast<double>(u));
      worst_log1p = std::fmax(worst_log1p, std::fabs(eyefast::ef_log1p_unit(u) - l) / l);
    }
  }
  EXPECT(worst_exp < 1e-7);
  EXPECT(nonpos_differs == 0);
  EXPECT(std::isnan(eyefast::ef_exp_nonpos(NAN)) && eyefast::ef_exp_nonpos(-100.0f) == 0.0f);
  EXPECT(worst_log1p < 2e-7);
  EXPECT(eyefast::ef_exp(-100.0f) == 0.0f && std::isinf(eyefast::ef_exp(100.0f)));
  EXPECT(std::isnan(eyefast::ef_exp(NAN)));
  EXPECT(eyefast::ef_log1p_unit(0.0f) == 0.0f);

  const int64_t n = 100001;
  std::vector<float> z(n), y(n, NAN);
  for (int64_t i = 0; i < n; ++i) z[i] = -1.0f + 2.0f * static_cast<float>(i) / static_cast<float>(n - 1);
  const eyefast::SoftplusParams<float> p{100.0f, 20.0f};
  eyefast::cpu::softplus_forward(z.data(), n, p, y.data());
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(z[i] * 100.0f);
    const double ref = t > 20.0 ? z[i] : std::log1p(std::exp(t)) / 100.0;
    if (ref > 1e-30) worst = std::fmax(worst, std::fabs(y[i] - ref) / ref);
  }
  EXPECT(worst < 1e-6);
}

// The CUDA launchers' shapes, run on the host: the hash grid's forward with the Jacobian one point and
// level at a time (level-major, as the CUDA launcher's threads) with J stored feature-major, and the
// Jacobian contractions reading that layout, against one point at a time with J point-major (the CPU's).
void test_hash_grid_cuda_shapes_on_the_host() {
  using namespace eyefast;
  HashGridLayout L{};
  L.n_levels = 4;
  L.n_features = 2;
  L.n_active = 3;  // the last level zero
  L.table_size = 1u << 10;
  L.smoothstep = true;
  for (int l = 0; l < L.n_levels; ++l) L.scale[l] = 4.0 * std::pow(2.0, l) - 1.0;
  hash_grid_finish_layout(L);
  const int64_t n = 257, m = static_cast<int64_t>(L.n_levels) * L.n_features, stride = 3 + m + 1;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  std::vector<double> x(3 * n), table(static_cast<size_t>(L.n_levels) * L.table_size * L.n_features);
  for (auto& v : x) v = ud(rng);
  for (auto& v : table) v = ud(rng) - 0.5;
  std::vector<double> u_a(n * stride, NAN), u_b(n * stride, NAN), j_a(n * m * 3, NAN), j_b(n * m * 3, NAN);
  // the CPU's shape: one point at every level, J point-major
  HashGridForwardJacobian<double> fa{x.data(), table.data(), L, u_a.data(), stride, true, j_a.data(), stride - 1};
  for (int64_t i = 0; i < n; ++i) fa(i);
  // the CUDA launcher's: thread k = l * n + i, J feature-major
  HashGridForwardJacobian<double> fb{x.data(), table.data(), L, u_b.data(), stride, true, j_b.data(), stride - 1};
  fb.js_i = 1;
  fb.js_j = 3 * n;
  fb.js_k = n;
  for (int64_t k = 0; k < n * L.n_levels; ++k) {
    const int l = static_cast<int>(k / n);
    const int64_t i = k - static_cast<int64_t>(l) * n;
    if (l == 0) fb.begin(i);
    if (l < L.n_active) fb.template at_level<-1>(i, l, hash_grid_level<double>(L, l, fb.features()));
    else fb.zero(i, l);
  }
  int differ = 0;
  for (int64_t q = 0; q < n * stride; ++q) differ += !(u_a[q] == u_b[q]);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j)
      for (int k = 0; k < 3; ++k) differ += !(j_a[(i * m + j) * 3 + k] == j_b[i + j * 3 * n + k * n]);
  EXPECT(differ == 0);
  // J^T g and J w through both layouts
  std::vector<double> g(n * stride), w(3 * n), out_a(3 * n), out_b(3 * n), row_a(n * stride), row_b(n * stride);
  for (auto& v : g) v = ud(rng) - 0.5;
  for (auto& v : w) v = ud(rng) - 0.5;
  HashGridJacobianApply<double, true> ta{j_a.data(), m, g.data(), stride, 3, out_a.data()};
  HashGridJacobianApply<double, true> tb{j_b.data(), m, g.data(), stride, 3, out_b.data(), -1, 1, 3 * n, n};
  HashGridJacobianApply<double, false> pa{j_a.data(), m, w.data(), stride, 3, row_a.data(), stride - 1};
  HashGridJacobianApply<double, false> pb{j_b.data(), m, w.data(), stride, 3, row_b.data(), stride - 1, 1, 3 * n, n};
  for (int64_t i = 0; i < n; ++i) {
    ta(i);
    tb(i);
    pa(i);
    pb(i);
  }
  differ = 0;
  for (int64_t q = 0; q < 3 * n; ++q) differ += !(out_a[q] == out_b[q]);
  for (int64_t q = 0; q < n * stride; ++q) differ += !(row_a[q] == row_b[q]);
  EXPECT(differ == 0);
}
}  // namespace

int main() {
  test_fastmath_and_softplus();
  test_hash_grid_cuda_shapes_on_the_host();
  test_parallel_for_covers_range();
  test_accumulate_sums();
  test_ray_sphere_c_api();
  test_refract_c_api();
  test_trace_eyes_c_api();
  test_rasterize_c_api();
  if (g_failures) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("all core checks passed (CUDA launchers linked: %d)\n", eyefast_has_cuda());
  return 0;
}
