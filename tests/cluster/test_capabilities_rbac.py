"""CallType grants as Kubernetes permissions, judged by the real kube-apiserver: the chart's
ClusterRole for member roles and its ValidatingAdmissionPolicy, with users acting through
impersonation (their groups name their member role). No operator: admission alone decides."""

from __future__ import annotations

import json
import secrets

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from onair.packaging import manifests
from tests.fixtures.cluster import official_client, wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION = "onair.dev", "v1alpha1"
PREFIX = "onair.dev/role:"
GRANTS = {
    "host": [
        "join-backstage",
        "send-video",
        "start-broadcast-call",
        "stop-broadcast-call",
        "start-record-call",
        "update-call",
    ],
    "moderator": ["stop-broadcast-call", "stop-record-call", "end-call"],
    "viewer": ["join-backstage"],
}


@pytest.fixture
def capabilities_policy(local_cluster, kube_api):
    """The chart's capabilities objects, under a release name of their own."""
    release = f"caps-{secrets.token_hex(3)}"
    docs = [
        d
        for d in yaml.safe_load_all(manifests.template("--show-only", "templates/capabilities.yaml", release=release))
        if d
    ]
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
    ]
    rbac = client.RbacAuthorizationV1Api(kube_api)
    admission = client.AdmissionregistrationV1Api(kube_api)
    create = {
        "ClusterRole": rbac.create_cluster_role,
        "ValidatingAdmissionPolicy": admission.create_validating_admission_policy,
        "ValidatingAdmissionPolicyBinding": admission.create_validating_admission_policy_binding,
    }
    delete = {
        "ClusterRole": rbac.delete_cluster_role,
        "ValidatingAdmissionPolicy": admission.delete_validating_admission_policy,
        "ValidatingAdmissionPolicyBinding": admission.delete_validating_admission_policy_binding,
    }
    for d in docs:
        create[d["kind"]](d)
    yield next(d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole")
    for d in reversed(docs):
        delete[d["kind"]](d["metadata"]["name"])


def _as(kubeconfig, user: str, group: str) -> client.CustomObjectsApi:
    api = official_client(kubeconfig)
    api.set_default_header("Impersonate-User", user)
    api.set_default_header("Impersonate-Group", group)
    return client.CustomObjectsApi(api)


def _patch(custom: client.CustomObjectsApi, namespace: str, spec: dict, dry_run: bool = False) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "livestreams", "show", {"spec": spec}, **({"dry_run": "All"} if dry_run else {})
    )


def _refused(call) -> str:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status in (403, 422), info.value.body
    return json.loads(info.value.body)["message"]


def test_member_roles_change_only_what_their_calltype_grants(local_cluster, kube_api, namespace, capabilities_policy):
    admin = client.CustomObjectsApi(kube_api)
    calltype = f"stage-{secrets.token_hex(3)}"
    decoy = f"decoy-{secrets.token_hex(3)}"
    admin.create_cluster_custom_object(
        GROUP,
        VERSION,
        "calltypes",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CallType",
            "metadata": {"name": calltype},
            "spec": {"grants": GRANTS},
        },
    )
    try:
        # A decoy CallType granting everything to the same role names must not count.
        admin.create_cluster_custom_object(
            GROUP,
            VERSION,
            "calltypes",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "CallType",
                "metadata": {"name": decoy},
                "spec": {
                    "grants": {
                        role: [
                            "start-broadcast-call",
                            "stop-broadcast-call",
                            "start-record-call",
                            "stop-record-call",
                            "update-call",
                            "end-call",
                        ]
                        for role in GRANTS
                    }
                },
            },
        )
        rbac = client.RbacAuthorizationV1Api(kube_api)
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "members"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": capabilities_policy,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": PREFIX + role} for role in GRANTS
                ]
                + [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "producer"}],
            },
        )
        admin.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "livestreams",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Livestream",
                "metadata": {"name": "show"},
                "spec": {"callType": calltype, "phase": "backstage", "broadcasting": False},
            },
        )
        host = _as(local_cluster.kubeconfig_path, "hannah", PREFIX + "host")
        moderator = _as(local_cluster.kubeconfig_path, "mo", PREFIX + "moderator")
        viewer = _as(local_cluster.kubeconfig_path, "vic", PREFIX + "viewer")

        # The policy takes effect once the apiserver has loaded it and its params (probed with
        # dry runs: admission judges them, nothing is stored).
        message = wait_for(
            lambda: _try_refused(lambda: _patch(viewer, namespace, {"broadcasting": True}, True)),
            30,
            what="the capabilities policy in effect",
        )
        assert "start-broadcast-call" in message and calltype in message and "viewer" in message, message

        # host: start broadcasting and recording, go live; not stop the recording, not end, nothing else.
        _patch(host, namespace, {"broadcasting": True})
        _patch(host, namespace, {"recording": True})
        _patch(host, namespace, {"phase": "live"})
        assert "stop-record-call" in _refused(lambda: _patch(host, namespace, {"recording": False}))
        assert "end-call" in _refused(lambda: _patch(host, namespace, {"phase": "ended"}))
        assert "only spec.broadcasting, spec.recording and spec.phase" in _refused(
            lambda: _patch(host, namespace, {"settingsOverride": {"dvr": {"durationSeconds": 60}}})
        )
        assert "only spec.broadcasting" in _refused(
            lambda: _patch(host, namespace, {"members": [{"userId": "hannah", "role": "host"}]})
        )
        # moderator: may stop both and end; not start.
        _patch(moderator, namespace, {"broadcasting": False})
        assert "start-broadcast-call" in _refused(lambda: _patch(moderator, namespace, {"broadcasting": True}))
        _patch(moderator, namespace, {"recording": False})
        # viewer: reads, changes nothing; no role creates or deletes Livestreams.
        assert (
            viewer.get_namespaced_custom_object(GROUP, VERSION, namespace, "livestreams", "show")["spec"]["recording"]
            is False
        )
        assert "update-call" in _refused(lambda: _patch(viewer, namespace, {"phase": "backstage"}))
        _refused(lambda: host.delete_namespaced_custom_object(GROUP, VERSION, namespace, "livestreams", "show"))
        # The CallType is the source of truth: granting end-call to host takes effect.
        admin.patch_cluster_custom_object(
            GROUP,
            VERSION,
            "calltypes",
            calltype,
            {"spec": {"grants": {**GRANTS, "host": GRANTS["host"] + ["end-call"]}}},
        )
        wait_for(
            lambda: _try_ok(lambda: _patch(host, namespace, {"phase": "ended"}, True)),
            30,
            what="host allowed to end the stream once the CallType grants end-call",
        )
        _patch(host, namespace, {"phase": "ended"})
        # A user with plain RBAC and no role group is not narrowed by the policy.
        producer = _as(local_cluster.kubeconfig_path, "producer", "system:authenticated")
        _patch(producer, namespace, {"settingsOverride": {"dvr": {"durationSeconds": 60}}})
        spec = admin.get_namespaced_custom_object(GROUP, VERSION, namespace, "livestreams", "show")["spec"]
        assert spec["phase"] == "ended" and spec["broadcasting"] is False and spec["recording"] is False
    finally:
        for name in (calltype, decoy):
            try:
                admin.delete_cluster_custom_object(GROUP, VERSION, "calltypes", name)
            except ApiException:
                pass


