// facestream operator dashboard. Plain browser JavaScript, no build step.
// One RTCPeerConnection per camera (enhanced + original tracks), one WebSocket for metadata.
// The server sends only the tracks the view shows (POST /watch), so a camera's original is not
// encoded for a dashboard in Enhanced view.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  // ?rendition=low asks for the lower-bitrate version of every camera (shared encoder only).
  const rendition = new URLSearchParams(location.search).get("rendition");
  const authHeaders = { Authorization: `Bearer ${token}` };
  const grid = document.getElementById("grid");
  const summary = document.getElementById("summary");
  const link = document.getElementById("link");
  const template = document.getElementById("camera-tpl");
  const cams = new Map();
  const KINDS = ["enhanced", "original"];
  let serverInfo = { codec: "", bitrate_kbps: 0, settings: {} };
  window.facestream = { cams };

  async function postJSON(path, body) {
    const r = await fetch(path, {
      method: "POST",
      headers: { ...authHeaders, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(text.replace(/^\d+:\s*/, "") || `HTTP ${r.status}`);
    return JSON.parse(text);
  }

  // ---- camera cards -----------------------------------------------------------------------
  function makeCard(info) {
    const node = template.content.firstElementChild.cloneNode(true);
    const q = (sel) => node.querySelector(sel);
    const view = {
      name: info.name, node, pc: null, peer: null, watchChain: null, meta: null, retry: 1000,
      lastStats: {}, history: [], rateMbps: null, browserMs: null, received: {}, faces: new Map(),
      metaHistory: [],
      vEnh: q(".v-enh"), vOrig: q(".v-orig"), viewport: q(".viewport"), overlay: q(".overlay"),
      gallery: q(".gallery"), msg: q(".c-msg"), boxes: q(".boxes"),
    };
    q(".cam-name").textContent = info.name;
    view.viewport.dataset.view = "split";

    node.querySelectorAll(".seg button").forEach((b) => b.addEventListener("click", () => {
      node.querySelectorAll(".seg button").forEach((o) => o.classList.toggle("on", o === b));
      view.viewport.dataset.view = b.dataset.view;
      drawOverlay(view);
      sendWatch(view);
    }));
    const split = q(".split");
    split.addEventListener("input", () => view.viewport.style.setProperty("--split", `${split.value}%`));
    view.boxes.addEventListener("change", () => drawOverlay(view));
    for (const v of [view.vEnh, view.vOrig]) {
      v.addEventListener("playing", () => node.classList.add("playing"));
    }

    const sendControl = async (body) => {
      view.msg.className = "c-msg";
      view.msg.textContent = "applying…";
      try {
        await postJSON(`/api/cameras/${encodeURIComponent(view.name)}/controls`, body);
        view.msg.className = "c-msg ok";
        view.msg.textContent = "applied";
      } catch (err) {
        view.msg.className = "c-msg err";
        view.msg.textContent = err.message;
      }
    };
    buildControls(q(".controls"), sendControl);
    grid.appendChild(node);
    updateInfo(view, info);
    return view;
  }

  // One input per live setting, from the server's schema (choices -> select, numbers -> input).
  function buildControls(box, sendControl) {
    const msg = box.querySelector(".c-msg");
    for (const [name, s] of Object.entries(serverInfo.settings || {})) {
      const label = document.createElement("label");
      label.title = s.help;
      label.append(name.replace(/_/g, " ") + " ");
      let input;
      if (s.choices) {
        input = document.createElement("select");
        for (const c of s.choices) input.add(new Option(String(c), String(c)));
      } else {
        input = document.createElement("input");
        input.type = "number";
        input.step = "1";
        if (s.min !== undefined) input.min = String(s.min);
        if (s.max !== undefined) input.max = String(s.max);
      }
      input.className = `c-${name}`;
      input.addEventListener("change", (e) => {
        const raw = e.target.value;
        sendControl({ [name]: s.type === "str" ? raw : Number(raw) });
      });
      label.append(input);
      box.insertBefore(label, msg);
    }
  }

  // The server's current controls win, except in the field the operator is editing right now.
  function showControls(view, c) {
    for (const name of Object.keys(serverInfo.settings || {})) {
      const el = view.node.querySelector(`.c-${name}`);
      const value = c[name];
      if (el && value !== undefined && el !== document.activeElement && el.value !== String(value)) {
        el.value = String(value);
      }
    }
  }

  // What the server says about the camera's source (hello and the once-a-second status messages):
  // a camera that is down sends no frames, so its card must not keep showing the last ones' figures.
  function stateText(info) {
    if (info.status === "error") return `error: ${info.error}`;
    const attempt = info.attempt ? ` (attempt ${info.attempt})` : "";
    return `${info.status}${attempt}${info.last_error ? `: ${info.last_error}` : ""}`;
  }

  function updateInfo(view, info) {
    const q = (sel) => view.node.querySelector(sel);
    view.status = info;
    showControls(view, info.controls || {});
    if (info.backend) q(".s-backend").textContent = info.backend;
    view.node.classList.toggle("error", info.status === "error");
    view.node.classList.toggle("down", !info.up);
    q(".cam-state").title = info.up ? "" : stateText(info);
    if (!info.up) {
      q(".cam-state").textContent = stateText(info);
      q(".s-fps").textContent = fmt(info.fps, 1);
    }
  }

  // ---- WebRTC -----------------------------------------------------------------------------
  function iceGatheringDone(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000);
    });
  }

  async function connect(view) {
    if (view.pc) view.pc.close();
    const pc = new RTCPeerConnection({ iceServers: [] });
    view.pc = pc;
    view.peer = null;
    view.history = [];
    view.lastStats = {};
    view.received = {};
    const tEnh = pc.addTransceiver("video", { direction: "recvonly" });
    const tOrig = pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (e) => {
      const video = e.transceiver === tEnh ? view.vEnh : e.transceiver === tOrig ? view.vOrig : null;
      if (!video) return;
      video.srcObject = new MediaStream([e.track]);
      video.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      view.node.classList.toggle("live", pc.connectionState === "connected");
      if (pc.connectionState === "connected") view.retry = 1000;
      if (pc === view.pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
        scheduleReconnect(view);
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await iceGatheringDone(pc);
      const answer = await postJSON(`/api/cameras/${encodeURIComponent(view.name)}/offer`, {
        sdp: pc.localDescription.sdp, type: "offer", tracks: KINDS,
        ...(rendition ? { rendition } : {}),
      });
      await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
      view.peer = answer.peer;
      if (shownKinds(view).length !== KINDS.length) sendWatch(view);
    } catch (err) {
      view.node.querySelector(".placeholder").textContent = `video unavailable: ${err.message}`;
      scheduleReconnect(view);
    }
  }

  function scheduleReconnect(view) {
    const delay = view.retry;
    view.retry = Math.min(view.retry * 2, 15000);
    setTimeout(() => connect(view), delay);
  }

  // The tracks the view shows: the original layer is hidden in Enhanced view and the enhanced
  // one in Original view.
  function shownKinds(view) {
    const v = view.viewport.dataset.view;
    return v === "split" ? KINDS : [v];
  }

  // Tell the server which tracks to send; if it cannot choose (per-viewer encoding), both come.
  // One request at a time, each sending the view as it is then: quick clicks cannot arrive out
  // of order and leave the server sending what the view no longer shows.
  function sendWatch(view) {
    view.watchChain = (view.watchChain || Promise.resolve()).then(() => {
      if (!view.peer) return null;
      return postJSON(`/api/cameras/${encodeURIComponent(view.name)}/watch`, {
        peer: view.peer, tracks: shownKinds(view),
      }).catch(() => {});
    });
  }

  // What this browser receives, per track, from getStats(): frames decoded and dropped, the
  // decode rate over the last poll and Chromium's own framesPerSecond, jitter buffer and decode
  // delay per frame. The newest figures are `view.received[kind]` (window.facestream.cams, for
  // tests and `bench latency --browser`); the stats line shows the track in view.
  async function pollStats(view) {
    const pc = view.pc;
    if (!pc || pc.connectionState !== "connected") return;
    const kindOf = new Map(pc.getTransceivers().map((t, i) => [t.mid, KINDS[i]]));
    const report = await pc.getStats();
    const now = {};
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video" && kindOf.has(s.mid)) now[kindOf.get(s.mid)] = s;
    });
    for (const [kind, cur] of Object.entries(now)) {
      const prev = view.lastStats[kind];
      const r = {
        framesDecoded: cur.framesDecoded || 0, framesDropped: cur.framesDropped || 0,
        framesPerSecond: cur.framesPerSecond ?? null, bytesReceived: cur.bytesReceived || 0,
        fps: null, jitterMs: null, decodeMs: null, at: cur.timestamp,
      };
      if (prev) {
        const decoded = r.framesDecoded - (prev.framesDecoded || 0);
        const emitted = (cur.jitterBufferEmittedCount || 0) - (prev.jitterBufferEmittedCount || 0);
        const span = (cur.timestamp - prev.timestamp) / 1000;
        if (span > 0) r.fps = decoded / span;
        const jitterS = (cur.jitterBufferDelay || 0) - (prev.jitterBufferDelay || 0);
        const decodeS = (cur.totalDecodeTime || 0) - (prev.totalDecodeTime || 0);
        if (emitted > 0) r.jitterMs = (jitterS / emitted) * 1000;
        if (decoded > 0) r.decodeMs = (decodeS / decoded) * 1000;
      }
      view.received[kind] = r;
      view.lastStats[kind] = cur;
    }
    const kind = primaryKind(view);
    const shown = now[kind];
    if (!shown) return;
    if (view.history.length && view.history[0].mid !== shown.mid) view.history = [];
    view.history = [...view.history, shown].slice(-5);  // bitrate over ~2 s: steady at low fps
    const old = view.history[0];
    const span = (shown.timestamp - old.timestamp) / 1000;
    if (span > 0) view.rateMbps = ((shown.bytesReceived - old.bytesReceived) * 8) / span / 1e6;
    const r = view.received[kind];
    if (r.jitterMs !== null && r.decodeMs !== null) view.browserMs = r.jitterMs + r.decodeMs;
  }

  // The track whose numbers the stats line shows.
  function primaryKind(view) {
    return view.viewport.dataset.view === "original" ? "original" : "enhanced";
  }

  // ---- metadata ---------------------------------------------------------------------------
  function contentRect(box, w, h) {
    const bw = box.clientWidth, bh = box.clientHeight;
    const scale = Math.min(bw / w, bh / h);
    return { x: (bw - w * scale) / 2, y: (bh - h * scale) / 2, scale };
  }

  // Metadata arrives when a frame is published; the video shows that frame only after encoding,
  // transport, jitter buffer and decoding. Boxes are drawn from the metadata that old, so they sit
  // on the faces in the picture rather than ahead of them.
  function delayedMeta(view) {
    const delay = (view.browserMs === null ? 80 : view.browserMs) + 20;
    const due = performance.now() - delay;
    let pick = null;
    for (const entry of view.metaHistory) {
      if (entry.t <= due) pick = entry.m;
    }
    return pick || (view.metaHistory.length ? view.metaHistory[0].m : null);
  }

  function drawOverlay(view) {
    const canvas = view.overlay;
    const dpr = window.devicePixelRatio || 1;
    const bw = view.viewport.clientWidth, bh = view.viewport.clientHeight;
    if (canvas.width !== Math.round(bw * dpr)) canvas.width = Math.round(bw * dpr);
    if (canvas.height !== Math.round(bh * dpr)) canvas.height = Math.round(bh * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, bw, bh);
    const m = delayedMeta(view);
    if (!m || !view.boxes.checked || view.viewport.dataset.view === "enhanced") return;
    const [fw, fh] = m.frame_size;
    const r = contentRect(view.viewport, fw, fh);
    const splitX = view.viewport.dataset.view === "split"
      ? bw * (Number(view.node.querySelector(".split").value) / 100) : bw;
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, splitX, bh);
    ctx.clip();
    ctx.lineWidth = 1.5;
    ctx.font = "11px ui-monospace, monospace";
    for (const t of m.tracks) {
      const [x1, y1, x2, y2] = t.box;
      const x = r.x + x1 * r.scale, y = r.y + y1 * r.scale;
      const w = (x2 - x1) * r.scale, h = (y2 - y1) * r.scale;
      ctx.strokeStyle = "rgba(76,194,255,.9)";
      ctx.strokeRect(x, y, w, h);
      ctx.fillStyle = "rgba(76,194,255,.95)";
      ctx.fillText(`#${t.id}`, x, Math.max(10, y - 3));
    }
    ctx.restore();
  }

  function fmt(v, digits) {
    return v === null || v === undefined || Number.isNaN(v) ? "–" : v.toFixed(digits);
  }

  function renderStats(view) {
    const q = (sel) => view.node.querySelector(sel);
    const m = view.meta;
    if (m) {
      q(".s-fps").textContent = fmt(m.fps, 1);
      const lat = view.browserMs === null ? null : m.pipeline_ms + view.browserMs;
      q(".s-lat").textContent = lat === null ? `${fmt(m.pipeline_ms, 0)}+` : fmt(lat, 0);
      q(".s-faces").textContent = String(m.faces);
      q(".s-drop").textContent = String(m.dropped);
      if (m.backend) { q(".s-backend").textContent = m.backend; q(".s-backend").title = m.backend; }
      showControls(view, m.controls || {});
      const [fw, fh] = m.frame_size, [ow, oh] = m.output_size;
      q(".cam-res").textContent = `${fw}×${fh} → ${ow}×${oh}`;
      q(".cam-state").textContent = `${m.viewers} viewer${m.viewers === 1 ? "" : "s"}`;
    }
    if (view.status && !view.status.up) {
      q(".cam-state").textContent = stateText(view.status);
      q(".s-fps").textContent = fmt(view.status.fps, 1);
    }
    q(".s-rate").textContent = fmt(view.rateMbps, 2);
    q(".s-rx").textContent = fmt(view.received[primaryKind(view)]?.fps, 1);
  }

  function renderFaces(view, faces) {
    const strip = view.gallery;
    const seen = new Set();
    for (const f of faces.sort((a, b) => a.id - b.id)) {
      seen.add(f.id);
      let fig = view.faces.get(f.id);
      if (!fig) {
        fig = document.createElement("figure");
        fig.className = "face";
        fig.dataset.track = String(f.id);
        const img = document.createElement("img");
        img.alt = `track ${f.id}, AI-enhanced`;
        img.title = "AI-enhanced: a reconstruction, not a photograph; the original is in the video";
        const ai = Object.assign(document.createElement("span"), { className: "ai", textContent: "AI" });
        const cap = document.createElement("figcaption");
        cap.textContent = `#${f.id}`;
        fig.append(img, ai, cap);
        view.faces.set(f.id, fig);
      }
      fig.querySelector("img").src = `data:image/jpeg;base64,${f.jpeg}`;
    }
    for (const [id, fig] of view.faces) {
      if (!seen.has(id)) { fig.remove(); view.faces.delete(id); }
    }
    const ordered = [...view.faces.keys()].sort((a, b) => a - b).map((id) => view.faces.get(id));
    strip.replaceChildren(...(ordered.length ? ordered : [Object.assign(document.createElement("span"),
      { className: "g-empty", textContent: "no faces tracked yet" })]));
  }

  function updateSummary() {
    const n = cams.size;
    const live = [...cams.values()].filter((v) => v.node.classList.contains("live")).length;
    summary.textContent = `${n} camera${n === 1 ? "" : "s"} · ${live} streaming · `
      + `${(serverInfo.codec || "").toUpperCase()} up to ${(serverInfo.bitrate_kbps / 1000).toFixed(1)} Mbit/s`
      + (rendition ? ` · ${rendition} rendition` : "");
  }

  function ensureCameras(list) {
    for (const info of list) {
      let view = cams.get(info.name);
      if (!view) {
        view = makeCard(info);
        cams.set(info.name, view);
        connect(view);
      } else {
        updateInfo(view, info);
      }
    }
    updateSummary();
  }

  function openSocket() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/ws?token=${encodeURIComponent(token)}`);
    ws.addEventListener("open", () => { link.textContent = "live"; link.className = "pill pill-on"; });
    ws.addEventListener("close", () => {
      link.textContent = "offline";
      link.className = "pill pill-off";
      setTimeout(openSocket, 2000);
    });
    ws.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "hello") {
        serverInfo = {
          codec: msg.codec,
          bitrate_kbps: msg.renditions?.[rendition] ?? msg.bitrate_kbps,
          settings: msg.settings,
        };
        ensureCameras(msg.cameras);
      } else if (msg.type === "frame") {
        const view = cams.get(msg.camera);
        if (view) {
          view.meta = msg;
          const now = performance.now();
          view.metaHistory.push({ t: now, m: msg });
          while (view.metaHistory.length && view.metaHistory[0].t < now - 3000) view.metaHistory.shift();
        }
      } else if (msg.type === "status") {
        for (const info of msg.cameras) {
          const view = cams.get(info.name);
          if (view) updateInfo(view, info);
        }
      } else if (msg.type === "faces") {
        const view = cams.get(msg.camera);
        if (view) renderFaces(view, msg.faces);
      }
    });
  }

  setInterval(() => {
    for (const view of cams.values()) {
      pollStats(view).catch(() => {});
      renderStats(view);
    }
    updateSummary();
  }, 500);
  setInterval(() => cams.forEach(drawOverlay), 66);
  window.addEventListener("resize", () => cams.forEach(drawOverlay));
  openSocket();
})();
