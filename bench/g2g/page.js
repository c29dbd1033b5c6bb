// Mirrors bench/g2g/clock.py: two rows of BITS blocks at the top of the frame, sync bits
// (white, black) then the capture time in Unix milliseconds; a frame counts only when the sync
// reads right and both rows agree.
"use strict";
const BITS = 44, SYNC = [1, 0], ROWS = 2, ROW_HEIGHT = 1 / 18, THRESHOLD = 128;

function readBand(data, width, height) {
  // data: RGBA of the top band of the frame (width x bandHeight), read as luma.
  const values = [];
  for (let row = 0; row < ROWS; row++) {
    const top = Math.round(height * ROW_HEIGHT * row), bottom = Math.round(height * ROW_HEIGHT * (row + 1));
    const y0 = top + Math.floor((bottom - top) / 4), y1 = Math.max(bottom - Math.floor((bottom - top) / 4), y0 + 1);
    let value = 0;
    for (let i = 0; i < BITS; i++) {
      const left = Math.floor(width * i / BITS), right = Math.floor(width * (i + 1) / BITS);
      const x0 = left + Math.floor((right - left) / 4), x1 = Math.max(right - Math.floor((right - left) / 4), x0 + 1);
      let sum = 0, n = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const p = (y * width + x) * 4;
          sum += 0.299 * data[p] + 0.587 * data[p + 1] + 0.114 * data[p + 2];
          n++;
        }
      }
      const bit = sum / n > THRESHOLD ? 1 : 0;
      if (i < SYNC.length) {
        if (bit !== SYNC[i]) { value = null; break; }
      } else {
        value = value * 2 + bit;  // 42 bits: past 2^32, so no bitwise operators
      }
    }
    values.push(value);
  }
  return values[0] !== null && values[0] === values[1] ? values[0] : null;
}

const params = new URLSearchParams(location.search);
const player = params.get("player"), src = params.get("src");
const video = document.getElementById("video");
const canvas = document.createElement("canvas");
const ctx = canvas.getContext("2d", {willReadFrequently: true});
window.g2g = {player, src, samples: [], unreadable: 0, firstFrameAt: null, openedAt: Date.now(), errors: [],
              stalls: 0, pdtOffsets: []};

function onFrame(now, meta) {
  const width = video.videoWidth, height = video.videoHeight;
  if (width && height) {
    const band = Math.round(height * ROW_HEIGHT * ROWS);
    canvas.width = width; canvas.height = band;
    ctx.drawImage(video, 0, 0, width, band, 0, 0, width, band);
    const captured = readBand(ctx.getImageData(0, 0, width, band).data, width, height);
    // When this frame reaches the screen, on the same clock as Date.now().
    const shown = performance.timeOrigin + (meta.expectedDisplayTime || now);
    if (captured === null) {
      g2g.unreadable++;
    } else {
      if (g2g.firstFrameAt === null) g2g.firstFrameAt = shown;
      g2g.samples.push({shown, captured, latency: (shown - captured) / 1000, height});
      if (window.hls && hls.playingDate) g2g.pdtOffsets.push((hls.playingDate.getTime() - captured) / 1000);
      // DASH's wall-clock timeline: availabilityStartTime + media time, the position dash.js keeps at its
      // latency target from the live edge.
      if (window.dash && dash.isReady()) g2g.pdtOffsets.push(dash.timeAsUTC() - captured / 1000);
    }
  }
  video.requestVideoFrameCallback(onFrame);
}
video.requestVideoFrameCallback(onFrame);
// A stall: a "waiting" event after the first frame, with when it came (seconds after the first
// frame), how long until "playing", and whether the player had just seeked (a jump to the live
// edge waits too, but is no buffer running dry).
g2g.stallEvents = [];
video.addEventListener("waiting", () => {
  if (g2g.firstFrameAt === null) return;
  g2g.stalls++;
  g2g.stallEvents.push({at: (Date.now() - g2g.firstFrameAt) / 1000, seeking: video.seeking, seconds: null,
                        since: Date.now()});
});
// Every fetch the player made (Resource Timing), to tell what a stall waited for.
g2g.requests = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    g2g.requests.push({url: e.name.split("?")[0].split("/").slice(-2).join("/"), status: e.responseStatus || 0,
                       start: performance.timeOrigin + e.startTime, seconds: e.duration / 1000});
  }
}).observe({type: "resource", buffered: true});
video.addEventListener("playing", () => {
  const last = g2g.stallEvents[g2g.stallEvents.length - 1];
  if (last && last.seconds === null) last.seconds = (Date.now() - last.since) / 1000;
});

