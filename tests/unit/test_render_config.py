import pytest

from onair import roles
from onair.api.operator_config import DEFAULT_RESOURCES, OperatorConfig


def test_defaults_without_environment():
    cfg = OperatorConfig.from_env({})
    assert cfg == OperatorConfig()
    assert cfg.image == roles.DEFAULT_IMAGE and cfg.watch_namespaces == []
    assert cfg.ingest_host("ls", "ns") == "ls-ingest.ns.svc"
    assert cfg.ingest_host("ls", "ns", "backup") == "ls-ingest-backup.ns.svc"
    assert cfg.playback_base_url("ls", "ns") == "http://ls-origin.ns.svc:8081"
    assert set(cfg.resources) == {"ingest", "transcoder", "origin", "recorder"}


def test_every_field_from_onair_variables():
    cfg = OperatorConfig.from_env(
        {
            "ONAIR_IMAGE": "registry.local/onair:dev",
            "ONAIR_IMAGE_PULL_POLICY": "Never",
            "ONAIR_IMAGE_PULL_SECRETS": "regcred",
            "ONAIR_WATCH_NAMESPACES": "team-a, team-b,,",
            "ONAIR_INGEST_HOST_TEMPLATE": "{name}-{slot}.{namespace}.live.example.org",
            "ONAIR_PLAYBACK_BASE_URL_TEMPLATE": "https://play.example.org/{namespace}/{name}",
            "ONAIR_INGEST_SERVICE_TYPE": "LoadBalancer",
            "ONAIR_INGEST_TLS_SECRET": "ingest-tls",
            "ONAIR_STORAGE_CLASS": "fast",
            "ONAIR_DVR_VOLUME_SIZE": "50Gi",
            "ONAIR_STATUS_POLL_INTERVAL_SECONDS": "2.5",
            "ONAIR_RESOURCES_TRANSCODER": '{"requests": {"cpu": "3"}, "limits": {"cpu": "6"}}',
            "ONAIR_UNRELATED": "ignored",
        }
    )
    assert cfg.image == "registry.local/onair:dev" and cfg.image_pull_policy == "Never"
    assert cfg.image_pull_secrets == ["regcred"] and cfg.watch_namespaces == ["team-a", "team-b"]
    assert cfg.ingest_host("ls", "ns", "backup") == "ls-backup.ns.live.example.org"
    assert cfg.playback_base_url("ls", "ns") == "https://play.example.org/ns/ls"
    assert cfg.ingest_service_type == "LoadBalancer" and cfg.ingest_tls_secret == "ingest-tls"
    assert cfg.storage_class == "fast" and cfg.dvr_volume_size == "50Gi"
    assert cfg.status_poll_interval_seconds == 2.5
    # A role's resources are replaced as a whole; the other roles keep their defaults.
    assert cfg.resources_for("transcoder").manifest() == {"requests": {"cpu": "3"}, "limits": {"cpu": "6"}}
    assert cfg.resources_for("origin") == DEFAULT_RESOURCES["origin"]


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"ONAIR_INGEST_SERVICE_TYPE": "Ingress"}, "ONAIR_INGEST_SERVICE_TYPE"),
        ({"ONAIR_STATUS_POLL_INTERVAL_SECONDS": "soon"}, "ONAIR_STATUS_POLL_INTERVAL_SECONDS"),
        ({"ONAIR_PLAYBACK_BASE_URL_TEMPLATE": "http://{host}/x"}, "ONAIR_PLAYBACK_BASE_URL_TEMPLATE"),
        ({"ONAIR_RESOURCES_ORIGIN": "cpu=1"}, "ONAIR_RESOURCES_ORIGIN"),
        ({"ONAIR_RESOURCES": '{"encoder": {}}'}, "ONAIR_RESOURCES"),
        ({"ONAIR_DVR_VOLUME_SIZE": "lots"}, "ONAIR_DVR_VOLUME_SIZE"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ValueError, match=needle):
        OperatorConfig.from_env(env)
