// genrekit page: upload files to /api/predict (two at a time), list the answers in a sortable table that
// downloads as CSV / JSON, and show one track in detail with a player that moves along its timeline.
// No external resources; the audio plays from the user's own file (a blob: URL), never from the server.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"];
const PARALLEL = 2;  // the server's default --workers: more in flight would only queue there
const $ = (id) => document.getElementById(id);
let genres = [];
let maxUploadMb = null;
let libraryTracks = 0;  // the server's --library size: > 0 turns on the "similar" panel
let rows = [];          // {id, name, file, status: queued|working|done|error, rec, error}
let nextId = 1;
let sortKey = null;
let sortDir = 1;
let selected = null;    // the row shown in detail
let objectUrl = null;   // the selected file's blob: URL for the player
let queue = [];
let running = 0;
let batchErrors = [];
let batchShown = false;

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
}

function clearOutput() {
  $("error").hidden = true;
  $("error").textContent = "";
  $("result").hidden = true;
  selected = null;
  stopPlayer();
}

async function loadInfo() {
  try {
    const [g, h] = await Promise.all([fetch("/api/genres"), fetch("/api/health")]);
    genres = (await g.json()).genres || [];
    const health = await h.json();
    maxUploadMb = health.max_upload_mb;
    libraryTracks = (health.library && health.library.tracks) || 0;
    const mins = health.max_duration_min ? ` and ${health.max_duration_min} minutes` : "";
    $("limits").textContent = `wav, flac, ogg, mp3, m4a, opus, … up to ${maxUploadMb} MB${mins} each, ` +
      `several at once. ` +
      `Genres: ${genres.join(", ")}.`;
  } catch (e) {
    showError("The genrekit server is not answering: " + e);
  }
}

// ------------------------------------------------------------------------------------ one track in detail
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

function trackSeconds(rec) {
  const segs = rec.segments || [];
  return rec.duration_s || (segs.length ? segs[segs.length - 1].end : 0);
}

