"""deploy/: every Kubernetes manifest validates offline against the bundled schemas, and the pieces refer to each
other correctly (selectors, ports, probes, volumes, GPU count = engine tensor parallelism). No cluster needed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from builders.trtllm.engine_config import EngineBuildConfig  # noqa: E402
from ensemble.gpu_repository import GpuRepositoryConfig  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.30.0"
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
CRD_KINDS = {"ServiceMonitor"}          # no bundled schema: checked structurally below


def _documents():
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


DOCS = _documents()


def _of_kind(kind):
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def _workloads():
    return _of_kind("Deployment") + _of_kind("StatefulSet")


def _container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("name, doc", [d for d in DOCS if d[1]["kind"] not in CRD_KINDS],
                         ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in DOCS if d["kind"] not in CRD_KINDS])
def test_manifest_validates_against_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_service_monitor_is_well_formed_and_selects_a_service_port():
    (monitor,) = _of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in _of_kind("Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert services, "ServiceMonitor selects no Service"
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for service in services:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_workload_selectors_match_their_pod_labels():
    for workload in _workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), workload["metadata"]["name"]


def test_every_service_selects_a_workload_and_targets_existing_ports():
    for service in _of_kind("Service"):
        selector = service["spec"]["selector"]
        matches = [w for w in _workloads() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, service["metadata"]["name"]
        ports = {p["name"]: p["containerPort"] for p in _container(matches[0])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
            assert port["port"] == ports[port["targetPort"]]


def test_triton_pods_use_triton_ports_probes_and_scrape_annotations():
    for workload in _of_kind("Deployment"):
        container = _container(workload)
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == TRITON_PORTS
        assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == TRITON_PORTS["metrics"]
        args = " ".join(container.get("args", []))
        for name, port in TRITON_PORTS.items():
            assert not args or f"--{name}-port={port}" in args


def test_gpu_count_matches_world_size_and_engine_tp():
    (generator,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == "recllm-gpu-generator"]
    container = _container(generator)
    env = {e["name"]: e.get("value") for e in container["env"]}
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert int(env["WORLD_SIZE"]) == gpus == EngineBuildConfig.for_preset(GpuRepositoryConfig().preset).tp


def test_gpu_mounts_hold_the_repository_default_paths():
    (generator,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == "recllm-gpu-generator"]
    mounts = [m["mountPath"] for m in _container(generator)["volumeMounts"]]
    repo = GpuRepositoryConfig()
    for path in (repo.engine_dir, repo.tokenizer_dir, repo.adapter_dir, repo.lora_prefetch_dir):
        assert any(path.startswith(mount + "/") for mount in mounts), path


def test_volumes_claims_and_secrets_resolve():
    claims = {c["metadata"]["name"] for c in _of_kind("PersistentVolumeClaim")}
    for workload in _workloads():
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        for mount in _container(workload)["volumeMounts"]:
            assert mount["name"] in volumes or mount["name"] in templates
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for env in _container(workload).get("env", []):
            secret = env.get("valueFrom", {}).get("secretKeyRef")
            if secret:                        # created out of band (postgres.yaml says how); never committed
                assert secret == {"name": "recllm-postgres", "key": "password"}
    assert not _of_kind("Secret"), "no Secret (credential) may be committed"


def test_hpa_scales_the_generator_on_the_queue_time_metric():
    (hpa,) = _of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] in {d["metadata"]["name"] for d in _of_kind("Deployment")}
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    (rules,) = [c for c in _of_kind("ConfigMap") if c["metadata"]["name"] == "recllm-prometheus-adapter-rules"]
    adapter = yaml.safe_load(rules["data"]["config.yaml"])
    assert metric in {rule["name"]["as"] for rule in adapter["rules"]}
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_everything_lives_in_one_namespace():
    (namespace,) = _of_kind("Namespace")
    for _, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]


def test_dockerfile_uses_the_trtllm_image_and_copies_existing_paths():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\$\{TRITON_VERSION\}-trtllm-python-py3$", text, re.M)
    assert re.search(r"^EXPOSE 8000 8001 8002$", text, re.M)
    root = DEPLOY.parent
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", text, re.M):
        for path in source.split():
            assert (root / path).exists(), path


def test_serve_script_parses_and_uses_triton_ports():
    script = DEPLOY / "serve_gpu.sh"
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for name, port in TRITON_PORTS.items():
        assert f"{name.upper()}_PORT:-{port}" in text
