"""The Helm chart in charts/tusd-trio: lint, render, schema-validate, and the design facts.

No helm binary is needed: helm-python-sdk renders and lints through Helm v4's Go SDK
(a bundled shared library), offline.  kubernetes-validate checks every core-API manifest
against the Kubernetes OpenAPI schemas it bundles (strict: unknown fields are errors).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from tusd_trio import __version__
from tusd_trio._values import parse_duration
from tusd_trio.cli.flags import FLAGS, parse_args

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "tusd-trio"
CI_VALUES = CHART / "ci" / "s3-redis-values.yaml"
RELEASE = "up"
NAMESPACE = "uploads"
FULLNAME = f"{RELEASE}-tusd-trio"

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema
# kubernetes-validate bundles.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

# Every flag the chart renders must be one of the daemon's, so a misspelt flag fails here.
KNOWN_FLAGS = frozenset(flag.name for flag in FLAGS)

Manifest = dict[str, Any]


# --------------------------------------------------------------------------------- helpers


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Rendered:
    """The manifests of one `helm template`, by kind."""

    def __init__(self, files: dict[str, str]) -> None:
        self.notes = files.get("tusd-trio/templates/NOTES.txt", "")
        self.docs: list[Manifest] = []
        for path, text in sorted(files.items()):
            if path.endswith((".yaml", ".yml")):
                self.docs.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def all(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str) -> Manifest:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self.docs}

    def named(self, kind: str, name: str) -> Manifest:
        [found] = [doc for doc in self.all(kind) if doc["metadata"]["name"] == name]
        return found

    @property
    def service(self) -> Manifest:
        """The Service of the upload port (the metrics listener may have one of its own)."""
        return self.named("Service", FULLNAME)

    @property
    def pod(self) -> Manifest:
        spec: Manifest = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> Manifest:
        containers = self.pod["containers"]
        assert [c["name"] for c in containers] == ["tusd-trio"]
        container: Manifest = containers[0]
        return container

    def secret_data(self) -> dict[str, str]:
        secrets = self.all("Secret")
        if not secrets:
            return {}
        return {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}

    def env(self) -> dict[str, str]:
        """The container's environment as the kubelet builds it; values read from a Secret the
        chart does not create show as <secret:name/key>."""
        config = self.one("ConfigMap")
        secret_name = self.all("Secret")[0]["metadata"]["name"] if self.all("Secret") else None
        own_secret = self.secret_data()
        env: dict[str, str] = {}
        for entry in self.container["env"]:
            name = entry["name"]
            if "value" in entry:
                env[name] = entry["value"]
                continue
            ref = entry["valueFrom"]
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["name"] == config["metadata"]["name"]
                env[name] = config["data"][ref["configMapKeyRef"]["key"]]
            else:
                key_ref = ref["secretKeyRef"]
                if key_ref["name"] == secret_name:
                    env[name] = own_secret[key_ref["key"]]
                else:
                    env[name] = f"<secret:{key_ref['name']}/{key_ref['key']}>"
        return env

    def args(self) -> list[str]:
        """The container's arguments with $(VAR) expanded (every reference must resolve)."""
        env = self.env()

        def expand(match: re.Match[str]) -> str:
            assert match.group(1) in env, f"$({match.group(1)}) names no variable"
            return env[match.group(1)]

        return [
            re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, arg) for arg in self.container["args"]
        ]

    def flags(self) -> dict[str, str]:
        """-name=value arguments as a dict (the chart always writes the = form)."""
        flags: dict[str, str] = {}
        for arg in self.args():
            match = re.fullmatch(r"-([a-z0-9-]+)=(.*)", arg, re.DOTALL)
            assert match, f"argument {arg!r} is not -flag=value"
            flags[match.group(1)] = match.group(2)
        return flags


def render(values: dict[str, Any] | None = None) -> Rendered:
    with helm.Chart.load(CHART) as chart:
        return Rendered(chart.render(values or {}, name=RELEASE, namespace=NAMESPACE))


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(values)
    return str(caught.value)


def ci_values() -> dict[str, Any]:
    values: dict[str, Any] = helm.values_from_yaml(CI_VALUES.read_text())
    return values


