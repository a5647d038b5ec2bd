"""deploy/: the image (non-root, exec form, a health check), compose's topology, the systemd
units and PgBouncer's configuration say what the README's "Deploying" section says, and run the
same commands as ``make cluster``."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def dockerfile() -> dict[str, list[str]]:
    """Instruction -> its arguments, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def test_image_is_non_root_exec_form_with_a_health_check() -> None:
    image = dockerfile()
    assert image["FROM"] == ["python:3.11-slim"]
    assert any("pip install ." in run for run in image["RUN"])
    (user,) = image["USER"]
    assert user not in ("root", "0")
    assert json.loads(image["ENTRYPOINT"][0]) == ["assign"]
    assert json.loads(image["CMD"][0]) == [
        "serve", "--host", "0.0.0.0", "--port", "8000", "--no-dispatcher"
    ]  # fmt: skip
    (health,) = image["HEALTHCHECK"]
    assert "/healthz" in health and json.loads(health.split("CMD", 1)[1].strip())[0] == "python"


def test_compose_topology() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "pgbouncer", "migrate", "api-1", "api-2", "dispatch-1"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    for api in ("api-1", "api-2"):
        assert (
            services[api]["command"][0] == "serve" and "--no-dispatcher" in services[api]["command"]
        )
        assert (
            services[api]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
    assert services["dispatch-1"]["command"] == ["dispatch"]
    env = services["api-1"]["environment"]
    assert "@pgbouncer:6432/" in env["ASSIGN_DATABASE_URL"]
    assert "@postgres:5432/" in env["ASSIGN_DIRECT_DATABASE_URL"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    assert "./prometheus/" in mounts and "./grafana/" in mounts


def test_cluster_runs_the_images_commands() -> None:
    script = (DEPLOY / "cluster.py").read_text()
    assert 'ASSIGN = [sys.executable, "-m", "assign"]' in script
    assert '"serve", "--host", "127.0.0.1", "--port", str(port), "--no-dispatcher"' in script
    assert '[*ASSIGN, "dispatch"]' in script and '[*ASSIGN, "migrate"]' in script


def test_systemd_units() -> None:
    def unit(name: str) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((DEPLOY / "systemd" / name).read_text())
        return parser

    api, dispatch = unit("assign-api@.service"), unit("assign-dispatch.service")
    assert api["Service"]["ExecStart"].endswith(
        "assign serve --host 127.0.0.1 --port %i --no-dispatcher"
    )
    assert dispatch["Service"]["ExecStart"].endswith("assign dispatch")
    for parsed in (api, dispatch, unit("assign-migrate.service")):
        assert parsed["Service"]["EnvironmentFile"] == "/etc/assign/assign.env"
        assert parsed["Service"]["User"] == "assign"
    assert "ASSIGN_DIRECT_DATABASE_URL=" in (DEPLOY / "systemd" / "assign.env").read_text()


def test_pgbouncer_configuration_says_nothing_for_assign() -> None:
    ini = (DEPLOY / "pgbouncer" / "pgbouncer.ini").read_text()
    assert re.search(r"^pool_mode = transaction$", ini, re.M)
    settings = [line for line in ini.splitlines() if not line.startswith(";")]
    assert not [line for line in settings if "ignore_startup_parameters" in line]
