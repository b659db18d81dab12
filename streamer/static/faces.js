// facestream face timeline: tracks newest first, their best faces, one click to the original.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const q = (id) => document.getElementById(id);
  const list = q("list"), more = q("more"), camSel = q("f-camera"), download = q("download");
  const selected = new Set();
  const faces = new Map();  // face id -> {face, track}
  let next = null;
  window.facestream = { selected, faces };

  const withToken = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
  const when = (t) => new Date(t * 1000).toLocaleString();
  const span = (a, b) => {
    const s = Math.max(0, b - a);
    return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  };
  const seconds = (input) => (input.value ? new Date(input.value).getTime() / 1000 : 0);

  async function load(append) {
    const params = new URLSearchParams({ limit: "24" });
    if (camSel.value) params.set("camera", camSel.value);
    const since = seconds(q("f-since")), until = seconds(q("f-until"));
    if (since) params.set("since", String(since));
    if (until) params.set("until", String(until));
    if (append && next) params.set("cursor", next);
    const r = await fetch(`/api/faces?${params}`, { headers: { Authorization: `Bearer ${token}` } });
    const text = await r.text();
    if (!r.ok) {
      list.replaceChildren(Object.assign(document.createElement("p"),
        { className: "empty", textContent: text.replace(/^\d+:\s*/, "") }));
      q("summary").textContent = "";
      return;
    }
    const page = JSON.parse(text);
    q("note").textContent = page.note;
    const health = q("health");
    health.textContent = page.healthy ? "saving" : "not saving";
    health.className = `pill ${page.healthy ? "pill-on" : "pill-off"}`;
    for (const cam of page.cameras) {
      if (![...camSel.options].some((o) => o.value === cam)) camSel.add(new Option(cam, cam));
    }
    if (!append) list.replaceChildren();
    for (const track of page.items) list.appendChild(trackCard(track));
    next = page.next;
    more.hidden = !next;
    const shown = list.querySelectorAll(".track").length;
    q("end").textContent = next ? "" : shown ? "end of the timeline" : "";
    if (!shown) {
      list.appendChild(Object.assign(document.createElement("p"),
        { className: "empty", textContent: "no faces kept for this camera and time" }));
    }
    q("summary").textContent = `${shown} track${shown === 1 ? "" : "s"} shown`;
  }

  function trackCard(track) {
    const node = q("track-tpl").content.firstElementChild.cloneNode(true);
    node.dataset.track = String(track.track);
    node.querySelector(".t-cam").textContent = track.camera;
    node.querySelector(".t-id").textContent = `track #${track.track_id}`;
    node.querySelector(".t-time").textContent =
      `${when(track.first_seen)} · seen ${span(track.first_seen, track.last_seen)}`;
    const shots = node.querySelector(".shots");
    for (const face of track.faces) {
      faces.set(face.id, { face, track });
      const fig = document.createElement("figure");
      fig.className = "shot";
      fig.dataset.face = String(face.id);
      const img = document.createElement("img");
      img.src = withToken(face.enhanced_url);
      img.alt = `enhanced face ${face.id}`;
      img.title = "AI-enhanced: a reconstruction. Click to compare with the original.";
      // A face that a better one replaced is served for ten minutes more (REPLACED_KEEP_S); a page
      // left open longer finds it gone.
      img.addEventListener("error", () => {
        fig.classList.add("gone");
        fig.title = "replaced by a better face of this track: press Show to refresh";
      });
      const box = document.createElement("input");
      box.type = "checkbox";
      box.title = "select for download";
      box.checked = selected.has(face.id);
      fig.classList.toggle("selected", box.checked);
      box.addEventListener("click", (e) => {
        e.stopPropagation();
        if (box.checked) selected.add(face.id); else selected.delete(face.id);
        fig.classList.toggle("selected", box.checked);
        updateSelection();
      });
      const badge = Object.assign(document.createElement("span"), { className: "badge", textContent: "AI-enhanced" });
      const score = Object.assign(document.createElement("span"),
        { className: "score", textContent: `score ${face.score.toFixed(2)}` });
      fig.append(img, box, badge, score);
      fig.addEventListener("click", () => openFace(face.id));
      shots.appendChild(fig);
    }
    return node;
  }

  function updateSelection() {
    q("sel-count").textContent = `${selected.size} selected`;
    download.classList.toggle("disabled", selected.size === 0);
    download.href = selected.size
      ? withToken(`/api/faces/download?ids=${[...selected].sort((a, b) => a - b).join(",")}`) : "#";
  }

  function openFace(id) {
    const { face, track } = faces.get(id);
    q("v-title").textContent = `${track.camera} · track #${track.track_id} · face ${face.id}`;
    q("v-orig").src = withToken(face.original_url);
    q("v-enh").src = withToken(face.enhanced_url);
    q("v-osize").textContent = `${face.original_size} px`;
    q("v-esize").textContent = `${face.enhanced_size}×${face.enhanced_size} px`;
    const rows = [
      ["seen", when(face.seen)],
      ["track", `${when(track.first_seen)} → ${when(track.last_seen)}`],
      ["engine", face.engine],
      ["score", `${face.score} (frontal ${face.frontal}, sharpness ${face.sharpness})`],
      ["enhanced", "yes: detail may be invented by the model"],
    ];
    const cells = rows.flatMap(([k, v]) => [
      Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: v }),
    ]);
    if (face.recording) {  // the second of recording this face was seen in (--record-dir)
      const link = Object.assign(document.createElement("a"), {
        href: `${withToken(face.recording.url)}#t=${face.recording.offset_s}`,
        textContent: `open at ${face.recording.offset_s.toFixed(1)} s`,
        target: "_blank",
      });
      const dd = document.createElement("dd");
      dd.append(link);
      cells.push(Object.assign(document.createElement("dt"), { textContent: "recording" }), dd);
    }
    q("v-meta").replaceChildren(...cells);
    q("viewer").hidden = false;
  }

  q("v-close").addEventListener("click", () => { q("viewer").hidden = true; });
  q("viewer").addEventListener("click", (e) => { if (e.target === q("viewer")) q("viewer").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") q("viewer").hidden = true; });
  q("filters").addEventListener("submit", (e) => { e.preventDefault(); next = null; load(false); });
  q("sel-none").addEventListener("click", () => {
    selected.clear();
    document.querySelectorAll(".shot").forEach((f) => {
      f.classList.remove("selected");
      f.querySelector("input").checked = false;
    });
    updateSelection();
  });
  more.addEventListener("click", () => load(true));
  updateSelection();
  load(false);
})();
