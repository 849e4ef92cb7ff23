"""Which source lines hold the GPU memory: PyTorch's allocation history, read for a short window.

:class:`GpuHistoryRecorder` turns on PyTorch's own allocation recorder
(``torch.cuda.memory._record_memory_history``) for a bounded window, takes a snapshot
(``torch.cuda.memory._snapshot()``), turns the recorder off again and reports the Python
source lines whose blocks are still allocated, grouped by ``file:line:function``, largest
first. Each block is put on the first frame of the user's own code in its traceback (frames of
torch, memwarden, the standard library and installed packages are skipped).

It never imports torch and never starts CUDA: it runs only when the program has imported
torch and initialised CUDA itself. Recording costs about 2 µs per allocation (PyTorch's
figure for Python stacks) while the window is open, and nothing once it is closed.

:func:`parse_snapshot` is the pure part: it reads a snapshot dictionary of the documented
shape (``segments`` → ``blocks`` with ``state`` and ``frames`` of ``filename``/``line``/
``name``; ``device_traces`` of alloc/free events), so it is tested on recorded fixtures.
:func:`find_gpu_holders` then finds the live tensors behind a site's blocks and asks the
holder search who keeps them alive.
"""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..exceptions import ProbeUnavailable, UsageError
from ..probes._base import Availability
from ..probes.gpu import TorchModuleSource, torch_if_cuda_initialised

if TYPE_CHECKING:
    from ..diagnosis._verdict import Holder

__all__ = [
    "GpuAllocationReport",
    "GpuAllocationSite",
    "GpuFrame",
    "GpuHistoryRecorder",
    "FrameClassifier",
    "find_gpu_holders",
    "live_cuda_tensors",
    "parse_snapshot",
]

_LAYER = "gpu"
_MAX_SAMPLE_ADDRESSES = 64
_MAX_SIZES = 16
_MAX_TRACEBACK = 12
_SKIPPED_PACKAGES = frozenset({"torch", "memwarden", "triton", "_pytest", "pytest", "pluggy"})


def _default_torch() -> Any:
    return sys.modules.get("torch")


@dataclass(frozen=True)
class GpuFrame:
    """One Python frame of an allocation's traceback."""

    file: str
    line: int
    function: str


@dataclass(frozen=True)
class GpuAllocationSite:
    """A source line whose GPU blocks were still allocated when the window closed.

    ``bytes`` and ``count`` are those blocks (sizes as the allocator rounded them);
    ``user_code`` is false when no frame of the user's own code was in the traceback and the
    line is a library's; ``traceback`` is innermost call first; ``sample_addresses`` and
    ``requested_sizes`` (a bounded sample) let :func:`find_gpu_holders` find the tensors;
    ``allocations_in_window`` counts every allocation the line made during the window,
    freed or not (churn versus what survives).
    """

    file: str
    line: int
    function: str
    bytes: int
    count: int
    user_code: bool
    traceback: tuple[GpuFrame, ...] = ()
    sample_addresses: tuple[int, ...] = ()
    requested_sizes: tuple[int, ...] = ()
    allocations_in_window: int = 0


