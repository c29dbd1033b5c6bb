"""The Livestream's ``status``: built from what should happen (lifecycle), what was rendered (URLs,
effective settings) and what the agents report, then diffed against the stored status so the
controller patches only when something changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Optional

from onair.api.agent import IngestStatus, RecorderConfig, RecorderStatus, TranscoderStatus
from onair.api.conditions import (
    BROADCASTING_FAILED,
    INGEST_ROLLOUT_STAGGERED,
    NOTHING_TRANSCODED_TO_RECORD,
    RECORDER_NOT_REPORTING,
    RECORDING,
    RECORDING_FAILED,
    RECORDING_IN_PROGRESS,
    RECORDING_SOURCE_UNAVAILABLE,
    RECORDING_STARTING,
    RECORDING_UPLOAD_FAILING,
    RECORDING_UPLOAD_PENDING,
    RECORDING_UPLOADS_DONE,
    RECORDING_WAITING_FOR_INPUT,
    RECORDINGS_UPLOADED,
)
from onair.api.settings import S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY
from onair.render.children import RenderedChildren
from onair.render.conditions import (
    find_condition,
    kstatus_conditions,
    parse_rfc3339,
    remove_condition,
    rfc3339,
    set_condition,
)
from onair.render.effective import origin_replicas, recording_storage, sections
from onair.render.lifecycle import Lifecycle, recording_without_outputs
from onair.render.recordings import livestream_recording_entries
from onair.render.resolve import Problem

AGENTS_READY = "AgentsReady"
AGENTS_NOT_READY = "AgentsNotReady"

# How long the input may be live with a wanted recording not started before it is a problem: the
# recorder retries with backoff, probes its source, and a transcoded one waits for segments.
RECORDING_START_GRACE_SECONDS = 30.0


def _round(value: Optional[float], digits: int) -> Optional[float]:
    # Status is patched only on change: unrounded rates would patch on every poll.
    return None if value is None else round(float(value), digits)


def input_live(rendered: RenderedChildren, agents: Mapping[str, Any]) -> tuple[bool, Optional[bool]]:
    """(media arrives on the main ingest or from the pull source, on the backup ingest or None
    when there is no backup ingest)."""
    main, backup, transcoder = agents.get("ingest"), agents.get("ingest-backup"), agents.get("transcoder")
    if "ingest" not in rendered.agent_configs:
        live = isinstance(transcoder, TranscoderStatus) and transcoder.active_source == "pull"
    else:
        live = isinstance(main, IngestStatus) and main.receiving
    if "ingest-backup" not in rendered.agent_configs:
        return live, None
    return live, isinstance(backup, IngestStatus) and backup.receiving


def broadcast_problem(desired: bool, live: bool, transcoder: Optional[TranscoderStatus]) -> Optional[str]:
    """Why HLS/DASH is not being produced although it should be; None when it is, or when it is
    not expected (not wanted, or no input: without media there is nothing to transcode).

    Worded to stay the same from one poll to the next while nothing changes (it becomes a
    condition message, and status is patched only on change): no ages, no counts.
    """
    if not desired or not live:
        return None
    if not isinstance(transcoder, TranscoderStatus):
        return "the transcoder agent is unreachable"
    if transcoder.broadcasting:
        return None
    if transcoder.error:
        return f"the transcoder's encoder keeps failing: {transcoder.error}"
    if transcoder.last_segment_at is None:
        return "the transcoder has not published any segment"
    return f"the transcoder has published no segment since {rfc3339(transcoder.last_segment_at)}"


def recording_duration(recorder: RecorderStatus) -> float:
    """The open session's seconds, else the last finished session's: never 0 once something was recorded."""
    if recorder.started_at is not None or not recorder.recordings:
        return recorder.duration_seconds
    return recorder.recordings[-1].duration_seconds


def recording_condition(
    lifecycle: Lifecycle,
    rendered: RenderedChildren,
    recorder: Any,
    input_live: bool,
    previous: Optional[list[dict]],
    now: datetime,
) -> Optional[tuple[str, str, str]]:
    """(status, reason, message) of the ``Recording`` condition; None while no recording is wanted.

    Pure: the grace a starting recording gets is measured from the condition's own
    ``lastTransitionTime`` (Unknown is only ever "starting").
    """
    if not lifecycle.recording:
        return None
    record_type = sections(rendered.effective).recording.type
    if recording_without_outputs(lifecycle, rendered.effective):
        return (
            "False",
            NOTHING_TRANSCODED_TO_RECORD,
            "recording.type is transcoded but broadcasting.mode is disabled: nothing is transcoded, so there is "
            "nothing to record. Record the pushed source (settingsOverride.recording.type: origin) or allow "
            "broadcasting (settingsOverride.broadcasting.mode: available).",
        )
    if not isinstance(recorder, RecorderStatus):
        return (
            "False",
            RECORDER_NOT_REPORTING,
            "the recorder agent is not reporting; the recording starts once its pod runs",
        )
    if recorder.state in ("disk_full", "error"):
        return (
            "False",
            RECORDING_FAILED,
            f"the recorder cannot record ({recorder.state}): {recorder.error or 'no details'}. Free space on the "
            "recordings volume or give it more (recording.storage), or fix its mount.",
        )
    if recorder.recording or recorder.state == "reconnecting":
        return "True", RECORDING_IN_PROGRESS, f"the {record_type} recording is being written"
    if not input_live:
        return (
            "False",
            RECORDING_WAITING_FOR_INPUT,
            "recording starts when the input is live: nothing is being received now",
        )
    before = find_condition(previous, RECORDING)
    since = parse_rfc3339(before.get("lastTransitionTime")) if before else None
    stuck = before is not None and (
        before.get("reason") == RECORDING_SOURCE_UNAVAILABLE
        or (
            before.get("status") == "Unknown"
            and since is not None
            and (now - since).total_seconds() >= RECORDING_START_GRACE_SECONDS
        )
    )
    if not stuck:
        return "Unknown", RECORDING_STARTING, "the input is live; the recorder is connecting to its source"
    why = recorder.source_error or "no details from the recorder"
    if record_type == "transcoded":
        fix = (
            "A transcoded recording copies the top rendition of the origin's HLS playlist: check that the "
            "transcoder produces segments (status.transcodingSpeed, BroadcastingFailed Events) and that the origin "
            "runs, or record the pushed source instead (recording.type: origin)."
        )
    else:
        fix = (
            "The recorder reads the source as pushed (the ingest, or the pull URIs): check that the ingest runs "
            "and that the credentials Secret still has its readToken."
        )
    return (
        "False",
        RECORDING_SOURCE_UNAVAILABLE,
        f"the input is live but the {record_type} recording has not started: {why}. {fix}",
    )


def upload_fix(kind: Optional[str], namespace: str, s3) -> str:
    """What the user can do about a failing upload, naming their own objects."""
    if kind == "credentials":
        return (
            f"Check the keys {S3_ACCESS_KEY_ID} and {S3_SECRET_ACCESS_KEY} of Secret {namespace}/"
            f"{s3.credentials_secret} (recording.storage.s3.credentialsSecret) and that this key may write to bucket "
            f"{s3.bucket}; the recorder reads a corrected Secret without a restart."
        )
    if kind == "bucket":
        return (
            f"Create bucket {s3.bucket} at {s3.endpoint}, or correct recording.storage.s3 (bucket, region, "
            "endpoint, forcePathStyle)."
        )
    if kind == "unreachable":
        return (
            f"Check that {s3.endpoint} is the store's S3 endpoint and is reachable from the recorder pod; the "
            "files are uploaded as soon as it answers."
        )
    if kind == "local":
        return "Check the recordings volume (the recorder's log says more)."
    return "Check the store's logs (the recorder's log says more)."


def recordings_uploaded_condition(
    rendered: RenderedChildren, recorder: Any, previous: Optional[list[dict]]
) -> Optional[tuple[str, str, str]]:
    """(status, reason, message) of ``RecordingsUploaded``; None without ``recording.storage.s3``.

    Worded to stay the same while the cause does (no file names, counts only while nothing fails):
    the Warning Event is sent when a failure starts or its cause changes.
    """
    s3 = recording_storage(rendered.effective).s3
    config = rendered.agent_configs.get("recorder")
    if s3 is None or not isinstance(config, RecorderConfig):
        return None
    upload = recorder.upload if isinstance(recorder, RecorderStatus) else None
    if upload is None:
        before = find_condition(previous, RECORDINGS_UPLOADED)
        if before is not None:
            # What was last known stays true of the files on the volume until the recorder says more.
            return before["status"], before["reason"], before.get("message", "")
        return (
            "Unknown",
            RECORDER_NOT_REPORTING,
            "the recorder agent is not reporting; uploads start once its pod runs",
        )
    nothing_lost = "Nothing is lost: every file stays on the recordings volume until the store confirms it."
    if upload.error:
        namespace = config.livestream.split("/", 1)[0]
        return (
            "False",
            RECORDING_UPLOAD_FAILING,
            f"uploads to {upload.target} fail and are retried with backoff: {upload.error}. "
            f"{upload_fix(upload.error_kind, namespace, s3)} {nothing_lost}",
        )
    if upload.pending:
        return (
            "False",
            RECORDING_UPLOAD_PENDING,
            f"{upload.pending} finished recording file(s) waiting to be uploaded to {upload.target}",
        )
    return "True", RECORDING_UPLOADS_DONE, f"every finished recording file is in {upload.target} ({upload.endpoint})"


def livestream_status(
    *,
    lifecycle: Optional[Lifecycle],
    rendered: Optional[RenderedChildren],
    agents: Mapping[str, Any],
    previous: Optional[Mapping],
    generation: Optional[int],
    now: datetime,
    problem: Optional[Problem] = None,
    name: str = "",
    dvr_cleared_at: Optional[datetime] = None,
    broadcast_failure: Optional[str] = None,
    pod_problems: Optional[Mapping[str, str]] = None,
    ingest_rollout: Optional[str] = None,
    origin_replicas_reachable: Optional[int] = None,
) -> dict:
    """The desired ``status`` dict (camelCase, JSON-ready).

    ``agents``: role key (as in ``rendered.agent_configs``) → the agent's ``*Status`` model, or
    None/absent when it could not be reached. ``previous``: the stored status (keeps
    ``liveSince``, ``dvrClearedAt`` and the conditions' transition times). ``problem``: from
    ``onair.render.resolve``; then only conditions and observedGeneration are updated and every
    other field keeps its previous value (``lifecycle``/``rendered`` may be None).
    ``dvr_cleared_at``: pass the spec's value once the origin confirmed the clear.
    ``broadcast_failure``: what keeps broadcasting from working (``broadcast_problem``, worded for
    the user), once it has lasted long enough to be more than a start-up delay; Ready is False
    with reason ``BroadcastingFailed`` while it is set.
    ``pod_problems``: role key → why its pod does not run (``onair.render.pods.pod_problem``),
    added to the AgentsNotReady message of the agents that do not report.
    ``name``: the Livestream's, to name the Recording object of each finished session in
    ``recordings`` (``onair.render.recordings``); without it they are listed unnamed.
    ``origin_replicas_reachable``: how many origin replicas answered the poll (several replicas).
    ``ingest_rollout``: while one ingest slot's new template is held back for the other one to roll
    first (``onair.render.rollout``), what happens in which order: Reconciling, with reason
    ``IngestRolloutStaggered``.
    """
    previous = dict(previous or {})
    prev_conditions = previous.get("conditions")
    if problem is not None or lifecycle is None or rendered is None:
        problem = problem or Problem("NotRendered", "the Livestream could not be rendered")
        out: dict[str, Any] = {k: v for k, v in previous.items() if k not in ("conditions", "observedGeneration")}
        if generation is not None:
            out["observedGeneration"] = generation
        out["conditions"] = kstatus_conditions(
            False,
            False,
            True,
            problem.reason,
            problem.message,
            generation=generation,
            now=now,
            previous=prev_conditions,
        )
        return out

    transcoder = agents.get("transcoder")
    recorder = agents.get("recorder")

    out = {}
    if generation is not None:
        out["observedGeneration"] = generation
    out["phase"] = lifecycle.phase
    out["live"], backup_live = input_live(rendered, agents)
    if backup_live is not None:
        out["backupLive"] = backup_live
    for key, field in (("ingest", "publisher"), ("ingest-backup", "backupPublisher")):
        ingest = agents.get(key)
        if isinstance(ingest, IngestStatus) and ingest.receiving and ingest.publisher:
            out[field] = ingest.publisher
    # Remembered across polls that find no source on air (the moment between main and backup),
    # so the Events can tell a failover from a return whatever the polls happen to see.
    last_source = previous.get("lastActiveSource") or previous.get("activeSource")
    if isinstance(transcoder, TranscoderStatus):
        if transcoder.active_source:
            out["activeSource"] = last_source = transcoder.active_source
        if transcoder.speed is not None:
            out["transcodingSpeed"] = _round(transcoder.speed, 1)
        if transcoder.qualities:
            out["transcodedQualities"] = list(transcoder.qualities)
        if transcoder.source_switches:
            out["sourceSwitches"] = dict(transcoder.source_switches)
    if last_source:
        out["lastActiveSource"] = last_source
    out["viewersAllowed"] = lifecycle.viewers_allowed
    # What is happening, next to what is asked for. Outputs made while public broadcasting is off
    # (the backstage preview, a transcoded recording) are not broadcasting: viewers never get them.
    produced = isinstance(transcoder, TranscoderStatus) and transcoder.broadcasting
    out["outputsProduced"] = produced
    out["broadcasting"] = produced and lifecycle.broadcasting
    out["broadcastingDesired"] = lifecycle.broadcasting
    if "recorder" not in rendered.agent_configs:
        out["recording"] = False
    elif isinstance(recorder, RecorderStatus):
        # A session the recorder is reconnecting (main -> backup, a publisher's blip) is still
        # one recording: it goes on in the same file set unless the finalize window runs out.
        out["recording"] = recorder.recording or recorder.state == "reconnecting"
        out["recordingDurationSeconds"] = _round(recording_duration(recorder), 0)
        if recorder.recordings:
            out["recordings"] = (
                livestream_recording_entries(name, recorder.recordings)
                if name
                else [recording.wire() for recording in recorder.recordings]
            )
    if not isinstance(recorder, RecorderStatus):
        # What was recorded outlives the recorder pod (ended, deleted, crashed, not yet back).
        for key in ("recordingDurationSeconds", "recordings"):
            if key in previous:
                out[key] = previous[key]
    ingest = rendered.urls.ingest.wire()
    if ingest:
        out["ingest"] = ingest
    playback = rendered.urls.playback.wire()
    if playback:
        out["playback"] = playback
    out["credentialsSecret"] = rendered.credentials_secret
    wanted_replicas = origin_replicas(rendered.effective)
    if wanted_replicas > 1:
        reachable = origin_replicas_reachable if agents.get("origin") is not None else 0
        out["originReplicas"] = f"{reachable or 0}/{wanted_replicas}"
    if rendered.members.backstage:
        out["backstageMembers"] = list(rendered.members.backstage)
    if rendered.member_tokens_secret:
        out["memberTokensSecret"] = rendered.member_tokens_secret
    if lifecycle.phase == "live":
        # GetStream's live_started_at: when the stream last went live, kept while it stays live.
        kept = previous.get("liveSince") if previous.get("phase") == "live" else None
        out["liveSince"] = kept or rfc3339(now)
    cleared = rfc3339(dvr_cleared_at) if dvr_cleared_at is not None else previous.get("dvrClearedAt")
    if cleared:
        out["dvrClearedAt"] = cleared
    out["effectiveSettings"] = rendered.effective.wire()

    missing = [key for key in rendered.agent_configs if agents.get(key) is None]
    failing_recorder = (
        recorder
        if (isinstance(recorder, RecorderStatus) and lifecycle.recording and recorder.state in ("disk_full", "error"))
        else None
    )
    waiting = "waiting for agents: " + ", ".join(
        f"{key} ({(pod_problems or {})[key]})" if (pod_problems or {}).get(key) else key for key in missing
    )
    if ingest_rollout:
        # First: the agents of a rollout come and go, the order of it is what the owner wants to see.
        out["conditions"] = kstatus_conditions(
            False,
            True,
            False,
            INGEST_ROLLOUT_STAGGERED,
            ingest_rollout + (f"; {waiting}" if missing else ""),
            generation=generation,
            now=now,
            previous=prev_conditions,
        )
    elif missing:
        out["conditions"] = kstatus_conditions(
            False, True, False, AGENTS_NOT_READY, waiting, generation=generation, now=now, previous=prev_conditions
        )
    elif broadcast_failure:
        # Not Stalled either: the transcoder restarts its encoder by itself.
        out["conditions"] = kstatus_conditions(
            False,
            False,
            False,
            BROADCASTING_FAILED,
            broadcast_failure,
            generation=generation,
            now=now,
            previous=prev_conditions,
        )
    elif failing_recorder is not None:
        # Not Stalled: the recorder retries by itself once space is freed or the volume returns.
        out["conditions"] = kstatus_conditions(
            False,
            False,
            False,
            RECORDING_FAILED,
            f"the recorder cannot record ({failing_recorder.state}): {failing_recorder.error or 'no details'}",
            generation=generation,
            now=now,
            previous=prev_conditions,
        )
    else:
        out["conditions"] = kstatus_conditions(
            True,
            False,
            False,
            AGENTS_READY,
            "every agent is reporting",
            generation=generation,
            now=now,
            previous=prev_conditions,
        )
    recording = recording_condition(
        lifecycle, rendered, recorder, bool(out.get("live") or out.get("backupLive")), prev_conditions, now
    )
    if recording is None:
        out["conditions"] = remove_condition(out["conditions"], RECORDING)
    else:
        out["conditions"] = set_condition(out["conditions"], RECORDING, *recording, generation, now)
    uploaded = recordings_uploaded_condition(rendered, recorder, prev_conditions)
    if uploaded is None:
        out["conditions"] = remove_condition(out["conditions"], RECORDINGS_UPLOADED)
    else:
        out["conditions"] = set_condition(out["conditions"], RECORDINGS_UPLOADED, *uploaded, generation, now)
    return out


def _merge_patch(old: Mapping, new: Mapping) -> dict:
    patch: dict = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(value, Mapping) and isinstance(old[key], Mapping):
                patch[key] = _merge_patch(old[key], value)
            else:
                patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def status_patch(old: Optional[Mapping], new: Mapping) -> Optional[dict]:
    """JSON merge patch turning status ``old`` into ``new`` (send as ``{"status": patch}``); None when equal.

    Removed fields become null (merge-patch delete); lists such as conditions are replaced whole.
    """
    patch = _merge_patch(old or {}, new)
    return patch or None
