#!/usr/bin/env python3
"""``make docker-check``: build the Dockerfile with podman and serve a prediction from the image.

Steps (each logged; the report is printed as JSON and written to ``--report``):

1. The ``FROM`` image: used when podman has it, else pulled, else stood in for by a Debian bookworm base made
   with ``debootstrap`` (python3, pip, the host's CA bundle and pip's ``cert`` pointing at it; cached under
   ``~/.cache/soundscape/docker-base``) and imported under the ``FROM`` name.
2. ``podman build --isolation=chroot`` (no container runtime needed).
3. This sandbox cannot start containers (runtimes cannot set rlimits here), so the image's ``CMD`` runs as its
   ``USER``, in its ``WORKDIR`` and ``ENV``, in a chroot of a container's root (``podman create`` + ``podman
   mount``: the image's files, writable like a container's) with ``/proc`` and ``/dev`` bound in; the port
   comes from ``SOUNDSCAPE_PORT`` (``-e`` in ``docker run`` terms).
4. Over HTTP: ``/readyz`` 200, ``POST /v1/predict`` of a generated WAV (200, every window), the server process
   runs as the image's user (not root), ``torch`` cannot be imported in the image, and the image's size.

Exit codes: 0 all checks passed, 1 a check failed, 3 podman (or debootstrap, when needed) is missing or this is
not root.
Standard library only: runs with any Python 3.11 (``make docker-check`` uses the system one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("docker_check")

ROOT = Path(__file__).resolve().parents[1]
MISSING_TOOL = 3
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "soundscape" / "docker-base"
STANDIN_PACKAGES = "python3,python3-pip,python-is-python3,ca-certificates"
STANDIN_LABEL = "org.soundscape.docker-check.standin"


class CheckError(RuntimeError):
    """A check of the image failed."""


def run(*cmd: str, timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    """``cmd`` under nice/ionice (this machine runs other jobs); raises with its output when it fails."""
    nice = ["nice", "-n", "19", *(["ionice", "-c", "3"] if shutil.which("ionice") else [])]
    proc = subprocess.run([*nice, *cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        raise CheckError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-3000:]}")
    return proc


def from_image(dockerfile: Path) -> str:
    """The image of the Dockerfile's first ``FROM``."""
    for line in dockerfile.read_text().splitlines():
        if line.strip().upper().startswith("FROM "):
            return line.split()[1]
    raise CheckError(f"{dockerfile}: no FROM line")


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], capture_output=True).returncode == 0