# Values that reach the branches the default and CI values leave out.
GCS_TLS_VALUES: dict[str, Any] = {
    "storage": {
        "type": "gcs",
        "gcs": {
            "bucket": "uploads",
            "endpoint": "http://gcs-emulator.test.svc:9023",
            "objectPrefix": "tus/",
            "serviceAccountJson": '{"type": "service_account"}',
        },
    },
    "tls": {"enabled": True, "certificate": "CERT PEM", "key": "KEY PEM", "mode": "tls13"},
    "hooks": {
        "enabledEvents": "pre-create,post-finish",
        "blockingTimeout": "20s",
        "grpc": {"address": "hooks.test.svc:50051"},
        # Redis for the hook stream only (no Redis locks).
        "redisStream": {"name": "tus-events", "maxlen": 5000},
        "http": {
            "url": "https://hooks.example.com/tus",
            "backoff": "2s",
            "timeout": "30s",
            "retry": 2,
        },
    },
    "redis": {"url": "redis://redis.test.svc:6380/1"},
    "metrics": {"enabled": False},
    "tusd": {"extraFlags": {"network-timeout": "2m", "fsync": True}},
    "extraArgs": ["-verbose=false"],
    "service": {"type": "NodePort", "nodePort": 31080, "sessionAffinity": "ClientIP"},
}
AZURE_VALUES: dict[str, Any] = {
    "storage": {
        "type": "azure",
        "azure": {
            "container": "uploads",
            "accountName": "acct",
            "endpoint": "https://acct.blob.core.windows.net",
            "objectPrefix": "tus/",
            "existingSecret": "azure-credentials",
        },
    },
    "locker": {"type": "redis"},
    "redis": {"existingSecret": "redis-credentials", "existingSecretKey": "url"},
    "replicaCount": 3,
    "autoscaling": {"enabled": False},
}


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


@pytest.fixture(scope="module")
def ci() -> Rendered:
    return render(ci_values())


def all_renders() -> list[Any]:
    cases = {"default": {}, "ci": ci_values(), "gcs-tls": GCS_TLS_VALUES, "azure": AZURE_VALUES}
    return [pytest.param(name, values, id=name) for name, values in cases.items()]


# --------------------------------------------------------------------------------- chart


def test_chart_metadata_and_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "tusd-trio"
    assert chart["type"] == "application"
    assert chart["appVersion"] == __version__, "Chart.yaml appVersion != tusd_trio/_version.py"
    for name in ("values.yaml", "templates/NOTES.txt", "templates/_helpers.tpl", ".helmignore"):
        assert (CHART / name).is_file(), name


@pytest.mark.parametrize("which", ["default", "ci"])
def test_helm_lint_is_clean(which: str) -> None:
    values = ci_values() if which == "ci" else None
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    # Severity 2 = warning, 3 = error; 1 (info) is only "icon is recommended".
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize(("which", "values"), all_renders())
def test_manifests_validate_against_kubernetes_schemas(which: str, values: dict[str, Any]) -> None:
    rendered = render(values)
    assert rendered.notes.strip(), "NOTES.txt rendered empty"
    core = [doc for doc in rendered.docs if doc["kind"] != "ServiceMonitor"]
    assert core
    for doc in rendered.docs:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    for version in KUBE_VERSIONS:
        for doc in core:
            kind = f"{doc['kind']}/{doc['metadata']['name']}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(part) for part in exc.path)
                pytest.fail(
                    f"{which}: {kind} is invalid for Kubernetes {version}: {path}: {exc.message}"
                )


