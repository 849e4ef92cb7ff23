"""The LangChain and LlamaIndex adapters keep history in a bounded memwarden store."""

from __future__ import annotations

import pytest

from memwarden.llm import SessionStore

APPROX = {"max_messages": 4, "counter": "approx"}


def test_langchain_history_is_bounded_and_round_trips() -> None:
    """MemwardenChatMessageHistory stores LangChain messages in the session's bounded window and
    gives them back as the same message types; clear() ends the session."""
    pytest.importorskip("langchain_core", reason="langchain-core is not installed (memwarden[langchain])")
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from memwarden.llm.integrations.langchain import MemwardenChatMessageHistory

    store = SessionStore(memory=APPROX, watch=False)
    history = MemwardenChatMessageHistory(store, "s1")
    for i in range(10):
        history.add_user_message(f"question {i}")
        history.add_ai_message(f"answer {i}")
    history.add_messages([ToolMessage(content="{\"ok\": true}", tool_call_id="call-1")])
    msgs = history.messages
    assert len(msgs) == 4
    assert [type(m) for m in msgs] == [AIMessage, HumanMessage, AIMessage, ToolMessage]
    assert msgs[0].content == "answer 8" and msgs[-1].tool_call_id == "call-1"  # type: ignore[attr-defined]
    history.clear()
    assert "s1" not in store


def test_llamaindex_chat_store_under_chat_memory_buffer() -> None:
    """ChatMemoryBuffer over MemwardenChatStore: the store keeps only the bounded window, and
    get() returns the newest messages; deletions work as LlamaIndex expects."""
    pytest.importorskip("llama_index.core", reason="llama-index-core is not installed (memwarden[llamaindex])")
    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory import ChatMemoryBuffer

    from memwarden.llm.integrations.llamaindex import MemwardenChatStore

    store = SessionStore(memory=APPROX, watch=False)
    chat_store = MemwardenChatStore.from_store(store)
    memory = ChatMemoryBuffer.from_defaults(token_limit=1000, chat_store=chat_store, chat_store_key="u1",
                                            tokenizer_fn=lambda text: text.split())
    for i in range(10):
        memory.put(ChatMessage(role="user", content=f"question {i}"))
        memory.put(ChatMessage(role="assistant", content=f"answer {i}"))
    assert len(chat_store.get_messages("u1")) == 4
    assert [m.content for m in memory.get()] == ["question 8", "answer 8", "question 9", "answer 9"]
    assert chat_store.delete_last_message("u1").content == "answer 9"  # type: ignore[union-attr]
    assert chat_store.get_keys() == ["u1"]
    assert [m.content for m in chat_store.delete_messages("u1") or []] == ["question 8", "answer 8", "question 9"]
    assert chat_store.get_messages("u1") == [] and chat_store.get_keys() == []
