import os

import pytest
import yaml

from eyefast.data import config as C


def _write(tmp_path, text, name="config.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_cover_every_spec_key(tmp_path):
    cfg = C.load(_write(tmp_path, ""))
    spec = {
        "data": "meta_path bound eyeball_left_center eyeball_right_center eyeball_min_size eyeball_max_size "
        "fix_eyeball_center left_eye_ldm right_eye_ldm sh_scale beta dilate_ks",
        "network": "num_levels level_dim geo_feat_dim neighbor_eps",
        "light": "color intensity gamma",
        "brdf": "type min_roughness max_roughness",
        "renderer": "sample_batch_size render_n_samples chunk_size max_num_ray",
        "train": "max_steps init_level level_grow_iter warmup_steps milestones save_freq val_freq vis_freq "
        "mesh_render mesh_render_iter",
        "loss": "w_l1 w_mask w_eikonal w_sdf_mask w_reg_diff w_abdmm w_abdmm_refine w_eps_n_smooth w_eps_n w_ldm w_lpips",
    }
    d = cfg.to_dict()
    for sec, keys in spec.items():
        for k in keys.split():
            assert k in d[sec], f"{sec}.{k}"
    for k in ("name", "workspace", "device", "backbone"):
        assert k in d
    assert cfg.backbone == "volsdf" and cfg.brdf.type == "blender"
    assert cfg.ops_backend == "eyefast" and cfg.eye_model == "sphere"
    assert cfg.data.ignore_eyeball is False
    assert cfg.data.left_eye_ldm is None
    assert cfg.renderer.sample_batch_size % 64 == 0
    # meta_path "." resolves to the config's folder
    assert cfg.data.meta_path == str(tmp_path)


def test_unknown_key_lists_known_keys(tmp_path):
    with pytest.raises(C.ConfigError) as e:
        C.load(_write(tmp_path, "data:\n  bund: 1.0\n"))
    msg = str(e.value)
    assert "data.bund" in msg and "eyeball_left_center" in msg and "meta_path" in msg
    with pytest.raises(C.ConfigError) as e:
        C.load(_write(tmp_path, "nmae: x\n"))
    assert "nmae" in str(e.value) and "workspace" in str(e.value)
    with pytest.raises(C.ConfigError) as e:
        C.load(_write(tmp_path, "netwrk: {num_levels: 4}\n"))
    assert "netwrk" in str(e.value) and "network" in str(e.value)


@pytest.mark.parametrize(
    "text,key",
    [
        ("data: {bound: 'big'}", "data.bound"),
        ("data: {eyeball_left_center: [1, 2]}", "data.eyeball_left_center"),
        ("data: {left_eye_ldm: [[1,2,3],[1,2,3],[1,2,3]]}", "data.left_eye_ldm"),
        ("data: {fix_eyeball_center: 1}", "data.fix_eyeball_center"),
        ("train: {max_steps: 10.5}", "train.max_steps"),
        ("train: {milestones: 100}", "train.milestones"),
        ("loss: {w_l1: true}", "loss.w_l1"),
        ("backbone: nerf", "backbone"),
        ("ops_backend: cuda", "ops_backend"),
        ("eye_model: ellipsoid", "eye_model"),
        ("renderer: {sample_batch_size: 1000}", "renderer.sample_batch_size"),
    ],
)
def test_wrong_type_names_key(tmp_path, text, key):
    with pytest.raises(C.ConfigError) as e:
        C.load(_write(tmp_path, text + "\n"))
    assert key in str(e.value)
    assert str(tmp_path / "config.yaml") in str(e.value)


def test_int_accepted_for_float_and_types(tmp_path):
    cfg = C.load(_write(tmp_path, "data: {bound: 2, sh_scale: 1e-1}\nlight: {color: [1, 1, 1]}\n"))
    assert cfg.data.bound == 2.0 and isinstance(cfg.data.bound, float)
    assert cfg.data.sh_scale == pytest.approx(0.1)
    assert cfg.light.color == [1.0, 1.0, 1.0]


def test_cora_flow_style_with_trailing_commas(tmp_path):
    text = """
name: old_neutral
workspace: workspace/cora
data: {
    meta_path: data/old_neutral,
    bound: 1.0,
    eyeball_left_center: [-0.27, -0.19, 0.15],
    eyeball_right_center: [0.07, -0.18, 0.24,],
    left_eye_ldm: [
        [-0.3164336383342743, -0.18279047310352325, 0.19412003457546234],
        [-0.2668660283088684, -0.19570477306842804, 0.20923510193824768],
        [-0.28190210461616516, -0.17798882722854614, 0.23827917873859406],
        [-0.21853820979595184, -0.171295166015625, 0.22779381275177002],
    ],
    right_eye_ldm: [
        [0.019469600170850754, -0.1688525378704071, 0.28486162424087524],
        [0.07669556140899658, -0.19646050035953522, 0.29582440853118896],
        [0.06701074540615082, -0.16873115301132202, 0.3271498382091522],
        [0.12527015805244446, -0.1823343187570572, 0.315157413482666],
    ],
    fix_eyeball_center: false,
}
train: { max_steps: 30000, milestones: [20000, 25000,], mesh_render: true, }
loss: { w_l1: 1.0, w_ldm: 0.5, }
"""
    cfg = C.load(_write(tmp_path, text))
    assert cfg.name == "old_neutral"
    assert cfg.data.left_eye_ldm[3] == pytest.approx([-0.21853820979595184, -0.171295166015625, 0.22779381275177002])
    assert len(cfg.data.right_eye_ldm) == 4
    assert cfg.data.eyeball_right_center == [0.07, -0.18, 0.24]
    assert cfg.train.milestones == [20000, 25000]
    assert cfg.loss.w_ldm == 0.5
    # meta_path does not exist next to the config -> relative to the CWD
    import os

    assert cfg.data.meta_path == os.path.abspath("data/old_neutral")


def test_meta_path_relative_to_config_folder(tmp_path):
    (tmp_path / "cap").mkdir()
    cfg = C.load(_write(tmp_path, "data: {meta_path: cap}\n"))
    assert cfg.data.meta_path == str(tmp_path / "cap")


def test_overrides(tmp_path):
    p = _write(tmp_path, "train: {max_steps: 100}\n")
    cfg = C.load(p, ["train.max_steps=7", "train.milestones=[3, 5]", "data.ignore_eyeball=true", "name=run2",
                     "eye_model=cornea"])
    assert cfg.train.max_steps == 7 and cfg.train.milestones == [3, 5]
    assert cfg.data.ignore_eyeball is True and cfg.name == "run2" and cfg.eye_model == "cornea"
    with pytest.raises(C.ConfigError) as e:
        C.load(p, ["train.max_stepz=1"])
    assert "train.max_stepz" in str(e.value) and "level_grow_iter" in str(e.value)
    with pytest.raises(C.ConfigError) as e:
        C.load(p, ["train.max_steps=abc"])
    assert "train.max_steps" in str(e.value)
    with pytest.raises(C.ConfigError):
        C.load(p, ["train.max_steps"])


def test_attribute_assignment_validated(tmp_path):
    cfg = C.load(_write(tmp_path, ""))
    cfg.data.bound = 3
    assert cfg.data.bound == 3.0
    with pytest.raises(C.ConfigError) as e:
        cfg.data.bound = "x"
    assert "data.bound" in str(e.value)
    with pytest.raises(AttributeError) as e:
        cfg.data.nope
    assert "data.nope" in str(e.value)


def test_lpips_warns(tmp_path):
    with pytest.warns(UserWarning, match="w_lpips"):
        C.load(_write(tmp_path, "loss: {w_lpips: 0.1}\n"))


def test_save_load_round_trip(tmp_path):
    cfg = C.load(_write(tmp_path, "data: {left_eye_ldm: [[0,0,1],[0,1,0],[1,0,0],[1,1,1]], bound: 1.5}\n"),
                 ["train.milestones=[10, 20]"])
    out = tmp_path / "sub" / "saved.yaml"
    C.save(cfg, out)
    again = C.load(out)
    assert again.to_dict() == cfg.to_dict()
    assert yaml.safe_load(out.read_text())["data"]["bound"] == 1.5


def test_the_shipped_configs_load_with_a_capture_path(tiny):
    """configs/*.yaml load as they are with --set data.meta_path=...; demo.yaml is what the synthetic demo
    capture writes; the step-1 and refractive configs differ from cora.yaml where they say."""
    import glob

    from eyefast.data import synth

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    files = {os.path.basename(p): p for p in glob.glob(os.path.join(folder, "*.yaml"))}
    assert {"cora.yaml", "cora_wo_hybrid.yaml", "refractive.yaml", "demo.yaml"} <= set(files)
    cfgs = {k: C.load(p, [f"data.meta_path={tiny}"]).to_dict() for k, p in files.items()}
    for c in cfgs.values():
        assert c["data"]["meta_path"] == os.path.abspath(tiny)
    assert cfgs["cora_wo_hybrid.yaml"]["data"]["ignore_eyeball"] and not cfgs["cora.yaml"]["data"]["ignore_eyeball"]
    assert cfgs["refractive.yaml"]["eye_model"] == "cornea" and cfgs["cora.yaml"]["eye_model"] == "sphere"
    demo = synth._config_dict(synth.Head(), "demo", False)
    want = C.from_dict(demo, [f"data.meta_path={tiny}"]).to_dict()
    assert cfgs["demo.yaml"] == want
