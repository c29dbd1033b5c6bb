"""WebRTC pieces shared by WHIP ingest (``agent/ingest/whip.py``, receiving) and WHEP playback
(``agent/transcoder/whep.py``, sending): ICE servers and TURN credentials (``iceservers``), and
the signalling both speak over HTTP (``signalling``: reading an SDP offer, the codecs it offers,
the answer's headers, the peer connection's ICE configuration). aiortc is imported only where a
session really starts."""
