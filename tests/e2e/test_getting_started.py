"""docs/getting-started.md as a newcomer follows it: its code blocks, parsed from the page and run
in order in one shell, reach a running network with every store in step, judged by the stores
themselves (the emulator's snapshots) as well as by `storesync status`. When the page drifts
from what the commands do, this fails.

The page's conventions, which this test reads:
- a ```sh block runs in the same shell as the ones before it (its `export`s and `cd` carry on);
- a ```sh block whose first line is `# in another terminal: keeps running (ready when ...)` is
  started in the background, and the next block waits until it prints the quoted text or the
  URL named answers;
- a ```toml FILE block is saved as FILE in the current directory.

What differs from a newcomer's machine, and only that: the ports (free ones instead of 8787
and 8080; the operations listener off), the database (the test's, as DATABASE_URL, instead of
an embedded server) and HOME (a temporary directory, so `~/storesync-try` is the test's).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from storesync.demo.comparison import compare_snapshots
from storesync.emulator.control_client import EmulatorControl
from tests.support.pgbouncer import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
BACKGROUND = re.compile(r"^# in another terminal: keeps running \(ready when (.+)\)$")


@dataclass
class Block:
    kind: str  # "sh" | "background" | "file"
    text: str
    ready: str = ""  # background: the text it prints, or the URL that answers, when ready
    name: str = ""  # file: its name


def blocks(page: str) -> list[Block]:
    found = []
    for info, body in re.findall(r"^```([^\n]*)\n(.*?)^```$", page, flags=re.MULTILINE | re.DOTALL):
        words = info.split()
        if not words:
            continue
        if words[0] == "sh":
            first, _, rest = body.partition("\n")
            match = BACKGROUND.match(first.strip())
            found.append(Block("background", rest, match.group(1)) if match else Block("sh", body))
        elif len(words) == 2:
            found.append(Block("file", body, name=words[1]))
    return found


class Shell:
    """Blocks run one after another as a newcomer's terminal would: the environment and the
    working directory carry from one to the next (kept in files between bash runs)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.state = home / ".walkthrough-env"
        self.cwd_file = home / ".walkthrough-cwd"
        self.cwd_file.write_text(str(ROOT))
        self.env = env
        self.background: list[tuple[subprocess.Popen, Path]] = []
        self.transcript: list[str] = []

    def _script(self, body: str) -> str:
        restore = f'[ -f {self.state} ] && . {self.state}\ncd "$(cat {self.cwd_file})"\n'
        save = f"\nexport -p > {self.state}\npwd > {self.cwd_file}\n"
        return "set -euo pipefail\n" + restore + body + save

    def run(self, body: str, timeout: float = 240.0) -> str:
        done = subprocess.run(
            ["bash", "-c", self._script(body)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        self.transcript.append(f"$ {body.strip()}\n{done.stdout}{done.stderr[-2000:]}")
        assert done.returncode == 0, (
            f"this block failed ({done.returncode}):\n{body}\n{done.stdout}\n{done.stderr[-4000:]}"
        )
        return done.stdout

    def start(self, body: str, ready: str, name: str) -> None:
        log = self.home / f"{name}.log"
        command = f'[ -f {self.state} ] && . {self.state}\ncd "$(cat {self.cwd_file})"\nexec {body.strip()}'
        proc = subprocess.Popen(
            ["bash", "-c", command],
            env=self.env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.background.append((proc, log))
        deadline = time.monotonic() + 60
        url = ready if ready.startswith("http") else None
        text = ready.removeprefix("it prints ").strip('"') if url is None else ""
        url = url.removesuffix(" answers") if url else None
        while True:
            assert proc.poll() is None, f"{body} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            if url is not None:
                try:
                    if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            elif text in log.read_text(errors="replace"):
                return
            assert time.monotonic() < deadline, f"{body} not ready ({ready}):\n{log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc, _log in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _log in self.background:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(300)
def test_the_getting_started_page_reaches_a_network_in_step(module_db, tmp_path: Path) -> None:
    page = PAGE.read_text(encoding="utf-8")
    emulator_port, web_port = free_port(), free_port()
    page = page.replace("8787", str(emulator_port)).replace("8080", str(web_port))
    steps = blocks(page)
    assert [b.kind for b in steps].count("background") == 3  # emulator, web tier, worker
    assert any(b.kind == "file" and b.name == "storesync.toml" for b in steps)

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("STORESYNC_", "DATABASE_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "HOME": str(tmp_path),
            "DATABASE_URL": module_db.dsn,
            "STORESYNC_WEB_OPS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
    )
    shell = Shell(tmp_path, env)
    outputs: list[str] = []
    try:
        for n, block in enumerate(steps):
            if block.kind == "sh":
                outputs.append(shell.run(block.text))
            elif block.kind == "background":
                shell.start(block.text, block.ready, f"background-{n}")
            else:
                shell.run(f"cat > {shlex.quote(block.name)} <<'STORESYNC_EOF'\n{block.text}STORESYNC_EOF\n")

        # The last block is `storesync status`: every store in step (a child may be finishing
        # its last links: the page says to run it again).
        final = next(b for b in reversed(steps) if b.kind == "sh")
        deadline = time.monotonic() + 45
        status = outputs[-1]
        while "every store in step" not in status and time.monotonic() < deadline:
            time.sleep(0.2)
            status = shell.run(final.text)
        assert "every store in step" in status, "\n\n".join(shell.transcript[-3:])

        # What the stores hold: every child has the parent's catalog and stock.
        control = EmulatorControl(f"http://127.0.0.1:{emulator_port}", timeout=30.0)
        try:
            parent = control.snapshot("parent.myshopify.com")
            children = {c: control.snapshot(c) for c in ("child-a.myshopify.com", "child-b.myshopify.com")}
        finally:
            control.close()
        assert len(parent["products"]) == 8
        comparison = compare_snapshots(parent, children)
        assert comparison.agree, comparison.problems()
        # The dashboard the page points at answers with its token.
        token = re.search(r"dashboard token: (\S+)", "\n".join(outputs)).group(1)  # type: ignore[union-attr]
        dashboard = httpx.get(
            f"http://127.0.0.1:{web_port}/dashboard/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
            trust_env=False,
        )
        assert dashboard.status_code == 200 and dashboard.text.count('data-state="in step"') == 3
    finally:
        shell.stop()
