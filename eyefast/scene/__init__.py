"""The scene: the hybrid head model (face SDF, eyes, material, radiance head), its shading and its
volume renderer (docs/method.md sections 2-4)."""
