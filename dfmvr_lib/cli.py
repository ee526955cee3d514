"""The ``dfmvr`` command (installed with the package; also ``python -m dfmvr_lib.cli``).

    dfmvr reconstruct LEFT FRONT RIGHT -o face.obj            # three views
    dfmvr reconstruct FRONT -o face.obj                       # one view (single-view input)
    dfmvr reconstruct A.jpg C.jpg --views left,right -o face.obj
    dfmvr reconstruct LEFT FRONT RIGHT --refine -o face.obj   # + multi-view test-time fitting

Exit status: 0 done (warnings may have been printed); 2 wrong usage (options, number of files, view names, output
name); 3 a photo cannot be used (missing, unreadable, truncated, too large, too small, no face found) or the landmark
detector asked for is not available; 4 no usable trained run to reconstruct with (missing, unfinished, corrupt,
a checkpoint holding pickled code, which is refused without running it, or a one-face-per-view baseline); 5 the
outputs could not be written (the output folder is a file, unwritable, or writing failed). Every error is one line
``error: ...`` on stderr naming the file or argument; whatever the status, a failed command leaves no output file
and no output folder behind.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings as python_warnings
from pathlib import Path

from .config import PROFILE_NAMES
from .reconstruction.defaults import COLOUR_MODES, DEFAULT_REFINE_STEPS

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_NO_CHECKPOINT = 4
EXIT_WRITE_FAILED = 5

RECONSTRUCT_DESCRIPTION = """\
Reconstruct a 3D face from 1-3 photos of one person (left, front, right view) with a trained DF-MVR run.

Each photo goes through the workbook's photo pipeline (68 landmarks with dlib's offline detector, or FAN when its
weights are cached; crop aligned to the face model's framing at the network's image size; face-part labels from the
training run's frozen parser), then the network predicts the morphable-model coefficients of the face and a pose per
view. With --refine the coefficients and poses are then fitted to the photos (photo loss, 2D landmarks of equal
weight without the jaw line, a tenth of the training's coefficient prior, albedo within +-3 sd; see
dfmvr_lib.reconstruction.fitting.RefinementSettings), starting
from the network's prediction, or from the mean face when the network's shape explains the photos' landmarks worse
than the mean face does (--start auto). Views that are not given are black with empty parse maps, as in single-view
training. The mesh takes its colours from the photos (--colours photo).

Writes, named after -o face.obj: face.obj and face.ply (mesh with vertex colours, millimetres, head frame: x right,
y up, z out of the face), face_coefficients.json and face_coefficients.npz (coefficients, per-view pose in radians
and mm, landmarks, fitting losses, input files, run directories), face_overlay.png (inputs, renders over them,
landmarks: red = reconstruction, green = detected), all at once: nothing (no file, no folder) is written when
anything fails. Photos are converted when they can be (grayscale, alpha, palette, CMYK, 16-bit, EXIF rotation),
with a warning.
"""

RECONSTRUCT_EPILOG = """\
checkpoint: by default the run that notebooks 02-03 (`make main`) train for --profile (cpu) under --data-dir, found
by its run key without training. Pass --checkpoint RUN_DIR for another finished run (a directory with final.pt and
done.json); its parser run is looked up in ../parser/ beside it unless --parser names it.

checkpoints are loaded as plain state dicts (torch.load with weights_only=True): a final.pt holding pickled Python
objects, which could execute code, is refused (exit status 4) without being run.

exit status: 0 done (warnings may have been printed), 2 wrong usage, 3 a photo cannot be used (missing,
unreadable, truncated, too large or too small, no face found) or the landmark detector is not available, 4 no
usable trained run (missing, unfinished, corrupt or unsafe checkpoint, one-face-per-view baseline), 5 the outputs
could not be written. A failed command leaves no output file and no output folder.

examples:
  dfmvr reconstruct me_left.jpg me_front.jpg me_right.jpg -o me.obj
  dfmvr reconstruct me_front.jpg -o me.obj
  dfmvr reconstruct me_left.jpg me_right.jpg --views left,right --refine 60 -o me.obj
"""


def _progress(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)
    return say


def _error(message: object) -> None:
    """Print ``error: <message>`` on one line to stderr."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def _photo_problem(file: Path) -> str | None:
    """Why ``file`` is not a photo to open (missing, a folder, a link that leads nowhere), or None."""
    from .data.readers_common import file_problem  # lazy: the data package loads torch (see reconstruct_command)

    problem = file_problem(file)
    return "no such file" if problem == "not found" else problem


