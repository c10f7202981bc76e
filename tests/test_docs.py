"""The README and ``docs/`` tell the truth: every Python snippet runs as written.

Each ```python block of README.md, CONTRIBUTING.md and docs/*.md runs in a subprocess
against the fake server, answering with turns a real Letta 0.16.8 streamed. A block
that cannot run offline is marked in the markdown, on the line before it, with
``<!-- no-run: why -->``; such blocks are counted and must stay few. The README is
also checked as the front door (title, the two commands first, short), and every
relative link of these files must lead to a file that exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
TURN = CAPTURES / "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse"
LAB = CAPTURES / "0.16.8/lab-features"
REPLIES = {
    "turn": Reply.from_capture(TURN),
    "client tool call": Reply.from_capture(LAB / "20-client-tool-request.sse"),
    "tool result": Reply.from_capture(LAB / "21-client-tool-return.sse"),
    "approval request": Reply.from_capture(LAB / "17-approval-request-steps.sse"),
    "decision": Reply.from_capture(LAB / "18-deny-with-reason-steps.sse"),
}
MAX_NO_RUN = 3
"""Snippets that may be marked ``no-run``: the docs are meant to run, these are exceptions."""
README_MAX_LINES = 250


def reply_to(request: RecordedRequest) -> Reply:
    """What a real 0.16.8 answered to such a request: the tool loops get their own captures."""
    body = request.json() if request.body.startswith(b"{") else {}
    first = (body.get("messages") or [{}])[0]
    if first.get("type") == "approval":
        return REPLIES["tool result" if first["approvals"][0]["type"] == "tool" else "decision"]
    if body.get("client_tools"):
        return REPLIES["client tool call"]
    if "Remember this in your memory" in str(first.get("content")):
        return REPLIES["approval request"]
    return REPLIES["turn"]


@dataclass(frozen=True)
class Snippet:
    """One ```python block: where it is, its code, and why it does not run (if marked)."""

    page: str
    section: str
    position: int
    code: str
    no_run: str | None

    @property
    def name(self) -> str:
        section = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"{self.page}:{section}:{self.position}"


FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
NO_RUN = re.compile(r"<!--\s*no-run:(?P<reason>.*?)-->\s*$")
PYTHON = {"python", "py", "python3", "pycon"}


def snippets(page: Path) -> list[Snippet]:
    """Every ```python block of ``page``, with the ``## `` section it is in."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        lang = match["lang"].strip().split(" ", 1)[0]
        if lang not in PYTHON:
            continue
        before = text[: match.start()]
        headings = re.findall(r"^#{1,3} (.+)$", before, re.MULTILINE)
        lines = [line for line in before.splitlines() if line.strip()]
        marker = NO_RUN.search(lines[-1]) if lines else None
        found.append(
            Snippet(
                page=str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name,
                section=headings[-1] if headings else "",
                position=len(found),
                code=textwrap.dedent(match["code"]),
                no_run=marker["reason"].strip() if marker else None,
            )
        )
    return found


SNIPPETS = [snippet for page in PAGES if page.exists() for snippet in snippets(page)]
RUNNABLE = [snippet for snippet in SNIPPETS if snippet.no_run is None]


def run_snippet(snippet: str) -> tuple[str, list[RecordedRequest]]:
    """Run one snippet against the fake server: what it printed, the requests it made."""
    with FakeLettaServer(reply_to) as server:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
        env = {**clean, "LETTA_BASE_URL": server.base_url, "LETTA_AGENT_ID": AGENT}
        done = subprocess.run(
            [sys.executable, "-c", snippet],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    if "os.environ" in snippet:  # it talks to the server of LETTA_BASE_URL
        assert server.received
    return done.stdout, server.stream_requests


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[snippet.name for snippet in RUNNABLE])
def test_snippet_runs(snippet: Snippet) -> None:
    run_snippet(snippet.code)


def test_the_snippets_are_found_on_every_page_that_has_them() -> None:
    pages = {snippet.page for snippet in SNIPPETS}
    assert "README.md" in pages
    assert {f"docs/{name}.md" for name in ("chat-model", "conversations", "testing")} <= pages
    assert len(RUNNABLE) >= 15


def test_snippets_that_do_not_run_are_few_and_say_why() -> None:
    marked = [snippet for snippet in SNIPPETS if snippet.no_run is not None]
    assert len(marked) <= MAX_NO_RUN, [snippet.name for snippet in marked]
    for snippet in marked:
        assert len(snippet.no_run or "") >= 15, f"{snippet.name}: say why it cannot run"


def test_a_no_run_mark_is_read_with_its_reason(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Live only\n\n<!-- no-run: needs a real Letta Cloud key -->\n"
        "```python\nprint(1)\n```\n\n- a list\n\n  ```python\n  print(2)\n  ```\n"
        "\n```sh\nmake test\n```\n"
    )
    marked, plain = snippets(page)
    assert (marked.section, marked.no_run, marked.code) == (
        "Live only",
        "needs a real Letta Cloud key",
        "print(1)\n",
    )
    assert (plain.no_run, plain.code) == (None, "print(2)\n")


