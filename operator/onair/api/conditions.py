"""Status conditions, Kubernetes-style (metav1.Condition) with kstatus semantics.

``Ready`` says the Livestream is serving what its spec asks; ``Reconciling`` is True while the
operator is converging (children rolling out, waiting on pods); ``Stalled`` is True when it
cannot converge without the user changing something (missing CallType, invalid combination).
Flux and Argo CD read exactly these.

``Recording`` is present while a recording is wanted (``onair.render.lifecycle``): True while a
session is open, Unknown while it is starting (the input is live, the recorder not yet writing),
False with the reason it cannot start. The reasons under it that are problems also become Warning
Events (``RECORDING_PROBLEMS``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

from pydantic import Field

from .base import ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
RECORDING = "Recording"

# Reasons of the Recording condition.
RECORDING_IN_PROGRESS = "RecordingInProgress"
RECORDING_WAITING_FOR_INPUT = "WaitingForInput"
RECORDING_STARTING = "RecordingStarting"
RECORDER_NOT_REPORTING = "RecorderNotReporting"
# Problems: each also a Warning Event.
RECORDING_FAILED = "RecordingFailed"  # the recordings volume is full or unusable (also Ready's reason)
RECORDING_SOURCE_UNAVAILABLE = "RecordingSourceUnavailable"
NOTHING_TRANSCODED_TO_RECORD = "NothingTranscodedToRecord"
RECORDING_PROBLEMS = (RECORDING_FAILED, RECORDING_SOURCE_UNAVAILABLE, NOTHING_TRANSCODED_TO_RECORD)

# ``RecordingsUploaded``: present while recording.storage.s3 is set. True once every finished part
# and sidecar is in the bucket; False while some wait (pending) or uploads fail (a problem: also a
# Warning Event, and a Normal one when uploads work again). Never touches Ready: the recorder keeps
# every file on the volume and retries by itself.
RECORDINGS_UPLOADED = "RecordingsUploaded"
RECORDING_UPLOADS_DONE = "RecordingsUploaded"
RECORDING_UPLOAD_PENDING = "RecordingUploadPending"
RECORDING_UPLOAD_FAILING = "RecordingUploadFailing"
RECORDING_UPLOAD_RECOVERED = "RecordingUploadRecovered"

# Ready=False while outputs that should be produced are not (also a Warning Event).
BROADCASTING_FAILED = "BroadcastingFailed"
# Events (not conditions) of status.originReplicas: a replica down is no outage, the stream stays Ready.
ORIGIN_REPLICAS_DOWN = "OriginReplicasDown"
ORIGIN_REPLICAS_RECOVERED = "OriginReplicasRecovered"


class Condition(ApiModel):
    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(max_length=1024, description="CamelCase machine-readable reason")
    message: str = Field("", max_length=32768)
    last_transition_time: datetime
    observed_generation: Optional[int] = Field(None, ge=0)


# A new ingest pod template for a Livestream with a backup ingest: the two slots roll one after
# the other, so encoders and the transcoder always have one (onair.render.rollout).
# Reconciling's reason while the second slot waits, and a Normal Event when that starts.
INGEST_ROLLOUT_STAGGERED = "IngestRolloutStaggered"
# Normal Event: the first slot is back (new pod Ready, its publisher reconnected); the second rolls.
INGEST_ROLLOUT_CONTINUED = "IngestRolloutContinued"
# Warning Event: the first slot did not come back in time; the second rolls anyway (nothing is
# held forever), and viewers may see a gap.
INGEST_ROLLOUT_NOT_BRIDGED = "IngestRolloutNotBridged"
