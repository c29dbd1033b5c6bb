"""Recording objects: one per finished session, created from the recorder's report; deleting one
deletes its media (kopf's finalizer, ``onair.dev/finalizer``).

Creation is level-based: every status poll of a Livestream hands the recorder's finished sessions
to ``sync`` (under the Livestream's lock), which creates the Recordings that do not exist and
updates those whose parts changed (an upload confirmed). Names are derived from the session, so a
restarted operator arrives at the same objects.

Deletion (``delete_media``), in this order:

1. the files on the volume: through the Livestream's recorder (``DELETE /recordings/<session>``)
   when it runs on the Recording's volume, under the Livestream's lock so a poll that still lists
   the session can never re-create the Recording; otherwise (the Livestream is gone, or records no
   more) a one-shot pod mounting the volume runs ``onair agent recorder --delete-session``. First,
   because once the sidecar is gone no recorder lists the session again: the Recording cannot come
   back, whatever happens to the objects;
   The uploaded objects (a part with ``object``) go in the same step, before the files, by whoever
   deletes the files and with the credentials it already has: the recorder with its uploader's
   client, the pod with the Secret ``spec.objectStorage.credentialsSecret`` mounted. The operator
   never holds storage credentials. When nothing knows where the objects are (the recorder uploads
   nowhere any more, or the Recording has no ``spec.objectStorage``), the Recording stays with
   ``MediaDeleted=False``/``ObjectStorageDeletionNotConfigured``, which lists the objects left and
   how to let the Recording go once they are deleted by hand.

While it cannot finish, the ``MediaDeleted`` condition (False) says why and how to fix it, with a
Warning Event each time the reason changes; the handler keeps retrying with backoff, never gives
up silently, and stops when the object is gone (someone removed the finalizer by hand).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping, Optional

import kopf

from onair.api.agent import RecorderStatus
from onair.api.meta import GROUP, LABEL_LIVESTREAM, VERSION
from onair.api.recording import (
    MEDIA_DELETED,
    MEDIA_DELETED_EVENT,
    MEDIA_DELETION_FAILED,
    MEDIA_DELETION_PENDING,
    OBJECT_DELETION_NOT_CONFIGURED,
    RECORDER_UNREACHABLE,
    RECORDING_CREATED_EVENT,
)
from onair.endpoints import RECORDINGS_PATH
from onair.render.child_names import recordings_claim
from onair.render.conditions import find_condition, set_condition
from onair.render.pods import pod_problem
from onair.render.recordings import (
    deletion_pod,
    deletion_pod_name,
    deletion_s3_config,
    object_storage_location,
    recording_manifest,
    recording_name,
    recording_spec,
    recording_status,
    spec_update,
)

from . import events
from onair.kube import POD, RECORDING, KubeError
from .runtime import LivestreamState, Runtime
from .kopf_settings import FINALIZER

log = logging.getLogger("onair.controller")
RESOURCE = (GROUP, VERSION, "recordings")
# Retries of a deletion that cannot finish yet: quick at first (a deletion pod starting), then settle.
RETRY_DELAYS = (1, 2, 3, 5, 10, 20, 30)
# The API server's refusal of new objects in a namespace being deleted (NamespaceLifecycle admission).
NAMESPACE_TERMINATING = "because it is being terminated"
# How a deletion that ends with its namespace says so: no Event is posted then (the API server
# refuses every new object there, Events included).
NAMESPACE_GOING = "which is being deleted"


class NotYet(Exception):
    """The media are not deleted yet: (reason, message) for the MediaDeleted condition."""

    def __init__(self, reason: str, message: str, warn: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.warn = warn


# ----------------------------------------------------------------------------- creation
async def sync(rt: Runtime, state: LivestreamState, ls: Mapping, body: Mapping, recorder: RecorderStatus) -> None:
    """Create or update the Recording of every finished session the recorder lists. Callers hold
    ``state.lock``. A failure is logged and retried at the next poll; it never fails the reconcile.

    What was written is remembered (``state.recording_specs``): an unchanged session costs nothing,
    and the first poll after a start reads the Livestream's Recordings with one list."""
    if state.rendered is None:
        return
    claim = recordings_claim(state.name, state.rendered.effective)
    storage = object_storage_location(state.rendered.effective)
    # A Livestream that uploads serves its recordings from the bucket (its parts leave the volume).
    volume_url = _volume_url(rt, state) if storage is None else None
    uid = ls["metadata"].get("uid")
    # Every poll lists up to 50 sessions per Livestream: only a changed one is rendered and written.
    wanted = {
        recording_name(state.name, s.session): (s, (_fingerprint(s, claim, storage), volume_url))
        for s in recorder.recordings
    }
    todo = {name: pair for name, pair in wanted.items() if state.recording_specs.get(name) != pair[1]}
    if todo:
        try:
            existing = {
                obj["metadata"]["name"]: obj
                for obj in await rt.kube.list(RECORDING, state.namespace, {LABEL_LIVESTREAM: state.name})
            }
        except KubeError as exc:
            log.warning(
                "%s/%s: cannot list its Recordings (%s); retrying at the next poll", state.namespace, state.name, exc
            )
            return
        for name, (session, fingerprint) in todo.items():
            spec = recording_spec(state.name, uid, session, claim, storage)
            try:
                await _ensure(rt, state, body, name, session, spec, claim, uid, existing.get(name), storage, volume_url)
            except KubeError as exc:
                log.warning(
                    "%s/%s: cannot create or update Recording %s (%s); retrying at the next poll",
                    state.namespace,
                    state.name,
                    name,
                    exc,
                )
                continue
            state.recording_specs[name] = fingerprint
    # Sessions no longer listed (deleted, or older than the latest 50) need no memory.
    for gone in set(state.recording_specs) - set(wanted):
        del state.recording_specs[gone]


