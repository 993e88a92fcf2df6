"""deploy/ checked without a Docker engine: the entrypoint exists, the image runs as a
non-root user, and every setting the compose file names is a real setting."""

from __future__ import annotations

import re
import subprocess
import sys

from service.settings import ClientSettings, Settings
from tests.conftest import ROOT


def test_dockerfile_entrypoint_and_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["pprl"\]', text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and text.count("FROM ") >= 2
    command = re.search(r"^CMD \[(.*)\]", text, re.M)
    assert command
    first = command.group(1).split(",")[0].strip().strip('"')
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", first, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_compose_setting_exists() -> None:
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    named = set(re.findall(r"^\s+(PPRL_[A-Z_]+):", text, re.M))  # environment keys, not ${...}
    known = {
        f"PPRL_{name.upper()}" for name in [*Settings.model_fields, *ClientSettings.model_fields]
    }
    assert named and not (named - known), named - known
    for command in re.findall(r'command: \["([a-z]+)"', text):
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", command, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, (command, result.stderr)
