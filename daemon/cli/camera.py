"""`menjin camera calibrate`: measure once where the NIR lens sees what the RGB lens sees.

With a person standing in front of the gate camera (moving a little, at the usual distance), both
cameras are read frame by frame; the five landmarks of the largest face in each pair of frames
are collected, and an affine RGB-to-NIR mapping is fitted (RANSAC) and written to
``camera.nir.calibration``.  Run it with the daemon stopped (the daemon holds the cameras).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from daemon.cli.faces import DEFAULT_CONFIG, ConfigOpt, vision_config
from daemon.configfile import EX_CONFIG

if TYPE_CHECKING:
    from vision.detect import Face

camera_app = typer.Typer(help="Camera tools: calibrate the NIR camera.", no_args_is_help=True)
#: Calibration refuses fits worse than this RMS error (pixels): wrong camera or moving lenses.
MAX_ERROR_PX = 12.0


@camera_app.command("calibrate")
def calibrate(
    config: ConfigOpt = DEFAULT_CONFIG,
    pairs: Annotated[
        int, typer.Option("--pairs", min=2, help="Frame pairs with a face in both to collect.")
    ] = 20,
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, help="Give up after this long.")
    ] = 30.0,
) -> None:
    """Fit and store the RGB-to-NIR mapping from a face seen by both cameras.

    \b
    Example:
      menjin camera calibrate -c /etc/menjin/gate.yaml --pairs 20
    """
    import cv2

    from drivers.camera import CameraError, is_live, open_source
    from vision.models import ModelError, load_detector
    from vision.nir import NirCalibration, NirError, landmark_pairs

    cfg, vision = vision_config(config)
    camera = cfg.camera
    if camera is None or camera.nir is None:
        typer.echo(f"{config}: no camera.nir: nothing to calibrate", err=True)
        raise typer.Exit(EX_CONFIG)
    nir = camera.nir
    if cfg.hardware.simulate and (is_live(camera.source) or is_live(nir.source)):
        # The daemon's simulated cameras show a synthetic scene with no infrared twin: nothing
        # to calibrate against, and the real devices named in the config are not there.
        typer.echo(
            f"{config}: `menjin camera calibrate` needs the real RGB and NIR cameras "
            f"({camera.source}, {nir.source}), and this config runs in simulate mode "
            "(hardware.gpio_backend: mock), whose simulated cameras have no infrared picture; "
            f"until a real calibration exists, door {camera.door} refuses faces (cards work). "
            "To try calibration without the hardware, point camera.source and camera.nir.source "
            "at folders of paired RGB and NIR images.",
            err=True,
        )
        raise typer.Exit(EX_CONFIG)
    try:
        detector = load_detector(vision.detector.kind, vision.detector.path,
                                 input_size=vision.detector.input_size,
                                 score_threshold=vision.detector.score_threshold)
    except ModelError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_CONFIG) from exc
    rgb_source = open_source(camera.source, size=(camera.width, camera.height), fps=camera.fps)
    nir_source = open_source(nir.source, size=(nir.width, nir.height), fps=nir.fps)
    found: list[tuple[Face | None, Face | None]] = []
    deadline = time.monotonic() + seconds
    try:
        rgb_source.open()
        nir_source.open()
        while len(found) < pairs and time.monotonic() < deadline:
            rgb, infrared = rgb_source.read(), nir_source.read()
            if infrared.ndim == 2:
                infrared = cv2.cvtColor(infrared, cv2.COLOR_GRAY2BGR)
            rgb_faces, nir_faces = detector.detect(rgb), detector.detect(infrared)
            if rgb_faces and nir_faces:
                found.append((max(rgb_faces, key=lambda f: f.width),
                              max(nir_faces, key=lambda f: f.width)))
    except CameraError as exc:
        typer.echo(f"calibration failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        rgb_source.close()
        nir_source.close()
    try:
        calibration = NirCalibration.fit(*landmark_pairs(found))
    except NirError as exc:
        typer.echo(f"calibration failed after {len(found)} pair(s) with a face: {exc}", err=True)
        raise typer.Exit(1) from exc
    if calibration.error_px > MAX_ERROR_PX:
        typer.echo(
            f"calibration failed: the faces line up only within {calibration.error_px:.1f} px "
            f"(limit {MAX_ERROR_PX:g}): is camera.nir the other lens of the same module?",
            err=True,
        )
        raise typer.Exit(1)
    path = Path(nir.calibration)
    path.parent.mkdir(parents=True, exist_ok=True)
    calibration.save(path)
    typer.echo(f"wrote {path}: {len(found)} frame pairs, {calibration.points} landmarks, "
               f"error {calibration.error_px:.1f} px")
