"""No Docker engine runs here: the Dockerfile and docker-compose.yml are checked against the
install steps the suite itself uses (Makefile), the job's real CLI parser and the service's
real settings, so they cannot silently drift."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest
import yaml

from batch.cli import build_parser, config_from_args
from service.settings import Settings
from tests.support import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def stages() -> list[list[str]]:
    """Dockerfile instructions (continuations joined), split by FROM into stages; the global ARGs
    before the first FROM are in `global_args()`."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    out: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def global_args() -> dict[str, str]:
    text = DOCKERFILE.split("\nFROM ", 1)[0]
    return dict((m.group(1), m.group(2)) for m in re.finditer(r"^ARG (\w+)=(\S*)$", text, re.MULTILINE))


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
    assert "$(VENV)/bin/pip install -q -r requirements.lock -r requirements-dev.lock" in MAKEFILE
    # ... but the image gets the runtime lock alone: none of the test and lint tools
    assert "requirements-dev.lock" not in runs + " ".join(instructions(build, "COPY"))
    assert "$(VENV)/bin/pip install -q --no-deps -e ." in MAKEFILE
    copied = " ".join(instructions(build, "COPY"))
    for needed in ("requirements.lock", "pyproject.toml", "README.md", "models", "batch", "service"):
        assert needed in copied, needed
    # every package pyproject.toml installs (setuptools fails on a missing one: caught by a real build)
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied_dirs = {exec_form(c)[0] for c in instructions(build, "COPY") if not c.startswith("--")}
    assert set(packages) <= copied_dirs, set(packages) - copied_dirs
    assert any("--from=build" in c for c in instructions(runtime, "COPY"))


def test_base_and_wheelhouse_are_build_arguments_with_the_online_defaults():
    assert global_args() == {"BASE": "python:3.11-slim-bookworm"}
    for stage in stages():
        assert stage[0].split()[1] == "${BASE}", stage[0]
    build = stages()[0]
    assert 'ARG WHEELHOUSE=""' in build  # empty: pip uses the index, as before
    runs = instructions(build, "RUN")
    installs = [r for r in runs if "pip install" in r]
    for run in installs:  # every install, the project's isolated build included, honours it
        assert 'if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi' in run
    assert "COPY requirements.lock ${WHEELHOUSE} /wheelhouse/" in build
    # the wheelhouse is build-stage only: the runtime copies the venv, not the wheels
    assert not any("wheelhouse" in c for c in instructions(stages()[-1], "COPY"))
    assert "wheelhouse" not in (REPO_ROOT / ".dockerignore").read_text().split()


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


# ---- MinIO users: the service reads the bundles with a read-only user, never MinIO's root ----

MINIO_DIR = REPO_ROOT / "deploy" / "minio"
CREATE_USERS = (MINIO_DIR / "create-users.sh").read_text()
READ_ONLY_ACTIONS = {"s3:GetObject", "s3:ListBucket"}


def policy_of(user_variable: str) -> dict:
    """The JSON policy that deploy/minio/create-users.sh attaches to the user in $user_variable."""
    [name] = re.findall(rf'^attach (\S+) "\${user_variable}"$', CREATE_USERS, re.MULTILINE)
    create = rf"^mc admin policy create local {re.escape(name)} /policies/(\S+)$"
    [path] = re.findall(create, CREATE_USERS, re.MULTILINE)
    return json.loads((MINIO_DIR / path).read_text())


def read_only_problems(policy: dict, bucket: str, prefix: str) -> list[str]:
    """Why `policy` is more than reading objects under s3://bucket/prefix/ (empty: it is not)."""
    problems = []
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if st["Effect"] != "Allow":
            continue
        problems += [f"action {a}" for a in actions if a not in READ_ONLY_ACTIONS]
        for r in resources:
            if r == f"arn:aws:s3:::{bucket}":  # the bucket itself: listing, and only under the prefix
                prefixes = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [])
                if set(actions) != {"s3:ListBucket"} or not prefixes:
                    problems.append(f"{actions} on the whole bucket")
                problems += [f"lists {p}" for p in prefixes if not p.startswith(f"{prefix}/")]
            elif not r.startswith(f"arn:aws:s3:::{bucket}/{prefix}/") or "*" in r[:-1]:
                problems.append(f"resource {r}")
    return problems


def compose_variable(value: str) -> str:
    """`${NAME:-default}` or `${NAME:?message}` -> NAME."""
    match = re.fullmatch(r"\$\{(\w+)(?::[-?].*)?\}", value)
    assert match, f"{value!r} is not a ${{VARIABLE}} reference"
    return match.group(1)


def test_the_job_and_the_service_never_get_minio_root_credentials():
    services = COMPOSE["services"]
    for name in ("job", "service"):
        env = yaml.safe_dump(services[name]["environment"])
        assert "MINIO_ROOT" not in env, f"{name} gets MinIO's root credentials"
    keys = {n: compose_variable(services[n]["environment"]["AWS_ACCESS_KEY_ID"]) for n in ("job", "service")}
    assert keys["job"] != keys["service"]
    users_env = services["users"]["environment"]
    for name, variable in keys.items():
        # the `users` step creates exactly the user each deployable logs in as
        assert compose_variable(users_env[variable]) == variable, name
        secret = compose_variable(services[name]["environment"]["AWS_SECRET_ACCESS_KEY"])
        assert compose_variable(users_env[secret]) == secret, name
        assert f'"${variable}" "${secret}"' in CREATE_USERS, name
    # the users exist before the job runs, and the service starts after the job
    assert services["job"]["depends_on"]["users"]["condition"] == "service_completed_successfully"
    assert "job" in services["service"]["depends_on"]


def test_the_service_user_only_reads_the_bundle_prefix():
    env = COMPOSE["services"]["service"]["environment"]
    bucket, _, prefix = env["ARTIFACTS_URI"].removeprefix("s3://").partition("/")
    policy = policy_of(compose_variable(env["AWS_ACCESS_KEY_ID"]))
    assert read_only_problems(policy, bucket, prefix.strip("/")) == []
    # the service cannot write to S3, so its users' feedback must go elsewhere
    assert not env["FEEDBACK_URI"].startswith("s3://")


def test_the_read_only_check_above_can_fail():
    root_like = {"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}]}
    assert read_only_problems(root_like, "fruits", "bundles")
    job = policy_of("JOB_S3_USER")
    assert any("s3:PutObject" in p for p in read_only_problems(job, "fruits", "bundles"))
    photos = "arn:aws:s3:::fruits/photos/*"
    reads_photos = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": photos}]}
    assert read_only_problems(reads_photos, "fruits", "bundles")


def test_the_job_user_reads_the_input_and_writes_the_output():
    services = COMPOSE["services"]
    config = config_from_args(build_parser().parse_args(services["job"]["command"][3:]))
    policy = policy_of(compose_variable(services["job"]["environment"]["AWS_ACCESS_KEY_ID"]))

    def allowed(action: str, uri: str) -> bool:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        arn = f"arn:aws:s3:::{bucket}/{key.strip('/')}/x"
        return any(
            action in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
            and any(re.fullmatch(re.escape(r).replace(r"\*", ".*"), arn) for r in st["Resource"])
            for st in policy["Statement"]
        )

    assert allowed("s3:GetObject", config.input_uri)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(action, config.output_uri), action
    assert not allowed("s3:PutObject", config.input_uri)
