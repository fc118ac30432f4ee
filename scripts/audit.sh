#!/usr/bin/env bash
# Dependency audit: pip-audit over the installed Python environment (docs/security.md).
#
#   sh scripts/audit.sh [--allow-unaudited]
#
# Exit status:
#   0  every installed distribution was checked and none has a known vulnerability
#      (with --allow-unaudited: also when some could not be checked; a loud warning says so)
#   1  a KNOWN VULNERABILITY: the table lists package, version, advisory and fixed versions
#   2  the audit could not be done (vulnerability service unreachable, or distributions it
#      could not look up): never silently green
#
# pip-audit's default service is PyPI's JSON API (/pypi/<name>/<version>/json, whose
# "vulnerabilities" come from OSV). On a machine that reaches PyPI only through a mirror
# without that endpoint every lookup fails, pip-audit marks each distribution "skipped"
# and would itself exit 0: this script counts skips as failures (2) instead.
# $PIP_AUDIT overrides the command (tests use a stand-in); extra pip-audit options
# (e.g. "--vulnerability-service osv") go in $PIP_AUDIT_OPTS.
set -u
allow_unaudited=0
for arg in "$@"; do
    case "$arg" in
        --allow-unaudited) allow_unaudited=1 ;;
        *) echo "audit.sh: unknown option $arg" >&2; exit 64 ;;
    esac
done
PY=${PYTHON:-python3}
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
# shellcheck disable=SC2086
${PIP_AUDIT:-$PY -m pip_audit} --format json --progress-spinner off ${PIP_AUDIT_OPTS:-} \
    >"$out" 2>"$err"
rc=$?
ALLOW=$allow_unaudited RC=$rc "$PY" - "$out" "$err" <<'EOF'
import json, os, sys

# Distributions that are not on PyPI by design (this project itself).
LOCAL = {"vitalcore"}
out, err = sys.argv[1], sys.argv[2]
rc, allow = int(os.environ["RC"]), os.environ["ALLOW"] == "1"
stderr = open(err).read().strip()
try:
    doc = json.load(open(out))
    deps = doc["dependencies"]
except (OSError, ValueError, KeyError, TypeError):
    print("=" * 72)
    print(f"DEPENDENCY AUDIT FAILED: pip-audit gave no report (exit {rc})")
    print(stderr[-2000:])
    print("=" * 72)
    sys.exit(2)
vulnerable = [d for d in deps if d.get("vulns")]
skipped = [d for d in deps if "skip_reason" in d and d["name"].lower() not in LOCAL]
checked = len(deps) - len(skipped) - sum(d["name"].lower() in LOCAL for d in deps)
if vulnerable:
    print("=" * 72)
    print(f"KNOWN VULNERABILITY in {len(vulnerable)} installed distribution(s):")
    for d in vulnerable:
        for v in d["vulns"]:
            fixed = ", ".join(v.get("fix_versions") or []) or "no fixed version"
            print(f"  {d['name']} {d['version']}: {v['id']} "
                  f"({', '.join(v.get('aliases') or [])}) fixed in: {fixed}")
    print("=" * 72)
    sys.exit(1)
if rc not in (0, 1):
    print(f"DEPENDENCY AUDIT FAILED: pip-audit exit {rc}: {stderr[-2000:]}")
    sys.exit(2)
if skipped:
    reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
    print("=" * 72)
    print(f"DEPENDENCY AUDIT INCOMPLETE: {len(skipped)} of {len(deps)} distributions could "
          f"not be checked ({checked} checked), e.g. {skipped[0]['name']}: "
          f"{skipped[0]['skip_reason']}")
    print(f"  reasons: {reasons}")
    print("  (is the vulnerability service reachable from here? see docs/security.md)")
    print("=" * 72)
    sys.exit(0 if allow else 2)
print(f"dependency audit: {checked} distributions checked, no known vulnerability")
EOF
