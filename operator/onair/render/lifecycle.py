"""Desired lifecycle of a Livestream: what should be happening now, from spec + effective settings + clock.

Pure and total: every Livestream the API server accepts maps to exactly one ``Lifecycle``. The
controller PUTs the result to every agent as ``Desired`` (level-based, so a restarted agent or
operator converges on the next poll) and arms a timer at ``next_change_at``.

Semantics (GetStream backstage/goLive/stopLive in Kubernetes terms, Gcore's ``active`` switch):

* phase: ``spec.phase``; unset means backstage when the effective ``backstage.enabled`` is true,
  otherwise live. ``ended`` is final (CEL enforces it on the API server).
* broadcasting -- public HLS/DASH broadcasting, GetStream's HLS broadcast: what is produced while
  it is on is for viewers. Never when ``broadcasting.mode`` is disabled, ``spec.active`` is false or
  the phase is ended. Otherwise ``spec.broadcasting`` when set (start/stopHLSBroadcasting).
  Otherwise live: mode auto-on or ``goLive.startHls``; backstage: ``stopLive.continueHls`` and
  (mode auto-on or ``goLive.startHls``) -- stopLive stops HLS unless asked to continue it.
* outputs -- the transcoder runs its ladder (HLS/DASH, screenshots) into the origin. Never when
  ``broadcasting.mode`` is disabled, ``spec.active`` is false or the phase is ended. Otherwise when
  broadcasting; in backstage unless ``spec.broadcasting`` is false (the backstage preview: GetStream's
  backstage exists so hosts can check the feed before going live; the origin lets only token holders
  play it); and while recording with ``recording.type: transcoded`` (the recorder reads the origin),
  even with public broadcasting off. A transcoded recording with broadcasting disabled has nothing to
  read: ``recording_without_outputs`` says so and the status reports it.
* recording: never when ``recording.mode`` is disabled, ``spec.active`` is false or the phase is
  ended (pushes are refused once ended, so there is nothing to record; this wins over an explicit
  ``spec.recording: true``). Otherwise ``spec.recording`` when set (start/stopRecording). Otherwise
  live: mode auto-on or ``goLive.startRecording``; backstage: mode auto-on ("recording starts in
  backstage mode") or (``stopLive.continueRecording`` and ``goLive.startRecording``).
* viewers_allowed: live, or backstage disabled, or the join-ahead window is open
  (``joinAheadTimeSeconds > 0``, ``startsAt`` set and now >= startsAt - joinAhead), or ended (the
  DVR stays playable). A join-ahead of 0 opens nothing early: the setting documents 0 as "viewers
  join only when the stream goes live", which is also GetStream's meaning. Viewers only ever see
  what was produced while broadcasting and viewers_allowed were both on (the origin keeps the
  backstage preview and recording-only outputs for token holders), so going live never publishes
  the preview as DVR.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from onair.api.agent import Desired
from onair.api.livestream import LivestreamSpec, Phase
from onair.api.settings import CallSettings
from onair.render.effective import sections


@dataclass(frozen=True)
class Lifecycle:
    phase: Phase
    broadcasting: bool  # public: viewers may play what is produced
    recording: bool
    viewers_allowed: bool
    active: bool
    # The instant viewers_allowed flips because startsAt - joinAheadTimeSeconds is reached; None when
    # nothing in the lifecycle changes by the clock alone. The controller arms a timer for it.
    next_change_at: Optional[datetime] = None
    # The transcoder produces outputs: public broadcasting, the backstage preview, or a transcoded
    # recording's source.
    outputs: bool = False


def _aware(value: datetime) -> datetime:
    # The API server always sends an offset; a naive datetime (tests, hand-built specs) is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def desired_phase(spec: LivestreamSpec, effective: CallSettings) -> Phase:
    if spec.phase is not None:
        return spec.phase
    return "backstage" if sections(effective).backstage.enabled else "live"


def _broadcasting(spec: LivestreamSpec, effective: CallSettings, phase: Phase, active: bool) -> bool:
    mode = sections(effective).broadcasting.mode
    if mode == "disabled" or not active or phase == "ended":
        return False
    if spec.broadcasting is not None:
        return spec.broadcasting
    start_hls = bool(spec.go_live and spec.go_live.start_hls)
    wanted_when_live = mode == "auto-on" or start_hls
    if phase == "live":
        return wanted_when_live
    continue_hls = bool(spec.stop_live and spec.stop_live.continue_hls)
    return continue_hls and wanted_when_live


def _outputs(
    spec: LivestreamSpec, effective: CallSettings, phase: Phase, active: bool, broadcasting: bool, recording: bool
) -> bool:
    if sections(effective).broadcasting.mode == "disabled" or not active or phase == "ended":
        return False
    if broadcasting or (recording and sections(effective).recording.type == "transcoded"):
        return True
    return phase == "backstage" and spec.broadcasting is not False


def recording_without_outputs(lifecycle: Lifecycle, effective: CallSettings) -> bool:
    """A transcoded recording is wanted but nothing is transcoded: broadcasting is disabled."""
    return lifecycle.recording and sections(effective).recording.type == "transcoded" and not lifecycle.outputs


def _recording(spec: LivestreamSpec, effective: CallSettings, phase: Phase, active: bool) -> bool:
    mode = sections(effective).recording.mode
    if mode == "disabled" or not active or phase == "ended":
        return False
    if spec.recording is not None:
        return spec.recording
    start_recording = bool(spec.go_live and spec.go_live.start_recording)
    if phase == "live":
        return mode == "auto-on" or start_recording
    continue_recording = bool(spec.stop_live and spec.stop_live.continue_recording)
    return mode == "auto-on" or (continue_recording and start_recording)


def join_ahead_opens_at(spec: LivestreamSpec, effective: CallSettings) -> Optional[datetime]:
    """When backstage opens to viewers ahead of ``startsAt``; None when join-ahead is off or unscheduled."""
    join_ahead = sections(effective).backstage.join_ahead_time_seconds or 0
    if spec.starts_at is None or join_ahead <= 0:
        return None
    return _aware(spec.starts_at) - timedelta(seconds=join_ahead)


def desired_lifecycle(spec: LivestreamSpec, effective: CallSettings, now: datetime) -> Lifecycle:
    """What should be happening at ``now`` (see the module docstring for the rules)."""
    now = _aware(now)
    phase = desired_phase(spec, effective)
    active = spec.active is not False
    opens_at = join_ahead_opens_at(spec, effective)
    open_regardless = phase in ("live", "ended") or not sections(effective).backstage.enabled
    viewers_allowed = open_regardless or (opens_at is not None and now >= opens_at)
    next_change_at = opens_at if (not open_regardless and opens_at is not None and now < opens_at) else None
    broadcasting = _broadcasting(spec, effective, phase, active)
    recording = _recording(spec, effective, phase, active)
    return Lifecycle(
        phase=phase,
        broadcasting=broadcasting,
        recording=recording,
        viewers_allowed=viewers_allowed,
        active=active,
        next_change_at=next_change_at,
        outputs=_outputs(spec, effective, phase, active, broadcasting, recording),
    )


def to_agent_desired(lifecycle: Lifecycle, generation: int) -> Desired:
    """The ``PUT /desired`` body every agent of the Livestream gets.

    ``active`` is false once ended: "pushes are refused" is the agents' on/off switch (the ingest
    drops and refuses publishers, a pulling transcoder stops); the origin keeps serving the DVR.
    ``broadcasting`` is what the transcoder acts on (produce outputs); ``publicBroadcasting`` tells
    the origin which of them viewers may see.
    """
    return Desired(
        phase=lifecycle.phase,
        broadcasting=lifecycle.outputs,
        public_broadcasting=lifecycle.broadcasting,
        recording=lifecycle.recording,
        active=lifecycle.active and lifecycle.phase != "ended",
        viewers_allowed=lifecycle.viewers_allowed,
        generation=generation,
    )
