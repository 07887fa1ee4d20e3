#!/usr/bin/env python3
"""Checks deploy/compose/compose.yaml without a Docker engine: every service the binary has
runs from the image with `serve <service>`, each with its own database, every dependency
named exists, and the Prometheus and collector files it mounts are there.

    deploy/checks/compose.py path/to/bazaar
"""

import pathlib
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from container import ROOT  # noqa: E402
from kubernetes import services_of  # noqa: E402

BACKENDS = {"postgres", "nats", "redis", "otel-collector", "prometheus"}


def main():
    binary = sys.argv[1]
    path = ROOT / "deploy/compose/compose.yaml"
    compose = yaml.safe_load(path.read_text())
    declared = compose["services"]
    problems = []
    services = services_of(binary)
    for name in BACKENDS - set(declared):
        problems.append(f"no {name} service")
    databases = set()
    for service in services:
        spec = declared.get(service)
        if spec is None:
            problems.append(f"{service}: not in the compose file")
            continue
        if spec.get("command") != [service]:
            problems.append(f"{service}: command {spec.get('command')} is not [{service!r}]")
        if not spec.get("image", "").startswith("bazaar:"):
            problems.append(f"{service}: not the bazaar image")
        environment = spec.get("environment", {})
        url = environment.get("BAZAAR_DATABASE__URL")
        # The gateway and the storefront keep no data of their own.
        if service not in ("gateway", "web"):
            if not url:
                problems.append(f"{service}: no database")
            elif url in databases:
                problems.append(f"{service}: shares the database {url}")
            databases.add(url)
        for dependency in spec.get("depends_on", {}):
            if dependency not in declared:
                problems.append(f"{service}: depends on {dependency}, which is not declared")
            if dependency == service:
                problems.append(f"{service}: depends on itself")
    for name, spec in declared.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                if not (path.parent / source).resolve().exists():
                    problems.append(f"{name}: mounts {source}, which does not exist")
            elif source not in (compose.get("volumes") or {}):
                problems.append(f"{name}: volume {source} is not declared")
    if sum("build" in spec for spec in declared.values()) != 1:
        problems.append("exactly one service should build the image (the rest reuse it)")
    if problems:
        print("compose check:", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"compose check: {len(services)} services beside {', '.join(sorted(BACKENDS))}, ok")


if __name__ == "__main__":
    main()
