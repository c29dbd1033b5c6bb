"""The Livestream's ``status``: built from what should happen (lifecycle), what was rendered (URLs,
effective settings) and what the agents report, then diffed against the stored status so the
controller patches only when something changed.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Optional

from onair.api.agent import IngestStatus, RecorderStatus, TranscoderStatus
from onair.render.children import RenderedChildren
from onair.render.conditions import kstatus_conditions, rfc3339
from onair.render.lifecycle import Lifecycle
from onair.render.resolve import Problem

AGENTS_READY = "AgentsReady"
AGENTS_NOT_READY = "AgentsNotReady"
RECORDING_FAILED = "RecordingFailed"


def _round(value: Optional[float], digits: int) -> Optional[float]:
    # Status is patched only on change: unrounded rates would patch on every poll.
    return None if value is None else round(float(value), digits)


def livestream_status(*, lifecycle: Optional[Lifecycle], rendered: Optional[RenderedChildren],
                      agents: Mapping[str, Any], previous: Optional[Mapping], generation: Optional[int],
                      now: datetime, problem: Optional[Problem] = None,
                      dvr_cleared_at: Optional[datetime] = None) -> dict:
    """The desired ``status`` dict (camelCase, JSON-ready).

    ``agents``: role key (as in ``rendered.agent_configs``) → the agent's ``*Status`` model, or
    None/absent when it could not be reached. ``previous``: the stored status (keeps
    ``liveSince``, ``dvrClearedAt`` and the conditions' transition times). ``problem``: from
    ``onair.render.resolve``; then only conditions and observedGeneration are updated and every
    other field keeps its previous value (``lifecycle``/``rendered`` may be None).
    ``dvr_cleared_at``: pass the spec's value once the origin confirmed the clear.
    """
    previous = dict(previous or {})
    prev_conditions = previous.get("conditions")
    if problem is not None or lifecycle is None or rendered is None:
        problem = problem or Problem("NotRendered", "the Livestream could not be rendered")
        out = {k: v for k, v in previous.items() if k not in ("conditions", "observedGeneration")}
        if generation is not None:
            out["observedGeneration"] = generation
        out["conditions"] = kstatus_conditions(False, False, True, problem.reason, problem.message,
                                               generation=generation, now=now, previous=prev_conditions)
        return out

    main = agents.get("ingest")
    backup = agents.get("ingest-backup")
    transcoder = agents.get("transcoder")
    recorder = agents.get("recorder")
    pull = "ingest" not in rendered.agent_configs

    out: dict[str, Any] = {}
    if generation is not None:
        out["observedGeneration"] = generation
    out["phase"] = lifecycle.phase
    if pull:
        out["live"] = isinstance(transcoder, TranscoderStatus) and transcoder.active_source == "pull"
    else:
        out["live"] = isinstance(main, IngestStatus) and main.receiving
    if "ingest-backup" in rendered.agent_configs:
        out["backupLive"] = isinstance(backup, IngestStatus) and backup.receiving
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
    out["broadcasting"] = lifecycle.broadcasting
    if "recorder" not in rendered.agent_configs:
        out["recording"] = False
    elif isinstance(recorder, RecorderStatus):
        # A session the recorder is reconnecting (main -> backup, a publisher's blip) is still
        # one recording: it goes on in the same file set unless the finalize window runs out.
        out["recording"] = recorder.recording or recorder.state == "reconnecting"
        out["recordingDurationSeconds"] = _round(recorder.duration_seconds, 0)
    ingest = rendered.urls.ingest.wire()
    if ingest:
        out["ingest"] = ingest
    playback = rendered.urls.playback.wire()
    if playback:
        out["playback"] = playback
    out["credentialsSecret"] = rendered.credentials_secret
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
    recorder_failing = (isinstance(recorder, RecorderStatus) and lifecycle.recording
                        and recorder.state in ("disk_full", "error"))
    if missing:
        out["conditions"] = kstatus_conditions(
            False, True, False, AGENTS_NOT_READY, f"waiting for agents: {', '.join(missing)}",
            generation=generation, now=now, previous=prev_conditions)
    elif recorder_failing:
        # Not Stalled: the recorder retries by itself once space is freed or the volume returns.
        out["conditions"] = kstatus_conditions(
            False, False, False, RECORDING_FAILED,
            f"the recorder cannot record ({recorder.state}): {recorder.error or 'no details'}",
            generation=generation, now=now, previous=prev_conditions)
    else:
        out["conditions"] = kstatus_conditions(
            True, False, False, AGENTS_READY, "every agent is reporting",
            generation=generation, now=now, previous=prev_conditions)
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
