"""The live browser viewer: ``eyefast view --run RUN``, ``eyefast.view(run)``, ``eyefast train --view``.

Built on viser (https://viser.studio): a web server with a three.js client, its orbit camera and GUI
widgets. eyefast renders each browser's view itself (the volume model or the exported assets, through
:class:`eyefast.visual.render.Renderer`) and sends it as the scene's background image. Rendering is
progressive, so it stays usable on a CPU: while the camera moves a small image (``preview_size``
pixels on the longer side) follows it, and once the camera has rested for :data:`SETTLE_S` seconds the
full image (``size``) replaces it; a render in progress is dropped as soon as the camera or a control
changes.

The panel: the light (at the camera, the capture's flash; or a point light at an azimuth and elevation
around the head, fixed in the world, at a distance, with an intensity), what is shown (the shaded
image, albedo, specular, roughness, normals, eye opacities), the two resolutions, and the eye model's
parameters (centres, radius, gaze for refractive eyes; the training step).

With ``training=True`` (``eyefast train --view``) no thread renders: :meth:`Viewer.hook` is called by
the trainer after every step and renders there, between steps (the model is never read while a step
changes it): at once at the small size when the view changed, at full size every ``every`` steps and
when the camera rests.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
import torch

from .cameras import Camera, rig_of
from .render import MODES, Renderer, display
from ..scene.shading import point_light

__all__ = ["Viewer", "view", "SETTLE_S"]

log = logging.getLogger("eyefast.viewer")

#: seconds the camera must rest before the full-resolution render
SETTLE_S = 0.3
#: grey behind the head (0..1, sRGB-ish)
BACKGROUND = 0.12


def _require_viser():
    try:
        import viser  # noqa: F401
    except ImportError:
        raise RuntimeError("the viewer needs viser: pip install viser (or pip install 'eyefast[view]')") from None
    return viser


class _ClientState:
    def __init__(self):
        self.rendered = -1  # the version last sent
        self.full = False  # whether that was the full resolution
        self.changed_at = time.monotonic()


class Viewer:
    """A viser server showing ``run`` (see the module docstring).

    Args:
        run: a :class:`eyefast.run.Run` (or a run folder). port, host: where to serve (host
            ``127.0.0.1``: this machine only; ``0.0.0.0``: the network). source: ``model`` or ``export``.
        size, preview_size: longer side of the full and the moving image, in pixels.
        training: rendered by :meth:`hook` from the training loop instead of a thread; ``every``: steps
            between refreshes there.
    """

    def __init__(self, run, port: int = 8080, host: str = "127.0.0.1", source: str = "model", size: int = 256,
                 preview_size: int = 64, training: bool = False, every: int = 50, verbose: bool = True):
        viser = _require_viser()
        if isinstance(run, str):
            from ..run import Run

            run = Run.load(run)
        self.run = run
        self.renderer = Renderer(run, source)
        self.training, self.every = bool(training), max(1, int(every))
        cap = run.capture("train")
        self.rig = rig_of(cap)
        self.target = self.rig.target
        self._lock = threading.RLock()
        self._version = 0
        self._clients: dict = {}
        self._stop = threading.Event()
        self._wake = threading.Condition(self._lock)
        self._last_full_step = -1
        self.renders = 0  # images sent (all clients)
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext():
            self.server = viser.ViserServer(host=host, port=port, verbose=False)  # viser prints its own banner
        self.host, self.port = host, int(self.server.get_port())
        self.server.scene.set_up_direction("+y")
        self.server.gui.configure_theme(dark_mode=True, show_share_button=False)
        ic = self.server.initial_camera
        ref = self.rig.ref
        ic.position = tuple(float(v) for v in ref.c2w[:3, 3])
        ic.look_at = tuple(float(v) for v in self.target)
        ic.up = (0.0, 1.0, 0.0)
        ic.fov = 2.0 * math.atan(0.5 * ref.H / ref.fy)
        self._build_gui(size, preview_size)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._thread = None
        if not self.training:
            self._thread = threading.Thread(target=self._loop, name="eyefast-viewer", daemon=True)
            self._thread.start()
        if verbose:
            print(f"eyefast viewer: open http://{'localhost' if host in ('0.0.0.0', '127.0.0.1') else host}:"
                  f"{self.port} in a browser ({self.renderer.source}, step {run.step}; Ctrl-C stops it)", flush=True)

    # ------------------------------------------------------------------ the panel
    def _build_gui(self, size: int, preview_size: int) -> None:
        gui = self.server.gui
        self.gui = {}
        with gui.add_folder("Light"):
            self.gui["flash"] = gui.add_checkbox("At the camera (flash)", False)
            self.gui["azimuth"] = gui.add_slider("Azimuth (deg)", -180.0, 180.0, 1.0, -35.0)
            self.gui["elevation"] = gui.add_slider("Elevation (deg)", -85.0, 85.0, 1.0, 25.0)
            d = float(self.rig.distance)
            self.gui["distance"] = gui.add_slider("Distance", round(0.3 * d, 2), round(3.0 * d, 2), 0.01, round(d, 2))
            self.gui["intensity"] = gui.add_slider("Intensity", 0.0, 4.0, 0.05, 1.0)
        with gui.add_folder("Show"):
            self.gui["mode"] = gui.add_dropdown("Buffer", MODES, initial_value="shaded")
            self.gui["size"] = gui.add_slider("Resolution at rest (px)", 64, 1024, 32, int(size))
            self.gui["preview"] = gui.add_slider("Resolution moving (px)", 32, 256, 16, int(preview_size))
        with gui.add_folder("Eye model"):
            self.gui["eyes"] = gui.add_markdown(self._eye_text())
        for k in ("flash", "azimuth", "elevation", "distance", "intensity", "mode", "size", "preview"):
            self.gui[k].on_update(lambda _ev: self._changed())
        self._light_marker = self.server.scene.add_icosphere("/light", radius=0.03 * float(self.rig.distance),
                                                             color=(255, 220, 120), position=self._light_pos_np(),
                                                             cast_shadow=False, receive_shadow=False)

    def _eye_text(self) -> str:
        m = self.run.model
        c = m.eye_centers.detach().cpu().tolist()
        r = float(m.eye_radius.detach())
        lines = [f"step **{self.run.step}**, eye model **{m.eye_model}**", "",
                 "| eye | centre (x, y, z) |", "|---|---|"]
        for name, cc in zip(("left", "right"), c):
            lines.append(f"| {name} | {cc[0]:+.4f}, {cc[1]:+.4f}, {cc[2]:+.4f} |")
        lines += ["", f"radius **{r:.4f}**"]
        if getattr(m, "cornea", False):
            g = torch.nn.functional.normalize(m.gaze.detach().cpu(), dim=-1).tolist()
            lines += [f"gaze left {g[0][0]:+.3f}, {g[0][1]:+.3f}, {g[0][2]:+.3f}",
                      f"gaze right {g[1][0]:+.3f}, {g[1][1]:+.3f}, {g[1][2]:+.3f}"]
        lines += ["", f"light_scale {float(m.light_scale.detach()):.3f}"]
        return "\n".join(lines)

    # ------------------------------------------------------------------ state
    def _changed(self) -> None:
        with self._lock:
            self._version += 1
            now = time.monotonic()
            for _client, st in self._clients.values():
                st.changed_at = now
            self._wake.notify_all()
        try:
            self._light_marker.position = self._light_pos_np()
            self._light_marker.visible = not bool(self.gui["flash"].value)
        except Exception:  # noqa: BLE001 - the marker is cosmetic
            pass

    def _on_connect(self, client) -> None:
        with self._lock:
            self._clients[client.client_id] = (client, _ClientState())
            self._wake.notify_all()

        @client.camera.on_update
        def _(_cam) -> None:
            with self._lock:
                entry = self._clients.get(client.client_id)
                if entry is not None:
                    self._version += 1
                    entry[1].changed_at = time.monotonic()
                    self._wake.notify_all()

    def _on_disconnect(self, client) -> None:
        with self._lock:
            self._clients.pop(client.client_id, None)

    def set_light(self, azimuth: float | None = None, elevation: float | None = None, distance: float | None = None,
                  intensity: float | None = None, flash: bool | None = None) -> None:
        """Moves the light (degrees around the head, fixed in the world: azimuth 0 in front of the face,
        positive to the viewer's right of a frontal view; elevation positive up); ``flash=True`` puts it
        at the camera. The browsers re-render."""
        for key, val in (("azimuth", azimuth), ("elevation", elevation), ("distance", distance),
                         ("intensity", intensity), ("flash", flash)):
            if val is not None:
                self.gui[key].value = bool(val) if key == "flash" else float(val)
        self._changed()

    def set_mode(self, mode: str) -> None:
        """Shows ``mode`` (one of :data:`eyefast.visual.render.MODES`)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        self.gui["mode"].value = mode
        self._changed()

    def _light_pos(self) -> torch.Tensor:
        az, el = math.radians(float(self.gui["azimuth"].value)), math.radians(float(self.gui["elevation"].value))
        d = float(self.gui["distance"].value)
        return self.target.float() + d * torch.tensor([math.sin(az) * math.cos(el), math.sin(el),
                                                       math.cos(az) * math.cos(el)])

    def _light_pos_np(self):
        return tuple(float(v) for v in self._light_pos())

    def lights(self) -> list:
        """The point lights the controls describe."""
        r = self.renderer
        inten = r.intensity * float(self.gui["intensity"].value)
        pos = None if self.gui["flash"].value else self._light_pos()
        return [point_light(pos, r.color, inten)]

    # ------------------------------------------------------------------ rendering
    def camera_of(self, client, long_side: int) -> Camera | None:
        """The browser's current view as a :class:`Camera` of ``long_side`` pixels on the longer side."""
        cam = client.camera
        try:
            wxyz, pos, fov, aspect = np.asarray(cam.wxyz), np.asarray(cam.position), float(cam.fov), float(cam.aspect)
        except (AssertionError, ZeroDivisionError):  # no camera message from this browser yet
            return None
        if not (np.isfinite(aspect) and aspect > 0):
            return None
        import viser.transforms as tf

        R = tf.SO3(wxyz).as_matrix()  # OpenCV convention, as eyefast's cameras
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = torch.as_tensor(R)
        c2w[:3, 3] = torch.as_tensor(pos)
        if aspect >= 1:
            W, H = int(long_side), max(4, round(long_side / aspect))
        else:
            W, H = max(4, round(long_side * aspect)), int(long_side)
        f = 0.5 * H / math.tan(0.5 * fov)
        return Camera(f, f, W / 2.0, H / 2.0, W, H, c2w, None, "viewer")

    def render_image(self, cam: Camera, cancel=None) -> np.ndarray | None:
        """uint8 ``[H, W, 3]`` of ``cam`` with the panel's light and buffer (None when cancelled)."""
        r = self.renderer.render(cam, self.lights(), cancel)
        if r is None:
            return None
        img = display(r, str(self.gui["mode"].value), self.renderer.gamma)
        img = img + (1.0 - r["opacity"][..., None].clamp(0, 1)) * BACKGROUND
        return (img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)

    def _send(self, client, img: np.ndarray) -> None:
        client.scene.set_background_image(img, format="jpeg", jpeg_quality=90)
        self.renders += 1

    def _render_client(self, client, st: _ClientState, full: bool, version: int) -> bool:
        size = int(self.gui["size"].value if full else self.gui["preview"].value)
        cam = self.camera_of(client, size)
        if cam is None:
            return False
        img = self.render_image(cam, cancel=(lambda: self._version != version) if full else None)
        if img is None:
            return False
        self._send(client, img)
        st.rendered, st.full = version, full
        return True

    def _pending(self):
        """``(client, state, full, version)`` of the next render due, or None."""
        with self._lock:
            v, now = self._version, time.monotonic()
            for client, st in list(self._clients.values()):
                if st.rendered != v:
                    return client, st, False, v
                if not st.full and now - st.changed_at >= SETTLE_S:
                    return client, st, True, v
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._pending()
            if job is None:
                with self._lock:
                    self._wake.wait(timeout=SETTLE_S / 3)
                continue
            try:
                with torch.no_grad():
                    self._render_client(*job)
            except Exception as e:  # noqa: BLE001 - keep serving; say what failed
                log.warning(f"viewer: render failed: {e}")
                time.sleep(0.5)

    def refresh(self) -> None:
        """Re-reads the model (new eye parameters, new weights) and re-renders every browser."""
        try:
            self.gui["eyes"].content = self._eye_text()
        except Exception:  # noqa: BLE001
            pass
        self._changed()

    def hook(self, trainer) -> None:
        """The training loop's callback (``Trainer.fit(callback=viewer.hook)``): renders between steps."""
        if self.run.step != trainer.step:
            self.run.step = trainer.step
        due_full = trainer.step // self.every != self._last_full_step // self.every
        if due_full:
            self._last_full_step = trainer.step
            self.refresh()
        job = self._pending()
        if job is None:
            return
        client, st, full, v = job
        if due_full:
            full = True
        model = trainer.model
        was_training = model.training
        try:
            with torch.no_grad():
                self._render_client(client, st, full, v)
        finally:
            model.train(was_training)
            trainer.grid.train(was_training)

    def start(self) -> None:
        """Leaves the training mode: from now on a thread renders (after ``eyefast train --view``)."""
        if self._thread is None:
            self.training = False
            self.refresh()
            self._thread = threading.Thread(target=self._loop, name="eyefast-viewer", daemon=True)
            self._thread.start()

    def idle(self) -> bool:
        """True when every connected browser shows the current view and controls at full resolution."""
        with self._lock:
            return all(st.rendered == self._version and st.full for _c, st in self._clients.values())

    def wait_for_clients(self, n: int = 1, timeout: float = 30.0) -> bool:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if len(self._clients) >= n:
                return True
            time.sleep(0.05)
        return False

    @property
    def url(self) -> str:
        return f"http://{'localhost' if self.host in ('0.0.0.0', '127.0.0.1') else self.host}:{self.port}"

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.server.stop()

    def serve_forever(self) -> None:
        """Blocks until Ctrl-C, then stops the server."""
        try:
            while not self._stop.is_set():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()


def view(run, port: int = 8080, host: str = "127.0.0.1", source: str = "model", size: int = 256,
         preview_size: int = 64, block: bool = True) -> Viewer:
    """Serves the viewer of ``run`` (a :class:`eyefast.run.Run` or a run folder) at ``http://localhost:PORT``.
    ``block``: until Ctrl-C (then returns the stopped viewer); otherwise returns the running
    :class:`Viewer` at once (stop it with :meth:`Viewer.close`)."""
    v = Viewer(run, port=port, host=host, source=source, size=size, preview_size=preview_size)
    if block:
        v.serve_forever()
    return v
