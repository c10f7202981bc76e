"""Tools that run real Letta servers on loopback: recording cassettes and live tests."""
