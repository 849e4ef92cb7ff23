"""LangChain: a ``BaseChatMessageHistory`` whose messages live in a bounded memwarden store.

    from memwarden.llm import SessionStore
    from memwarden.llm.integrations.langchain import MemwardenChatMessageHistory

    store = SessionStore(max_sessions=10_000, ttl_s=3600, memory={"max_messages": 40, "max_tokens": 4000})
    chain = RunnableWithMessageHistory(model, lambda sid: MemwardenChatMessageHistory(store, sid))

LangChain's own ``InMemoryChatMessageHistory`` keeps every message (its window memories and
``trim_messages`` bound the prompt, not what is stored); here the store's budgets bound what is
kept, and what it lets go is summarised and archived as the store is configured.
``messages`` returns the pinned system prompt, the summary (as a ``SystemMessage``) and the window.
Needs ``langchain-core`` (``pip install "memwarden[langchain]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memwarden.exceptions import UsageError
from memwarden.llm._message import Message
from memwarden.llm._sessions import SessionStore

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
except ImportError:  # pragma: no cover - exercised only without the extra
    raise UsageError(
        'memwarden.llm.integrations.langchain needs langchain-core: pip install "memwarden[langchain]"'
    ) from None

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def to_langchain(msg: Message) -> BaseMessage:
    """A stored message as the LangChain message of its role."""
    if msg.role == "user":
        return HumanMessage(content=msg.content)
    if msg.role == "assistant":
        return AIMessage(content=msg.content)
    if msg.role == "tool":
        call_id = str((msg.meta or {}).get("tool_call_id", ""))
        return ToolMessage(content=msg.content, tool_call_id=call_id)
    return SystemMessage(content=msg.content)


class MemwardenChatMessageHistory(BaseChatMessageHistory):
    """One session of a :class:`~memwarden.llm.SessionStore`, as LangChain chat history."""

    def __init__(self, store: SessionStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return [to_langchain(m) for m in self.store.get(self.session_id).messages()]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        for message in messages:
            content: Any = message.content
            text = content if isinstance(content, str) else str(content)
            meta = None
            if isinstance(message, ToolMessage):
                meta = {"tool_call_id": message.tool_call_id}
            self.store.append(self.session_id, _ROLES.get(message.type, message.type), text, meta=meta)

    def clear(self) -> None:
        """Drop the session from memory (its messages are archived if the store has an archive)."""
        self.store.end(self.session_id)
