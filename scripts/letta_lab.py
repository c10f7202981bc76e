"""Real Letta servers on loopback against the deterministic fake LLM (``fakellm.py``).

Two releases, both on SQLite and installed from PyPI in seconds with uv:

* ``0.11.7`` speaks the current dialect (``content``, top-level flags);
* ``0.6.14`` speaks the seed's (``text``, nested ``config``).

Each gets its own cached virtualenv under ``$LETTA_LAB_CACHE`` (default
``~/.cache/langchain-letta-lab``) and, per session, a fresh HOME (Letta keeps its
SQLite database in ``~/.letta``), so that every session starts from an empty
server. Nothing but loopback and the package index is ever contacted.

Usage::

    python scripts/letta_lab.py install            # both releases (cached)
    python scripts/letta_lab.py run -- CMD ...     # start both, run CMD, stop both

``run`` starts the fake LLM and both servers (0.11.7 on port 8283, 0.6.14 on 8284),
creates one agent on each and runs ``CMD`` with ``LETTA_LIVE_URL_<v>`` and
``LETTA_LIVE_AGENT_<v>`` set (``<v>`` as ``0_11_7`` / ``0_6_14``), then stops
everything it started, also when ``CMD`` fails or is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("LETTA_LAB_CACHE", Path.home() / ".cache" / "langchain-letta-lab"))
FAKE_PORT = int(os.environ.get("FAKE_LLM_PORT", "8999"))
FAKE_URL = f"http://127.0.0.1:{FAKE_PORT}/v1"
AGENT_NAME = "langchain-letta-lab"

RELEASES = {
    # version: (pip requirement, --exclude-newer date: the release's dependency set;
    # newer dependencies break these servers, e.g. a newer mcp crashes 0.11.7 on start)
    "0.11.7": ("letta[server,sqlite]==0.11.7", "2025-09-10"),
    "0.6.14": ("letta[server]==0.6.14", "2025-02-01"),
}
# 0.11.7 first: its llama-index copy has o200k_base, which 0.6.14's lacks.
VERSIONS = ("0.11.7", "0.6.14")
PORTS = {"0.11.7": 8283, "0.6.14": 8284}


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"letta-lab: {message}\n")
    sys.stderr.flush()


def env_key(version: str) -> str:
    """``0.11.7`` as ``0_11_7``, for environment variable names."""
    return version.replace(".", "_")


def uv() -> str:
    """The uv executable, installed with pip beside this interpreter if missing."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found:
        return found
    log("installing uv with pip")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uv"], check=True)
    found = shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("uv could not be installed")
    return found


def venv(version: str) -> Path:
    """Where a release is installed."""
    return CACHE / version / "venv"


def install(version: str) -> Path:
    """Install one release into its cached virtualenv (once) and return the venv."""
    requirement, exclude_newer = RELEASES[version]
    target = venv(version)
    marker = target / ".installed"
    if not marker.exists():
        started = time.monotonic()
        log(f"installing {requirement} into {target}")
        env = {**os.environ, "UV_CACHE_DIR": str(CACHE / "uv-cache")}
        command = uv()
        subprocess.run(  # noqa: S603
            [command, "venv", "-q", "--clear", "-p", sys.executable, str(target)],
            check=True,
            env=env,
        )
        subprocess.run(  # noqa: S603
            [
                command,
                "pip",
                "install",
                "-q",
                "--python",
                str(target / "bin" / "python"),
                "--exclude-newer",
                exclude_newer,
                requirement,
            ],
            check=True,
            env=env,
        )
        marker.write_text(requirement + "\n")
        log(f"installed {version} in {time.monotonic() - started:.0f} s")
    # tiktoken would download its BPE files; llama-index-core, a Letta dependency,
    # ships them under the names tiktoken looks for.
    tiktoken = CACHE / "tiktoken-cache"
    tiktoken.mkdir(parents=True, exist_ok=True)
    for source in target.glob(
        "lib/python3.*/site-packages/llama_index/core/_static/tiktoken_cache/*"
    ):
        if not (tiktoken / source.name).exists():
            shutil.copy(source, tiktoken / source.name)
    return target


def port_free(port: int) -> bool:
    """Whether nothing listens on ``127.0.0.1:port``."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def get_json(url: str, timeout: float = 5.0) -> object:
    """GET a loopback URL and decode its JSON."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def post_json(url: str, payload: dict[str, object], timeout: float = 60.0) -> object:
    """POST JSON to a loopback URL and decode the JSON answer."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str, limit: float) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` died."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was up")
        with contextlib.suppress(OSError, ValueError):
            get_json(url, timeout=2.0)
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} was not up after {limit:.0f} s ({url})")


def stop(process: subprocess.Popen[bytes], what: str) -> None:
    """Stop a process started here, with its process group (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    log(f"stopped {what}")


@contextlib.contextmanager
def fake_llm() -> Iterator[str]:
    """Run ``fakellm.py`` on loopback; yields its OpenAI base URL."""
    if not port_free(FAKE_PORT):
        raise SystemExit(f"port {FAKE_PORT} is taken: is another fake LLM running?")
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "fakellm.log").open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(HERE / "fakellm.py")],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "FAKE_LLM_PORT": str(FAKE_PORT)},
        )
    try:
        wait_until_up(f"{FAKE_URL}/models", process, "the fake LLM", 15)
        yield FAKE_URL
    finally:
        stop(process, "the fake LLM")


