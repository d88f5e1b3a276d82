"""The deployment files that no test can run here as they are (no Docker engine, no systemd as
PID 1): the image's Dockerfile, its pinned dependencies, its build context, the environment
examples and the systemd units, checked for what they promise."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.local_compose import COMPOSE_FILE, DEPLOY, DOCKERFILE, ROOT, VENV_BIN, Image

SYSTEMD = DEPLOY / "systemd"
UNITS = ("storesync-migrate.service", "storesync-web.service", "storesync-worker@.service")


def _requirement_name(spec: str) -> str:
    return re.split(r"[\[=<>!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_image_runs_storesync_as_a_non_root_user_with_nothing_secret():
    parser = DockerfileParser(str(DOCKERFILE))
    assert parser.baseimage.startswith("python:3.11-slim")
    image = Image.read()
    assert image.entrypoint == ["storesync"]
    assert image.healthcheck == ["python", "-m", "storesync.healthcheck", "web"]
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    secret_like = [k for k in image.env if re.search(r"PASSWORD|SECRET|TOKEN|KEY|DATABASE_URL", k)]
    assert not secret_like, f"the image bakes in {secret_like}"
    copied = [i["value"] for i in parser.structure if i["instruction"] == "COPY"]
    assert not [c for c in copied if re.search(r"\.env|storesync\.toml|\.storesync", c)], copied


def test_image_dependencies_are_pinned_and_agree_with_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"deploy/constraints.txt: {line!r} is not pinned with =="
            pins[_requirement_name(name)] = version
    for dep in pyproject["project"]["dependencies"]:
        name = _requirement_name(dep)
        assert name in pins, f"{name} is missing from deploy/constraints.txt: run `make constraints`"
        wanted = dep.split("==", 1)[1].split(";")[0].strip()
        assert pins[name] == wanted, (
            f"{name}: pyproject pins {wanted}, constraints {pins[name]}: `make constraints`"
        )


def test_build_context_holds_the_package_and_nothing_else():
    # An allowlist: a new file in the checkout (a storesync.toml, a deploy/.env) stays out.
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied_sources = set()
    for instr in DockerfileParser(str(DOCKERFILE)).structure:
        if instr["instruction"] == "COPY" and not instr["value"].startswith("--from"):
            copied_sources.update(instr["value"].split()[:-1])
    assert copied_sources == allowed, (copied_sources, allowed)


def test_env_example_names_every_variable_compose_requires():
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE_FILE.read_text()))
    assert required >= {"POSTGRES_PASSWORD", "STORESYNC_ENCRYPTION_KEY"}
    example = (DEPLOY / ".env.example").read_text()
    named = set(re.findall(r"^([A-Z_]+)=", example, flags=re.M))
    assert required <= named, f"deploy/.env.example lacks {required - named}"


@pytest.fixture
def units(tmp_path) -> Path:
    """The units with paths of this machine (systemd-analyze wants the programs to exist)."""
    env = tmp_path / "storesync.env"
    shutil.copy(SYSTEMD / "storesync.env.example", env)
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text()
        text = text.replace("/opt/storesync/bin/", f"{VENV_BIN}/").replace(
            "/etc/storesync/storesync.env", str(env)
        )
        (tmp_path / unit.replace("@.", "@1.")).write_text(text)
    return tmp_path


def test_systemd_units_verify_and_are_hardened(units):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing (Debian's systemd package provides it)")
    paths = [str(units / u.replace("@.", "@1.")) for u in UNITS]
    done = subprocess.run([tool, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    for path in paths:
        text = Path(path).read_text()
        for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "EnvironmentFile=", "User=storesync"):
            assert setting in text, f"{path}: {setting}"
        # systemd's own score of the sandbox: 0 (locked down) .. 10 (exposed); 2.5 is "OK".
        sec = subprocess.run(
            [tool, "security", "--offline=true", "--threshold=25", path],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sec.returncode == 0, sec.stdout[-2000:]
    worker = (units / "storesync-worker@1.service").read_text()
    assert "Restart=always" in worker and "TimeoutStopSec=45s" in worker
