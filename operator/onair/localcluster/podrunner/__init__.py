"""A small kubelet for onair: every media Deployment of the local cluster runs as a local process.

The local control plane has no scheduler and no kubelet, so the operator's Deployments only
ever produce Pending Pods. For the process runtime of `onair dev` (``devruntime``: the fallback
where a real node cannot run) and the end-to-end tests this runner plays the kubelet for exactly
those Deployments (label ``app.kubernetes.io/managed-by=onair-operator``):

* one process group per Deployment with replicas > 0, running the container's command
  (``onair agent <role> --config ...`` as ``python -m onair.cli ...``): ``processes``;
* volumes become directories (ConfigMap files, Secret keys in a private temp dir, emptyDirs,
  claims that outlive the pod): ``volumes``;
* ports become free 127.0.0.1 ports, stable for the runner's lifetime, and Services map to them;
  role configs are rewritten with that table: ``ports``;
* a new pod template (the render's config-hash annotation changes with the config) restarts the
  process, deletion or ``replicas: 0`` stops it, a crash restarts it with backoff: ``runner``;
* the readinessProbe decides whether a pod backs its Services' endpoints: ``readiness``;
* a bare pod with ``restartPolicy: Never`` runs once and its status is reported: ``oneshot``;
* every read and write of the API server: ``apiserver``.

``PodRunner.resolver`` answers the operator's agent client (agent base URL of a running pod) and
``PodRunner.endpoints`` turns a Livestream's status URLs into the local push and playback URLs.

Deployment status is left to kube-controller-manager: the operator reads every agent's own
``/status``, never ``readyReplicas``, and the deployment controller would overwrite a patch anyway.
"""

from .apiserver import SELECTOR
from .pods import LocalPod, PodInfo
from .runner import BACKOFF_MAX_SECONDS, PodRunner

__all__ = ["BACKOFF_MAX_SECONDS", "SELECTOR", "LocalPod", "PodInfo", "PodRunner"]
