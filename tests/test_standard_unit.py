"""langchain-tests' standard unit suite for ChatLetta."""

from __future__ import annotations

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_letta import ChatLetta


class TestChatLettaUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatLetta]:
        return ChatLetta

    @property
    def chat_model_params(self) -> dict[str, str]:
        return {"agent_id": "agent-47c2ea9a-30ee-4910-923a-393bbc26a7d7"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        return (
            {"LETTA_BASE_URL": "http://127.0.0.1:8283"},
            {"agent_id": "agent-47c2ea9a-30ee-4910-923a-393bbc26a7d7"},
            {"base_url": "http://127.0.0.1:8283"},
        )