@dataclass(frozen=True)
class GpuAllocationReport:
    """Where the GPU memory that is still allocated came from, per source line.

    ``allocated_bytes``/``reserved_bytes`` are the snapshot's totals; ``untraced_bytes`` and
    ``untraced_blocks`` are allocated blocks with no traceback (allocated before the window
    opened, so the recorder did not see them); ``trace_events`` counts the alloc/free events
    the window recorded.
    """

    sites: tuple[GpuAllocationSite, ...]
    allocated_bytes: int
    reserved_bytes: int
    untraced_bytes: int
    untraced_blocks: int
    trace_events: int = 0
    window_s: float | None = None
    notes: tuple[str, ...] = ()

    def to_event_data(self, holders: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The report as a ``gpu_sites`` timeline event (the shape of the verdict's ``sites``)."""
        return {
            "sites": [
                {
                    "file": s.file,
                    "line": s.line,
                    "function": s.function,
                    "size_diff_bytes": s.bytes,
                    "count_diff": s.count,
                    "traceback": [
                        {"file": f.file, "line": f.line, "function": f.function} for f in s.traceback
                    ],
                }
                for s in self.sites
            ],
            "holders": [dict(h) for h in holders],
            "untraced_bytes": self.untraced_bytes,
            "window_s": self.window_s,
        }


def _installed_package(name: str) -> str | None:
    for marker in ("/site-packages/", "/dist-packages/"):
        at = name.rfind(marker)
        if at >= 0:
            rest = name[at + len(marker) :]
            return rest.split("/", 1)[0].removesuffix(".py")
    return None


def _default_library_prefixes() -> tuple[str, ...]:
    prefixes: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        if paths.get(key):
            prefixes.add(os.path.realpath(paths[key]))
            prefixes.add(paths[key])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the memwarden package
    prefixes.add(here)
    torch = sys.modules.get("torch")
    torch_file = getattr(torch, "__file__", None)
    if isinstance(torch_file, str):
        prefixes.add(os.path.dirname(torch_file))
    return tuple(sorted(prefixes))


@dataclass(frozen=True)
class FrameClassifier:
    """Tells the user's own code from the libraries' in a traceback.

    A frame is a library's when its file is under ``library_prefixes`` (the standard library
    and the installation's site-packages by default), under a ``site-packages`` or
    ``dist-packages`` folder, in torch or memwarden, or not a Python file at all (C++ frames,
    ``<frozen ...>``). Frames of installed packages other than torch and memwarden are the
    second choice when a traceback has no user frame at all (an application installed as a
    package).
    """

    library_prefixes: tuple[str, ...] = field(default_factory=_default_library_prefixes)
    skipped_packages: frozenset[str] = _SKIPPED_PACKAGES

    def rank(self, filename: str) -> int:
        """0 for the user's own code, 1 for a third-party package, 2 for torch, stdlib, C++."""
        name = filename.replace("\\", "/")
        if not name or name == "??" or name.startswith("<frozen"):
            return 2
        if not name.endswith(".py") and not name.startswith("<"):
            return 2  # C/C++ frames (stacks="all"), shared objects
        package = _installed_package(name)
        if package is not None:
            return 2 if package in self.skipped_packages else 1
        for prefix in self.library_prefixes:
            if prefix and name.startswith(prefix.rstrip("/") + "/"):
                return 2
        return 0


def _frames(raw: object) -> tuple[GpuFrame, ...]:
    if not isinstance(raw, Sequence):
        return ()
    out: list[GpuFrame] = []
    for f in raw:
        if not isinstance(f, Mapping):
            continue
        try:
            out.append(
                GpuFrame(str(f.get("filename", "??")), int(f.get("line", 0)), str(f.get("name", "??")))
            )
        except (TypeError, ValueError):
            continue
    return tuple(out)


def _site_frame(frames: tuple[GpuFrame, ...], classify: FrameClassifier) -> tuple[GpuFrame, bool]:
    """The frame a block is put on: the innermost user frame, else the innermost third-party one."""
    ranks = [classify.rank(f.file) for f in frames]
    for wanted in (0, 1):
        for frame, rank in zip(frames, ranks, strict=True):
            if rank == wanted:
                return frame, wanted == 0
    return frames[0], False


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    return default


def parse_snapshot(
    snapshot: Mapping[str, Any],
    *,
    classifier: FrameClassifier | None = None,
    window_s: float | None = None,
    max_sites: int = 20,
    notes: Sequence[str] = (),
) -> GpuAllocationReport:
    """The still-allocated blocks of a ``torch.cuda.memory._snapshot()``, grouped by source line.

    Only blocks in state ``active_allocated`` count (``inactive`` blocks are cache; blocks
    awaiting a stream's free are on their way out). Sites come largest first.
    """
    classify = classifier or FrameClassifier()
    allocated = reserved = untraced_bytes = untraced_blocks = 0
    acc: dict[tuple[str, int, str], dict[str, Any]] = {}
    segments = snapshot.get("segments", ())
    for seg in segments if isinstance(segments, Sequence) else ():
        if not isinstance(seg, Mapping):
            continue
        reserved += _int(seg.get("total_size"))
        blocks = seg.get("blocks", ())
        for block in blocks if isinstance(blocks, Sequence) else ():
            if not isinstance(block, Mapping) or block.get("state") != "active_allocated":
                continue
            size = _int(block.get("size"))
            allocated += size
            frames = _frames(block.get("frames"))
            if not frames:
                untraced_bytes += size
                untraced_blocks += 1
                continue
            frame, user = _site_frame(frames, classify)
            key = (frame.file, frame.line, frame.function)
            entry = acc.get(key)
            if entry is None:
                entry = acc[key] = {
                    "bytes": 0,
                    "count": 0,
                    "user": user,
                    "traceback": frames[:_MAX_TRACEBACK],
                    "addresses": [],
                    "sizes": [],
                    "allocs": 0,
                }
            entry["bytes"] += size
            entry["count"] += 1
            if len(entry["addresses"]) < _MAX_SAMPLE_ADDRESSES and "address" in block:
                entry["addresses"].append(_int(block.get("address")))
            requested = _int(block.get("requested_size"), size)
            if requested not in entry["sizes"] and len(entry["sizes"]) < _MAX_SIZES:
                entry["sizes"].append(requested)

    trace_events = 0
    traces = snapshot.get("device_traces", ())
    for device_trace in traces if isinstance(traces, Sequence) else ():
        for event in device_trace if isinstance(device_trace, Sequence) else ():
            if not isinstance(event, Mapping):
                continue
            trace_events += 1
            if event.get("action") != "alloc":
                continue
            frames = _frames(event.get("frames"))
            if frames:
                frame, _ = _site_frame(frames, classify)
                entry = acc.get((frame.file, frame.line, frame.function))
                if entry is not None:
                    entry["allocs"] += 1

    sites = sorted(
        (
            GpuAllocationSite(
                file=k[0],
                line=k[1],
                function=k[2],
                bytes=v["bytes"],
                count=v["count"],
                user_code=v["user"],
                traceback=v["traceback"],
                sample_addresses=tuple(v["addresses"]),
                requested_sizes=tuple(v["sizes"]),
                allocations_in_window=v["allocs"],
            )
            for k, v in acc.items()
        ),
        key=lambda s: (-s.bytes, -s.count, s.file, s.line),
    )
    return GpuAllocationReport(
        sites=tuple(sites[: max(max_sites, 0)]),
        allocated_bytes=allocated,
        reserved_bytes=reserved,
        untraced_bytes=untraced_bytes,
        untraced_blocks=untraced_blocks,
        trace_events=trace_events,
        window_s=window_s,
        notes=tuple(notes),
    )


class GpuHistoryRecorder:
    """Records which source lines allocate GPU memory, for a bounded window, with PyTorch's recorder.

    ``start()`` turns on ``torch.cuda.memory._record_memory_history(enabled="all",
    context="all", stacks=..., max_entries=...)``; ``stop()`` takes ``_snapshot()``, turns the
    recorder off (``enabled=None``) and returns a :class:`GpuAllocationReport`;
    ``record(seconds)`` does both around a wait (call it from a thread other than the one
    doing the work, e.g. the sampler's). If the program already had the recorder on, it is
    left on and untouched. Usable as a context manager; the report is then in ``.report``.

    ``max_entries`` bounds PyTorch's ring of alloc/free events (each several KB);
    the tracebacks of live blocks are kept whatever it is.
    """

    def __init__(
        self,
        torch_module: TorchModuleSource = _default_torch,
        *,
        max_entries: int = 10_000,
        stacks: Literal["python", "all"] = "python",
        classifier: FrameClassifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_sites: int = 20,
    ) -> None:
        if max_entries < 1:
            raise UsageError("max_entries must be at least 1")
        self._torch_module = torch_module
        self._max_entries = max_entries
        self._stacks = stacks
        self._classifier = classifier
        self._clock = clock
        self._max_sites = max_sites
        self._lock = threading.Lock()
        self._torch: Any = None
        self._owns = False
        self._started_at: float | None = None
        self.report: GpuAllocationReport | None = None

    @property
    def recording(self) -> bool:
        """Whether a window is open."""
        return self._started_at is not None

    def available(self) -> Availability:
        """Yes when the program's torch has CUDA running and the recorder API; else why not."""
        torch, reason = torch_if_cuda_initialised(self._torch_module)
        if torch is None:
            return Availability.no(reason)
        memory = getattr(torch.cuda, "memory", None)
        if not callable(getattr(memory, "_record_memory_history", None)) or not callable(
            getattr(memory, "_snapshot", None)
        ):
            return Availability.no("this torch has no torch.cuda.memory._record_memory_history/_snapshot")
        return Availability.yes()

    def start(self) -> None:
        """Open the window; raises ``ProbeUnavailable`` when it cannot be recorded here."""
        with self._lock:
            if self._started_at is not None:
                return
            ok = self.available()
            if not ok:
                raise ProbeUnavailable(_LAYER, ok.reason)
            torch, _ = torch_if_cuda_initialised(self._torch_module)
            already_on = False
            is_enabled = getattr(getattr(torch, "_C", None), "_cuda_isHistoryEnabled", None)
            if callable(is_enabled):
                try:
                    already_on = bool(is_enabled())
                except Exception:
                    already_on = False
            if not already_on:
                try:
                    torch.cuda.memory._record_memory_history(
                        enabled="all", context="all", stacks=self._stacks, max_entries=self._max_entries
                    )
                except Exception as exc:
                    raise ProbeUnavailable(
                        _LAYER, f"_record_memory_history failed ({type(exc).__name__}: {exc})"
                    ) from exc
            self._torch = torch
            self._owns = not already_on
            self._started_at = self._clock()

    def stop(self) -> GpuAllocationReport:
        """Close the window: snapshot, turn the recorder off (if memwarden turned it on), report."""
        with self._lock:
            if self._started_at is None:
                raise ProbeUnavailable(_LAYER, "no recording window is open (call start() first)")
            torch, started, owns = self._torch, self._started_at, self._owns
            self._torch, self._started_at, self._owns = None, None, False
            notes: list[str] = []
            if not owns:
                notes.append("the program had PyTorch's allocation recorder on already; memwarden left it on")
            try:
                snapshot = torch.cuda.memory._snapshot()
            except Exception as exc:
                raise ProbeUnavailable(_LAYER, f"_snapshot() failed ({type(exc).__name__}: {exc})") from exc
            finally:
                if owns:
                    try:
                        torch.cuda.memory._record_memory_history(enabled=None)
                    except Exception as exc:
                        notes.append(f"turning the recorder off failed ({type(exc).__name__}: {exc})")
            window = max(self._clock() - started, 0.0)
            if not isinstance(snapshot, Mapping):
                raise ProbeUnavailable(
                    _LAYER, f"_snapshot() returned a {type(snapshot).__name__}, not a dict"
                )
            self.report = parse_snapshot(
                snapshot,
                classifier=self._classifier,
                window_s=window,
                max_sites=self._max_sites,
                notes=notes,
            )
            return self.report

    def record(self, seconds: float, *, wait: Callable[[float], object] = time.sleep) -> GpuAllocationReport:
        """Open a window for ``seconds``, then close it and report (the recorder is off afterwards)."""
        if seconds < 0:
            raise UsageError("seconds must not be negative")
        self.start()
        try:
            wait(seconds)
        finally:
            report = self.stop()
        return report

    def __enter__(self) -> GpuHistoryRecorder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.recording:
            self.stop()


def live_cuda_tensors(
    torch: Any,
    *,
    addresses: Collection[int] = (),
    sizes: Collection[int] = (),
    limit: int = 5,
    device_type: str = "cuda",
) -> list[Any]:
    """Live tensors whose storage starts at one of ``addresses`` (failing that: is one of ``sizes`` bytes).

    Walks ``gc.get_objects()`` once; one tensor per storage (views of it are skipped); at most
    ``limit``. Only tensors on ``device_type`` count (``"cuda"``; ``"cpu"`` lets the same search
    be checked on a machine without a GPU).
    """
    wanted_addresses = set(addresses)
    wanted_sizes = set(sizes)
    by_address: list[Any] = []
    by_size: list[Any] = []
    seen: set[int] = set()
    is_tensor = getattr(torch, "is_tensor", None)
    if not callable(is_tensor):
        return []
    for obj in gc.get_objects():
        try:
            if not is_tensor(obj) or obj.device.type != device_type:
                continue
            storage = obj.untyped_storage()
            ptr = int(storage.data_ptr())
            nbytes = int(storage.nbytes())
        except Exception:  # fake/meta tensors, subclasses that refuse: not ours to find
            continue
        if ptr in seen:
            continue
        if ptr in wanted_addresses:
            seen.add(ptr)
            by_address.append(obj)
            if len(by_address) >= limit:
                break
        elif nbytes in wanted_sizes and len(by_size) < limit:
            seen.add(ptr)
            by_size.append(obj)
    return (by_address or by_size)[:limit]


def find_gpu_holders(
    torch: Any, site: GpuAllocationSite, *, max_targets: int = 5, **options: Any
) -> list[Holder]:
    """Who keeps the tensors of ``site`` alive: the holder paths of a few of its live tensors.

    Finds live CUDA tensors at the site's block addresses (or of its requested sizes) and
    passes them to the holder search (``memwarden.attribution._holders.find_holders``, with
    ``options`` passed through). Returns ``[]`` when CUDA is not running or none is found.
    """
    if torch is None or not getattr(getattr(torch, "cuda", None), "is_initialized", lambda: False)():
        return []
    targets = live_cuda_tensors(
        torch, addresses=site.sample_addresses, sizes=site.requested_sizes, limit=max_targets
    )
    if not targets:
        return []
    from ._holders import find_holders

    try:
        return list(find_holders(targets, **options))
    finally:
        targets.clear()
