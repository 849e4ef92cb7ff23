"""EmbeddingStore: bounded rows, exact top-k cosine search, LRU/TTL eviction, the archived tier."""

from __future__ import annotations

from pathlib import Path

import pytest

import memwarden
from memwarden.exceptions import UsageError
from memwarden.llm import EmbeddingStore, SQLiteVectorArchive
from memwarden.testing import FakeClock

np = pytest.importorskip("numpy", reason="numpy is not installed (the [llm] extra)")


def _vectors(n: int, dim: int, seed: int = 0) -> object:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_search_is_exact_top_k_cosine() -> None:
    """search() returns the same ids and scores, in the same order, as a brute-force cosine ranking."""
    vecs = _vectors(500, 32)
    store = EmbeddingStore(32, capacity=1000, watch=False)
    for i, v in enumerate(vecs):  # type: ignore[arg-type]
        store.add(f"doc{i}", v)
    q = _vectors(1, 32, seed=9)[0]  # type: ignore[index]
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)  # type: ignore[operator]
    scores = unit @ (q / np.linalg.norm(q))
    expected = np.argsort(-scores)[:5]
    got = store.search(q, k=5)
    assert [key for key, _ in got] == [f"doc{i}" for i in expected]
    assert [s for _, s in got] == pytest.approx([float(scores[i]) for i in expected], rel=1e-5)


def test_capacity_evicts_least_recently_used() -> None:
    """Past capacity the least recently used vector goes; a search hit counts as a use."""
    vecs = _vectors(4, 8)
    store = EmbeddingStore(8, capacity=3, watch=False)
    for i in range(3):
        store.add(f"v{i}", vecs[i])  # type: ignore[index]
    assert store.search(vecs[0], k=1)[0][0] == "v0"  # type: ignore[index]
    store.add("v3", vecs[3])  # type: ignore[index]
    assert "v1" not in store and {"v0", "v2", "v3"} <= {k for k, _ in store.search(vecs[0], k=3)}  # type: ignore[index]
    assert len(store) == 3 and store.evicted == 1


def test_byte_budget_bounds_the_matrix() -> None:
    """max_bytes bounds the rows: the matrix never grows past max_bytes // (dim * 4) rows."""
    store = EmbeddingStore(64, max_bytes=64 * 4 * 100, watch=False)
    for i, v in enumerate(_vectors(1000, 64)):  # type: ignore[arg-type]
        store.add(str(i), v)
    assert store.capacity == 100 and len(store) == 100
    assert store._matrix.shape[0] == 100


def test_ttl_expires_unused_vectors() -> None:
    """Vectors unused for ttl_s leave at the next call."""
    clock = FakeClock()
    store = EmbeddingStore(4, capacity=10, ttl_s=60, clock=clock, watch=False)
    store.add("old", [1, 0, 0, 0])
    clock.advance(50)
    store.add("new", [0, 1, 0, 0])
    clock.advance(20)
    assert [k for k, _ in store.search([1, 1, 0, 0], k=5)] == ["new"]
    assert store.expired == 1


def test_archived_tier_keeps_evicted_vectors_searchable(tmp_path: Path) -> None:
    """Evicted vectors go to the SQLite tier: get() and search(include_archived=True) find them,
    restore() brings one back into memory."""
    archive = SQLiteVectorArchive(tmp_path / "vectors.db")
    vecs = _vectors(50, 16)
    store = EmbeddingStore(16, capacity=10, archive=archive, watch=False)
    for i, v in enumerate(vecs):  # type: ignore[arg-type]
        store.add(f"d{i}", v, meta={"i": i})
    assert len(store) == 10 and archive.count() == 40
    assert store.search(vecs[0], k=1)[0][0] != "d0"  # type: ignore[index]
    top = store.search(vecs[0], k=1, include_archived=True)  # type: ignore[index]
    assert top[0][0] == "d0" and top[0][1] == pytest.approx(1.0, abs=1e-5)
    unit0 = vecs[0] / np.linalg.norm(vecs[0])  # type: ignore[index]
    assert np.allclose(store.get("d0"), unit0, atol=1e-6)
    assert store.restore("d0") and "d0" in store and archive.get("d0") is None


def test_shrink_protocol_gives_rows_back(tmp_path: Path) -> None:
    """shrink(0.5) archives the least recently used half and returns the matrix bytes released."""
    archive = SQLiteVectorArchive(tmp_path / "v.db")
    store = EmbeddingStore(128, capacity=4096, archive=archive, name="tests.embeddings")
    for i, v in enumerate(_vectors(2048, 128)):  # type: ignore[arg-type]
        store.add(str(i), v)
    (info,) = [c for c in memwarden.find_caches() if c.name == "tests.embeddings"]
    assert (info.currsize, info.maxsize) == (2048, 4096)
    before = store.nbytes
    released = store.shrink(0.5)
    assert released > before * 0.4 and len(store) == 1024 and archive.count() == 1024
    assert store.clear() > 0 and len(store) == 0
    memwarden.unwatch(store)


def test_bad_vectors_are_refused() -> None:
    """A vector of the wrong dimension, or a zero vector, is a clear UsageError."""
    store = EmbeddingStore(3, capacity=5, watch=False)
    with pytest.raises(UsageError, match="dimension 2"):
        store.add("a", [1.0, 2.0])
    with pytest.raises(UsageError, match="zero"):
        store.add("a", [0.0, 0.0, 0.0])
    with pytest.raises(UsageError, match="capacity or max_bytes"):
        EmbeddingStore(3)