def _fingerprint(session: Any, claim: str, storage: Optional[dict]) -> tuple:
    """What a Recording's spec is made of, cheap to compare (no rendering)."""
    return (
        session.session,
        session.ended_at,
        session.duration_seconds,
        session.record_type,
        claim,
        tuple(sorted((storage or {}).items())),
        tuple((p.file, p.bytes, p.duration_seconds, p.object, p.upload_error) for p in session.parts),
    )


def _volume_url(rt: Runtime, state: LivestreamState) -> Optional[str]:
    """Where the Livestream's origin serves the recordings on its volume, when it does (it records)."""
    origin = state.rendered.agent_configs.get("origin") if state.rendered else None
    if not getattr(origin, "recorder_url", None):
        return None
    return f"{rt.config.playback_base_url(state.name, state.namespace).rstrip('/')}/{RECORDINGS_PATH}"


async def _ensure(
    rt: Runtime,
    state: LivestreamState,
    body: Mapping,
    name: str,
    session: Any,
    wanted: dict,
    claim: str,
    uid: Optional[str],
    current: Optional[dict],
    storage: Optional[dict],
    volume_url: Optional[str] = None,
) -> None:
    if current is None:
        manifest = recording_manifest(state.namespace, state.name, uid, session, claim, FINALIZER, storage)
        try:
            created = await rt.kube.create(manifest)
        except KubeError as exc:
            if exc.status == 409:  # created meanwhile: judged at the next poll
                return
            raise
        await _write_status(rt, created, volume_url if claim == manifest["spec"].get("persistentVolumeClaim") else None)
        status = recording_status(manifest["spec"])
        events.normal(
            body,
            RECORDING_CREATED_EVENT,
            (
                f"Recording {name}: {status['duration']}, {status['size']} in {len(session.parts)} part(s) "
                f"({session.end_reason}). kubectl get recording {name} -n {state.namespace}"
            ),
        )
        return
    if (current.get("metadata") or {}).get("deletionTimestamp"):
        return  # being deleted: its media are going, nothing to update
    patch = spec_update(current.get("spec") or {}, wanted)
    if patch:
        current = await rt.kube.merge_patch(RECORDING, state.namespace, name, {"spec": patch})
    # Only a Recording on the volume this Livestream's recorder uses now is served by its origin.
    same_volume = claim == (current.get("spec") or {}).get("persistentVolumeClaim")
    await _write_status(rt, current, volume_url if same_volume else None)


