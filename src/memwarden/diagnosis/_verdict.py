"""The verdict: memwarden's answer, as plain data, and its JSON form (``memwarden.verdict/1``).

The JSON shape is a contract other tools rely on (CI jobs, benchmarks): see ``docs/reference/verdict.md``.
Keys are only ever added within a schema version, never renamed or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = "memwarden.verdict/1"

VerdictName = Literal[
    "python_leak",
    "native_leak",
    "gpu_leak",
    "allocator_retention",
    "gpu_cache_retention",
    "plateau",
    "stable",
    "inconclusive",
]

LEAK_VERDICTS: frozenset[str] = frozenset({"python_leak", "native_leak", "gpu_leak"})

VERDICT_MEANINGS: dict[str, str] = {
    "python_leak": "Python-visible allocations keep growing (objects never freed)",
    "native_leak": "process memory grows, Python-visible allocations do not (C extension, ctypes, native library)",
    "gpu_leak": "GPU memory held by live tensors keeps growing",
    "allocator_retention": "memory was freed but the allocator keeps it (pymalloc arenas, glibc free chunks): not a leak",
    "gpu_cache_retention": "PyTorch's caching allocator holds far more than live tensors need: not a leak",
    "plateau": "it grew, then levelled off (a warm-up, a cache reaching its bound)",
    "stable": "no meaningful growth",
    "inconclusive": "too few samples or too short a run to say",
}


@dataclass(frozen=True)
class SourceFrame:
    """One frame of an allocation traceback."""

    file: str
    line: int
    function: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SourceFrame:
        return cls(d["file"], int(d["line"]), d.get("function"))


@dataclass(frozen=True)
class Site:
    """A source line whose allocations grew, with the traceback that reaches it."""

    file: str
    line: int
    function: str | None
    size_diff_bytes: int
    count_diff: int
    traceback: tuple[SourceFrame, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "size_diff_bytes": self.size_diff_bytes,
            "count_diff": self.count_diff,
            "traceback": [f.to_json() for f in self.traceback],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Site:
        return cls(
            d["file"],
            int(d["line"]),
            d.get("function"),
            int(d.get("size_diff_bytes", 0)),
            int(d.get("count_diff", 0)),
            tuple(SourceFrame.from_json(f) for f in d.get("traceback", [])),
        )


@dataclass(frozen=True)
class TypeGrowth:
    """A type whose live instances grew."""

    type: str
    count_diff: int
    size_diff_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "count_diff": self.count_diff, "size_diff_bytes": self.size_diff_bytes}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TypeGrowth:
        return cls(d["type"], int(d.get("count_diff", 0)), int(d.get("size_diff_bytes", 0)))


@dataclass(frozen=True)
class Holder:
    """Who keeps objects alive: a path from a root (a module global, a class attribute, a frame ...).

    ``type`` is the held object's qualified type name; ``path`` reads like the code that would reach
    it (``app.cache.EMBEDDINGS._cache[<str>]``); ``root_kind`` says what kind of root is at the base of
    it (``module_global``, ``class_attribute``, ``closure``, ``lru_cache``, ``thread_local``,
    ``frame_local`` or ``unknown``). ``bound`` is set when the container right above the objects is
    bounded and full (a full ``deque(maxlen=N)``): that container cannot grow, though what holds it may.
    ``depth`` counts the references from the root to the object (0 when unknown); ``count`` is how many
    objects were found held along paths of this shape (1 for one object's path). ``via`` names the
    types of the objects between the root and the held object, outermost first (``("logging.handlers
    .MemoryHandler", "list")`` for ``app.log.handler.buffer[<int>]``): what advice is chosen by.
    ``untracked`` is true when the held objects are ones the garbage collector does not track (a
    tuple or dict holding only numbers and strings): nothing in them owns memory outside Python's.

    A path that enters a library's object internals is cut at the object the user reaches (a list of
    DataFrames reads ``app.KEPT[<int>]``, not ``app.KEPT[<int>]._mgr.<ref tuple>[<int>]``): then
    ``type`` is that object's type (``pandas.DataFrame``), the owner the user can act on.

    :func:`memwarden.find_holders` returns one per object; the verdict lists them collapsed by shape.
    """

    type: str
    path: str
    root_kind: str = "unknown"
    bound: str | None = None
    depth: int = 0
    count: int = 1
    via: tuple[str, ...] = ()
    untracked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "path": self.path,
            "root_kind": self.root_kind,
            "bound": self.bound,
            "depth": self.depth,
            "count": self.count,
            "via": list(self.via),
            "untracked": self.untracked,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Holder:
        return cls(
            d["type"],
            d["path"],
            d.get("root_kind", "unknown"),
            d.get("bound"),
            int(d.get("depth", 0)),
            int(d.get("count", 1)),
            tuple(str(v) for v in d.get("via", ())),
            bool(d.get("untracked", False)),
        )


@dataclass(frozen=True)
class CacheGrowthInfo:
    """A cache (``lru_cache``, cachetools, watched container) that grew during the run."""

    name: str
    kind: str
    maxsize: int | None
    currsize: int
    growth_per_s: float

    @property
    def unbounded(self) -> bool:
        return self.maxsize is None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "maxsize": self.maxsize,
            "currsize": self.currsize,
            "growth_per_s": self.growth_per_s,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CacheGrowthInfo:
        return cls(
            d["name"], d["kind"], d.get("maxsize"), int(d.get("currsize", 0)), float(d.get("growth_per_s", 0))
        )


@dataclass(frozen=True)
class GrowthStart:
    """When the growth a leak verdict rests on began, and how fast it has grown since.

    ``t`` is the wall-clock time (seconds since the epoch), ``offset_s`` the seconds since the
    run's first sample: 0 when it grew from the start (a warm-up included), later when the series
    was flat until then (a bend in it, found by a hinge fit). ``rate_bytes_per_s`` is the growth
    since then: the Theil-Sen slope after the bend (from the start: ``growth_bytes_per_s["rss"]``).
    """

    t: float
    offset_s: float
    rate_bytes_per_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 3),
            "offset_s": round(self.offset_s, 3),
            "rate_bytes_per_s": round(self.rate_bytes_per_s, 1),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GrowthStart:
        return cls(float(d["t"]), float(d["offset_s"]), float(d["rate_bytes_per_s"]))


@dataclass(frozen=True)
class EvidenceItem:
    """One piece of evidence as data: a stable code, the figures it rests on, and its sentence.

    ``Verdict.evidence_items`` holds them, so that reports, JSON consumers and exporters read ``code``
    and ``figures`` instead of parsing prose. ``code`` is dotted and stable: ``trend.<metric>``,
    ``trend.recent.<metric>``, ``trend.stopped``, ``window.traced``, ``retention.held``,
    ``retention.freed_into_malloc``, ``python.hidden_growth``, ``cache.full``, ``finding.gpu``;
    ``figures`` maps names to plain numbers or strings (``{"rate_per_s": 1.7e6, "p_value": 0.001}``);
    ``sentence`` is what a person reads. A plain sentence (a verdict recorded before items existed)
    becomes an item with the code ``"note"`` and no figures (:meth:`from_sentence`).
    """

    code: str
    sentence: str
    figures: dict[str, float | int | str | None] = field(default_factory=dict)

    @classmethod
    def from_sentence(cls, sentence: str) -> EvidenceItem:
        return cls("note", sentence)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "figures": dict(self.figures), "sentence": self.sentence}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvidenceItem:
        return cls(str(d["code"]), str(d.get("sentence", "")), dict(d.get("figures", {})))


@dataclass(frozen=True)
class Verdict:
    """memwarden's answer for one run: which layer grows, whether it is a leak, why, and what to do."""

    verdict: VerdictName
    confidence: float
    summary: str
    duration_s: float
    samples: int
    growth_bytes_per_s: dict[str, float | None] = field(default_factory=dict)
    sites: tuple[Site, ...] = ()
    types: tuple[TypeGrowth, ...] = ()
    holders: tuple[Holder, ...] = ()
    caches: tuple[CacheGrowthInfo, ...] = ()
    advice: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    """Plain sentences with the numbers the decision rests on."""
    evidence_items: tuple[EvidenceItem, ...] = ()
    """The same evidence as data: a stable code, its figures and the sentence (``evidence`` holds the
    sentences alone, as schema ``memwarden.verdict/1`` always had them)."""
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    growth_began: GrowthStart | None = None
    """For a leak: when the growth began (a long run may be flat for days before); else ``None``."""

    @property
    def leak(self) -> bool:
        return self.verdict in LEAK_VERDICTS

    def to_json(self) -> dict[str, Any]:
        """The ``memwarden.verdict/1`` JSON object."""
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "leak": self.leak,
            "confidence": round(self.confidence, 3),
            "summary": self.summary,
            "duration_s": round(self.duration_s, 3),
            "samples": self.samples,
            "growth_bytes_per_s": {
                k: (None if v is None else round(v, 1)) for k, v in self.growth_bytes_per_s.items()
            },
            "sites": [s.to_json() for s in self.sites],
            "types": [t.to_json() for t in self.types],
            "holders": [h.to_json() for h in self.holders],
            "caches": [c.to_json() for c in self.caches],
            "advice": list(self.advice),
            "evidence": list(self.evidence),
            "evidence_items": [e.to_json() for e in self.evidence_items],
            "layers": self.layers,
            "growth_began": None if self.growth_began is None else self.growth_began.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        """Rebuild a verdict from its JSON form (e.g. stored in a timeline)."""
        return cls(
            verdict=data["verdict"],
            confidence=float(data.get("confidence", 0.0)),
            summary=str(data.get("summary", "")),
            duration_s=float(data.get("duration_s", 0.0)),
            samples=int(data.get("samples", 0)),
            growth_bytes_per_s=dict(data.get("growth_bytes_per_s", {})),
            sites=tuple(Site.from_json(x) for x in data.get("sites", [])),
            types=tuple(TypeGrowth.from_json(x) for x in data.get("types", [])),
            holders=tuple(Holder.from_json(x) for x in data.get("holders", [])),
            caches=tuple(CacheGrowthInfo.from_json(x) for x in data.get("caches", [])),
            advice=tuple(data.get("advice", [])),
            evidence=tuple(data.get("evidence", [])),
            evidence_items=tuple(EvidenceItem.from_json(x) for x in data.get("evidence_items", [])),
            layers=dict(data.get("layers", {})),
            growth_began=GrowthStart.from_json(began) if (began := data.get("growth_began")) else None,
        )
