"use strict";
// Search page: posts the chosen file (or a clicked gallery id) to /api/search and shows the ranking, each
// result's distance against the threshold (a bar and a badge), and "no match in the gallery" when none passes.

const statusLine = document.getElementById("status");
const resultsBox = document.getElementById("results");

function showStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

// A bar whose full width is twice the threshold: the marker in the middle is the threshold itself.
function thresholdBar(item, threshold) {
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.className = "fill";
  const ratio = threshold > 0 ? item.distance / threshold : (item.distance > 0 ? 2 : 0);
  fill.style.width = `${Math.min(100, 50 * ratio).toFixed(1)}%`;
  const mark = document.createElement("span");
  mark.className = "mark";
  bar.append(fill, mark);
  bar.title = `distance ${item.distance.toFixed(4)} vs threshold ${threshold.toFixed(4)}`;
  return bar;
}

function badge(item) {
  const span = document.createElement("span");
  span.className = item.within ? "badge within" : "badge beyond";
  span.textContent = item.within ? "match" : "beyond threshold";
  return span;
}

function figure(item, threshold) {
  const fig = document.createElement("figure");
  fig.className = item.within === null ? "result" : `result ${item.within ? "within" : "beyond"}`;
  fig.dataset.id = item.id;
  const img = document.createElement("img");
  img.src = item.url;
  img.alt = item.name;
  img.title = "search with this image";
  img.addEventListener("click", () => searchWith(null, item.id, item.url));
  const caption = document.createElement("figcaption");
  caption.innerHTML = `<b>#${item.rank}</b> <span class="distance">${item.distance.toFixed(4)}</span><br>`;
  caption.appendChild(document.createTextNode(item.name));
  fig.append(img, caption);
  if (item.within !== null) fig.append(thresholdBar(item, threshold), badge(item));
  return fig;
}

function describeThreshold(t) {
  if (t.threshold === null) return "no threshold (ranking only)";
  const rates = t.fpr === null ? "" : `, FPR ${t.fpr.toExponential(1)} / TPR ${t.tpr.toFixed(3)} on ${t.dataset}`;
  return `threshold ${t.threshold.toFixed(4)} (${t.source}${rates})`;
}

async function searchWith(file, galleryId, previewUrl) {
  const body = new FormData();
  if (file) body.append("image", file);
  else body.append("gallery_id", String(galleryId));
  body.append("k", document.getElementById("k").value);
  body.append("threshold", document.getElementById("threshold").value);
  document.getElementById("query-preview").src = previewUrl;
  document.getElementById("query-box").hidden = false;
  showStatus("searching…", false);
  const response = await fetch("/api/search", { method: "POST", body });
  const payload = await response.json();
  if (!response.ok) {
    resultsBox.replaceChildren();
    showStatus(`error ${response.status}: ${payload.detail}`, true);
    return;
  }
  const t = payload.threshold;
  resultsBox.replaceChildren(...payload.results.map((item) => figure(item, t.threshold)));
  const verdict = document.getElementById("verdict");
  verdict.className = payload.unknown === null ? "" : (payload.unknown ? "unknown" : "known");
  if (payload.unknown === null) verdict.textContent = "";
  else if (payload.unknown) verdict.textContent = "no match in the gallery: no result is within the threshold";
  else verdict.textContent = `${payload.results.filter((r) => r.within).length} of ${payload.results.length} ` +
    "results within the threshold";
  showStatus(`${payload.results.length} results (distance = 1 - cosine similarity); ${describeThreshold(t)}`, false);
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = document.getElementById("query-file").files[0];
  if (!file) { showStatus("choose a query image first", true); return; }
  searchWith(file, null, URL.createObjectURL(file));
});

fetch("/api/health").then(async (r) => {
  const h = await r.json();
  if (!r.ok) { showStatus(`error ${r.status}: ${h.detail}`, true); return; }
  document.getElementById("health").textContent = `${h.gallery_size} gallery images, ${h.dim}-d, ${h.backend}; ` +
    describeThreshold(h.threshold);
  document.getElementById("k").max = h.max_k;
  if (h.eval_rows === null) document.getElementById("eval-link").hidden = true;
});
