// genrekit page: upload one file to /api/predict and draw the answer. No external resources.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"];
const $ = (id) => document.getElementById(id);
let genres = [];
let maxUploadMb = null;

function colour(genre) {
  const i = genres.indexOf(genre);
  return PALETTE[(i < 0 ? genres.length : i) % PALETTE.length];
}

function fmtTime(s) {
  const m = Math.floor(s / 60), r = Math.round(s - 60 * m);
  return m ? `${m}:${String(r).padStart(2, "0")}` : `${r} s`;
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = false;
  $("status").textContent = "";
}

function clearOutput() {
  $("error").hidden = true;
  $("error").textContent = "";
  $("result").hidden = true;
}

async function loadInfo() {
  try {
    const [g, h] = await Promise.all([fetch("/api/genres"), fetch("/api/health")]);
    genres = (await g.json()).genres || [];
    const health = await h.json();
    maxUploadMb = health.max_upload_mb;
    const mins = health.max_duration_min ? ` and ${health.max_duration_min} minutes` : "";
    $("limits").textContent = `wav, flac, ogg, mp3, m4a, opus, … up to ${maxUploadMb} MB${mins}. ` +
      `Genres: ${genres.join(", ")}.`;
  } catch (e) {
    showError("The genrekit server is not answering: " + e);
  }
}

function drawBars(rec) {
  const ol = $("bars");
  ol.replaceChildren();
  const ranked = Object.entries(rec.scores).sort((a, b) => b[1] - a[1]);
  for (const [g, s] of ranked) {
    const li = document.createElement("li");
    li.dataset.genre = g;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = g;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * s).toFixed(2)}%`;
    fill.style.background = colour(g);
    track.appendChild(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * s).toFixed(1)}%`;
    li.append(name, track, pct);
    ol.appendChild(li);
  }
}

function drawTimeline(rec) {
  const tl = $("timeline");
  tl.replaceChildren();
  const segs = rec.segments || [];
  const total = rec.duration_s || (segs.length ? segs[segs.length - 1].end : 0);
  const used = new Set();
  for (const s of segs) {
    const d = document.createElement("div");
    d.className = "seg";
    d.style.flexGrow = String(Math.max(s.end - s.start, 0.001));
    d.style.flexBasis = "0";
    if (s.silent) {  // below the silence threshold: not classified
      d.dataset.silent = "true";
      d.style.background = "#ddd";
      d.title = `${fmtTime(s.start)}–${fmtTime(s.end)}: silent`;
      tl.appendChild(d);
      continue;
    }
    d.dataset.genre = s.genre;
    d.style.background = colour(s.genre);
    const p = Math.max(...Object.values(s.scores));
    d.title = `${fmtTime(s.start)}–${fmtTime(s.end)}: ${s.genre} (${(100 * p).toFixed(0)}%)`;
    tl.appendChild(d);
    used.add(s.genre);
  }
  $("axis-end").textContent = fmtTime(total);
  const legend = $("legend");
  legend.replaceChildren();
  const entries = genres.filter((x) => used.has(x)).map((g) => [g, colour(g)]);
  if (segs.some((s) => s.silent)) entries.push(["silent (not classified)", "#ddd"]);
  for (const [label, bg] of entries) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = bg;
    li.append(sw, document.createTextNode(label));
    legend.appendChild(li);
  }
}

function drawSpectrogram(rec) {
  const spec = rec.spectrogram;
  const img = $("spectrogram");
  if (!spec) { img.removeAttribute("src"); return; }
  img.src = spec.image;
  $("spec-caption").textContent = `${spec.n_mels} mel bands, 0–${Math.round(spec.fmax_hz / 1000)} kHz ` +
    `(low at the bottom), ${fmtTime(spec.duration_s)} left to right.`;
}

function render(rec) {
  const g = $("genre");
  g.textContent = rec.genre;
  g.dataset.genre = rec.genre;
  $("meta").textContent = `${rec.file} · ${fmtTime(rec.duration_s)} · ` +
    `${(rec.segments || []).length} windows`;
  drawBars(rec);
  drawSpectrogram(rec);
  drawTimeline(rec);
  $("result").hidden = false;
}

async function upload(file) {
  clearOutput();
  if (!file) return;
  if (maxUploadMb && file.size > maxUploadMb * 1024 * 1024) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${maxUploadMb} MB.`);
    return;
  }
  $("status").textContent = `Classifying ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  const k = Math.max(genres.length, 1);
  let res, body;
  try {
    res = await fetch(`/api/predict?segments=true&spectrogram=true&top_k=${k}`, { method: "POST", body: form });
    body = await res.json().catch(() => ({}));
  } catch (e) {
    showError(`Upload of ${file.name} failed: ${e}`);
    return;
  }
  if (!res.ok) {
    const why = body.error || res.statusText;
    const silent = res.status === 422 && /no audible signal/.test(why);
    const hint = silent ? "There is no music in this file: it is silent or nearly so." :
      { 413: "The file is too large or too long.", 415: "This is not an audio file genrekit can decode.",
        422: "The request was not valid.", 503: "The server could not finish this file in time." }[res.status] ||
      `Server error ${res.status}.`;
    showError(`${hint}\n${why}`);
    return;
  }
  $("status").textContent = "";
  render(body);
}

function setup() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => { const f = input.files[0]; input.value = ""; upload(f); });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) upload(f);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  loadInfo();
}

setup();