def pages_of(snippets: list[Snippet], page: str) -> list[Snippet]:
    return [snippet for snippet in snippets if snippet.page == page]


@pytest.mark.parametrize(
    ("position", "answer_type", "printed"),
    [
        (0, "tool", "Sunny, 21 degrees in Paris"),
        (1, "approval", "server_tool_result"),
        (2, "approval", "Not now"),
    ],
)
def test_the_tool_loop_snippets_answer_the_waiting_calls(
    position: int, answer_type: str, printed: str
) -> None:
    loops = pages_of(RUNNABLE, "docs/tool-loops-and-approvals.md")
    stdout, requests = run_snippet(loops[position].code)
    assert len(requests) == 2  # the question once, then the answer to the waiting call
    (answer,) = requests[1].json()["messages"][0]["approvals"]
    assert answer["type"] == answer_type
    assert printed in stdout or printed in json.dumps(answer)


# ------------------------------------------------------------------ the front door


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_starts_with_its_title_then_the_two_commands() -> None:
    text = readme()
    assert text.startswith("# langchain-letta\n")
    blocks = [match for match in FENCE.finditer(text)]
    assert blocks[0]["code"] == "make demo\nmake test\n"  # the first commands of the file
    assert "pip install langchain-letta" in text[: blocks[0].start()]  # install before them


def test_the_readme_is_a_front_door() -> None:
    text = readme()
    assert len(text.splitlines()) < README_MAX_LINES
    quickstart = pages_of(SNIPPETS, "README.md")[0]
    assert quickstart.section == "Quickstart"
    assert len(quickstart.code.splitlines()) <= 15


def test_every_docs_page_is_linked_from_the_readme_and_the_index() -> None:
    pages = {path.name for path in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert len(pages) >= 9
    index = (ROOT / "docs/index.md").read_text()
    text = readme()
    assert "docs/index.md" in text
    for name in pages:
        assert f"]({name})" in index, f"docs/index.md does not link {name}"
        assert f"](docs/{name})" in text, f"README.md does not link docs/{name}"


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings (lower case, punctuation dropped)."""
    headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    assert page.exists()
    prose = FENCE.sub("", page.read_text())
    for match in LINK.finditer(prose):
        target = match["target"]
        if re.match(r"^[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        path = (page.parent / name).resolve() if name else page
        assert path.exists(), f"{page.relative_to(ROOT)} links {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.relative_to(ROOT)} links {target}: no heading"


FIGURES = "<!-- figures from bench/README.md -->"
"""Marks the README's one block of benchmark figures, lines of the run bench/README.md records."""


def figures(text: str) -> str:
    """The fenced block that follows :data:`FIGURES` in ``text`` (empty if there is none)."""
    if FIGURES not in text:
        return ""
    block = text.split(FIGURES, 1)[1].lstrip("\n")
    assert block.startswith("```\n"), "the marker stands right before a fenced block"
    return block[4:].split("\n```", 1)[0]


def test_the_readmes_figures_are_lines_of_the_run_bench_readme_records() -> None:
    """The README shows the four ratios and the 1,000 streams as one run printed them."""
    shown = figures((ROOT / "README.md").read_text()).splitlines()
    recorded = set((ROOT / "bench" / "README.md").read_text().splitlines())
    assert any(line.startswith("async paced ") for line in shown)
    assert any(line.startswith("ChatLetta.astream ") and "uvloop" in line for line in shown)
    assert any(re.match(r"\d+ CPUs \(.+\), Python ", line) for line in shown), "the machine"
    assert [line for line in shown if line not in recorded] == []


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_no_figures_and_no_stale_claims(page: Path) -> None:
    """Figures stay in bench/README.md and the README's block of its lines; stale claims out."""
    text = page.read_text()
    prose = text.replace(figures(text), "") if page.name == "README.md" else text
    assert not re.search(r"\b\d+\.\d+x\b|µs", prose), "benchmark figures belong in bench/README.md"
    for stale in ("NotImplementedError", "not supported yet", "about 90 s", "no approval support"):
        assert stale not in text


def test_make_demo_installs_only_the_package_and_its_fake_server() -> None:
    """``make demo`` stays small: the ``testing`` extra, not the test and dev tools."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0] for dep in project["optional-dependencies"]["testing"]] == ["uvicorn"]
    makefile = (ROOT / "Makefile").read_text()
    demo_rule = makefile.split("$(DEMO_INSTALLED): ", 1)[1].split("\n\n", 1)[0]
    assert '-e ".[testing]"' in demo_rule
    assert "demo: $(DEMO_INSTALLED)" in makefile
