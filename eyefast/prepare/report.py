"""The report of ``eyefast prepare``: ``OUT/prepare/report.json`` (frames kept and dropped with the reason,
registered fraction, reprojection error, landmark residuals, the time of each stage) and
``OUT/prepare/report.png``, a contact sheet: frames with the foreground (the background dimmed), the eye
masks (left red, right blue), the hair mask (yellow) and the 3D eye landmarks projected (dots), and the
cameras seen from above (+z, the face's forward direction, points down the panel)."""

from __future__ import annotations

import os

import numpy as np

from .common import load_record, read_image, write_json

STAGES = ("frames", "poses", "masks", "eyes", "config")
LEFT, RIGHT, HAIR = (235, 60, 60), (60, 120, 255), (250, 210, 40)


def summary(out: str) -> dict:
    recs = {s: load_record(out, s) for s in STAGES}
    rep = {"out": os.path.abspath(out), "stages": {}}
    for s, r in recs.items():
        if r is not None:
            rep["stages"][s] = {"seconds": r.get("seconds"), "time": r.get("time")}
    fr, po, ma, ey, co = (recs[s] for s in STAGES)
    if fr:
        dropped = dict(fr.get("dropped", {}))
        if po:
            dropped.update(po.get("dropped", {}))
        rep["frames"] = {"source": fr.get("source"), "candidates": fr.get("candidates"),
                         "kept": po["registered"] if po else fr["frames"], "dropped": dropped,
                         "size": fr.get("size"), "every": fr.get("every"), "face": fr.get("face")}
    if po:
        rep["poses"] = {k: po.get(k) for k in ("registered_fraction", "reprojection_error_px", "matching", "points",
                                                "foreground_points", "camera", "pinhole", "undistorted",
                                                "cameras_inside_bound")}
        hf = po.get("head_frame", {})
        rep["head_frame"] = {k: v for k, v in hf.items() if k not in ("rotation", "translation")}
    if ma:
        rep["masks"] = {"kinds": ma.get("kinds"), "face": ma.get("face"),
                        "mean_foreground": float(np.mean(list(ma["foreground"].values()))) if ma.get("foreground") else None,
                        "frames_with_left_eye": sum(1 for v in ma.get("left_eye_pixels", {}).values() if v > 0),
                        "frames_with_right_eye": sum(1 for v in ma.get("right_eye_pixels", {}).values() if v > 0),
                        "projected_landmarks": ma.get("projected_landmarks"), "specular_bfm": ma.get("specular_bfm")}
    if ey:
        if "skipped" in ey:
            rep["eyes"] = {"skipped": ey["skipped"]}
        else:
            rep["eyes"] = {k: ey.get(k) for k in ("eyeball_left_center", "eyeball_right_center", "left_eye_ldm",
                                                  "right_eye_ldm", "threshold_px", "eye_radius")}
            rep["landmark_residuals"] = {e: {k: ey[e].get(k) for k in ("views", "inlier_views", "residual_rms_px",
                                                                      "rms_ray_distance")}
                                         for e in ("left_eye", "right_eye")}
    if po and po.get("head_frame", {}).get("method") == "face":
        rep.setdefault("landmark_residuals", {})["face_landmarks_median_rms_px"] = po["head_frame"].get("landmark_rms_px")
    if co:
        rep["config"] = {"config": co.get("config"), "config_quick": co.get("config_quick"), "eyes": co.get("eyes")}
    return rep


