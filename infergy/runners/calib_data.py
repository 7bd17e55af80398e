"""INT8 calibration data supplied by the user: a directory of ``.npy`` files or one ``.npz``.

Each array is a batch of model inputs, shape ``(N, *sample_shape)``, floating point and
preprocessed as the model expects (TensorRT's entropy calibrator sees exactly these values).
:func:`load_calibration_data` checks everything that needs no model (readable, float,
finite, one sample shape across arrays) and hashes the data for the plan cache key;
:meth:`CalibrationSet.check_sample_shape` checks the shape against the network once TensorRT
has parsed it; :meth:`CalibrationSet.batches` re-chunks the arrays into the calibrator's
fixed batch. Nothing here needs TensorRT (the unit tests run it on any machine).

Example:
    >>> data = load_calibration_data(Path("calib/"))           # doctest: +SKIP
    >>> data.check_sample_shape((3, 224, 224), "resnet50")     # doctest: +SKIP
    >>> for batch in data.batches(32, np.float32): ...         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from infergy.errors import ModelError, WorkloadError
from infergy.runners.types import WorkloadConfig

GENERATED = "generated"
"""The calibration identity of an int8 plan calibrated on generated (random) inputs."""
HASH_CHUNK_BYTES = 1 << 20
_HINT = (
    "give --calibration-data a directory of .npy files or one .npz file, each array a batch "
    "of preprocessed float inputs shaped (N, *model input shape without the batch axis)"
)


@dataclass(frozen=True)
class CalibrationSet:
    """Validated calibration arrays (read again, lazily, when batches are asked for).

    Attributes:
        path: the directory or ``.npz`` file.
        sources: the arrays' names in use order (``.npy`` file names, or ``.npz`` keys).
        sample_shape: one sample's shape (the arrays' shape without the first axis).
        samples: the total number of samples.
        sha256: hash of the names and bytes of every file (the plan cache key part).
    """

    path: Path
    sources: tuple[str, ...]
    sample_shape: tuple[int, ...]
    samples: int
    sha256: str

    def check_sample_shape(self, model_sample: tuple[int, ...], model: str) -> None:
        """Refuse data whose sample shape is not the network's input shape.

        Raises:
            ModelError: the shapes differ.
        """
        if tuple(model_sample) != self.sample_shape:
            msg = (
                f"calibration data {self.path} holds samples of shape {self.sample_shape}, but "
                f"{model} takes {tuple(model_sample)} (arrays must be (N, *{tuple(model_sample)}))"
            )
            raise ModelError(msg, hint=_HINT)

    def arrays(self) -> Iterator[npt.NDArray[Any]]:
        """Every array in :attr:`sources` order (``.npy`` files memory-mapped)."""
        if self.path.is_dir():
            for name in self.sources:
                yield _read(self.path / name, name)
        else:
            with np.load(self.path, allow_pickle=False) as npz:
                for key in self.sources:
                    yield _read_member(npz, key, self.path)

    def batch_count(self, batch: int) -> int:
        """How many batches of ``batch`` samples :meth:`batches` yields."""
        return math.ceil(self.samples / batch)

    def batches(self, batch: int, dtype: npt.DTypeLike) -> Iterator[npt.NDArray[Any]]:
        """C-contiguous ``(batch, *sample_shape)`` arrays of ``dtype`` covering every sample once.

        The last batch is completed with samples from the start (the calibrator's batch shape
        is fixed), so a set smaller than one batch still calibrates.
        """
        if batch < 1:
            msg = f"calibration batch must be >= 1, got {batch}"
            raise ValueError(msg)
        out = np.empty((batch, *self.sample_shape), dtype=dtype)
        filled, emitted = 0, 0
        while emitted < self.batch_count(batch):
            for arr in self.arrays():
                pos = 0
                while pos < len(arr):
                    k = min(batch - filled, len(arr) - pos)
                    out[filled : filled + k] = arr[pos : pos + k]
                    filled, pos = filled + k, pos + k
                    if filled == batch:
                        yield out.copy()
                        filled, emitted = 0, emitted + 1
                        if emitted == self.batch_count(batch):
                            return

    def describe(self) -> dict[str, Any]:
        """Provenance: where the data came from and what it is."""
        return {
            "path": str(self.path),
            "arrays": len(self.sources),
            "samples": self.samples,
            "sample_shape": list(self.sample_shape),
            "sha256": self.sha256,
        }


def load_calibration_data(path: Path) -> CalibrationSet:
    """Check and hash a directory of ``.npy`` files or one ``.npz`` file.

    Raises:
        WorkloadError: the path is missing, of another kind, empty, unreadable, or holds
            arrays that are not float, not finite, not at least 2-D, or of differing
            sample shapes.
    """
    if not path.exists():
        msg = f"calibration data {path} not found"
        raise WorkloadError(msg, hint=_HINT)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npy" and p.is_file())
        if not files:
            msg = f"calibration data directory {path} has no .npy files"
            raise WorkloadError(msg, hint=_HINT)
        sources = tuple(p.name for p in files)
        shapes = [_check(_read(p, p.name), f"{path}/{p.name}") for p in files]
        digest = _hash_files(files, path)
    elif path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                sources = tuple(npz.files)
                shapes = [_check(_read_member(npz, k, path), f"{path}[{k}]") for k in sources]
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            msg = f"cannot read calibration data {path}: {err}"
            raise WorkloadError(msg, hint=_HINT) from err
        if not sources:
            msg = f"calibration data {path} holds no arrays"
            raise WorkloadError(msg, hint=_HINT)
        digest = _hash_files([path], path.parent)
    else:
        msg = f"calibration data {path} is neither a directory of .npy files nor a .npz file"
        raise WorkloadError(msg, hint=_HINT)
    sample_shapes = {s[1:] for s in shapes}
    if len(sample_shapes) > 1:
        first = shapes[0][1:]
        odd = next(i for i, s in enumerate(shapes) if s[1:] != first)
        msg = (
            f"calibration arrays disagree on the sample shape: {sources[0]} has {first}, "
            f"{sources[odd]} has {shapes[odd][1:]}"
        )
        raise WorkloadError(msg, hint=_HINT)
    return CalibrationSet(
        path=path, sources=sources, sample_shape=shapes[0][1:],
        samples=sum(s[0] for s in shapes), sha256=digest,
    )  # fmt: skip


def calibration_identity(cfg: WorkloadConfig) -> tuple[str | None, CalibrationSet | None]:
    """What an int8 plan is calibrated on: (key part, data).

    ``(None, None)`` for other precisions (the key part stays out of the plan digest),
    ``("generated", None)`` for int8 without data, ``(sha256, data)`` with data.
    """
    if cfg.precision != "int8":
        return None, None
    if cfg.calibration_data is None:
        return GENERATED, None
    data = load_calibration_data(cfg.calibration_data)
    return data.sha256, data


def _read(file: Path, name: str) -> npt.NDArray[Any]:
    try:
        arr: npt.NDArray[Any] = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        msg = f"cannot read calibration array {name}: {err}"
        raise WorkloadError(msg, hint=_HINT) from err
    return arr


def _read_member(npz: Any, key: str, path: Path) -> npt.NDArray[Any]:
    try:
        arr: npt.NDArray[Any] = npz[key]
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        msg = f"cannot read calibration array {path}[{key}]: {err}"
        raise WorkloadError(msg, hint=_HINT) from err
    return arr


def _check(arr: npt.NDArray[Any], where: str) -> tuple[int, ...]:
    """The array's shape, after checking it is a non-empty, finite, float batch."""
    if not np.issubdtype(arr.dtype, np.floating):
        msg = (
            f"calibration array {where} has dtype {arr.dtype}; inputs must be float "
            "(float16/32/64), preprocessed as the model expects"
        )
        raise WorkloadError(msg, hint=_HINT)
    if arr.ndim < 2 or arr.shape[0] < 1:
        msg = f"calibration array {where} has shape {arr.shape}; expected (N, *sample shape)"
        raise WorkloadError(msg, hint=_HINT)
    if not np.isfinite(arr).all():
        msg = f"calibration array {where} holds NaN or infinite values"
        raise WorkloadError(msg, hint=_HINT)
    return tuple(int(d) for d in arr.shape)


def _hash_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\0{f.stat().st_size}\0".encode())
        with f.open("rb") as fh:
            while chunk := fh.read(HASH_CHUNK_BYTES):
                h.update(chunk)
    return h.hexdigest()
