"""Test helpers: a fake Letta server that replays recorded or scripted streams.

Needs the ``testing`` extra (uvicorn): ``pip install 'langchain-letta[testing]'``.
"""

from langchain_letta.testing.server import BackgroundRun, FakeLettaServer, RecordedRequest, Reply

__all__ = ["BackgroundRun", "FakeLettaServer", "RecordedRequest", "Reply"]
