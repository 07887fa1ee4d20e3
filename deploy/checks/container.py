#!/usr/bin/env python3
"""Runs the `bazaar` binary the way the Dockerfile's image would, without a Docker engine.

Reads the final stage of the Dockerfile (ENV, USER, EXPOSE, HEALTHCHECK, ENTRYPOINT), then
starts `<entrypoint> catalog` with exactly that environment, as that user, and checks:
- the user is not root, and the ports the image exposes are the ones the service listens on;
- the image's own health check command passes once the service is up;
- the service writes its data in the image's data directory, owned by that user;
- SIGTERM (what `docker stop` sends) stops it cleanly, and the health check then fails.

    deploy/checks/container.py path/to/bazaar
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def fail(message):
    print(f"container check: {message}", file=sys.stderr)
    sys.exit(1)


def final_stage(dockerfile):
    """The instructions of the last stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages, current = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            current = []
            stages.append(current)
        current.append((keyword.upper(), rest.strip()))
    if not stages:
        fail("the Dockerfile has no FROM")
    return stages[-1]


def image(dockerfile):
    spec = {"env": {}, "expose": []}
    for keyword, rest in final_stage(dockerfile):
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                spec["env"][name] = value
        elif keyword == "USER":
            spec["user"] = rest
        elif keyword == "EXPOSE":
            spec["expose"] += [int(port) for port in rest.split()]
        elif keyword == "ENTRYPOINT":
            spec["entrypoint"] = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            _, _, command = rest.partition("CMD ")
            spec["healthcheck"] = json.loads(command)
    for key in ("user", "entrypoint", "healthcheck"):
        if key not in spec:
            fail(f"the final stage has no {key.upper()}")
    return spec


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    if len(sys.argv) != 2:
        fail("usage: container.py path/to/bazaar")
    binary = pathlib.Path(sys.argv[1])
    spec = image(ROOT / "Dockerfile")
    env = spec["env"]
    uid, _, gid = spec["user"].partition(":")
    uid, gid = int(uid), int(gid or uid)
    if uid == 0:
        fail("the image runs as root")
    port, admin = int(env["BAZAAR_HTTP__PORT"]), int(env["BAZAAR_HTTP__ADMIN_PORT"])
    if sorted(spec["expose"]) != sorted([port, admin]):
        fail(f"EXPOSE {spec['expose']} is not the service port {port} and admin port {admin}")
    if spec["entrypoint"][1:] != ["serve"]:
        fail(f"the entrypoint {spec['entrypoint']} is not `bazaar serve`")
    health = spec["healthcheck"]
    if f"127.0.0.1:{admin}/" not in health[-1]:
        fail(f"the health check {health} does not ask the admin port {admin}")

    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        os.chmod(scratch, 0o755)
        # The image's paths, under a scratch root the image's user can reach.
        installed = scratch / spec["entrypoint"][0].lstrip("/")
        installed.parent.mkdir(parents=True)
        shutil.copy2(binary, installed)
        data = scratch / env["BAZAAR_DATA_DIR"].lstrip("/")
        data.mkdir(parents=True)
        os.chown(data, uid, gid)

        # Free ports stand in for 8080 and 9090, which this machine may be using; no registry.
        test_port, test_admin = free_port(), free_port()
        run_env = dict(env)
        run_env.update(
            BAZAAR_HTTP__PORT=str(test_port),
            BAZAAR_HTTP__ADMIN_PORT=str(test_admin),
            BAZAAR_DATA_DIR=str(data),
            BAZAAR_DISCOVERY__REGISTRY="",
            PATH="/usr/bin:/bin",
        )
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        probe = [str(installed)] + health[1:-1] + [health[-1].replace(f":{admin}/", f":{test_admin}/")]
        log = scratch / "service.log"
        with open(log, "wb") as out:
            service = subprocess.Popen(
                as_user + [str(installed)] + spec["entrypoint"][1:] + ["catalog"],
                env=run_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                if service.poll() is not None:
                    fail(f"the service exited with {service.returncode}:\n{log.read_text()}")
                checked = subprocess.run(as_user + probe, env=run_env, capture_output=True, text=True)
                if checked.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    fail(f"the health check never passed: {checked.stderr}\n{log.read_text()}")
                time.sleep(0.5)
            status = pathlib.Path(f"/proc/{service.pid}/status").read_text()
            real_uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
            if real_uid != uid:
                fail(f"the service runs as uid {real_uid}, not {uid}")
            owned = [p for p in data.rglob("*") if p.is_file()]
            if not owned or any(p.stat().st_uid != uid for p in owned):
                fail(f"the data directory holds no files of uid {uid}: {owned}")
            service.send_signal(signal.SIGTERM)
            code = service.wait(timeout=20)
            if code != 0:
                fail(f"SIGTERM ended the service with {code}:\n{log.read_text()}")
            after = subprocess.run(as_user + probe, env=run_env, capture_output=True, text=True)
            if after.returncode == 0:
                fail("the health check still passes after the service stopped")
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
    print(
        f"container check: `{' '.join(spec['entrypoint'])} catalog` as uid {uid}: healthy, "
        f"data owned by its user, stopped cleanly by SIGTERM"
    )


if __name__ == "__main__":
    main()
