"""Adapters to the LLM frameworks, each an optional extra: ``memwarden[langchain]``, ``memwarden[llamaindex]``.

Import the submodule you need (``memwarden.llm.integrations.langchain``); importing this package
imports no framework.
"""