if (player === "hls" || player === "hls-ll") {
  // Low-latency mode as the origin's player page sets it: lowLatencyMode, and the playback rate hls.js
  // may use to get back to PART-HOLD-BACK (maxRate=1: hls.js's default, it never catches up).
  window.hls = new Hls(player === "hls-ll"
    ? {lowLatencyMode: true, maxLiveSyncPlaybackRate: parseFloat(params.get("maxRate") || "1")} : {});
  hls.on(Hls.Events.ERROR, (_, d) => g2g.errors.push(`${d.type}/${d.details}${d.fatal ? " fatal" : ""}`));
  // Where hls.js chose to play and why: the playlist it read at start (TARGETDURATION, HOLD-BACK,
  // segment durations) and the latency it aims at, so two players' latencies can be told apart.
  hls.on(Hls.Events.LEVEL_LOADED, (_, d) => {
    if (g2g.hlsStart) return;
    const details = d.details, last = details.fragments[details.fragments.length - 1];
    // How long ago the newest listed segment's last frame was received: hls.js counts the edge's age
    // from this load, so what it was before (up to a segment, by when the player joined) stays in
    // its latency.
    const edgeAge = last && last.programDateTime ? (Date.now() - last.programDateTime) / 1000 - last.duration : null;
    g2g.hlsStart = {targetDuration: details.targetduration, holdBack: details.holdBack || null, edgeAge,
                    durations: details.fragments.slice(-6).map((f) => +f.duration.toFixed(3)),
                    edge: details.edge, liveSyncPosition: null, startPosition: null};
  });
  hls.on(Hls.Events.FRAG_CHANGED, () => {
    if (!g2g.hlsStart || g2g.hlsStart.startPosition !== null) return;
    const details = hls.latestLevelDetails || (hls.levels[hls.currentLevel] || {}).details;
    Object.assign(g2g.hlsStart, {startPosition: video.currentTime, liveSyncPosition: hls.liveSyncPosition,
                                 targetLatency: hls.targetLatency, latency: hls.latency,
                                 edge: details ? details.edge : g2g.hlsStart.edge});
  });
  hls.loadSource(src);
  hls.attachMedia(video);
} else if (player === "dash" || player === "dash-ll") {
  window.dash = dashjs.MediaPlayer().create();
  if (player === "dash-ll") {
    // Low-latency mode as the origin's player page sets it (dash.js itself switches to chunked
    // fetches on availabilityTimeComplete="false" in the MPD).
    dash.updateSettings({streaming: {
      delay: {liveDelay: parseFloat(params.get("liveDelay"))},
      liveCatchup: {enabled: true, maxDrift: parseFloat(params.get("maxDrift")),
                    playbackRate: {min: parseFloat(params.get("rateMin")), max: parseFloat(params.get("rateMax"))}},
    }});
  }
  dash.on("error", (e) => g2g.errors.push(JSON.stringify(e.error || e).slice(0, 200)));
  dash.initialize(video, src, true);
} else if (player === "whep") {
  // WHEP with the browser's own RTCPeerConnection, as the origin's player page does (?format=whep).
  (async () => {
    const pc = window.pc = new RTCPeerConnection();
    for (const kind of params.get("audio") === "0" ? ["video"] : ["video", "audio"]) {
      const receiver = pc.addTransceiver(kind, {direction: "recvonly"}).receiver;
      if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = 0;
    }
    const stream = new MediaStream();
    pc.ontrack = (e) => { stream.addTrack(e.track); if (video.srcObject !== stream) video.srcObject = stream; };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") resolve();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
      setTimeout(resolve, 2000);
    });
    const response = await fetch(src, {method: "POST", headers: {"Content-Type": "application/sdp"},
                                       body: pc.localDescription.sdp});
    if (response.status !== 201) { g2g.errors.push(`WHEP ${response.status}: ${(await response.text()).slice(0, 150)}`); return; }
    g2g.whepLocation = new URL(response.headers.get("Location"), src).href;
    await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  })().catch((e) => g2g.errors.push(String(e).slice(0, 200)));
} else {
  g2g.errors.push(`unknown player ${player}`);
}
