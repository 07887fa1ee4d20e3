#!/usr/bin/env python3
"""Checks what a schema cannot in a rendered overlay (`kubectl kustomize …`): that it runs
every service the binary has, the way the image and the chassis expect.

    kubectl kustomize deploy/kubernetes/overlays/production | \
        deploy/checks/kubernetes.py path/to/bazaar production

For every service `bazaar serve` knows: a Deployment running `serve <service>` as the image's
non-root user, probes on the admin port's health paths, Prometheus pointed at the admin port,
memory requests and limits, a Service with both ports, a PodDisruptionBudget, and, in
production, a HorizontalPodAutoscaler for every service with more than one replica. Every
ConfigMap a pod reads is in the overlay, with mutual TLS every service URL in a ConfigMap is
https://, and discovery by DNS has a headless Service per service.
"""

import pathlib
import re
import subprocess
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from container import ROOT, image  # noqa: E402

problems = []


def problem(message):
    problems.append(message)


def services_of(binary):
    """The services `bazaar serve` accepts, from its help."""
    help_text = subprocess.run(
        [binary, "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    values = help_text.split("Possible values:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\s+- ([a-z]+):", values, re.M)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: kubernetes.py path/to/bazaar <overlay name> < rendered.yaml")
    binary, overlay = sys.argv[1], sys.argv[2]
    spec = image(ROOT / "Dockerfile")
    uid = int(spec["user"].split(":")[0])
    port = int(spec["env"]["BAZAAR_HTTP__PORT"])
    admin = int(spec["env"]["BAZAAR_HTTP__ADMIN_PORT"])
    documents = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    config_maps = set(by_kind.get("ConfigMap", {}))
    services = services_of(binary)
    if not services:
        sys.exit("kubernetes check: no services in `bazaar serve --help`")

    for service in services:
        deployment = by_kind.get("Deployment", {}).get(service)
        if deployment is None:
            problem(f"{service}: no Deployment")
            continue
        pod = deployment["spec"]["template"]
        containers = pod["spec"]["containers"]
        if len(containers) != 1:
            problem(f"{service}: {len(containers)} containers, expected 1")
            continue
        container = containers[0]
        if container.get("args") != [service]:
            problem(f"{service}: args {container.get('args')} do not run `serve {service}`")
        if "command" in container:
            problem(f"{service}: overrides the image's entrypoint")
        security = pod["spec"].get("securityContext", {})
        if not security.get("runAsNonRoot") or security.get("runAsUser") != uid:
            problem(f"{service}: must run as non-root uid {uid}")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if ports != {"http": port, "admin": admin}:
            problem(f"{service}: ports {ports}, the image listens on http {port}, admin {admin}")
        for kind, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
            probe = container.get(kind, {}).get("httpGet", {})
            if probe.get("path") != path or probe.get("port") not in ("admin", admin):
                problem(f"{service}: {kind} must GET {path} on the admin port, not {probe}")
        annotations = pod["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/port") != str(admin):
            problem(f"{service}: Prometheus is not pointed at the admin port")
        resources = container.get("resources", {})
        if "memory" not in resources.get("requests", {}) or "memory" not in resources.get("limits", {}):
            problem(f"{service}: no memory request and limit")
        for source in container.get("envFrom", []):
            name = source.get("configMapRef", {}).get("name")
            if name and name not in config_maps:
                problem(f"{service}: reads ConfigMap {name}, which the overlay does not make")
        svc = by_kind.get("Service", {}).get(service)
        if svc is None or {p["name"] for p in svc["spec"]["ports"]} != {"http", "admin"}:
            problem(f"{service}: no Service with the http and admin ports")
        if service not in by_kind.get("PodDisruptionBudget", {}):
            problem(f"{service}: no PodDisruptionBudget")
        scales = deployment["spec"].get("replicas", 1) > 1
        if overlay == "production" and scales and service not in by_kind.get("HorizontalPodAutoscaler", {}):
            problem(f"{service}: {deployment['spec']['replicas']} replicas but no HorizontalPodAutoscaler")
    for name in by_kind.get("Deployment", {}):
        if name not in services:
            problem(f"Deployment {name} runs no service the binary knows ({', '.join(services)})")
    # With mutual TLS, services listen on https only: every URL of a service they are given
    # must say so.
    mutual = any(
        e.get("name") == "BAZAAR_MTLS__CA"
        for d in by_kind.get("Deployment", {}).values()
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    )
    for name, config_map in by_kind.get("ConfigMap", {}).items():
        for key, value in (config_map.get("data") or {}).items():
            host = re.match(r"^https?://([a-z0-9-]+)[:/]", value)
            if mutual and host and host.group(1) in services and value.startswith("http://"):
                problem(f"ConfigMap {name}: {key} = {value}, but services take only mTLS (https://)")
    # Discovery by DNS: a headless Service per service under the configured name, and the
    # scheme services answer on.
    for name, config_map in by_kind.get("ConfigMap", {}).items():
        data = config_map.get("data") or {}
        pattern = data.get("BAZAAR_DISCOVERY__DNS__NAME")
        if not pattern:
            continue
        for service in services:
            headless = by_kind.get("Service", {}).get(pattern.replace("{service}", service))
            if headless is None or headless["spec"].get("clusterIP") != "None":
                problem(f"{service}: no headless Service named {pattern} for discovery by DNS")
        scheme = data.get("BAZAAR_DISCOVERY__DNS__SCHEME", "http")
        if scheme != ("https" if mutual else "http"):
            problem(f"ConfigMap {name}: BAZAAR_DISCOVERY__DNS__SCHEME = {scheme} does not match mTLS")
    gateway = by_kind.get("Ingress", {}).get("gateway")
    if gateway is None:
        problem("no Ingress to the gateway")
    elif overlay == "production" and not gateway["spec"].get("tls"):
        problem("the production Ingress has no TLS")

    if problems:
        print(f"kubernetes check ({overlay}):", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"kubernetes check ({overlay}): {len(services)} services, {len(documents)} objects, ok")


if __name__ == "__main__":
    main()