async def livestream_gone(rt: Runtime, namespace: str, livestream: str) -> None:
    """Re-derive the status of the Livestream's Recordings once it is gone: the URLs its origin
    served from the volume answer nothing any more. Best effort (a restarted operator does the same
    from each Recording's resume)."""
    try:
        for obj in await rt.kube.list(RECORDING, namespace, {LABEL_LIVESTREAM: livestream}):
            if not (obj.get("metadata") or {}).get("deletionTimestamp"):
                await _write_status(rt, obj, _volume_url_of(rt, namespace, obj.get("spec") or {}))
    except KubeError as exc:
        if exc.status == 404:  # the namespace went too, Recordings with it
            return
        log.warning(
            "%s/%s is gone but its Recordings' playback could not be updated (%s); a restarted operator does it",
            namespace,
            livestream,
            exc,
        )


def _volume_url_of(rt: Runtime, namespace: str, spec: Mapping) -> Optional[str]:
    """Where the Recording's Livestream's origin serves it from the volume, as ``sync`` says it:
    the same answer from the Recording's own events, which race with ``sync`` on creation."""
    livestream = (spec.get("livestream") or {}).get("name")
    state = rt.livestreams.get((namespace, livestream)) if livestream else None
    if state is None or state.rendered is None:
        return None
    if object_storage_location(state.rendered.effective) is not None:
        return None
    if recordings_claim(state.name, state.rendered.effective) != spec.get("persistentVolumeClaim"):
        return None
    return _volume_url(rt, state)


async def _write_status(rt: Runtime, obj: Mapping, volume_url: Optional[str] = None) -> None:
    meta = obj.get("metadata") or {}
    stored = obj.get("status") or {}
    derived = recording_status(obj.get("spec") or {}, stored, meta.get("generation"), volume_url)
    changed = {key: value for key, value in derived.items() if stored.get(key) != value}
    for key, value in changed.items():
        # A merge patch merges objects: what the new value no longer has must be removed explicitly
        # (a playback that had URLs and now has a reason instead).
        if isinstance(value, dict) and isinstance(stored.get(key), dict):
            changed[key] = {**{k: None for k in stored[key] if k not in value}, **value}
    gone = [key for key in ("playback",) if key in stored and key not in derived]
    changed.update({key: None for key in gone})
    if changed:
        await rt.kube.patch_status(RECORDING, meta.get("namespace"), meta["name"], changed)


# ----------------------------------------------------------------------------- deletion
async def delete_media(rt: Runtime, body: Mapping, progress: dict) -> str:
    """Delete the media of the Recording ``body``; what was deleted. Raises ``NotYet``.

    ``progress`` carries what is done across the attempts of one deletion: the files on the volume
    (and the objects with them, when whoever deletes the files can) are deleted once (through a
    pod, each attempt would cost one)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    objects = [part["object"] for part in spec.get("parts") or () if part.get("object")]
    if spec.get("persistentVolumeClaim") and "volume" not in progress:
        progress["volume"], with_objects = await _delete_files(rt, body, bool(objects))
        if objects and with_objects:
            progress["objects"] = f"{len(objects)} uploaded part(s) and the sidecar's object"
    if objects and "objects" not in progress:
        urls = ", ".join(o.get("url", "?") for o in objects)
        volume = "The files on the volume are deleted; " if progress.get("volume") else ""
        state = _recorder_of(rt, namespace, spec)
        why = (
            f"the recorder of Livestream {state.name} uploads to no object storage any more "
            "(recording.storage.s3 is not set)"
            if state is not None
            else "this Recording does not say which object storage its parts were uploaded to (no "
            "spec.objectStorage: it was created before onair recorded it, or by hand)"
        )
        raise NotYet(
            OBJECT_DELETION_NOT_CONFIGURED,
            (
                f"object storage deletion not configured: {why}. {volume}{len(objects)} part(s) of this recording were "
                f"uploaded ({urls}) and are left. Delete them from the bucket yourself, then let the Recording go: "
                f"kubectl patch recording {name} -n {namespace} --type json "
                '-p \'[{"op":"remove","path":"/metadata/finalizers"}]\''
            ),
        )
    return "; ".join(progress.values()) or "nothing was stored"


def _recorder_of(rt: Runtime, namespace: str, spec: Mapping) -> Optional[LivestreamState]:
    """The running Livestream whose recorder writes to the Recording's volume, if any."""
    state = rt.livestreams.get((namespace, spec["livestream"]["name"]))
    if state is None or state.rendered is None or "recorder" not in state.rendered.agent_configs:
        return None
    if recordings_claim(state.name, state.rendered.effective) != spec.get("persistentVolumeClaim"):
        return None
    return state


