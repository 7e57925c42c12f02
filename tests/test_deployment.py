"""The deployment files: docker-compose.yml's service (image, GPU reservation, environment, port, health check) and
the Dockerfile's command, parsed with `ssp serve`'s own argument parser; `docker compose config` where Docker
Compose exists."""

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ssp.commands.serve import add_arguments
from ssp.generation.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def compose_default(value: str) -> str:
    """`${NAME:-default}` -> default."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
    assert match, f"{value!r} is not ${{NAME:-default}}"
    return match.group(1)


def dockerfile_env() -> dict[str, str]:
    block = re.search(r"^ENV (.*?)(?=^\S)", DOCKERFILE, re.S | re.M).group(1)
    return dict(pair.split("=", 1) for pair in shlex.split(block.replace("\\\n", " ")))


def test_the_service_serves_a_mounted_model_on_one_gpu_with_the_key_from_the_environment():
    service = COMPOSE["services"]["ssp"]
    assert service["build"] == "."
    assert service["ports"] == ["8000:8000"]
    assert "./models:/models:ro" in service["volumes"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    env = service["environment"]
    assert compose_default(env["MODEL_PATH"]).startswith("/models/")
    assert compose_default(env["MAX_SEQUENCE_LENGTH"]) == "4096"  # Qwen2.5-Math-1.5B's context
    recommended = PRESETS["recommended"]
    assert float(compose_default(env["OPTIMAL_TEMPERATURE"])) == recommended.temperature
    assert float(compose_default(env["TOP_P"])) == recommended.top_p
    assert env["SSP_API_KEY"].startswith("${SSP_API_KEY:?")  # compose refuses to start without a key


def test_the_health_checks_ask_the_servers_health_endpoint():
    check = COMPOSE["services"]["ssp"]["healthcheck"]
    assert check["test"][0] == "CMD" and "http://127.0.0.1:8000/health" in check["test"][-1]
    assert "http://127.0.0.1:8000/health" in DOCKERFILE.split("HEALTHCHECK", 1)[1].split("\n\n")[0]
    grace = COMPOSE["services"]["ssp"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > 120  # longer than ssp serve's --shutdown-timeout default


def test_the_dockerfile_command_is_a_valid_ssp_serve_command():
    command = re.search(r'^CMD \["sh", "-c", "exec (.*)"\]$', DOCKERFILE, re.M).group(1).replace('\\"', '"')
    env = dockerfile_env()
    words = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command))
    assert words[:2] == ["ssp", "serve"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser, "serve")
    args = parser.parse_args(words[2:])
    assert (args.host, args.port, args.max_model_len) == ("0.0.0.0", 8000, 4096)
    assert (args.temperature, args.top_p) == (0.6, 0.95)
    assert args.model == env["MODEL_PATH"] == "/models/model"
    compose_env = COMPOSE["services"]["ssp"]["environment"]
    assert set(re.findall(r"\$(\w+)", command)) <= set(compose_env)  # compose sets every variable the command reads


@pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode,
    reason="Docker Compose is not installed here",
)
def test_docker_compose_accepts_the_file():
    result = subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                            env={"SSP_API_KEY": "k", "PATH": "/usr/bin:/bin:/usr/local/bin"})  # fmt: skip
    assert result.returncode == 0, result.stderr