def _output_problem(outputs) -> str | None:
    """Why the outputs (:class:`~dfmvr_lib.reconstruction.export.OutputPaths`) cannot be written, checked before
    any work: one of them is a folder, the way to their folder crosses a file or a link that leads nowhere, or the
    nearest existing folder is not writable. None when they look writable."""
    for path in outputs.all():
        if path.is_dir():
            return f"{path} is a folder, in the way of an output file"
    anchor = Path(os.path.abspath(outputs.obj.parent))
    while not anchor.exists() and not anchor.is_symlink() and anchor != anchor.parent:
        anchor = anchor.parent
    if anchor.is_symlink() and not anchor.exists():
        return f"{anchor} is a symbolic link that leads nowhere (broken, or a loop)"
    if not anchor.is_dir():
        return f"{anchor} is a file, not a folder"
    if not os.access(anchor, os.W_OK | os.X_OK):
        return f"cannot write in {anchor} (permission denied)"
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``dfmvr`` argument parser (subcommand ``reconstruct``)."""
    parser = argparse.ArgumentParser(prog="dfmvr", description="DF-MVR workbench: multi-view 3D face reconstruction.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    reconstruct = commands.add_parser("reconstruct", help="3D face from 1-3 photos (left, front, right)",
                                      description=RECONSTRUCT_DESCRIPTION, epilog=RECONSTRUCT_EPILOG,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    reconstruct.add_argument("images", nargs="*", metavar="IMAGE",
                             help="1-3 photos: LEFT FRONT RIGHT for three; a single photo is the front view; two "
                                  "need --views")
    reconstruct.add_argument("-o", "--output", default="face.obj", metavar="FACE.obj",
                             help="the OBJ mesh to write; the PLY, coefficient and overlay files are named after it "
                                  "(default: %(default)s)")
    reconstruct.add_argument("--views", metavar="V1,V2,..",
                             help="which view each photo is, comma-separated from left, front, right, in the order of "
                                  "the photos (default: left,front,right for three photos, front for one)")
    reconstruct.add_argument("--refine", nargs="?", type=int, const=DEFAULT_REFINE_STEPS, default=0, metavar="N",
                             help="after the network, fit the coefficients and per-view poses to the photos for N "
                                  f"Adam steps (--refine alone: {DEFAULT_REFINE_STEPS}, under 20 s for 3 views at "
                                  "224 px on 2 CPU cores; default: no refinement)")
    reconstruct.add_argument("--start", default="auto", choices=("auto", "network", "mean-face"),
                             help="where the refinement starts: the network's prediction, the mean face (with the "
                                  "network's poses), or auto = the network unless its shape explains the photos' "
                                  "landmarks worse than the mean face does, then the mean face with a warning "
                                  "(default: %(default)s)")
    reconstruct.add_argument("--checkpoint", type=Path, metavar="RUN_DIR",
                             help="a finished reconstruction run directory (default: the --profile run of the "
                                  "notebooks under --data-dir)")
    reconstruct.add_argument("--parser", type=Path, metavar="RUN_DIR",
                             help="the finished parser run to use (default: the one the checkpoint was trained with)")
    reconstruct.add_argument("--profile", default="cpu", choices=PROFILE_NAMES,
                             help="whose default run to use when --checkpoint is not given (default: %(default)s)")
    reconstruct.add_argument("--data-dir", type=Path, metavar="DIR",
                             help="where the notebooks keep datasets and runs (default: <repository>/data)")
    reconstruct.add_argument("--colours", default="photo", choices=COLOUR_MODES,
                             help="mesh vertex colours: the albedo lit by the fitted light (shaded), the albedo "
                                  "alone, or the photos' colours projected onto the mesh (photo: the views that see a "
                                  "vertex, blended by angle) (default: %(default)s)")
    reconstruct.add_argument("--detector", default="auto", choices=("auto", "dlib", "fan"),
                             help="68-point landmark detector: auto = FAN when its weights are in the torch hub cache, "
                                  "else dlib (offline) (default: %(default)s)")
    reconstruct.add_argument("--parse-maps", default="parser", choices=("parser", "polygons"),
                             help="face-part labels of the photos: the training run's frozen parser, or polygons "
                                  "between the landmarks (default: %(default)s)")
    reconstruct.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    reconstruct.add_argument("-q", "--quiet", action="store_true", help="no progress messages (warnings still shown)")
    reconstruct.set_defaults(handler=reconstruct_command, command_parser=reconstruct)
    return parser


def _detector(name: str):
    """The landmark detector of ``--detector`` (auto: FAN when its weights are cached, else dlib)."""
    from .data.landmarks import DlibLandmarkDetector, FanLandmarkDetector, default_landmark_detector  # torch: lazy

    if name == "dlib":
        return DlibLandmarkDetector()
    if name == "fan":
        return FanLandmarkDetector()
    return default_landmark_detector(verbose=False)


def reconstruct_command(args: argparse.Namespace) -> int:
    """``dfmvr reconstruct``: see :data:`RECONSTRUCT_DESCRIPTION`. Usage errors exit through
    ``args.command_parser.error`` (status 2); returns the exit status (``EXIT_*``)."""
    say = _progress(args.quiet)
    checked = _checked_files(args)
    if isinstance(checked, int):
        return checked
    files, outputs = checked

    import torch  # here, not at module level: torch takes seconds to load and --help / usage errors never need it

    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    say("[1/4] loading the trained run")
    reconstructor = _load_run(args)
    if isinstance(reconstructor, int):
        return reconstructor
    say(f"      {reconstructor.run_dir} ({reconstructor.config.profile} profile, {reconstructor.image_size} px); "
        f"parser {reconstructor.parser_run_dir}")
    warnings = _run_warnings(reconstructor, files)

    say("[2/4] preparing the photos (landmarks, aligned crop, face-part labels), "
        f"then reconstructing{f' and refining ({args.refine} steps)' if args.refine else ''}")
    use_parser = args.parse_maps == "parser" and reconstructor.parser is not None
    photos = _reconstruct(args, reconstructor, files, use_parser, warnings, say)
    if isinstance(photos, int):
        return photos
    for message in warnings:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    say("[3/4] reconstructed")
    losses = photos.result.fit.losses["total"]
    if args.refine:
        say(f"      fitting loss {losses.iloc[0]:.4f} ({photos.result.start}) -> {losses.iloc[-1]:.4f} (refined)")

    say(f"[4/4] writing {outputs.obj} and beside it")
    status = _save(args, reconstructor, photos, outputs, files, warnings, use_parser, say)
    if status == EXIT_OK:
        say(f"done in {time.perf_counter() - began:.1f} s")
    return status


def _checked_files(args: argparse.Namespace):
    """The checks made before any work: ``(files, outputs)`` (the photo of each view, left / front / right, None
    where not given, and the :class:`~dfmvr_lib.reconstruction.export.OutputPaths`), or the exit status after the
    one-line error (a photo that is not a file: ``EXIT_BAD_INPUT``; outputs that cannot be written:
    ``EXIT_WRITE_FAILED``). Usage errors exit with status 2 through ``args.command_parser.error``."""
    command: argparse.ArgumentParser = args.command_parser
    if not 1 <= len(args.images) <= 3:
        command.error(f"give 1, 2 or 3 photos (left, front, right); got {len(args.images)}")
    if args.refine < 0:
        command.error(f"--refine must be >= 0, got {args.refine}")
    if args.threads is not None and args.threads < 1:
        command.error(f"--threads must be >= 1, got {args.threads}")

    # imported here: the reconstruction package loads torch (seconds), which --help and usage errors do not need
    from .reconstruction.export import OutputPaths
    from .reconstruction.photo_inputs import InputError, assign_views

    views = args.views.split(",") if args.views else None
    try:
        files = assign_views(args.images, views)
        outputs = OutputPaths.for_mesh(args.output)
    except (InputError, ValueError) as error:
        command.error(str(error))
    for view, file in zip(("left", "front", "right"), files):
        problem = _photo_problem(file) if file is not None else None
        if problem is not None:
            _error(f"{file}: {problem} ({view} view)")
            return EXIT_BAD_INPUT
    problem = _output_problem(outputs)
    if problem is not None:
        _error(f"cannot write the outputs: {problem}; nothing was written")
        return EXIT_WRITE_FAILED
    return files, outputs


def _load_run(args: argparse.Namespace):
    """The :class:`~dfmvr_lib.reconstruction.reconstructor.Reconstructor` of ``--checkpoint`` (default: the
    ``--profile`` run under ``--data-dir``) with its parser, or ``EXIT_NO_CHECKPOINT`` after the one-line error."""
    from .reconstruction.reconstructor import CheckpointNotFound, default_checkpoint, load_reconstructor  # torch: lazy

    try:
        run_dir = args.checkpoint if args.checkpoint is not None else default_checkpoint(args.profile, args.data_dir)
        return load_reconstructor(run_dir, args.parser)
    except (CheckpointNotFound, ValueError) as error:    # includes CheckpointFileError, UnsafeCheckpointError
        _error(error)
        return EXIT_NO_CHECKPOINT


def _run_warnings(reconstructor, files: list) -> list[str]:
    """Warnings about the run itself: no parser run found (landmark-polygon parse maps, no mask loss), fewer than
    three views for a run trained on three."""
    warnings: list[str] = []
    if reconstructor.parser is None:
        warnings.append(f"the parser run of {reconstructor.run_dir} was not found (pass --parser RUN_DIR): parse maps "
                        "come from landmark polygons and the refinement runs without the mask loss")
    given = sum(file is not None for file in files)
    if given < 3 and not reconstructor.config.training.single_view_mode:
        warnings.append(f"{given} of 3 views given: the missing views are black with empty parse maps (as in "
                        "single-view training), but this run was trained with all three views "
                        "(training.single_view_mode off), so expect a rougher face")
    return warnings


def _reconstruct(args: argparse.Namespace, reconstructor, files: list, use_parser: bool, warnings: list[str], say):
    """Prepare the photos and reconstruct (and refine) the face: the pipeline's result
    (:func:`~dfmvr_lib.reconstruction.pipeline.reconstruct_photos`), or ``EXIT_BAD_INPUT`` after the one-line error
    (a photo that cannot be used, no landmark detector). Photo conversions and the pipeline's warnings are appended
    to ``warnings``; other Python warnings pass on."""
    # torch-based modules, imported when the command gets this far (see reconstruct_command)
    from .data.landmarks import LandmarkDetectorUnavailable
    from .data.photos import PhotoWarning
    from .reconstruction.photo_inputs import InputError
    from .reconstruction.pipeline import photo_preparer, reconstruct_photos

    try:
        with python_warnings.catch_warnings(record=True) as caught:
            python_warnings.simplefilter("always", PhotoWarning)
            preparer = photo_preparer(reconstructor, _detector(args.detector), use_parser=use_parser)
            photos = reconstruct_photos(reconstructor, files, preparer, args.refine,
                                        progress=lambda message: say(f"      {message}"),
                                        show_progress=not args.quiet, start=args.start.replace("-", " "))
    except InputError as error:
        _error(error)
        return EXIT_BAD_INPUT
    except LandmarkDetectorUnavailable as error:
        _error(f"no landmark detector ({args.detector}): {error}")
        return EXIT_BAD_INPUT
    for warning in caught:                    # photo conversions become warnings of the command, others pass on
        if issubclass(warning.category, PhotoWarning):
            warnings.append(str(warning.message))
        else:
            python_warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    warnings += photos.warnings
    return photos


def _save(args: argparse.Namespace, reconstructor, photos, outputs, files: list, warnings: list[str],
          use_parser: bool, say) -> int:
    """Write every output file at once (:func:`~dfmvr_lib.reconstruction.pipeline.save_reconstruction`): ``EXIT_OK``,
    or ``EXIT_WRITE_FAILED`` after the one-line error, with nothing written, whatever failed."""
    from .reconstruction.pipeline import save_reconstruction  # torch-based: lazy (see reconstruct_command)

    title = (f"{reconstructor.run_dir.name} ({reconstructor.config.profile})"
             + (f" + {args.refine} refinement steps" if args.refine else ""))
    prepared = photos.prepared
    try:
        written = save_reconstruction(
            reconstructor, photos.result, prepared.targets, outputs.obj, files=files, colours=args.colours,
            warnings=warnings, title=title, photos=prepared.photos,
            extra={"detector": [p.detector if p is not None else None for p in prepared.photos],
                   "parse_maps": "parser" if use_parser else "landmark polygons"})
    except OSError as error:
        _error(f"could not write the outputs next to {outputs.obj} ({error}); nothing was written")
        return EXIT_WRITE_FAILED
    except Exception as error:                # anything else that fails while making the files: still all or none
        _error(f"could not write the outputs next to {outputs.obj} ({type(error).__name__}: {error}); "
               "nothing was written")
        return EXIT_WRITE_FAILED
    for path in written:
        say(f"      {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dfmvr`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