@dataclass
class Server:
    """A running Letta server and the agent made on it."""

    version: str
    base_url: str
    agent_id: str


@contextlib.contextmanager
def letta_server(version: str, port: int) -> Iterator[Server]:
    """Run one Letta release on ``127.0.0.1:port`` with a fresh HOME and one new agent."""
    if not port_free(port):
        raise SystemExit(f"port {port} is taken: is another Letta server running?")
    target = install(version)
    home = CACHE / version / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "LETTA_DIR": str(home / ".letta"),
        "OPENAI_API_KEY": "fake",
        "OPENAI_BASE_URL": FAKE_URL,
        "OPENAI_API_BASE": FAKE_URL,
        "NO_PROXY": "127.0.0.1,localhost",
        "TOKENIZERS_PARALLELISM": "false",
        "TIKTOKEN_CACHE_DIR": str(CACHE / "tiktoken-cache"),
    }
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with (CACHE / "logs" / f"letta-{version}.log").open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            [str(target / "bin" / "letta"), "server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=home,
        )
    try:
        wait_until_up(f"{base_url}/v1/health/", process, f"Letta {version}", 240)
        log(f"Letta {version} up on {base_url} after {time.monotonic() - started:.0f} s")
        agent_id = create_agent(base_url)
        log(f"agent {AGENT_NAME} on {version}: {agent_id}")
        yield Server(version, base_url, agent_id)
    finally:
        stop(process, f"Letta {version}")


def create_agent(base_url: str) -> str:
    """Create the lab's agent: gpt-4o-mini (non-reasoning) served by the fake LLM."""
    agent = post_json(
        f"{base_url}/v1/agents/",
        {
            "name": AGENT_NAME,
            "memory_blocks": [
                {"label": "human", "value": "The human's name is Tester."},
                {"label": "persona", "value": "I am a helpful test agent."},
            ],
            "llm_config": {
                "model": "gpt-4o-mini",
                "model_endpoint_type": "openai",
                "model_endpoint": FAKE_URL,
                "context_window": 32000,
                "put_inner_thoughts_in_kwargs": True,
            },
            "embedding_config": {
                "embedding_endpoint_type": "openai",
                "embedding_endpoint": FAKE_URL,
                "embedding_model": "text-embedding-3-small",
                "embedding_dim": 1536,
                "embedding_chunk_size": 300,
            },
        },
    )
    if not isinstance(agent, dict) or not isinstance(agent.get("id"), str):
        raise RuntimeError(f"unexpected answer creating the agent: {agent!r}")
    return agent["id"]


@contextlib.contextmanager
def servers(versions: tuple[str, ...], ports: dict[str, int]) -> Iterator[dict[str, Server]]:
    """The fake LLM and the given releases at once, each on its port."""
    for version in versions:
        install(version)
    with fake_llm(), contextlib.ExitStack() as stack:
        yield {
            version: stack.enter_context(letta_server(version, ports[version]))
            for version in versions
        }


def run(command: list[str], versions: tuple[str, ...]) -> int:
    """Run ``command`` with the servers up and their URLs and agents in its environment."""
    # SIGTERM (make interrupted, CI cancelled) unwinds like Ctrl-C, so servers stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with servers(versions, PORTS) as running:
        env = dict(os.environ)
        for version, server in running.items():
            env[f"LETTA_LIVE_URL_{env_key(version)}"] = server.base_url
            env[f"LETTA_LIVE_AGENT_{env_key(version)}"] = server.agent_id
        log("running " + " ".join(command))
        return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


def main() -> int:
    """Command line: ``install`` or ``run -- CMD``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    install_parser = sub.add_parser("install", help="install the releases (cached)")
    install_parser.add_argument("versions", nargs="*", default=list(VERSIONS))
    run_parser = sub.add_parser("run", help="start fake LLM + servers, run a command, stop")
    run_parser.add_argument("--versions", nargs="+", default=list(VERSIONS))
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    versions = tuple(v for v in VERSIONS if v in args.versions)
    unknown = set(args.versions) - set(VERSIONS)
    if unknown:
        parser.error(f"unknown releases {sorted(unknown)}; known: {', '.join(VERSIONS)}")
    if args.action == "install":
        for version in versions:
            install(version)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    try:
        return run(command, versions)
    except KeyboardInterrupt:
        log("interrupted; everything started here is stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
