"""Bounded LLM state: conversation memory, sessions, embeddings and caches that cannot grow without limit.

Importing this package loads no tokenizer, NumPy or Redis client: each is loaded when the first
store that needs it is made.
"""

from __future__ import annotations

from ._archive import Archive, RedisArchive, SQLiteArchive
from ._caches import BufferPool, BytesCache, CacheStats, WeakValueCache
from ._embeddings import EmbeddingStore, SQLiteVectorArchive
from ._memory import ConversationMemory, MemoryStats
from ._message import Message
from ._registry import Shrinkable, shrink_all, stores
from ._sessions import SessionStats, SessionStore
from ._sizing import deep_sizeof
from ._summary import extractive_summary
from ._tokens import ApproximateCounter, HuggingFaceCounter, TiktokenCounter, TokenCounter, default_counter

__all__ = [
    "ApproximateCounter",
    "Archive",
    "BufferPool",
    "BytesCache",
    "CacheStats",
    "ConversationMemory",
    "EmbeddingStore",
    "HuggingFaceCounter",
    "MemoryStats",
    "Message",
    "RedisArchive",
    "SQLiteArchive",
    "SQLiteVectorArchive",
    "SessionStats",
    "SessionStore",
    "Shrinkable",
    "TiktokenCounter",
    "TokenCounter",
    "WeakValueCache",
    "deep_sizeof",
    "default_counter",
    "extractive_summary",
    "shrink_all",
    "stores",
]