async def _delete_files(rt: Runtime, body: Mapping, has_objects: bool) -> tuple[str, bool]:
    """Delete the files on the volume: what was deleted, and whether the objects went with them."""
    meta, spec = body["metadata"], body["spec"]
    namespace = meta["namespace"]
    state = _recorder_of(rt, namespace, spec)
    if state is None:
        return await _delete_with_pod(rt, body), deletion_s3_config(spec) is not None
    recorder_config = state.rendered.agent_configs["recorder"] if state.rendered is not None else None
    uploads = getattr(recorder_config, "s3", None) is not None
    async with state.lock:
        token = state.credentials.agent_token if state.credentials is not None else None
        ok, detail = await rt.agent_client.delete_recording(namespace, state.name, spec["session"], token=token)
        if ok:
            state.recording_specs.pop(meta["name"], None)
            what = "uploaded objects and files" if has_objects and uploads else "files"
            return f"{what} (through the recorder, volume {spec['persistentVolumeClaim']}): {detail}", uploads
    if ok is None:
        raise NotYet(
            RECORDER_UNREACHABLE,
            (
                f"the recorder of Livestream {state.name} holds volume {spec['persistentVolumeClaim']} but cannot be "
                f"asked to delete the files: {detail}. Retrying; the deletion goes on once the recorder pod runs "
                f"(kubectl get pods -n {namespace} -l app.kubernetes.io/instance={state.name})."
            ),
        )
    raise NotYet(
        MEDIA_DELETION_FAILED,
        (
            f"the recorder of Livestream {state.name} could not delete the media of {spec['session']}: {detail}. "
            f"Retrying; its log says more: kubectl logs -n {namespace} deploy/{state.name}-recorder"
        ),
    )


async def _delete_with_pod(rt: Runtime, body: Mapping) -> str:
    meta, spec = body["metadata"], body["spec"]
    namespace, pod_name = meta["namespace"], deletion_pod_name(meta["name"])
    pod = await rt.kube.get(POD, namespace, pod_name)
    if pod is not None and (pod.get("metadata") or {}).get("deletionTimestamp"):
        raise NotYet(MEDIA_DELETION_PENDING, f"waiting for the previous deletion pod {pod_name} to go", warn=False)
    if pod is None:
        manifest = deletion_pod(body, rt.config.image, rt.config.image_pull_policy, rt.config.image_pull_secrets)
        try:
            await rt.kube.create(manifest)
        except KubeError as exc:
            if exc.status == 403 and NAMESPACE_TERMINATING in exc.message:
                # Nothing can mount the volume any more, and the claim goes with the namespace; a
                # finalizer that waited for a pod here would keep the namespace from ever going.
                return (
                    f"no pod can run in namespace {namespace}, {NAMESPACE_GOING}: the files go with "
                    f"PersistentVolumeClaim {spec['persistentVolumeClaim']} (they stay on its volume only if "
                    "the PersistentVolume's reclaimPolicy is Retain)"
                )
            if exc.status != 409:
                raise NotYet(
                    MEDIA_DELETION_FAILED,
                    (
                        f"cannot create pod {pod_name} to delete the files on volume {spec['persistentVolumeClaim']} "
                        f"(no recorder runs on it): {exc.message}"
                    ),
                ) from None
        raise NotYet(
            MEDIA_DELETION_PENDING,
            (f"no recorder runs on volume {spec['persistentVolumeClaim']}: pod {pod_name} deletes the files"),
            warn=False,
        )
    status = pod.get("status") or {}
    phase = status.get("phase")
    said = _termination_message(pod)
    if phase == "Succeeded":
        await rt.kube.delete(POD, namespace, pod_name, uid=pod["metadata"].get("uid"))
        return f"files on {spec['persistentVolumeClaim']} (pod {pod_name}): {said or 'done'}"
    if phase == "Failed":
        # Gone, so that the next attempt starts a new one.
        await rt.kube.delete(POD, namespace, pod_name, uid=pod["metadata"].get("uid"))
        why = said or status.get("message") or status.get("reason") or "no message"
        raise NotYet(
            MEDIA_DELETION_FAILED,
            (
                f"pod {pod_name} could not delete the files on volume {spec['persistentVolumeClaim']}: {why}. "
                "Retrying with a new pod."
            ),
        )
    problem = pod_problem(pod)
    if problem:
        raise NotYet(
            MEDIA_DELETION_FAILED,
            (
                f"{problem}. The files on volume {spec['persistentVolumeClaim']} are deleted once it runs "
                "(a ReadWriteOnce volume can only be mounted on the node that holds it)."
            ),
        )
    raise NotYet(MEDIA_DELETION_PENDING, f"pod {pod_name} deletes the files ({phase or 'created'})", warn=False)


