"""Run configuration: CoRA's ``config.yaml`` keys, validated, with defaults.

A config file is YAML.  CoRA's own files often use flow style with trailing commas,
e.g. ``data: { bound: 1.0, left_eye_ldm: [[...], ...], }``; pyyaml parses those.
Floats written as ``1e-4`` (which plain YAML 1.1 reads as a *string*) are read as
floats here.

Layout (every key is optional; missing keys take the defaults below)::

    name: str            run name                                  "eyefast"
    workspace: str       output root (checkpoints go to workspace/name) "workspace"
    device: str|int      "cuda", "cuda:0", "cpu", a CUDA index, or "auto"
                         (eyefast addition: CUDA when available)   "auto"
    backbone: str        density model; only "volsdf"              "volsdf"
    ops_backend: str     eyefast addition: "eyefast" (compiled kernels) or
                         "reference" (pure PyTorch)                "eyefast"
    eye_model: str       eyefast addition: "sphere" (CoRA) or "cornea" (SPEC 8) "sphere"
    data:     see DATA_DEFAULTS
    network:  see NETWORK_DEFAULTS
    light:    see LIGHT_DEFAULTS
    brdf:     see BRDF_DEFAULTS
    renderer: see RENDERER_DEFAULTS
    train:    see TRAIN_DEFAULTS
    loss:     see LOSS_DEFAULTS

Default values are chosen for a CoRA-like run on a head about 1 world unit tall
inside ``[-bound, bound]^3`` with ``bound = 1`` (the scale :mod:`eyefast.synth` uses);
real captures carry their own config.

Units: ``data.eyeball_left_center`` / ``eyeball_right_center`` are in units of the
bound (world = c * bound; the grid sees (c + 1) / 2); ``eyeball_min_size`` /
``eyeball_max_size`` and the landmarks ``left_eye_ldm`` / ``right_eye_ldm`` are in
world units.  "left" means the eye CoRA's file calls left; see :mod:`eyefast.synth`
for the convention of the synthetic data.

``data.meta_path`` (the capture folder, or a ``transforms*.json`` inside it): a
relative path is resolved against the folder of the config file when it exists
there, otherwise against the current working directory; after :func:`load` it is an
absolute path.  ``loss.w_lpips`` is accepted, but the LPIPS network weights cannot be
downloaded here, so a nonzero value only produces a warning that the term is skipped.
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from typing import Any, Iterable

import yaml

__all__ = ["Config", "ConfigError", "load", "save", "from_dict", "defaults", "SCHEMA"]


class ConfigError(ValueError):
    """A config file or override is malformed: unknown key, wrong type, bad value."""


# --------------------------------------------------------------------------- schema
# Each entry: key -> (kind, default).  Kinds:
#   "str", "name" (one folder name), "int", "float", "bool", "device" (auto, cpu, cuda, cuda:N or N),
#   "vec3" (3 floats), "ldm" (4x3 floats or null), "int_list" (list of ints), ("choice", (...)).
# Every numeric key also has a range in RANGES (below).

TOP_DEFAULTS = {
    "name": ("name", "eyefast"),
    "workspace": ("str", "workspace"),
    "device": ("device", "auto"),
    "backbone": (("choice", ("volsdf",)), "volsdf"),
    "ops_backend": (("choice", ("eyefast", "reference")), "eyefast"),
    "eye_model": (("choice", ("sphere", "cornea")), "sphere"),
}

DATA_DEFAULTS = {
    # capture folder (or transforms json); "." = the config file's folder
    "meta_path": ("str", "."),
    "bound": ("float", 1.0),
    # centres in units of the bound; defaults: eyes of a ~1 unit tall head facing +z
    "eyeball_left_center": ("vec3", [0.115, 0.02, 0.27]),
    "eyeball_right_center": ("vec3", [-0.115, 0.02, 0.27]),
    # radius range in world units (a 12 mm globe on a ~240 mm head is ~0.05 units)
    "eyeball_min_size": ("float", 0.04),
    "eyeball_max_size": ("float", 0.06),
    "fix_eyeball_center": ("bool", False),
    # eyefast additions for eye_model "cornea": the gaze of both eyes (world direction; the
    # converted convention has the face looking along +z) and whether it stays fixed (default:
    # fixed; a learned static gaze trades off against the iris texture, see README)
    "eye_gaze": ("vec3", [0.0, 0.0, 1.0]),
    "fix_eye_gaze": ("bool", True),
    "left_eye_ldm": ("ldm", None),
    "right_eye_ldm": ("ldm", None),
    "sh_scale": ("float", 1.0),
    "beta": ("float", 10.0),
    "dilate_ks": ("int", 3),
    # eyefast addition: CoRA's "wo-hybrid" step 1 (scene = face alone)
    "ignore_eyeball": ("bool", False),
}

NETWORK_DEFAULTS = {
    "num_levels": ("int", 16),
    "level_dim": ("int", 2),
    "geo_feat_dim": ("int", 15),
    "neighbor_eps": ("float", 0.005),
}

LIGHT_DEFAULTS = {
    "color": ("vec3", [1.0, 1.0, 1.0]),
    # the flashlight is ~2-3 units from the face: 1/d^2 * 1/pi needs ~20 for mid-grey
    "intensity": ("float", 20.0),
    "gamma": ("float", 2.2),
}

BRDF_DEFAULTS = {
    "type": (("choice", ("blender",)), "blender"),
    "min_roughness": ("float", 0.1),
    "max_roughness": ("float", 0.8),
}

RENDERER_DEFAULTS = {
    "sample_batch_size": ("int", 262144),  # samples per step, multiple of 64
    "render_n_samples": ("int", 1024),
    "chunk_size": ("int", 16384),
    "max_num_ray": ("int", 16384),
    # eyefast additions: occupancy-grid cells per axis (SPEC: 128) and its refresh period
    "grid_resolution": ("int", 128),
    "grid_update_freq": ("int", 16),
    # eyefast addition: "surface" = deferred shading at the expected surface point of each ray
    # (material, BRDF, radiance head once per ray); "sample" = at every sample, then composited
    "shading": (("choice", ("surface", "sample")), "surface"),
}

TRAIN_DEFAULTS = {
    "max_steps": ("int", 20000),
    "init_level": ("int", 4),
    "level_grow_iter": ("int", 1000),
    "warmup_steps": ("int", 500),
    "milestones": ("int_list", [10000, 15000]),
    "save_freq": ("int", 5000),
    "val_freq": ("int", 2500),
    "vis_freq": ("int", 2500),
    "mesh_render": ("bool", True),
    "mesh_render_iter": ("int", 15000),
    # eyefast addition: marching-cubes resolution of the stage-2 face mesh (SPEC: 256)
    "mesh_resolution": ("int", 256),
    # eyefast additions: Adam learning rate (SPEC: 1e-3) and the seed of every random draw
    "lr": ("float", 1e-3),
    "seed": ("int", 0),
    # eyefast addition: each step, the gradient of an eye centre (and of the eye radius) is clipped to
    # this many times its running RMS (Adam's second moment); 0 turns it off. See Trainer._clip_eye_grads.
    "eye_grad_clip": ("float", 3.0),
    # eyefast addition: steps between reads of the training scalars from the device (scalars.csv, the
    # progress bar, the check for non-finite losses and gradients); reading them is a host sync on a GPU
    "log_every": ("int", 10),
    # eyefast additions: camera refinement, a learned SE(3) correction per training frame (cameras from
    # structure from motion are good, not perfect); its Adam learning rate, the steps of its linear
    # warm-up from 0 (it then follows the milestones), the step from which they are frozen (0: they train
    # until stage 2), see eyefast/scene/cameras.py
    "camera_refine": ("bool", False),
    "camera_lr": ("float", 1.5e-4),
    "camera_warmup": ("int", 200),
    "camera_stop": ("int", 0),
}

LOSS_DEFAULTS = {
    "w_l1": ("float", 1.0),
    "w_mask": ("float", 0.1),
    "w_eikonal": ("float", 0.1),
    "w_sdf_mask": ("float", 0.1),
    "w_reg_diff": ("float", 0.01),
    "w_abdmm": ("float", 0.1),
    "w_abdmm_refine": ("float", 0.1),
    "w_eps_n_smooth": ("float", 0.1),
    "w_eps_n": ("float", 0.01),
    "w_ldm": ("float", 0.1),
    "w_lpips": ("float", 0.0),
    # eyefast addition: the L2 penalty on the camera corrections (train.camera_refine)
    "w_camera": ("float", 1e-3),
}

SECTIONS = {
    "data": DATA_DEFAULTS,
    "network": NETWORK_DEFAULTS,
    "light": LIGHT_DEFAULTS,
    "brdf": BRDF_DEFAULTS,
    "renderer": RENDERER_DEFAULTS,
    "train": TRAIN_DEFAULTS,
    "loss": LOSS_DEFAULTS,
}

#: section name (or "" for top level) -> {key: (kind, default)}
SCHEMA = {"": TOP_DEFAULTS, **SECTIONS}


# --------------------------------------------------------------------------- ranges
class Range:
    """The values a numeric key accepts: ``lo <= v <= hi`` (``lo < v`` / ``v < hi`` when open), and
    optionally a rule ``rule(v) -> bool`` described by ``rule_text``. For ``vec3``, ``ldm`` and
    ``int_list`` keys it applies to every number of the value."""

    __slots__ = ("hi", "hi_open", "lo", "lo_open", "rule", "rule_text")

    def __init__(self, lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False, rule=None, rule_text=""):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.rule, self.rule_text = rule, rule_text

    def __contains__(self, v) -> bool:
        lo_ok = v > self.lo if self.lo_open else v >= self.lo
        hi_ok = v < self.hi if self.hi_open else v <= self.hi
        return bool(lo_ok and hi_ok and (self.rule is None or self.rule(v)))

    def __str__(self) -> str:
        def num(x):
            return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

        parts = []
        if self.lo > -math.inf:
            parts.append(f"{'>' if self.lo_open else '>='} {num(self.lo)}")
        if self.hi < math.inf:
            parts.append(f"{'<' if self.hi_open else '<='} {num(self.hi)}")
        text = " and ".join(parts) if parts else "finite"
        return f"{text}, {self.rule_text}" if self.rule_text else text


_ANY = Range()  # any finite number
_NONNEG = Range(0)  # >= 0 (for frequencies and weights: 0 turns it off)
_POS = Range(0, lo_open=True)  # > 0
_COUNT = Range(1)  # an integer >= 1

#: "section.key" (or "key") -> :class:`Range`: every numeric key (int, float, vec3, ldm, int_list) has
#: one; :func:`load` checks it and the error names the key, the value and the range.
RANGES = {
    "data.bound": _POS,
    "data.eyeball_left_center": _ANY,
    "data.eyeball_right_center": _ANY,
    "data.eyeball_min_size": _POS,
    "data.eyeball_max_size": _POS,
    "data.eye_gaze": _ANY,
    "data.left_eye_ldm": _ANY,
    "data.right_eye_ldm": _ANY,
    "data.sh_scale": _NONNEG,
    "data.beta": _POS,  # softplus sharpness of the SH ambient
    "data.dilate_ks": Range(0, 255, rule=lambda v: v == 0 or v % 2 == 1, rule_text="0 (off) or odd"),
    "network.num_levels": Range(1, 32),
    "network.level_dim": Range(1, 8),
    "network.geo_feat_dim": Range(1, 256),
    "network.neighbor_eps": _NONNEG,
    "light.color": _NONNEG,
    "light.intensity": _POS,
    "light.gamma": Range(0, 10, lo_open=True),
    "brdf.min_roughness": Range(0, 1),
    "brdf.max_roughness": Range(0, 1),
    "renderer.sample_batch_size": Range(64, 2 ** 31 - 1, rule=lambda v: v % 64 == 0, rule_text="a multiple of 64"),
    "renderer.render_n_samples": _COUNT,
    "renderer.chunk_size": _COUNT,
    "renderer.max_num_ray": _COUNT,
    "renderer.grid_resolution": Range(8, 1024),
    "renderer.grid_update_freq": _COUNT,
    "train.max_steps": _COUNT,
    "train.init_level": Range(0, 32),
    "train.level_grow_iter": _COUNT,
    "train.warmup_steps": _NONNEG,
    "train.milestones": _NONNEG,
    "train.save_freq": _NONNEG,
    "train.val_freq": _NONNEG,
    "train.vis_freq": _NONNEG,
    "train.mesh_render_iter": _NONNEG,
    "train.mesh_resolution": Range(8, 2048),
    "train.lr": Range(0, 1, lo_open=True),
    "train.seed": Range(0, 2 ** 32 - 1),  # every step's seed is derived from it in 63 bits
    "train.eye_grad_clip": _NONNEG,  # 0: off
    "train.log_every": _COUNT,
    "train.camera_lr": Range(0, 1, lo_open=True),
    "train.camera_warmup": _NONNEG,
    "train.camera_stop": _NONNEG,
    **{f"loss.{k}": _NONNEG for k in LOSS_DEFAULTS},
}


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` / ``-3E5`` as floats (YAML 1.2 style)."""


