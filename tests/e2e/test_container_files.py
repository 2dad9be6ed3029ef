"""No Docker engine runs here: the Dockerfile and docker-compose.yml are checked against the
install steps the suite itself uses (Makefile), the job's real CLI parser and the service's
real settings, so they cannot silently drift."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from batch.cli import build_parser, config_from_args
from service.settings import Settings
from tests.support import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def stages() -> list[list[str]]:
    """Dockerfile instructions (continuations joined), split by FROM into stages."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    out: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [ln[len(keyword) :].strip() for ln in stage if ln.upper().startswith(keyword + " ")]


def exec_form(arg: str) -> list[str]:
    return json.loads(arg) if arg.startswith("[") else shlex.split(arg)


def test_dockerfile_is_multi_stage_and_installs_like_make_install():
    all_stages = stages()
    assert len(all_stages) >= 2
    build, runtime = all_stages[0], all_stages[-1]
    runs = " && ".join(instructions(build, "RUN"))
    # the same two steps as the Makefile's install target, from the same lock file
    assert "pip install -r requirements.lock" in runs
    assert re.search(r"pip install --no-deps \.(\s|$)", runs)
    assert "$(VENV)/bin/pip install -q -r requirements.lock" in MAKEFILE
    assert "$(VENV)/bin/pip install -q --no-deps -e ." in MAKEFILE
    copied = " ".join(instructions(build, "COPY"))
    for needed in ("requirements.lock", "pyproject.toml", "README.md", "models", "batch", "service"):
        assert needed in copied, needed
    assert any("--from=build" in c for c in instructions(runtime, "COPY"))


def test_runtime_is_non_root_with_a_healthcheck_and_runs_the_service():
    runtime = stages()[-1]
    users = instructions(runtime, "USER")
    assert users and users[-1] not in ("root", "0")
    [health] = instructions(runtime, "HEALTHCHECK")
    assert "/healthz" in health and health.split("CMD", 1)[1].strip()
    [cmd] = instructions(runtime, "CMD")
    argv = exec_form(cmd)
    assert argv[:3] == ["python", "-m", "service"]
    assert set(argv[3::2]) <= {"--host", "--port"}  # the flags service/__main__.py accepts
    assert "openjdk-17" in " ".join(instructions(runtime, "RUN"))  # Spark needs Java 17


def test_no_credentials_are_baked_in():
    for text in (DOCKERFILE, (REPO_ROOT / "docker-compose.yml").read_text()):
        assert not re.search(r"AKIA[0-9A-Z]{16}", text)
        for key in ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD", "AWS_ACCESS_KEY_ID"):
            for value in re.findall(rf"(?<![{{$]){key}[=:]\s*(\S+)", text):
                assert value.startswith("${"), f"{key} has a literal value"
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "artifacts"} <= set(ignored)


def test_compose_runs_minio_the_job_and_the_service():
    services = COMPOSE["services"]
    assert {"minio", "job", "service"} <= set(services)
    job, service = services["job"], services["service"]
    assert job["depends_on"] and service["depends_on"]["job"]["condition"] == (
        "service_completed_successfully"
    )
    assert service["command"][:3] == ["python", "-m", "service"]
    for svc in (job, service):
        assert svc["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"


def test_compose_job_command_is_accepted_by_the_job_cli():
    command = COMPOSE["services"]["job"]["command"]
    assert command[:3] == ["python", "-m", "batch"]
    args = build_parser().parse_args(command[3:])  # exits (SystemExit) on an unknown flag
    config = config_from_args(args)
    service_root = COMPOSE["services"]["service"]["environment"]["ARTIFACTS_URI"]
    assert config.output_uri == service_root  # the service reads what the job publishes
    assert config.input_uri.startswith("s3://")


def test_compose_service_settings_are_real_settings():
    env = {k: v for k, v in COMPOSE["services"]["service"]["environment"].items() if not k.startswith("AWS_")}
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    settings = Settings(**{k.lower(): v for k, v in env.items()})  # validates every value
    assert settings.max_upload_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize("flag", ["--nope", "--components=-1"])
def test_the_cli_check_above_can_fail(flag):
    with pytest.raises((SystemExit, ValueError)):
        config_from_args(build_parser().parse_args(["--input", "a", "--output", "b", flag]))


def test_compose_publishes_ports_on_loopback_only():
    published = [(name, port) for name, svc in COMPOSE["services"].items() for port in svc.get("ports", [])]
    assert published, "nothing published: the test would pass vacuously"
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_job_container_has_no_service_healthcheck():
    # The Dockerfile's HEALTHCHECK probes the service's port: a job container would be "unhealthy".
    assert "HEALTHCHECK" in DOCKERFILE
    assert COMPOSE["services"]["job"].get("healthcheck") == {"disable": True}


def test_the_compose_env_file_is_git_ignored():
    import subprocess

    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO_ROOT, check=False)
    assert ignored.returncode == 0, ".env (compose's credentials) is not git-ignored"
