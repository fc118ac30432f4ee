"""scripts/audit.sh: fails loudly on a known vulnerability and never passes an audit that
could not be done. pip-audit's service is not reachable from CI here (docs/security.md),
so a stand-in pip-audit (``$PIP_AUDIT``) replays its JSON report formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit.sh"

CLEAN = {"dependencies": [{"name": "numpy", "version": "2.1.0", "vulns": []},
                          {"name": "vitalcore", "version": "0.1.0",
                           "skip_reason": "Dependency not found on PyPI and could not be "
                                          "audited: vitalcore (0.1.0)"}], "fixes": []}
VULNERABLE = {"dependencies": [
    {"name": "numpy", "version": "2.1.0", "vulns": []},
    {"name": "aiohttp", "version": "3.8.0", "vulns": [
        {"id": "GHSA-45c4-8wx5-qw6w", "fix_versions": ["3.8.5"], "aliases": ["CVE-2023-37276"],
         "description": "request smuggling"}]}], "fixes": []}
SKIPPED = {"dependencies": [
    {"name": "numpy", "version": "2.1.0",
     "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.1.0)"},
    {"name": "pyarrow", "version": "18.0.0", "vulns": []}], "fixes": []}


def _audit(tmp_path, report: dict | None, rc: int, *args: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake_pip_audit.py"
    body = "" if report is None else json.dumps(report)
    fake.write_text("import sys\n"
                    f"assert '--format' in sys.argv and 'json' in sys.argv\n"
                    f"sys.stdout.write({body!r})\n"
                    f"sys.exit({rc})\n")
    env = {"PATH": "/usr/bin:/bin", "PIP_AUDIT": f"{sys.executable} {fake}",
           "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_clean_environment_passes(tmp_path):
    out = _audit(tmp_path, CLEAN, 0)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 distributions checked, no known vulnerability" in out.stdout


@pytest.mark.parametrize("allow", [(), ("--allow-unaudited",)])
def test_known_vulnerability_fails_loudly(tmp_path, allow):
    out = _audit(tmp_path, VULNERABLE, 1, *allow)
    assert out.returncode == 1
    assert "KNOWN VULNERABILITY" in out.stdout
    assert "aiohttp 3.8.0: GHSA-45c4-8wx5-qw6w (CVE-2023-37276) fixed in: 3.8.5" in out.stdout


def test_unaudited_distributions_are_not_green(tmp_path):
    out = _audit(tmp_path, SKIPPED, 0)
    assert out.returncode == 2 and "DEPENDENCY AUDIT INCOMPLETE" in out.stdout
    allowed = _audit(tmp_path, SKIPPED, 0, "--allow-unaudited")
    assert allowed.returncode == 0 and "DEPENDENCY AUDIT INCOMPLETE" in allowed.stdout


def test_no_report_at_all_fails(tmp_path):
    out = _audit(tmp_path, None, 1, "--allow-unaudited")
    assert out.returncode == 2 and "DEPENDENCY AUDIT FAILED" in out.stdout
