"""The local control plane is a real one: pinned version, controllers, GC and RBAC all work."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from onair.localcluster import build, versions
from tests.fixtures.cluster import wait_for

pytestmark = pytest.mark.cluster


def test_apiserver_reports_pinned_version(kube_api, local_cluster):
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == versions.KUBERNETES_VERSION
    assert local_cluster.request("GET", "/version")["gitVersion"] == versions.KUBERNETES_VERSION
    out = subprocess.run(
        [str(build.binary_paths()["kube-apiserver"]), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"Kubernetes {versions.KUBERNETES_VERSION}"


def test_deployment_expands_to_replicaset_and_pod(kube_api, namespace):
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example.invalid/x:1")]),
                ),
            ),
        ),
    )

    rs = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, what="ReplicaSet")
    assert rs[0].metadata.owner_references[0].kind == "Deployment"
    pods = wait_for(lambda: core.list_namespaced_pod(namespace).items, what="Pod")
    assert pods[0].metadata.owner_references[0].name == rs[0].metadata.name
    # No scheduler/kubelet: the Pod is only an object, and stays Pending.
    assert pods[0].status.phase == "Pending"


def test_garbage_collector_deletes_dependents(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
                ],
            )
        ),
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
            return False
        except ApiException as e:
            return e.status == 404

    wait_for(owned_gone, timeout=60, what="GC of the owned ConfigMap")


def _client_for(kubeconfig_path) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig_path), client_configuration=cfg)
    return client.ApiClient(cfg)


def test_serviceaccount_without_rbac_is_forbidden(local_cluster, kube_api, namespace):
    path = local_cluster.serviceaccount_kubeconfig(namespace, "nobody")
    with _client_for(path) as api:
        with pytest.raises(ApiException) as exc:
            client.CoreV1Api(api).list_namespaced_config_map(namespace)
        assert exc.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in exc.value.body

        # Granting a Role makes the same identity succeed: the 403 was RBAC, not a broken token.
        rbac = client.RbacAuthorizationV1Api(kube_api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-cm"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="read-cm"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-cm"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)],
            ),
        )
        wait_for(
            lambda: client.CoreV1Api(api).list_namespaced_config_map(namespace) is not None,
            timeout=10,
            what="RBAC grant to take effect",
        )


def test_user_kubeconfig_authenticates_with_groups(local_cluster, namespace):
    path = local_cluster.user_kubeconfig("alice", ["onair-viewers"])
    with _client_for(path) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == "alice"
        assert "onair-viewers" in review.status.user_info.groups
        with pytest.raises(ApiException) as exc:
            client.CoreV1Api(api).list_namespaced_pod(namespace)
        assert exc.value.status == 403


def test_crds_from_repo_are_established(kube_api):
    from tests.fixtures.cluster import CRD_DIR

    files = sorted(CRD_DIR.glob("*.yaml")) if CRD_DIR.is_dir() else []
    if not files:
        pytest.skip("no crds/*.yaml in the repo yet")
    names = {c.metadata.name for c in client.ApiextensionsV1Api(kube_api).list_custom_resource_definition().items}
    import yaml

    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                assert doc["metadata"]["name"] in names


def test_dead_component_reports_its_log_tail(tmp_path):
    from onair.localcluster.cluster import ClusterError, LocalCluster

    cluster = LocalCluster(apiserver_args=["--no-such-flag=1"], run_dir=tmp_path / "run", start_timeout=60)
    with pytest.raises(ClusterError) as exc:
        cluster.start()
    msg = str(exc.value)
    assert "kube-apiserver exited" in msg
    assert "unknown flag: --no-such-flag" in msg
    # etcd was started first and must not outlive the failed start
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "run")], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""