def build_standin(name: str, mirror: str) -> None:
    """A Debian bookworm base with python3 and pip, imported as ``name`` (the rootfs is cached)."""
    rootfs = CACHE / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        if shutil.which("debootstrap") is None:
            raise FileNotFoundError("debootstrap (apt-get install -y debootstrap) is needed to stand in for "
                                    f"{name}, which podman cannot pull here")
        shutil.rmtree(rootfs, ignore_errors=True)
        log.info("debootstrap bookworm into %s (a few minutes, once)", rootfs)
        run("debootstrap", "--variant=minbase", f"--include={STANDIN_PACKAGES}", "bookworm", str(rootfs), mirror)
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):  # python:*-slim's pip installs system-wide
        marker.unlink()
    for junk in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_*")]:
        junk.unlink()
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
    (rootfs / "etc" / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run("podman", "import", "--change", 'CMD ["python3"]', "--change", f"LABEL {STANDIN_LABEL}=debootstrap-bookworm",
        "-", name, stdin=tar.stdout)
    tar.wait()
    log.info("imported the stand-in base as %s", name)


def ensure_base(name: str, mirror: str) -> str:
    """Where the ``FROM`` image came from: ``local``, ``pulled`` or ``debootstrap stand-in``."""
    if image_exists(name):
        labels = json.loads(run("podman", "image", "inspect", "--format", "{{json .Labels}}", name).stdout) or {}
        return "debootstrap stand-in (imported earlier)" if STANDIN_LABEL in labels else "local"
    with contextlib.suppress(CheckError, subprocess.TimeoutExpired):
        run("podman", "pull", "--quiet", name, timeout=120)
        return "pulled"
    build_standin(name, mirror)
    return "debootstrap stand-in"


def image_size_mb(name: str) -> float:
    out = run("podman", "image", "inspect", "--format", "{{.Size}}", name).stdout
    return round(int(out.strip()) / 1e6, 1)


def image_config(name: str) -> dict:
    return json.loads(run("podman", "image", "inspect", name).stdout)[0]["Config"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wav(seconds: float = 12.0, rate: int = 32000) -> bytes:
    """A mono 16-bit WAV of a few tones (standard library only)."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        frames += struct.pack("<h", int(6000 * math.sin(2 * math.pi * (2000 + 500 * math.sin(t)) * t)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


@contextlib.contextmanager
def mounted_container(image: str) -> Iterator[Path]:
    """A created (never started) container's root filesystem, with /proc and /dev bound in."""
    ctr = run("podman", "create", image).stdout.strip()
    root = Path(run("podman", "mount", ctr).stdout.strip())
    binds = []
    try:
        for sub in ("proc", "dev"):
            (root / sub).mkdir(exist_ok=True)
            run("mount", "--bind" if sub == "dev" else "-t", *([] if sub == "dev" else ["proc"]),
                f"/{sub}" if sub == "dev" else "proc", str(root / sub))
            binds.append(root / sub)
        yield root
    finally:
        for b in reversed(binds):
            subprocess.run(["umount", "-l", str(b)], capture_output=True)
        subprocess.run(["podman", "umount", ctr], capture_output=True)
        subprocess.run(["podman", "rm", "-f", ctr], capture_output=True)


def user_ids(root: Path, user: str) -> tuple[int, int]:
    """uid and gid of the image's ``USER`` (a name or ``uid[:gid]``), from the image's /etc/passwd."""
    name, _, group = user.partition(":")
    if name.isdigit():
        return int(name), int(group or name)
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(group or fields[3])
    raise CheckError(f"user {user!r} is not in the image's /etc/passwd")


def start_cmd(root: Path, config: dict, port: int, log_path: Path) -> subprocess.Popen:
    """The image's CMD (with its ENTRYPOINT) as its USER, in its WORKDIR and ENV, chrooted into ``root``."""
    uid, gid = user_ids(root, config.get("User") or "root")
    env = [e for e in config.get("Env", []) if not e.startswith("SOUNDSCAPE_PORT=")] + [f"SOUNDSCAPE_PORT={port}"]
    cmd = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    workdir = config.get("WorkingDir") or "/"
    shell = f'cd "{workdir}" && exec "$@"'
    log.info("chroot %s as %d:%d: %s (port %d)", root, uid, gid, " ".join(cmd), port)
    return subprocess.Popen(["chroot", f"--userspec={uid}:{gid}", str(root), "/usr/bin/env", "-i", *env,
                             "/bin/sh", "-c", shell, "sh", *cmd],
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise CheckError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:  # noqa: S310 - http://127.0.0.1
                return time.monotonic() - t0
        time.sleep(0.2)
    raise CheckError(f"/readyz not 200 after {timeout:.0f} s")


def predict(url: str) -> dict:
    req = urllib.request.Request(f"{url}/v1/predict", data=test_wav(), method="POST",  # noqa: S310 - loopback
                                 headers={"Content-Type": "audio/wav"})
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - http://127.0.0.1
        if r.status != 200:
            raise CheckError(f"/v1/predict answered {r.status}")
        doc = json.loads(r.read())
    if doc["audio"]["windows"] != 2 or len(doc["windows"]) != 2:
        raise CheckError(f"/v1/predict: expected 2 windows of a 12-s file, got {doc['audio']}")
    return {"model": doc["model"], "windows": len(doc["windows"]), "labels": len(doc["windows"][0]["probabilities"])}


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise CheckError(f"no Uid for process {pid}")


def has_torch(root: Path) -> bool:
    code = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)"
    return subprocess.run(["chroot", str(root), "python", "-c", code], capture_output=True).returncode == 0


def serve_and_check(image: str, report: dict, log_dir: Path) -> None:
    config = image_config(image)
    report["config"] = {k: config.get(k) for k in ("User", "WorkingDir", "Cmd", "Entrypoint")}
    with mounted_container(image) as root:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_cmd(root, config, port, log_dir / "docker-check-serve.log")
        try:
            report["ready_s"] = round(wait_ready(url, proc), 2)
            report["predict"] = predict(url)
            report["server_uid"] = process_uid(proc.pid)
            if report["server_uid"] == 0 or report["server_uid"] != user_ids(root, config.get("User") or "")[0]:
                raise CheckError(f"the server runs as uid {report['server_uid']}, not as the image's user")
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if proc.poll() is None:
                proc.kill()
        report["torch_importable"] = has_torch(root)
        if report["torch_importable"]:
            raise CheckError("torch is importable in the serving image")


def check(args: argparse.Namespace) -> dict:
    dockerfile = ROOT / args.dockerfile
    base = from_image(dockerfile)
    report: dict = {"image": args.image, "from": base, "from_source": ensure_base(base, args.mirror)}
    report["from_size_mb"] = image_size_mb(base)
    t0 = time.monotonic()
    build_log = run("podman", "build", "--isolation=chroot", "--pull=never", "-t", args.image, "-f",
                    str(dockerfile), str(ROOT), timeout=3600)
    Path(args.log_dir, "docker-check-build.log").write_text(build_log.stdout + build_log.stderr)
    report["build_s"] = round(time.monotonic() - t0, 1)
    report["size_mb"] = image_size_mb(args.image)
    report["added_mb"] = round(report["size_mb"] - report["from_size_mb"], 1)
    serve_and_check(args.image, report, Path(args.log_dir))
    report["ok"] = True
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="soundscape:check", help="Tag of the built image.")
    parser.add_argument("--dockerfile", default="Dockerfile", help="Dockerfile, relative to the repository.")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror for debootstrap.")
    parser.add_argument("--report", default=None, help="Also write the report (JSON) here.")
    parser.add_argument("--log-dir", default=tempfile.gettempdir(),
                        help="Where the build and server logs go.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if shutil.which("podman") is None:
        log.error("podman is not installed (Debian: apt-get install -y podman debootstrap)")
        return MISSING_TOOL
    if os.geteuid() != 0:
        log.error("running the image's CMD in a chroot of the image needs root (chroot, mount)")
        return MISSING_TOOL
    try:
        report = check(args)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return MISSING_TOOL
    except (CheckError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        log.error("docker check failed: %s", exc)
        return 1
    text = json.dumps(report, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
