"""``head.glb``: the face and eyes as one glTF 2.0 binary with PBR materials (trimesh writes it; the
tangents and the KHR material extensions are patched in afterwards)."""

from __future__ import annotations

import json

import numpy as np

from ..scene.shading import CORNEA_ROUGHNESS, EYE_ROUGHNESS, EYE_SPECULAR, IRIS_ROUGHNESS
from .files import CORNEA_IOR, GLTF_IOR, ExportError, pil_image

__all__ = ["write_glb"]


def write_glb(path, V, Fc, UV, vn, tang, u8, nts_u8, eyes, max_rough) -> None:
    import trimesh
    from trimesh.visual import TextureVisuals
    from trimesh.visual.material import PBRMaterial

    def mesh_of(verts, faces, uvs, normals, material, tangents=None):
        m = trimesh.Trimesh(vertices=verts, faces=faces, process=False,
                            visual=TextureVisuals(uv=uvs, material=material))
        m.vertex_normals = normals
        if tangents is not None:
            m.vertex_attributes["TANGENT"] = tangents.astype(np.float32)
        return m

    # metallicRoughness: R unused (1), G roughness, B metallic 0, A specular (KHR_materials_specular)
    h, w = u8["roughness"].shape[:2]
    mr = np.zeros((h, w, 4), dtype=np.uint8)
    mr[..., 0] = 255
    mr[..., 1] = u8["roughness"].reshape(h, w)
    mr[..., 3] = u8["specular"].reshape(h, w)
    face_mat = PBRMaterial(name="face", baseColorTexture=pil_image(u8["diffuse"]), metallicRoughnessTexture=pil_image(mr),
                           normalTexture=pil_image(nts_u8), metallicFactor=0.0, roughnessFactor=1.0)
    scene = trimesh.Scene()
    scene.add_geometry(mesh_of(V, Fc, UV, vn, face_mat, tang), geom_name="face", node_name="face")
    for side in ("left", "right"):
        e = eyes[side]
        mat = PBRMaterial(name=f"{side}_eye", baseColorTexture=pil_image(e["tex"]["diffuse"]), metallicFactor=0.0,
                          roughnessFactor=EYE_ROUGHNESS)
        scene.add_geometry(mesh_of(e["verts"], e["faces"], e["uvs"], e["normals"], mat),
                           geom_name=f"{side}_eye", node_name=f"{side}_eye")
        if "cornea" in e:
            ir, cm = e["cornea"]["iris"], e["cornea"]["mesh"]
            imat = PBRMaterial(name=f"{side}_iris", baseColorTexture=pil_image(ir["tex"]["diffuse"]), metallicFactor=0.0,
                               roughnessFactor=IRIS_ROUGHNESS)
            scene.add_geometry(mesh_of(ir["verts"], ir["faces"], ir["uvs"], ir["normals"], imat),
                               geom_name=f"{side}_iris", node_name=f"{side}_iris")
            cmat = PBRMaterial(name=f"{side}_cornea", baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                               roughnessFactor=CORNEA_ROUGHNESS)
            cmesh = trimesh.Trimesh(vertices=cm["verts"], faces=cm["faces"], process=False)
            cmesh.visual.material = cmat
            cmesh.vertex_normals = cm["normals"]
            scene.add_geometry(cmesh, geom_name=f"{side}_cornea", node_name=f"{side}_cornea")
    data = scene.export(file_type="glb", include_normals=True)
    with open(path, "wb") as fh:
        fh.write(_patch_glb(data))


def _patch_glb(data: bytes) -> bytes:
    """Post-processes trimesh's GLB: the custom ``_TANGENT`` attribute becomes the standard ``TANGENT``,
    materials get KHR_materials_specular (face: the A channel of its metallicRoughness texture;
    eyes: factor 0.2; irises: 0) and KHR_materials_ior (1.788, so F0 = 0.08 * specular as in the
    BRDF); corneas get KHR_materials_transmission (clear) with KHR_materials_ior 1.336."""
    import struct

    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67:
        raise ExportError("internal: trimesh did not write a GLB")
    off = 12
    chunks = []
    while off < length:
        clen, ctype = struct.unpack_from("<II", data, off)
        chunks.append([ctype, data[off + 8: off + 8 + clen]])
        off += 8 + clen
    js = json.loads(chunks[0][1].decode("utf-8"))
    for m in js.get("meshes", []):
        for p in m.get("primitives", []):
            a = p.get("attributes", {})
            if "_TANGENT" in a:
                a["TANGENT"] = a.pop("_TANGENT")
            # bufferView targets (a hint of the Khronos validator): vertex data / index data
            views = js.get("bufferViews", [])
            accs = js.get("accessors", [])
            for acc, target in [(i, 34962) for i in a.values()] + [(p.get("indices"), 34963)]:
                if acc is not None and "bufferView" in accs[acc]:
                    views[accs[acc]["bufferView"]].setdefault("target", target)
    used = set(js.get("extensionsUsed", []))
    for mat in js.get("materials", []):
        ext = mat.setdefault("extensions", {})
        pbr = mat.get("pbrMetallicRoughness", {})
        name = mat.get("name", "")
        if name == "face" and "metallicRoughnessTexture" in pbr:
            ext["KHR_materials_specular"] = {"specularFactor": 1.0,
                                             "specularTexture": dict(pbr["metallicRoughnessTexture"])}
        elif name.endswith("_cornea"):  # clear, refracting: transmission with the aqueous index
            ext["KHR_materials_transmission"] = {"transmissionFactor": 1.0}
            used.add("KHR_materials_transmission")
        elif name.endswith("_iris"):  # diffuse only
            ext["KHR_materials_specular"] = {"specularFactor": 0.0}
        else:
            ext["KHR_materials_specular"] = {"specularFactor": EYE_SPECULAR}
        ext["KHR_materials_ior"] = {"ior": CORNEA_IOR if name.endswith("_cornea") else GLTF_IOR}
        pbr.setdefault("metallicFactor", 0.0)
        mat["pbrMetallicRoughness"] = pbr
        used |= {"KHR_materials_specular", "KHR_materials_ior"}
    js["extensionsUsed"] = sorted(used)
    js.setdefault("asset", {})["generator"] = "eyefast.export (trimesh)"
    jb = json.dumps(js, separators=(",", ":")).encode("utf-8")
    jb += b" " * ((4 - len(jb) % 4) % 4)
    chunks[0][1] = jb
    body = b"".join(struct.pack("<II", len(c[1]), c[0]) + c[1] for c in chunks)
    return struct.pack("<III", magic, version, 12 + len(body)) + body
