"""`onair agent transcoder --config FILE`: one livestream's ABR ladder, HLS (CMAF + MPEG-TS), DASH
and screenshots, fed by the main ingest with a warm backup, or by pull URIs.

How it is put together (each module says why in more detail):

* ``relay``: a reader process per source runs all the time (``ffmpeg -c copy`` -> MPEG-TS
  pipe); the relay forwards the active one into the encoder's stdin. ``source`` decides which:
  main while healthy; the backup the moment main's reader ends or stays silent for
  ``freeze_seconds``; main again once it has been healthy for ``return_seconds``.
  ``mpegts.Splicer`` starts each source at a keyframe with continuous timestamps, so a switch
  needs no new process and leaves no trace in the outputs.
* ``ffmpeg_args``: one encoder process per run encodes the ladder once (keyframes on segment
  boundaries in every rung) and the tee muxer writes HLS fMP4, HLS TS and DASH from the same
  frames, plus the screenshot.
* ``packager``: publishes to ``output_dir`` or PUTs to ``output_url`` (bearer token), with
  its own HLS playlists that outlive encoder runs (see ``playlists``).

Desired state (``PUT /desired``), GetStream's backstage semantics:

* The readers (and so source selection, ``activeSource`` and failover) run in every phase:
  hosts rehearse in backstage and the transcoder knows what it would put on air.
* ``broadcasting: true`` (and a phase other than ``ended``) starts the encoder as soon as a
  source delivers; the ladder is fitted to that source (never upscaled). Outputs start with a
  new run id.
* ``broadcasting: false`` or ``phase: ended`` stops the encoder: its last segments are
  published and every playlist ends with ``EXT-X-ENDLIST`` (DASH: ffmpeg's final static MPD).
  Broadcasting again starts a new run: playlists resume with a discontinuity, media sequence
  numbers keep growing.
* An encoder crash is not a stop: it is restarted as a new run, playlists continue with a
  discontinuity and the new run's own init segment, and never get ``EXT-X-ENDLIST``.
* ``active: false`` or ``phase: ended`` also stops pulling (Gcore: "PULL is deactivated"): the
  pull reader stops until the stream is active again.
* ``backup: false`` stops the backup's reader (the backup ingest is not deployed), ``true``
  starts it: the backup comes and goes without a new process.

``GET /status`` (``TranscoderStatus``): ``activeSource`` is the source on air while
broadcasting (the one that would be otherwise), null while no source delivers; ``speed`` is
ffmpeg's ``speed=`` (Gcore's ``transcoding_speed``); ``qualities`` the renditions of the
running encoder once it has published a segment; ``lastSegmentAt`` the last publication;
``broadcasting`` whether outputs are being produced now (a fresh segment of the running run);
``error`` how the last encoder process ended while none produces.
"""

from __future__ import annotations

from onair.agent.app import run_role
from onair.api.agent import TranscoderConfig


def main(argv: list[str]) -> int:
    return run_role("transcoder", argv, TranscoderConfig, _serve)


async def _serve(config: TranscoderConfig) -> None:
    from .agent import TranscoderAgent

    await TranscoderAgent(config).run()
