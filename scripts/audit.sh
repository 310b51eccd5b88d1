#!/usr/bin/env bash
# Audit the packages installed in .venv for known vulnerabilities; the tools go in a throwaway
# venv, so the project's own is left as it is.
#
# 1. pip-audit, against the current advisories (PyPI's JSON API per release, which carries
#    OSV's PyPA advisories). Where that API is out of reach (a machine that reaches only a
#    package registry: it then answers "not found" for every release), pip-audit audits nothing.
# 2. safety 2 with safety-db, the one advisory database installable from a package registry and
#    usable offline. It is STALE: its last release is 2021-07-17, so "0 found" there only means
#    "nothing known by mid-2021".
#
# Exit status: 0 = pip-audit audited every package and found nothing; 1 = a vulnerability was
# found (by either); 3 = nothing found, but the current advisories could not be checked.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TOOLS=$(mktemp -d)
trap 'rm -rf "$TOOLS"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/pip" install -q "pip-audit==2.*" "safety==2.3.4" "safety-db==2021.7.17" \
  >"$TOOLS/install.log" 2>&1 || { tail -n 20 "$TOOLS/install.log" >&2; exit 2; }
# What is audited: every installed distribution but the project's own (editable, not on PyPI).
.venv/bin/python -m pip freeze --exclude-editable | grep -v ' @ ' >"$TOOLS/requirements.txt"
echo "audit: $(wc -l <"$TOOLS/requirements.txt") packages installed in .venv"

found=0
echo "== pip-audit (current advisories: PyPI JSON API / OSV)"
"$TOOLS/venv/bin/pip-audit" --path "$SITE" --skip-editable --progress-spinner off -f json \
  -o "$TOOLS/pip-audit.json" 2>"$TOOLS/pip-audit.err" || true
audited=$("$TOOLS/venv/bin/python" - "$TOOLS/pip-audit.json" <<'EOF'
import json, sys
try:
    deps = json.load(open(sys.argv[1]))["dependencies"]
except (OSError, ValueError, KeyError):
    print("0 0 0")
    sys.exit()
skipped = [d for d in deps if "skip_reason" in d]
vulns = [(d["name"], d["version"], v["id"], v.get("fix_versions")) for d in deps
         for v in d.get("vulns", [])]
for name, version, vid, fix in vulns:
    print(f"  {name} {version}: {vid} (fixed in {', '.join(fix or []) or 'no release yet'})",
          file=sys.stderr)
print(len(deps) - len(skipped), len(skipped), len(vulns))
EOF
)
read -r ok skipped vulns <<<"$audited"
echo "pip-audit: $ok audited, $skipped could not be (no advisory data reachable), $vulns vulnerabilities"
[ "$vulns" -gt 0 ] && found=1

echo "== safety-db (offline, last updated 2021-07-17: stale)"
DB=$("$TOOLS/venv/bin/python" -c 'import pathlib, safety; print(next(
    pathlib.Path(safety.__file__).parents[1].glob("safety_db/insecure_full.json")).parent)')
if ! "$TOOLS/venv/bin/safety" check --db "$DB" -r "$TOOLS/requirements.txt" --output text \
  >"$TOOLS/safety.txt" 2>&1; then
  found=1
fi
grep -E 'vulnerabilit|->|scanned' "$TOOLS/safety.txt" | sed 's/^ */  /'

if [ "$found" -ne 0 ]; then
  echo "audit: vulnerabilities found (above)"
  exit 1
fi
if [ "$ok" -eq 0 ] || [ "$skipped" -gt 0 ]; then
  echo "audit: INCOMPLETE: none found, but the current advisories were out of reach for" \
    "$skipped package(s); only the stale 2021 database was checked for them"
  exit 3
fi
echo "audit: clean against the current advisories"