function drawTimeline(rec) {
  const tl = $("timeline");
  tl.replaceChildren();
  const segs = rec.segments || [];
  const used = new Set();
  segs.forEach((s, i) => {
    const d = document.createElement("div");
    d.className = "seg";
    d.dataset.index = String(i);
    d.style.flexGrow = String(Math.max(s.end - s.start, 0.001));
    d.style.flexBasis = "0";
    if (s.silent) {  // below the silence threshold: not classified
      d.dataset.silent = "true";
      d.style.background = "#ddd";
      d.title = `${fmtTime(s.start)}–${fmtTime(s.end)}: silent`;
      tl.appendChild(d);
      return;
    }
    d.dataset.genre = s.genre;
    d.style.background = colour(s.genre);
    const p = Math.max(...Object.values(s.scores));
    d.title = `${fmtTime(s.start)}–${fmtTime(s.end)}: ${s.genre} (${(100 * p).toFixed(0)}%)`;
    tl.appendChild(d);
    used.add(s.genre);
  });
  $("axis-end").textContent = fmtTime(trackSeconds(rec));
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

function render(row) {
  const rec = row.rec;
  selected = row;
  const g = $("genre");
  g.textContent = rec.genre;
  g.dataset.genre = rec.genre;
  const tags = tagText(rec);
  const styles = styleText(rec, true);
  $("meta").textContent = `${rec.file} · ${fmtTime(rec.duration_s)} · ` +
    `${(rec.segments || []).length} windows` + (tags ? ` · tags: ${tags}` : "") +
    (styles ? ` · styles: ${styles}` : "") + (rec.uncertain ? " · uncertain (nearest GTZAN genre)" : "");
  drawBars(rec);
  drawSpectrogram(rec);
  drawTimeline(rec);
  drawSimilar(rec);
  startPlayer(row);
  $("result").hidden = false;
  drawTable();
}

function drawSimilar(rec) {
  const ol = $("similar");
  ol.replaceChildren();
  const near = rec.similar || [];
  for (const n of near) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "file";
    name.textContent = n.file;
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * n.similarity).toFixed(1)}%`;
    li.append(name, pct);
    ol.appendChild(li);
  }
  $("similar-box").hidden = !rec.similar;
}

// ------------------------------------------------------------------------------------ the player
function stopPlayer() {
  const player = $("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = null;
  $("cursor").hidden = true;
  $("spec-cursor").hidden = true;
  $("now").textContent = "";
}

function startPlayer(row) {
  stopPlayer();
  objectUrl = URL.createObjectURL(row.file);
  $("player").src = objectUrl;
  follow();
}

function segmentAt(rec, t) {
  const segs = rec.segments || [];
  for (let i = 0; i < segs.length; i++) {
    if (t >= segs[i].start && t < segs[i].end) return i;
  }
  return segs.length && t >= segs[segs.length - 1].end ? segs.length - 1 : -1;
}

// Move the cursors to the player's position and mark the window being heard.
function follow() {
  if (!selected || !selected.rec) return;
  const rec = selected.rec;
  const total = trackSeconds(rec);
  const t = $("player").currentTime || 0;
  const frac = total > 0 ? Math.min(Math.max(t / total, 0), 1) : 0;
  for (const id of ["cursor", "spec-cursor"]) {
    const c = $(id);
    c.style.left = `${(100 * frac).toFixed(3)}%`;
    c.hidden = false;
  }
  const i = segmentAt(rec, t);
  for (const el of $("timeline").children) el.classList.toggle("now", el.dataset.index === String(i));
  const box = $("timeline-box");
  box.dataset.position = t.toFixed(2);
  box.dataset.segment = String(i);
  if (i >= 0) {
    const s = rec.segments[i];
    if (s.silent) {
      $("now").textContent = `${fmtTime(t)}: silent`;
    } else {
      const p = Math.max(...Object.values(s.scores));
      $("now").textContent = `${fmtTime(t)}: ${s.genre} (${(100 * p).toFixed(0)}%)`;
    }
  }
}

function tick() {
  follow();
  if (!$("player").paused) requestAnimationFrame(tick);
}

function seekFromClick(ev, el) {
  if (!selected || !selected.rec) return;
  const r = el.getBoundingClientRect();
  const frac = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1);
  const player = $("player");
  player.currentTime = frac * trackSeconds(selected.rec);
  follow();
  player.play().catch(() => {});
}

// ------------------------------------------------------------------------------------ the results table
function tagText(rec) {
  const tags = rec && rec.tags;
  if (!tags) return "";
  return tags.slice(0, 5).map((t) => (Array.isArray(t) ? t[0] : (t.tag || t.name || t))).join(", ");
}

// the record's AudioSet styles ([[name, p], ...], calibrated), with percentages on the result card
function styleText(rec, withP = false) {
  const styles = rec && rec.styles;
  if (!styles) return "";
  return styles.map((s) => (withP ? `${s[0]} ${Math.round(100 * s[1])}%` : s[0])).join(", ");
}

function confidence(rec) {
  return rec && rec.scores ? Math.max(...Object.values(rec.scores)) : null;
}

function sortValue(row, key) {
  const rec = row.rec;
  switch (key) {
    case "name": return row.name.toLowerCase();
    case "genre": return rec ? rec.genre : "";
    case "confidence": return confidence(rec) ?? -1;
    case "duration": return rec ? rec.duration_s : -1;
    case "tags": return tagText(rec);
    case "status": return row.status;
    default: return row.id;
  }
}

function sortedRows() {
  if (!sortKey) return rows.slice();
  return rows.slice().sort((a, b) => {
    const x = sortValue(a, sortKey), y = sortValue(b, sortKey);
    return (x < y ? -1 : x > y ? 1 : a.id - b.id) * sortDir;
  });
}

function drawTable() {
  const body = $("results-body");
  body.replaceChildren();
  const anyTags = rows.some((r) => tagText(r.rec));
  $("results-table").classList.toggle("no-tags", !anyTags);
  for (const row of sortedRows()) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(row.id);
    tr.className = `row-${row.status}` + (row === selected ? " selected" : "");
    const rec = row.rec;
    const c = confidence(rec);
    const cells = [
      row.name,
      rec ? rec.genre : "",
      c === null ? "" : `${(100 * c).toFixed(1)}%`,
      rec ? fmtTime(rec.duration_s) : "",
      tagText(rec),
      row.status === "error" ? row.error : row.status,
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 2 || i === 3) td.className = "num";
      if (i === 4) td.classList.add("tags-col");
      if (i === 1 && rec) { td.dataset.genre = rec.genre; td.style.borderLeft = `4px solid ${colour(rec.genre)}`; }
      tr.appendChild(td);
    });
    if (row.status === "done") {
      tr.tabIndex = 0;
      tr.addEventListener("click", () => render(row));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") render(row); });
    }
    body.appendChild(tr);
  }
  for (const th of document.querySelectorAll("#results-table th")) {
    const key = th.querySelector("button").dataset.key;
    th.setAttribute("aria-sort", key !== sortKey ? "none" : sortDir > 0 ? "ascending" : "descending");
  }
  $("results").hidden = rows.length === 0;
  const done = rows.filter((r) => r.status === "done" || r.status === "error").length;
  $("status").textContent = running || queue.length ? `Classifying… ${done} of ${rows.length} done` : "";
}

// ------------------------------------------------------------------------------------ downloads
function csvCell(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportRecords() {
  return rows.map((r) => {
    if (!r.rec) return { file: r.name, genre: null, scores: null, error: r.error || r.status };
    const { spectrogram, ...rec } = r.rec;  // the images stay on the page
    return rec;
  });
}

function toCsv() {
  const gs = genres.length ? genres : [...new Set(rows.flatMap((r) => Object.keys((r.rec && r.rec.scores) || {})))];
  const head = ["file", "genre", "confidence", "duration_s", ...gs, "tags", "styles", "error"];
  const lines = [head.map(csvCell).join(",")];
  for (const r of rows) {
    const rec = r.rec;
    const c = confidence(rec);
    lines.push([r.name, rec ? rec.genre : "", c === null ? "" : c.toFixed(6), rec ? rec.duration_s : "",
                ...gs.map((g) => (rec && rec.scores && g in rec.scores ? rec.scores[g].toFixed(6) : "")),
                tagText(rec), styleText(rec), r.status === "error" ? r.error : ""].map(csvCell).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ------------------------------------------------------------------------------------ uploads
function addFiles(files) {
  if (!files.length) return;
  clearOutput();
  batchErrors = [];
  batchShown = false;
  for (const file of files) {
    const row = { id: nextId++, name: file.name, file, status: "queued", rec: null, error: null };
    rows.push(row);
    if (maxUploadMb && file.size > maxUploadMb * 1024 * 1024) {
      fail(row, `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${maxUploadMb} MB.`);
    } else {
      queue.push(row);
    }
  }
  drawTable();
  pump();
}

function fail(row, message) {
  row.status = "error";
  row.error = message;
  row.file = null;  // nothing to play
  batchErrors.push(message);
  showError(batchErrors.join("\n\n"));
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const row = queue.shift();
    running++;
    classify(row).finally(() => { running--; drawTable(); pump(); });
  }
}

async function classify(row) {
  row.status = "working";
  drawTable();
  const form = new FormData();
  form.append("file", row.file, row.name);
  const k = Math.max(genres.length, 1);
  let res, body;
  try {
    const near = libraryTracks ? "&similar=10" : "";
    res = await fetch(`/api/predict?segments=true&spectrogram=true&top_k=${k}${near}`, { method: "POST", body: form });
    body = await res.json().catch(() => ({}));
  } catch (e) {
    fail(row, `Upload of ${row.name} failed: ${e}`);
    return;
  }
  if (!res.ok) {
    const why = body.error || res.statusText;
    const silent = res.status === 422 && /no audible signal/.test(why);
    const hint = silent ? "There is no music in this file: it is silent or nearly so." :
      { 413: "The file is too large or too long.", 415: "This is not an audio file genrekit can decode.",
        422: "The request was not valid.", 503: "The server could not finish this file in time." }[res.status] ||
      `Server error ${res.status}.`;
    fail(row, `${hint}\n${why}`);
    return;
  }
  row.status = "done";
  row.rec = body;
  if (!batchShown) {  // the batch's first answer opens in detail; others wait for a click
    batchShown = true;
    render(row);
  }
}

function setup() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => { const fs = [...input.files]; input.value = ""; addFiles(fs); });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => addFiles([...((e.dataTransfer && e.dataTransfer.files) || [])]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  for (const b of document.querySelectorAll("#results-table th button")) {
    b.addEventListener("click", () => {
      const key = b.dataset.key;
      sortDir = key === sortKey ? -sortDir : (key === "confidence" || key === "duration" ? -1 : 1);
      sortKey = key;
      drawTable();
    });
  }
  $("download-csv").addEventListener("click", () => download("genrekit-results.csv", "text/csv", toCsv()));
  $("download-json").addEventListener("click", () =>
    download("genrekit-results.json", "application/json", JSON.stringify(exportRecords(), null, 2) + "\n"));
  $("clear").addEventListener("click", () => { rows = []; queue = []; clearOutput(); drawTable(); });
  const player = $("player");
  player.addEventListener("play", () => requestAnimationFrame(tick));
  for (const ev of ["timeupdate", "seeked", "loadedmetadata"]) player.addEventListener(ev, follow);
  $("timeline").addEventListener("click", (e) => seekFromClick(e, $("timeline")));
  $("spectrogram").addEventListener("click", (e) => seekFromClick(e, $("spectrogram")));
  loadInfo();
}

setup();