def _termination_message(pod: Mapping) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        terminated = (cs.get("state") or {}).get("terminated") or {}
        lines = (terminated.get("message") or "").strip().splitlines()
        if lines:
            return lines[-1][:500]
    return ""


async def _report(rt: Runtime, body: Mapping, stored: Optional[dict], not_yet: NotYet) -> dict:
    """Set MediaDeleted=False with the reason; a Warning Event when the reason or message is new."""
    meta = body["metadata"]
    before = find_condition((stored or {}).get("conditions"), MEDIA_DELETED)
    conditions = set_condition(
        (stored or {}).get("conditions"),
        MEDIA_DELETED,
        False,
        not_yet.reason,
        not_yet.message[:32000],
        meta.get("generation"),
        rt.clock(),
    )
    if before is None or (before.get("reason"), before.get("message")) != (not_yet.reason, not_yet.message[:32000]):
        try:
            await rt.kube.patch_status(RECORDING, meta["namespace"], meta["name"], {"conditions": conditions})
        except KubeError as exc:
            if exc.status == 404:
                return {"conditions": conditions}
            log.warning("recording %s/%s: cannot write its status: %s", meta["namespace"], meta["name"], exc)
        if not_yet.warn:
            events.warn(body, not_yet.reason, not_yet.message[:1000])
    return {"conditions": conditions}


def register(registry: kopf.OperatorRegistry, rt: Runtime) -> None:

    async def derive_status(body: kopf.Body, **_: Any) -> None:
        # A Recording restored from a backup (or created by hand) comes without its columns.
        if not (body.get("metadata") or {}).get("deletionTimestamp"):
            spec = dict(body.get("spec") or {})
            await _write_status(
                rt,
                {"metadata": dict(body["metadata"]), "spec": spec, "status": dict(body.get("status") or {})},
                _volume_url_of(rt, body["metadata"]["namespace"], spec),
            )

    kopf.on.resume(*RESOURCE, id="columns", registry=registry)(derive_status)
    kopf.on.create(*RESOURCE, id="columns", registry=registry)(derive_status)
    kopf.on.update(*RESOURCE, id="columns", field="spec", registry=registry)(derive_status)

    @kopf.on.event(*RESOURCE, id="forget", registry=registry)
    async def forget(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        # Gone (media deleted, or its finalizer removed by hand): the next poll judges its session
        # afresh, and creates it again if the recorder still lists it (the files are still there).
        if event.get("type") == "DELETED":
            meta, spec = body.get("metadata") or {}, body.get("spec") or {}
            key = (str(meta.get("namespace") or ""), str((spec.get("livestream") or {}).get("name") or ""))
            state = rt.livestreams.get(key)
            if state is not None:
                state.recording_specs.pop(str(meta.get("name") or ""), None)

    @kopf.on.delete(*RESOURCE, id="media", registry=registry)
    async def on_delete(body: kopf.Body, **_: Any) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        stored: Optional[dict] = dict(body.get("status") or {})
        progress: dict[str, str] = {}
        attempt = 0
        while True:
            try:
                what = await delete_media(rt, body, progress)
            except NotYet as not_yet:
                log.info("recording %s/%s: media not deleted yet: %s", namespace, name, not_yet.message)
                stored = await _report(rt, body, stored, not_yet)
            except KubeError as exc:
                log.warning("recording %s/%s: Kubernetes API while deleting the media: %s", namespace, name, exc)
            else:
                log.info("recording %s/%s: media deleted: %s", namespace, name, what)
                if NAMESPACE_GOING not in what:
                    events.normal(body, MEDIA_DELETED_EVENT, f"Deleted the media of recording {name}: {what}"[:1000])
                return
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1
            try:
                current = await rt.kube.get(RECORDING, namespace, name)
            except KubeError:
                continue
            if current is None or FINALIZER not in ((current.get("metadata") or {}).get("finalizers") or ()):
                log.info(
                    "recording %s/%s: its finalizer was removed by hand; its media were not deleted", namespace, name
                )
                return