def _thumb(out: str, name: str, K, c2w, size: int, eyes):
    from PIL import Image, ImageDraw

    img_p = os.path.join(out, "prepare", "undistorted", name + ".png")
    if not os.path.isfile(img_p):
        img_p = os.path.join(out, "image", name + ".png")
    img = read_image(img_p).astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    H, W = img.shape[:2]

    def mask(kind):
        p = os.path.join(out, kind, name + ".png")
        if not os.path.isfile(p):
            return None
        m = read_image(p)
        return (m[..., 0] if m.ndim == 3 else m) >= 128

    fg = mask("mask")
    if fg is not None:
        img = np.where(fg[..., None], img, img * 0.3)
    for kind, col in (("hair_mask", HAIR), ("leye_mask", LEFT), ("reye_mask", RIGHT)):
        m = mask(kind)
        if m is not None:
            img = np.where(m[..., None], 0.45 * img + 0.55 * np.array(col, np.float32), img)
    s = size / max(H, W)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((max(1, int(W * s)), max(1, int(H * s))),
                                                                       Image.LANCZOS)
    draw = ImageDraw.Draw(im)
    if eyes is not None:
        w2c = np.linalg.inv(c2w)
        for key, col in (("left_eye_ldm", LEFT), ("right_eye_ldm", RIGHT)):
            P = np.asarray(eyes[key])
            pc = P @ w2c[:3, :3].T + w2c[:3, 3]
            if (pc[:, 2] <= 0).any():
                continue
            uv = pc[:, :2] / pc[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
            for x, y in uv * s:
                draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], outline=(255, 255, 255), fill=col)
    draw.text((4, 2), name, fill=(255, 255, 255))
    return im


def _top_view(out: str, c2w, size: int, eyes):
    """The cameras from above: x to the right, +z (the face's forward direction) down the panel."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), (24, 24, 28))
    draw = ImageDraw.Draw(im)
    pts_p = os.path.join(out, "prepare", "points.npz")
    pts = np.load(pts_p)["xyz"] if os.path.isfile(pts_p) else np.zeros((0, 3))
    ext = max(1.2, float(np.abs(c2w[:, :3, 3][:, [0, 2]]).max()) * 1.1 if len(c2w) else 1.2)
    sc = size / (2 * ext)

    def xy(p):
        return ((p[..., 0] + ext) * sc, (p[..., 2] + ext) * sc)

    b0, b1 = xy(np.array([-1.0, 0, -1.0])), xy(np.array([1.0, 0, 1.0]))
    draw.rectangle([b0[0], b0[1], b1[0], b1[1]], outline=(90, 90, 100))
    for x, y in zip(*xy(pts[np.abs(pts).max(-1) < ext])):
        draw.point((x, y), fill=(150, 150, 150))
    for M in c2w:
        c = M[:3, 3]
        f = c + 0.25 * M[:3, 2]
        (x0, y0), (x1, y1) = xy(c), xy(f)
        draw.line([x0, y0, x1, y1], fill=(120, 220, 120))
        draw.ellipse([x0 - 2, y0 - 2, x0 + 2, y0 + 2], fill=(120, 220, 120))
    if eyes is not None:
        for key, col in (("eyeball_left_center", LEFT), ("eyeball_right_center", RIGHT)):
            x, y = xy(np.asarray(eyes[key]) * float(eyes.get("bound", 1.0)))
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=col)
    draw.text((4, 2), "cameras from above (+z down)", fill=(255, 255, 255))
    return im


def write(out: str, n_thumbs: int = 8, thumb: int = 320) -> dict:
    """Writes ``report.json`` and (once cameras exist) ``report.png``; returns the report."""
    from PIL import Image

    rep = summary(out)
    d = os.path.join(out, "prepare")
    tf = os.path.join(out, "transforms.json")
    if os.path.isfile(tf):
        from .common import load_cameras

        meta, names, K, c2w = load_cameras(out)
        ey = load_record(out, "eyes")
        eyes = ey if ey is not None and "left_eye_ldm" in ey else None
        sel = np.unique(np.linspace(0, len(names) - 1, min(n_thumbs, len(names))).round().astype(int))
        tiles = [_thumb(out, names[i], K, c2w[i], thumb, eyes) for i in sel]
        tiles.append(_top_view(out, c2w, thumb, eyes))
        cols = min(3, len(tiles))
        rows = (len(tiles) + cols - 1) // cols
        th = max(t.size[1] for t in tiles)
        sheet = Image.new("RGB", (cols * thumb, rows * th), (0, 0, 0))
        for k, t in enumerate(tiles):
            sheet.paste(t, ((k % cols) * thumb, (k // cols) * th))
        tmp = os.path.join(d, f".report.png.tmp-{os.getpid()}")
        sheet.save(tmp, format="PNG")
        os.replace(tmp, os.path.join(d, "report.png"))
        rep["report_png"] = os.path.join(d, "report.png")
    write_json(os.path.join(d, "report.json"), rep)
    return rep
