"""LlamaIndex: a chat store whose messages live in a bounded memwarden store.

    from llama_index.core.memory import ChatMemoryBuffer
    from memwarden.llm import SessionStore
    from memwarden.llm.integrations.llamaindex import MemwardenChatStore

    chat_store = MemwardenChatStore.from_store(SessionStore(max_sessions=10_000, memory={"max_messages": 40}))
    memory = ChatMemoryBuffer.from_defaults(token_limit=3000, chat_store=chat_store, chat_store_key=user_id)

LlamaIndex's ``SimpleChatStore`` keeps every message of every key (``ChatMemoryBuffer``'s
``token_limit`` bounds what ``get()`` returns, and it recounts the stored messages on each call);
here the store's budgets bound what is kept, so ``get()`` only ever sees the bounded window.
Needs ``llama-index-core`` (``pip install "memwarden[llamaindex]"``).
"""

from __future__ import annotations

from typing import Any

from memwarden.exceptions import UsageError
from memwarden.llm._message import Message
from memwarden.llm._sessions import SessionStore

try:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.core.storage.chat_store.base import BaseChatStore
    from pydantic import PrivateAttr
except ImportError:  # pragma: no cover - exercised only without the extra
    raise UsageError(
        'memwarden.llm.integrations.llamaindex needs llama-index-core: pip install "memwarden[llamaindex]"'
    ) from None


def to_llamaindex(msg: Message) -> ChatMessage:
    """A stored message as a LlamaIndex ``ChatMessage``."""
    try:
        role = MessageRole(msg.role)
    except ValueError:
        role = MessageRole.USER
    return ChatMessage(role=role, content=msg.content)


class MemwardenChatStore(BaseChatStore):
    """A LlamaIndex ``BaseChatStore`` over a :class:`~memwarden.llm.SessionStore` (one key per session)."""

    _store: SessionStore = PrivateAttr()

    @classmethod
    def from_store(cls, store: SessionStore) -> MemwardenChatStore:
        chat_store = cls()
        chat_store._store = store
        return chat_store

    @classmethod
    def class_name(cls) -> str:
        return "MemwardenChatStore"

    @property
    def store(self) -> SessionStore:
        return self._store

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        memory = self._store.get(key)
        memory.clear(archive=False)
        for message in messages:
            self.add_message(key, message)

    def get_messages(self, key: str) -> list[ChatMessage]:
        memory = self._store.peek(key)
        return [to_llamaindex(m) for m in memory.messages()] if memory is not None else []

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        content: Any = message.content
        role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
        self._store.append(key, role, "" if content is None else str(content))

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        memory = self._store.peek(key)
        if memory is None:
            return None
        out = [to_llamaindex(m) for m in memory.window()]
        memory.clear(archive=False)
        self._store.end(key)
        return out

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        memory = self._store.peek(key)
        msg = memory.pop(idx) if memory is not None else None
        return to_llamaindex(msg) if msg is not None else None

    def delete_last_message(self, key: str) -> ChatMessage | None:
        return self.delete_message(key, -1)

    def get_keys(self) -> list[str]:
        return self._store.session_ids()