_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from None


# --------------------------------------------------------------------------- validation
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:[0-9]+|[0-9]+)$")


def _finite_float(v) -> float | None:
    """``float(v)`` for a finite number (not a bool), else None."""
    if not _is_num(v):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int too large for a float
        return None
    return f if math.isfinite(f) else None


def _in_range(name: str, value, numbers) -> None:
    """Raises ConfigError naming ``name``, ``value`` and the range when one of ``numbers`` is outside
    ``RANGES[name]``."""
    rng = RANGES.get(name)
    if rng is None:
        return
    for v in numbers:
        if v not in rng:
            what = "every value" if len(numbers) > 1 or isinstance(value, (list, tuple)) else "the value"
            raise ConfigError(f"config key '{name}': {value!r} is out of range: {what} must be {rng}")


def _check(kind, value, name: str):
    """Return the validated (normalised) value or raise ConfigError naming ``name``."""

    def bad(expected):
        return ConfigError(f"config key '{name}': expected {expected}, got {value!r} ({type(value).__name__})")

    if isinstance(kind, tuple) and kind[0] == "choice":
        if value not in kind[1]:
            raise ConfigError(f"config key '{name}': expected one of {list(kind[1])}, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "name":  # the run's folder inside the workspace: a plain folder name
        if not isinstance(value, str):
            raise bad("a string")
        if (not value.strip() or value in (".", "..") or os.path.isabs(value) or "/" in value or "\\" in value
                or "\0" in value):
            raise ConfigError(f"config key '{name}': {value!r} is not a plain run name: the run goes to "
                              "<workspace>/<name>/, so the name must be one folder name (no '/' or '\\', not '.' "
                              "or '..', not absolute); put the path into 'workspace' (--workspace) instead")
        return value
    if kind == "device":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise bad("a device string or CUDA index")
        if not _DEVICE_RE.match(str(value).strip()):
            raise ConfigError(f"config key '{name}': expected auto, cpu, cuda, cuda:N or a CUDA index N, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        _in_range(name, value, [value])
        return value
    if kind == "float":
        f = _finite_float(value)
        if f is None:
            raise bad("a finite number")
        _in_range(name, value, [f])
        return f
    if kind == "vec3":
        vals = [_finite_float(v) for v in value] if isinstance(value, (list, tuple)) else None
        if vals is None or len(vals) != 3 or any(v is None for v in vals):
            raise bad("a list of 3 finite numbers")
        _in_range(name, value, vals)
        return vals
    if kind == "ldm":
        if value is None:
            return None
        ok = (
            isinstance(value, (list, tuple))
            and len(value) == 4
            and all(isinstance(p, (list, tuple)) and len(p) == 3 and all(_finite_float(v) is not None for v in p)
                    for p in value)
        )
        if not ok:
            raise bad("a 4x3 list of finite numbers (four 3D landmarks) or null")
        pts = [[float(v) for v in p] for p in value]
        _in_range(name, value, [v for p in pts for v in p])
        return pts
    if kind == "int_list":
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise bad("a list of integers")
        _in_range(name, value, list(value))
        return [int(v) for v in value]
    raise AssertionError(kind)  # pragma: no cover


def _known(section: str) -> str:
    keys = SCHEMA[section]
    where = f"section '{section}'" if section else "the top level"
    extra = f" (sections: {', '.join(SECTIONS)})" if not section else ""
    return f"known keys of {where}: {', '.join(keys)}{extra}"


def _full(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _cross_checks(d: dict):
    """Checks between keys (each key's own range is checked as it is read: RANGES)."""
    data, brdf = d["data"], d["brdf"]
    if not data["eyeball_min_size"] <= data["eyeball_max_size"]:
        raise ConfigError(
            "config keys 'data.eyeball_min_size'/'data.eyeball_max_size': need 0 < min <= max, got "
            f"{data['eyeball_min_size']} and {data['eyeball_max_size']}"
        )
    if not brdf["min_roughness"] <= brdf["max_roughness"]:
        raise ConfigError(
            "config keys 'brdf.min_roughness'/'brdf.max_roughness': need 0 <= min <= max <= 1, got "
            f"{brdf['min_roughness']} and {brdf['max_roughness']}"
        )


# --------------------------------------------------------------------------- objects
class Section:
    """Attribute view of one config section (``cfg.data.bound``); assignments are validated."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: dict):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"config has no key '{_full(self._name, key)}'; {_known(self._name)}") from None

    def __setattr__(self, key, value):
        if key not in SCHEMA[self._name]:
            raise ConfigError(f"unknown config key '{_full(self._name, key)}'; {_known(self._name)}")
        self._values[key] = _check(SCHEMA[self._name][key][0], value, _full(self._name, key))

    def __getitem__(self, key):
        return self._values[key]

    def __contains__(self, key):
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def to_dict(self) -> dict:
        return copy.deepcopy(self._values)

    def __repr__(self):
        return f"Section({self._name!r}, {self._values!r})"


class Config:
    """A validated configuration.

    Top-level keys are attributes (``cfg.name``, ``cfg.ops_backend``); sections are
    :class:`Section` attributes (``cfg.data.bound``, ``cfg.loss.w_l1``).
    ``cfg.path`` is the file it came from (or None).
    """

    def __init__(self, values: dict, path: str | None = None):
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "_sections", {s: Section(s, values[s]) for s in SECTIONS})

    def __getattr__(self, key):
        if key in self._sections:
            return self._sections[key]
        if key in self._values:
            return self._values[key]
        raise AttributeError(f"config has no key '{key}'; {_known('')}")

    def __setattr__(self, key, value):
        if key in SECTIONS:
            raise ConfigError(f"cannot replace section '{key}'; set its keys instead")
        if key not in TOP_DEFAULTS:
            raise ConfigError(f"unknown config key '{key}'; {_known('')}")
        self._values[key] = _check(TOP_DEFAULTS[key][0], value, key)

    def __getitem__(self, key):
        return getattr(self, key)

    def to_dict(self) -> dict:
        """Plain nested dict (a deep copy), in file order: top-level keys, then sections."""
        return copy.deepcopy(self._values)

    def __repr__(self):
        return f"Config({self._values!r})"


def defaults() -> dict:
    """The full default configuration as a nested dict."""
    d = {k: copy.deepcopy(v[1]) for k, v in TOP_DEFAULTS.items()}
    for s, keys in SECTIONS.items():
        d[s] = {k: copy.deepcopy(v[1]) for k, v in keys.items()}
    return d


def _merge(d: dict, raw: dict, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(raw).__name__}")
    for key, value in raw.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: section '{key}' must be a mapping, got {value!r}")
            for k, v in value.items():
                if k not in SCHEMA[key]:
                    raise ConfigError(f"{where}: unknown config key '{key}.{k}'; {_known(key)}")
                d[key][k] = _check(SCHEMA[key][k][0], v, f"{key}.{k}")
        elif key in TOP_DEFAULTS:
            d[key] = _check(TOP_DEFAULTS[key][0], value, key)
        else:
            raise ConfigError(f"{where}: unknown config key '{key}'; {_known('')}")


def _apply_overrides(d: dict, overrides: Iterable[str]):
    for ov in overrides:
        if not isinstance(ov, str) or "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected 'section.key=value' (or 'key=value' for top-level keys)")
        lhs, rhs = ov.split("=", 1)
        lhs = lhs.strip()
        value = _parse_yaml(rhs, f"override {ov!r}")
        if "." in lhs:
            section, key = lhs.split(".", 1)
            if section not in SECTIONS:
                raise ConfigError(f"override {ov!r}: unknown section '{section}'; sections: {', '.join(SECTIONS)}")
            if key not in SCHEMA[section]:
                raise ConfigError(f"override {ov!r}: unknown config key '{lhs}'; {_known(section)}")
            d[section][key] = _check(SCHEMA[section][key][0], value, lhs)
        else:
            if lhs not in TOP_DEFAULTS:
                raise ConfigError(f"override {ov!r}: unknown config key '{lhs}'; {_known('')}")
            d[lhs] = _check(TOP_DEFAULTS[lhs][0], value, lhs)


def _finish(d: dict, base_dir: str | None, path: str | None) -> Config:
    _cross_checks(d)
    mp = d["data"]["meta_path"]
    if not os.path.isabs(mp):
        cand = os.path.join(base_dir, mp) if base_dir is not None else None
        mp = cand if cand is not None and os.path.exists(cand) else os.path.abspath(mp)
    d["data"]["meta_path"] = os.path.normpath(os.path.abspath(mp))
    if d["loss"]["w_lpips"] != 0:
        warnings.warn(
            f"loss.w_lpips = {d['loss']['w_lpips']} is accepted but the LPIPS term is skipped: "
            "its network weights cannot be downloaded here",
            stacklevel=3,
        )
    return Config(d, path)


def from_dict(raw: dict | None, overrides: Iterable[str] | None = None, base_dir: str | None = None) -> Config:
    """Build a validated :class:`Config` from a nested dict (same rules as :func:`load`).

    ``base_dir``: folder against which a relative ``data.meta_path`` is tried first.
    """
    d = defaults()
    _merge(d, raw or {}, "config")
    _apply_overrides(d, overrides or [])
    return _finish(d, base_dir, None)


def load(path: str | os.PathLike, overrides: Iterable[str] | None = None) -> Config:
    """Read and validate a CoRA-style ``config.yaml``.

    Args:
        path: the YAML file.
        overrides: strings ``"section.key=value"`` (or ``"key=value"`` for top-level
            keys); the value is parsed as YAML (``"train.milestones=[100, 200]"``).
            Applied after the file, validated the same way.

    Returns:
        :class:`Config` with every key present (defaults filled in) and
        ``data.meta_path`` made absolute: a relative path is taken relative to the
        config file's folder if it exists there, else relative to the CWD.

    Raises:
        ConfigError: missing/unreadable file, invalid YAML, unknown key (the message
            lists the known keys of that section), wrong type (names the key).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file '{path}': {e.strerror}") from None
    raw = _parse_yaml(text, path)
    d = defaults()
    try:
        _merge(d, raw or {}, path)
        _apply_overrides(d, overrides or [])
        return _finish(d, os.path.dirname(os.path.abspath(path)), os.path.abspath(path))
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def save(cfg: Config, path: str | os.PathLike) -> None:
    """Write ``cfg`` as block-style YAML that :func:`load` reads back to an equal config."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False, default_flow_style=None)