def test_the_schema_check_is_not_vacuous(default: Rendered) -> None:
    broken = copy.deepcopy(default.one("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)


def test_service_monitor_structure(ci: Rendered) -> None:
    monitor = ci.one("ServiceMonitor")
    service = ci.named("Service", f"{FULLNAME}-metrics")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "tlsConfig"}
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics" == ci.flags()["metrics-path"]
    assert endpoint["interval"] == "30s"
    assert parse_duration(endpoint["scrapeTimeout"]) <= parse_duration(endpoint["interval"])
    assert endpoint["scheme"] == "http"
    # It scrapes the metrics listener's Service, not the upload Service.
    assert not selector.items() <= ci.service["metadata"]["labels"].items()
    # Off unless asked for (it needs the prometheus-operator CRDs).
    assert "ServiceMonitor" not in render().kinds()


def test_metrics_listen_on_their_own_port(default: Rendered) -> None:
    """By default the metrics are served by -metrics-listen on 9180 without credentials,
    through a ClusterIP Service of their own, open only to networkPolicy.metricsFrom: so
    the ServiceMonitor keeps working when access control is turned on."""
    assert default.flags()["metrics-listen"] == "0.0.0.0:9180"
    metrics_port = {"name": "metrics", "containerPort": 9180, "protocol": "TCP"}
    assert metrics_port in default.container["ports"]
    service = default.named("Service", f"{FULLNAME}-metrics")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "metrics", "port": 9180, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert all(port["name"] != "metrics" for port in default.service["spec"]["ports"])
    clients, prometheus = default.one("NetworkPolicy")["spec"]["ingress"]
    assert clients["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert prometheus["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert prometheus["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    # The readiness probe stays on the upload port (the listener is for Prometheus).
    assert default.container["readinessProbe"]["httpGet"]["port"] == "http"


def test_metrics_on_the_upload_port() -> None:
    rendered = render({"metrics": {"port": ""}, "serviceMonitor": {"enabled": True}})
    assert "metrics-listen" not in rendered.flags()
    assert [s["metadata"]["name"] for s in rendered.all("Service")] == [FULLNAME]
    assert [p["name"] for p in rendered.container["ports"]] == ["http"]
    [endpoint] = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    _, prometheus = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert prometheus["ports"] == [{"port": "http", "protocol": "TCP"}]
    off = render({"metrics": {"enabled": False}})
    assert "metrics-listen" not in off.flags()
    assert len(off.all("Service")) == 1


# --------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(("which", "values"), all_renders())
def test_every_rendered_flag_exists_in_the_cli(which: str, values: dict[str, Any]) -> None:
    rendered = render(values)
    args = rendered.args()
    names = [re.match(r"-([a-z0-9-]+)", arg).group(1) for arg in args]  # type: ignore[union-attr]
    unknown = sorted(set(names) - KNOWN_FLAGS)
    assert unknown == [], f"{which}: flags not in tusd_trio.cli.flags.FLAGS: {unknown}"
    assert len(names) == len(set(names)), f"{which}: a flag is given twice: {names}"
    # The values must parse too (types, durations, booleans), as the daemon will parse them.
    known_args = [arg for arg, name in zip(args, names, strict=True) if name in KNOWN_FLAGS]
    parsed = parse_args(known_args)
    assert parsed["host"] == "0.0.0.0"
    assert parsed["port"] == "1080"


def test_configmap_holds_every_flag_and_the_secret_none(ci: Rendered) -> None:
    config = ci.one("ConfigMap")["data"]
    for arg in ci.container["args"]:
        match = re.fullmatch(r"-([a-z0-9-]+)=\$\((TUSD_[A-Z0-9_]+)\)", arg)
        assert match, arg
        assert match.group(2) == "TUSD_" + match.group(1).upper().replace("-", "_")
        assert match.group(2) in config
    for value in ci.secret_data().values():
        assert value not in config.values()


# --------------------------------------------------------------------------------- design


def check_pod_basics(rendered: Rendered) -> None:
    pod, container = rendered.pod, rendered.container
    assert container["command"] == ["tusd-trio"]
    assert container["ports"][0] == {"name": "http", "containerPort": 1080, "protocol": "TCP"}
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert liveness["httpGet"]["path"] == "/health"
    assert liveness["httpGet"]["port"] == "http"
    assert (liveness["initialDelaySeconds"], liveness["periodSeconds"]) == (30, 10)
    assert readiness["httpGet"]["path"] == "/health/ready"
    assert (readiness["initialDelaySeconds"], readiness["periodSeconds"]) == (5, 5)
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1000m", "memory": "1Gi"},
    }
    # The kubelet's grace period covers the daemon's shutdown window and the preStop pause.
    shutdown = parse_duration(rendered.flags()["shutdown-timeout"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert shutdown == 10
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["terminationGracePeriodSeconds"] > shutdown + pre_stop
    # Non-root.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "runAsUser" not in container["securityContext"]
    # Spread over nodes.
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    # Pods roll when their configuration changes.
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])
    # The Service reaches these pods on 1080.
    service = rendered.service
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["port"] == 1080
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    flags = rendered.flags()
    assert (flags["host"], flags["port"]) == ("0.0.0.0", "1080")


def test_default_values_run_one_pod_on_a_volume(default: Rendered) -> None:
    check_pod_basics(default)
    deployment = default.one("Deployment")
    # A ReadWriteOnce volume belongs to one pod: 1 replica, Recreate, no autoscaler.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "HorizontalPodAutoscaler" not in default.kinds()
    assert "PodDisruptionBudget" not in default.kinds()
    pvc = default.one("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "storageClassName" not in pvc["spec"]
    volumes = {v["name"]: v for v in default.pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    [init] = default.pod["initContainers"]
    assert init["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert "chown 1000:1000" in " ".join(init["command"])
    assert default.flags()["upload-dir"] == "/data"
    assert not any(name.startswith(("s3-", "gcs-", "azure-", "redis-")) for name in default.flags())
    service = default.service["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["sessionAffinity"] == "None"
    assert "Secret" not in default.kinds()
    assert "Ingress" not in default.kinds()
    assert default.flags()["expose-metrics"] == "true"
    assert default.flags()["metrics-path"] == "/metrics"


def test_ci_values_s3_with_redis(ci: Rendered) -> None:
    check_pod_basics(ci)
    deployment = ci.one("Deployment")
    # Shared storage and Redis locks: the autoscaler owns the replica count (2..10).
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    hpa = ci.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 80},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    assert ci.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # No volume claim and no permission fixing for an object store.
    assert "PersistentVolumeClaim" not in ci.kinds()
    assert "initContainers" not in ci.pod
    # The flags carry the values of ci/s3-redis-values.yaml.
    values = yaml.safe_load(CI_VALUES.read_text())
    s3 = values["storage"]["s3"]
    flags = ci.flags()
    assert flags["s3-bucket"] == s3["bucket"]
    assert flags["s3-endpoint"] == s3["endpoint"]
    assert flags["s3-object-prefix"] == s3["objectPrefix"]
    assert flags["s3-part-size"] == str(s3["partSize"])
    assert flags["locker"] == "redis"
    assert flags["redis-url"] == values["redis"]["url"]
    assert flags["redis-lock-ttl"] == "30s"
    assert flags["hooks-http"] == values["hooks"]["http"]["url"]
    assert flags["hooks-http-retry"] == "5"
    assert flags["max-size"] == "10737418240"
    assert flags["behind-proxy"] == "true"
    assert flags["expiration"] == "24h"
    assert "upload-dir" not in flags
    # Credentials: in the Secret, and the container's env points at them.
    assert ci.secret_data() == {
        "AWS_ACCESS_KEY_ID": s3["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": s3["secretAccessKey"],
    }
    env = ci.env()
    assert env["AWS_ACCESS_KEY_ID"] == s3["accessKeyId"]
    assert env["AWS_SECRET_ACCESS_KEY"] == s3["secretAccessKey"]
    assert env["AWS_REGION"] == s3["region"]
    # Ingress for large, slow uploads.
    ingress = ci.one("Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["path"] == "/files"
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"number": 1080}}
    assert ci.service["spec"]["type"] == "ClusterIP"
    # NetworkPolicy: clients and Prometheus in; DNS, the store, Redis and hooks out.
    policy = ci.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    clients, prometheus = policy["ingress"]
    assert clients["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert prometheus["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = [{p["port"] for p in rule["ports"]} for rule in policy["egress"]]
    assert egress_ports == [{53}, {9000}, {6379}, {8000}]


def test_other_backends_and_tls() -> None:
    gcs = render(GCS_TLS_VALUES)
    flags = gcs.flags()
    assert flags["gcs-bucket"] == "uploads"
    assert flags["gcs-endpoint"] == "http://gcs-emulator.test.svc:9023"
    assert (flags["tls-certificate"], flags["tls-key"]) == (
        "/etc/tusd-trio/tls/tls.crt",
        "/etc/tusd-trio/tls/tls.key",
    )
    assert flags["tls-mode"] == "tls13"
    assert flags["hooks-redis-stream"] == "tus-events"
    assert flags["hooks-redis-stream-maxlen"] == "5000"
    assert flags["redis-url"] == "redis://redis.test.svc:6380/1"
    assert "locker" not in flags and "redis-lock-ttl" not in flags
    assert flags["expose-metrics"] == "false"
    assert "metrics-path" not in flags
    assert gcs.args()[-1] == "-verbose=false"
    assert gcs.secret_data() == {
        "service-account.json": '{"type": "service_account"}',
        "tls.crt": "CERT PEM",
        "tls.key": "KEY PEM",
    }
    env = gcs.env()
    assert env["GCS_SERVICE_ACCOUNT_FILE"] == "/etc/tusd-trio/gcs/service-account.json"
    mounts = {m["name"]: m["mountPath"] for m in gcs.container["volumeMounts"]}
    assert mounts["gcs-credentials"] == "/etc/tusd-trio/gcs"
    assert mounts["tls"] == "/etc/tusd-trio/tls"
    assert gcs.container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    service = gcs.service["spec"]
    assert (service["type"], service["ports"][0]["nodePort"]) == ("NodePort", 31080)
    assert service["sessionAffinity"] == "ClientIP"
    # Without Redis locks an object store still runs a single pod.
    assert gcs.one("Deployment")["spec"]["replicas"] == 1
    egress_ports = [
        {p["port"] for p in rule["ports"]} for rule in gcs.one("NetworkPolicy")["spec"]["egress"]
    ]
    assert egress_ports == [{53}, {9023}, {6380}, {443, 50051}]

    azure = render(AZURE_VALUES)
    assert azure.one("Deployment")["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in azure.kinds()
    assert "Secret" not in azure.kinds()  # everything comes from the user's Secrets
    env = azure.env()
    assert env["AZURE_STORAGE_ACCOUNT"] == "acct"
    assert env["AZURE_STORAGE_KEY"] == "<secret:azure-credentials/AZURE_STORAGE_KEY>"
    assert azure.flags()["redis-url"] == "<secret:redis-credentials/url>"
    assert azure.flags()["azure-storage"] == "uploads"


def test_secret_holds_only_the_keys_that_are_set() -> None:
    base = {"storage": {"type": "s3", "s3": {"bucket": "b"}}}
    only_id = render(merged(base, {"storage": {"s3": {"accessKeyId": "AKIA1"}}}))
    assert only_id.secret_data() == {"AWS_ACCESS_KEY_ID": "AKIA1"}
    assert "AWS_SECRET_ACCESS_KEY" not in only_id.env()
    # No static credentials (IRSA / pod identity): no Secret, no credential env.
    none = render(base)
    assert "Secret" not in none.kinds()
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & none.env().keys()
    existing = render(
        merged(base, {"storage": {"s3": {"existingSecret": "aws", "accessKeyId": "x"}}})
    )
    assert "Secret" not in existing.kinds()
    assert existing.env()["AWS_SECRET_ACCESS_KEY"] == "<secret:aws/AWS_SECRET_ACCESS_KEY>"


def test_file_store_on_a_shared_volume_with_redis_scales() -> None:
    values = {
        "replicaCount": 3,
        "autoscaling": {"enabled": False},
        "locker": {"type": "redis"},
        "redis": {"url": "redis://redis:6379/0"},
        "storage": {
            "file": {"persistence": {"accessModes": ["ReadWriteMany"], "storageClass": "nfs"}}
        },
    }
    rendered = render(values)
    assert rendered.one("Deployment")["spec"]["replicas"] == 3
    assert rendered.one("Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    pvc = rendered.one("PersistentVolumeClaim")["spec"]
    assert (pvc["accessModes"], pvc["storageClassName"]) == (["ReadWriteMany"], "nfs")
    assert rendered.flags()["locker"] == "redis"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicaCount": 2},
            r"more than one pod .* file store .*ReadWriteMany.*locker.type=redis",
        ),
        ({"autoscaling": {"enabled": True}}, r"more than one pod .* file store"),
        (
            {
                "replicaCount": 2,
                "storage": {"file": {"persistence": {"accessModes": ["ReadWriteMany"]}}},
            },
            r"more than one pod .* file store",
        ),
        (
            {"replicaCount": 2, "locker": {"type": "redis"}, "redis": {"url": "redis://r"}},
            r"more than one pod .* file store .*ReadWriteOnce",
        ),
        (
            {"replicaCount": 2, "storage": {"type": "s3", "s3": {"bucket": "b"}}},
            r"more than one pod .* needs locker.type=redis",
        ),
        ({"storage": {"type": "s3"}}, r"needs storage.s3.bucket"),
        ({"storage": {"type": "nfs"}}, r"storage.type=\"nfs\""),
        ({"locker": {"type": "redis"}}, r"needs redis.url or redis.existingSecret"),
        (
            {"hooks": {"redisStream": {"name": "events"}}},
            r"hooks.redisStream.name needs redis.url or redis.existingSecret",
        ),
        ({"terminationGracePeriodSeconds": 15}, r"must be above tusd.shutdownTimeout"),
        ({"tusd": {"shutdownTimeout": "1m"}}, r"terminationGracePeriodSeconds=30 must be above"),
        ({"tusd": {"shutdownTimeout": "ten seconds"}}, r"is not a Go duration"),
        (
            {"serviceMonitor": {"enabled": True}, "metrics": {"enabled": False}},
            r"needs metrics.enabled",
        ),
        (
            {"tusd": {"extraFlags": {"base-path": "/x/"}}},
            r"extraFlags.base-path is set by the chart",
        ),
        ({"tls": {"enabled": True}}, r"tls.enabled needs"),
        ({"metrics": {"port": 1080}}, r"metrics.port=1080"),
        ({"metrics": {"port": 70000}}, r"metrics.port=70000"),
        ({"service": {"type": "ExternalName"}}, r"service.type"),
    ],
)
def test_refused_values(values: dict[str, Any], message: str) -> None:
    assert re.search(message, render_error(values)), render_error(values)


def test_durations_and_numbers() -> None:
    # A longer shutdown window is accepted once the grace period covers it.
    rendered = render({"tusd": {"shutdownTimeout": "1m30s"}, "terminationGracePeriodSeconds": 120})
    assert rendered.flags()["shutdown-timeout"] == "1m30s"
    # Numbers reach templates as floats when Helm reads them from YAML: no exponent notation.
    assert render({"tusd": {"maxSize": 10737418240.0}}).flags()["max-size"] == "10737418240"


def test_config_and_secret_changes_roll_the_pods(ci: Rendered) -> None:
    def checksums(rendered: Rendered) -> tuple[str, str]:
        annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"], annotations["checksum/secret"]

    config, secret = checksums(ci)
    assert checksums(render(ci_values())) == (config, secret)  # stable
    changed = render(merged(ci_values(), {"hooks": {"http": {"url": "http://other:8000/"}}}))
    assert checksums(changed)[0] != config
    assert checksums(changed)[1] == secret
    rotated = render(merged(ci_values(), {"storage": {"s3": {"secretAccessKey": "new"}}}))
    assert checksums(rotated) == (config, checksums(rotated)[1])
    assert checksums(rotated)[1] != secret


def test_values_file_documents_every_section() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for section in (
        "storage",
        "redis",
        "locker",
        "hooks",
        "metrics",
        "tls",
        "resources",
        "autoscaling",
        "ingress",
        "networkPolicy",
        "serviceMonitor",
    ):
        assert section in values, section
    assert set(values["storage"]) == {"type", "file", "s3", "gcs", "azure"}
    assert values["storage"]["file"]["persistence"]["size"] == "20Gi"
    json.dumps(values)  # plain data only
