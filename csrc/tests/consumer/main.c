/* A plain C program calling eyefast's C API: one ray into one eyeball. */
#include <math.h>
#include <stdio.h>

#include <eyefast/c_api.h>

int main(void) {
  const float origin[3] = {0.f, 0.f, 0.f}, dir[3] = {0.f, 0.f, 1.f};
  const float center[3] = {0.f, 0.f, 5.f}, radius = 1.f;
  float t_near, t_far, normal[3];
  int32_t index;
  int rc = eyefast_ray_sphere_intersect_f32(origin, dir, 1, center, &radius, 1, &t_near, &t_far, &index, normal);
  if (rc != EYEFAST_OK) {
    fprintf(stderr, "error %d: %s\n", rc, eyefast_last_error());
    return 1;
  }
  printf("t_near=%g t_far=%g index=%d normal=(%g,%g,%g)\n", t_near, t_far, index, normal[0], normal[1], normal[2]);
  return (fabsf(t_near - 4.f) < 1e-6f && fabsf(t_far - 6.f) < 1e-6f && index == 0 && normal[2] == -1.f) ? 0 : 2;
}
