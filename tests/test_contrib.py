"""contrib/: the systemd unit (checked by systemd-analyze) and the Dockerfile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT

CONTRIB = PROJECT_ROOT / "contrib"
# .ci/run sets it where it installed systemd-analyze: the check is then required.
REQUIRED = os.environ.get("POSTSCHEDULER_REQUIRE_TOOLS") == "1"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if REQUIRED:
            pytest.fail("POSTSCHEDULER_REQUIRE_TOOLS=1 but systemd-analyze is not installed")
        pytest.skip("systemd-analyze not installed (apt-get install systemd) to verify the unit")
    return found


def installed_unit(tmp_path: Path) -> Path:
    """The unit as installed here: this venv's postscheduler, a scratch service folder."""
    text = (CONTRIB / "postscheduler.service").read_text()
    binary = Path(sys.executable).with_name("postscheduler")
    assert binary.exists(), binary
    text = text.replace("/opt/postscheduler/bin/postscheduler", str(binary))
    text = text.replace("/srv/postscheduler", str(tmp_path))
    unit = tmp_path / "postscheduler.service"
    unit.write_text(text)
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    done = verify(installed_unit(tmp_path))
    # Unknown keys and bad values are only warnings to systemd: any output is a defect.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_systemd_analyze_does_catch_a_broken_unit(tmp_path: Path) -> None:
    unit = installed_unit(tmp_path)
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "restart specifier" in verify(unit).stderr


def test_the_unit_restarts_on_failure_but_not_on_a_person_s_problem() -> None:
    text = (CONTRIB / "postscheduler.service").read_text()
    assert "Restart=on-failure" in text and "RestartPreventExitStatus=2" in text
    # Longer than the daemon's own shutdown grace plus the alerts' flush.
    from postscheduler.delivery.daemon import ALERT_FLUSH, SHUTDOWN_GRACE

    stop = int(re.search(r"TimeoutStopSec=(\d+)", text)[1])  # type: ignore[index]
    assert stop > SHUTDOWN_GRACE + ALERT_FLUSH
    assert "User=postscheduler" in text  # a dedicated user, never root


def test_the_dockerfile_copies_what_exists_and_checks_health() -> None:
    text = (CONTRIB / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE):
        for source in line.split():
            assert (PROJECT_ROOT / source).exists(), source
    assert re.search(r"^USER postscheduler$", text, flags=re.MULTILINE)  # not root
    assert "/healthz" in text and "--metrics" in text and "STOPSIGNAL SIGTERM" in text
