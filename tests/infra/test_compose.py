"""docker-compose.yml would run: it is a valid Compose file, every command it gives our image
is a real `consentry` command, services reach each other by name, secrets are required,
and every service that stays up says how to tell it is healthy.

The Compose specification's JSON schema comes with check-jsonschema (`vendor.compose-spec`),
so this needs no network and no Docker.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml

from engine.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "metrics" / "prometheus.yml"
IMAGE = "consentry:local"
# Values that must be given: a default here would be a public secret.
SECRETS = ("CONSENTRY_SECRET", "TWILIO_AUTH_TOKEN", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def test_the_compose_file_is_valid_against_the_compose_specification(tmp_path):
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check refuses a misspelt key: it is a real validation, not a YAML parse.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text(encoding="utf-8").replace("\n    healthcheck:\n", "\n    healtcheck:\n", 1), encoding="utf-8")
    refused = validate(broken)
    assert refused.returncode != 0 and "healtcheck" in refused.stdout + refused.stderr


def our_services() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items() if service.get("image") == IMAGE}


def resolve(words: list[str]) -> click.Command:
    """The command `consentry WORDS...` runs, its options parsed as click would (an unknown
    option or a bad value raises click's UsageError / BadParameter)."""
    command: click.Command = cli
    path = ["consentry"]
    rest = list(words)
    ctx = click.Context(cli, info_name="consentry")
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"`{' '.join(path)}` has no command {rest[0]!r}"
        path.append(rest.pop(0))
        command = sub
    if rest == ["--help"]:
        return command
    command.make_context(" ".join(path), rest, parent=ctx)
    return command


@pytest.mark.parametrize("name", sorted(our_services()))
def test_every_command_it_runs_exists_in_the_cli(name):
    command = our_services()[name]["command"]
    assert isinstance(command, list), f"{name}: command must be a list (no shell)"
    resolved = resolve([str(word) for word in command])
    assert not isinstance(resolved, click.Group) or command == ["--help"], f"{name}: {command} is only a group"


def test_a_command_that_does_not_exist_is_caught():
    with pytest.raises(AssertionError, match="no command 'wroker'"):
        resolve(["wroker"])
    with pytest.raises(click.UsageError):
        resolve(["worker", "--metrics-prot", "9108"])


def environment() -> dict[str, str]:
    return compose()["x-consentry"]["environment"]


def test_services_reach_each_other_by_service_name_not_localhost():
    services = set(compose()["services"])
    env = environment()
    for variable in ("CONSENTRY_DATABASE_URL", "CONSENTRY_REDIS_URL", "CONSENTRY_SMTP_URL", "CONSENTRY_TWILIO_URL",
                     "CONSENTRY_CALLBACK_URL"):
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", env[variable])  # the default, as compose would
        value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", value)
        host = urlsplit(value).hostname
        assert host in services, f"{variable}={env[variable]!r}: {host!r} is not a service of the compose file"
    # Twilio's status callbacks go to the API by its service name (the capture server posts them).
    assert urlsplit(re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", env["CONSENTRY_CALLBACK_URL"])).hostname == "consentry-api"


def test_secrets_are_required():
    text = COMPOSE.read_text(encoding="utf-8")
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"(:?[-?])?(?:[^A-Z_}][^}]*)?\}", text)
        assert uses, f"{secret} is not used"
        assert all(form == ":?" for form in uses), f"{secret} has a default or may be empty: {uses}"


def test_every_service_that_stays_up_has_a_health_check():
    for name, service in compose()["services"].items():
        check = service.get("healthcheck")
        one_off = service.get("restart") == "no"
        if one_off:
            continue
        assert check and not check.get("disable") and check.get("test"), f"{name} has no health check"


def test_prometheus_scrapes_ports_the_services_serve_metrics_on():
    services = compose()["services"]
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    for job in config["scrape_configs"]:
        targets = [target for static in job.get("static_configs", []) for target in static["targets"]]
        targets += [f"{name}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
        for target in targets:
            host, port = target.rsplit(":", 1)
            if host == "localhost":  # Prometheus itself
                continue
            assert host in services, f"{job['job_name']}: {host} is not a service"
            served = services[host]
            assert port in [str(p) for p in served.get("expose", [])], f"{job['job_name']}: {host} does not expose {port}"
            command = [str(word) for word in served.get("command", [])]
            if "--metrics-port" in command:
                assert command[command.index("--metrics-port") + 1] == port, f"{host} serves metrics elsewhere"
