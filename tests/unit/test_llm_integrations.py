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
    history.add_messages([ToolMessage(content='{"ok": true}', tool_call_id="call-1")])
    msgs = history.messages
    assert len(msgs) == 4
    assert [type(m) for m in msgs] == [AIMessage, HumanMessage, AIMessage, ToolMessage]
    assert msgs[0].content == "answer 8" and msgs[-1].tool_call_id == "call-1"  # type: ignore[attr-defined]
    history.clear()
    assert "s1" not in store


def test_llamaindex_chat_store_under_chat_memory_buffer() -> None:
    """ChatMemoryBuffer over MemwardenChatStore: the store keeps only the bounded window, and
    get() returns the newest messages; deletions work as LlamaIndex expects."""
    pytest.importorskip(
        "llama_index.core", reason="llama-index-core is not installed (memwarden[llamaindex])"
    )
    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory import ChatMemoryBuffer

    from memwarden.llm.integrations.llamaindex import MemwardenChatStore

    store = SessionStore(memory=APPROX, watch=False)
    chat_store = MemwardenChatStore.from_store(store)
    memory = ChatMemoryBuffer.from_defaults(
        token_limit=1000, chat_store=chat_store, chat_store_key="u1", tokenizer_fn=lambda text: text.split()
    )
    for i in range(10):
        memory.put(ChatMessage(role="user", content=f"question {i}"))
        memory.put(ChatMessage(role="assistant", content=f"answer {i}"))
    assert len(chat_store.get_messages("u1")) == 4
    assert [m.content for m in memory.get()] == ["question 8", "answer 8", "question 9", "answer 9"]
    assert chat_store.delete_last_message("u1").content == "answer 9"  # type: ignore[union-attr]
    assert chat_store.get_keys() == ["u1"]
    assert [m.content for m in chat_store.delete_messages("u1") or []] == [
        "question 8",
        "answer 8",
        "question 9",
    ]
    assert chat_store.get_messages("u1") == [] and chat_store.get_keys() == []


def test_langgraph_prune_keeps_the_graph_resumable() -> None:
    """After 30 super-steps on each of two threads, prune_checkpoints(keep_last=2) deletes the old
    checkpoints, writes and blobs; the graph's state is intact and it runs on from it."""
    pytest.importorskip("langgraph", reason="langgraph is not installed (memwarden[langgraph])")
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from memwarden.llm.integrations.langgraph import prune_checkpoints

    class State(TypedDict):
        n: int
        log: str

    def step(state: State) -> State:
        return {"n": state["n"] + 1, "log": f"step {state['n'] + 1} " + "x" * 200}

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    saver = InMemorySaver()
    graph = builder.compile(checkpointer=saver)
    for thread in ("t1", "t2"):
        config = {"configurable": {"thread_id": thread}}
        state = {"n": 0, "log": ""}
        for _ in range(30):
            state = graph.invoke(state, config)  # type: ignore[arg-type,assignment]
    before = sum(len(c) for ns in saver.storage.values() for c in ns.values())
    blobs_before = len(saver.blobs)
    report = prune_checkpoints(saver, keep_last=2, idle_threads=["t2"])
    after = sum(len(c) for ns in saver.storage.values() for c in ns.values())
    assert after == 2 and report.checkpoints == before - 2 and report.threads == 1
    assert report.blobs > 0 and len(saver.blobs) == blobs_before - report.blobs and report.nbytes > 0
    config = {"configurable": {"thread_id": "t1"}}
    assert graph.get_state(config).values["n"] == 30  # type: ignore[arg-type]
    assert graph.invoke(graph.get_state(config).values, config)["n"] == 31  # type: ignore[arg-type]
