"""Audit the installed versions of the project's dependencies for known vulnerabilities.

When PyPI's per-version JSON answers (what pip-audit's default service uses), this runs ``pip-audit``.
Where it does not (this build machine: pip-audit reports every package "not found on PyPI"), it falls back
to the project-level JSON (``https://pypi.org/pypi/<name>/json``), which answers everywhere pip does and
carries:

- ``vulnerabilities``: advisories affecting the latest release, each with ``fixed_in``. One applies to
  the installed version when that version is below every ``fixed_in`` (or there is no fix);
- ``releases[<installed>]``: whether the installed release was yanked, and why.

Limitation of the fallback: an advisory fixed in a release between the installed one and the latest is not
in the project JSON, so every package behind its latest release is listed as "behind" for a human look;
only applicable advisories and yanked releases fail the audit.

By default the project's own direct dependencies (``pyproject.toml``: base plus the extras named with
``--extras``) are checked, a few dozen look-ups; ``--all`` checks every installed distribution.

Usage::

    python scripts/audit_deps.py                  # direct deps, base + dev extras
    python scripts/audit_deps.py --extras dev,train,batch
    python scripts/audit_deps.py --all --json out.json

Exit status: 0 clean, 1 vulnerable or yanked, 2 the index could not be reached (network, not findings).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
INDEX = "https://pypi.org/pypi"
TIMEOUT_S = 20


def _get_json(url: str) -> dict | None:
    """GET a JSON document; None on 404, raises on network failure."""
    if not url.startswith("https://"):
        raise ValueError(f"refusing non-https URL {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:  # noqa: S310 - https only, checked above
            return json.load(r)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def direct_dependencies(extras: list[str]) -> set[str]:
    """Canonical names of ``pyproject.toml``'s base dependencies and ``extras`` (self-references expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    names: set[str] = set()
    todo = list(project.get("dependencies", [])) + [r for e in extras for r in optional.get(e, [])]
    seen_extras: set[str] = set()
    while todo:
        req = Requirement(todo.pop())
        if canonicalize_name(req.name) == canonicalize_name(project["name"]):
            for e in req.extras - seen_extras:
                seen_extras.add(e)
                todo += optional.get(e, [])
            continue
        names.add(canonicalize_name(req.name))
    return names


def installed(names: set[str] | None) -> dict[str, str]:
    """``{canonical name: version}`` of installed distributions (only ``names`` when given)."""
    out = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name and (names is None or name in names) and name != "soundscape":
            out[name] = dist.version
    return out


def _below_all(version: str, fixed_in: list[str]) -> bool:
    try:
        v = Version(version)
        return not fixed_in or all(v < Version(f) for f in fixed_in)
    except InvalidVersion:
        return True


def check_one(name: str, version: str) -> dict:
    """One distribution's findings from its project JSON."""
    doc = _get_json(f"{INDEX}/{name}/json")
    if doc is None:
        return {"name": name, "version": version, "status": "not_on_pypi"}
    latest = doc["info"]["version"]
    vulns = [{"id": v.get("id"), "aliases": v.get("aliases", []), "fixed_in": v.get("fixed_in", []),
              "summary": (v.get("summary") or v.get("details") or "")[:200]}
             for v in doc.get("vulnerabilities", []) if _below_all(version, v.get("fixed_in", []))]
    files = doc.get("releases", {}).get(version, [])
    yanked = bool(files) and all(f.get("yanked") for f in files)
    reason = next((f.get("yanked_reason") for f in files if f.get("yanked_reason")), None)
    try:
        behind = Version(version) < Version(latest)
    except InvalidVersion:
        behind = version != latest
    return {"name": name, "version": version, "latest": latest, "behind": behind, "vulnerabilities": vulns,
            "yanked": yanked, "yanked_reason": reason,
            "status": "vulnerable" if vulns else "yanked" if yanked else "ok"}


def per_version_endpoint_works() -> bool:
    """One probe: does PyPI's per-version JSON (pip-audit's default source) answer from here?"""
    try:
        return _get_json(f"{INDEX}/pip/{metadata.version('pip')}/json") is not None
    except (OSError, urllib.error.URLError):
        return False


def run_pip_audit() -> int:
    exe = shutil.which("pip-audit") or str(Path(sys.executable).with_name("pip-audit"))
    return subprocess.call([exe, "--skip-editable", "--progress-spinner", "off"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="dev", help="Comma-separated extras to include (default: dev).")
    parser.add_argument("--all", action="store_true", help="Every installed distribution, not just direct deps.")
    parser.add_argument("--fallback", action="store_true", help="Skip pip-audit even when it could run.")
    parser.add_argument("--json", type=Path, help="Also write the findings here.")
    args = parser.parse_args(argv)

    if not args.fallback and per_version_endpoint_works():
        print("PyPI per-version JSON answers: running pip-audit")
        return run_pip_audit()
    names = None if args.all else direct_dependencies([e for e in args.extras.split(",") if e])
    dists = installed(names)
    missing = sorted((names or set()) - set(dists))
    print(f"auditing {len(dists)} installed distributions against {INDEX}/<name>/json"
          + (f" (not installed: {', '.join(missing)})" if missing else ""))
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda kv: check_one(*kv), sorted(dists.items())))
    except (OSError, urllib.error.URLError) as exc:
        print(f"cannot reach {INDEX}: {exc}", file=sys.stderr)
        return 2
    bad = [r for r in results if r["status"] in ("vulnerable", "yanked")]
    for r in results:
        flag = {"ok": "ok", "vulnerable": "VULNERABLE", "yanked": "YANKED", "not_on_pypi": "not on PyPI"}[r["status"]]
        extra = f" (latest {r['latest']})" if r.get("behind") else ""
        print(f"  {flag:12} {r['name']}=={r['version']}{extra}")
        for v in r.get("vulnerabilities", []):
            summary = re.sub(r"\s+", " ", v["summary"])
            print(f"      {v['id']} {' '.join(v['aliases'])} fixed in {', '.join(v['fixed_in']) or 'nothing yet'}: "
                  f"{summary}")
        if r.get("yanked"):
            print(f"      yanked: {r.get('yanked_reason') or 'no reason given'}")
    behind = [r["name"] for r in results if r.get("behind")]
    print(f"{len(bad)} finding(s); {len(behind)} package(s) behind their latest release"
          + (f": {', '.join(behind)}" if behind else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