def _try_refused(call):
    try:
        call()
    except ApiException as e:
        if e.status in (403, 422):
            return json.loads(e.body)["message"]
        raise
    return None


def _try_ok(call) -> bool:
    try:
        call()
    except ApiException as e:
        if e.status in (403, 422):
            return False
        raise
    return True


@pytest.fixture
def user_roles(local_cluster, kube_api):
    """The chart's ClusterRoles aggregated into view/edit/admin, under a release name of their own."""
    release = f"roles-{secrets.token_hex(3)}"
    docs = [
        d
        for d in yaml.safe_load_all(manifests.template("--show-only", "templates/user-roles.yaml", release=release))
        if d
    ]
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for d in docs:
        rbac.create_cluster_role(d)
    yield
    for d in docs:
        rbac.delete_cluster_role(d["metadata"]["name"])


def _recording(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Recording",
        "metadata": {"name": name},
        "spec": {
            "livestream": {"name": "show"},
            "session": "ns_show_20261206T100000Z",
            "startedAt": "2026-12-06T10:00:00Z",
            "endedAt": "2026-12-06T10:01:00Z",
            "durationSeconds": 60,
            "sizeBytes": 1000,
            "endReason": "recording stopped",
        },
    }


def test_recordings_are_read_by_members_and_viewers_and_deleted_by_editors_only(
    local_cluster, kube_api, namespace, capabilities_policy, user_roles
):
    admin = client.CustomObjectsApi(kube_api)
    admin.create_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", _recording("show-1"))
    rbac = client.RbacAuthorizationV1Api(kube_api)

    def bind(name: str, role: str, subject: dict) -> None:
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
            },
        )

    bind("members", capabilities_policy, {"kind": "Group", "name": PREFIX + "host"})
    bind("viewers", "view", {"kind": "User", "name": "valerie"})
    bind("editors", "edit", {"kind": "User", "name": "eddie"})
    bind("admins", "admin", {"kind": "User", "name": "ada"})
    kubeconfig = local_cluster.kubeconfig_path
    host = _as(kubeconfig, "hannah", PREFIX + "host")
    viewer = _as(kubeconfig, "valerie", "system:authenticated")
    editor = _as(kubeconfig, "eddie", "system:authenticated")
    namespace_admin = _as(kubeconfig, "ada", "system:authenticated")

    def names(api: client.CustomObjectsApi) -> list[str]:
        return [
            r["metadata"]["name"]
            for r in api.list_namespaced_custom_object(GROUP, VERSION, namespace, "recordings")["items"]
        ]

    def delete(api: client.CustomObjectsApi, dry_run: bool = True) -> None:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "recordings", "show-1", **({"dry_run": "All"} if dry_run else {})
        )

    # view, edit and admin get onair's rules once the controller-manager has aggregated them.
    assert wait_for(lambda: _try_ok(lambda: names(viewer)), 30, what="view aggregating the Recordings rule")
    assert names(host) == names(viewer) == ["show-1"]
    assert host.get_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", "show-1")["spec"][
        "livestream"
    ] == {"name": "show"}
    # Reading is all members and viewers do: deleting would delete the media.
    _refused(lambda: delete(host))
    _refused(lambda: delete(viewer))
    _refused(
        lambda: host.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "recordings", "show-1", {"spec": {"sizeBytes": 1}}
        )
    )
    _refused(
        lambda: viewer.create_namespaced_custom_object(GROUP, VERSION, namespace, "recordings", _recording("forged"))
    )
    assert wait_for(lambda: _try_ok(lambda: delete(editor)), 30, what="edit aggregating the delete rule")
    # Editors delete (and with it the media); they do not write what only the operator records.
    _refused(
        lambda: editor.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "recordings", "show-1", {"spec": {"sizeBytes": 1}}
        )
    )
    assert wait_for(
        lambda: _try_ok(lambda: delete(namespace_admin, dry_run=False)), 30, what="admin deleting the Recording"
    )
    # Gone once the operator (when one runs on this cluster) has let its finalizer go.
    wait_for(lambda: names(viewer) == [], 30, what="the deleted Recording gone")
