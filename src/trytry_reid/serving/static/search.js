"use strict";
// Search page: posts the chosen file (or a clicked gallery id) to /api/search and shows the ranking.

const statusLine = document.getElementById("status");
const resultsBox = document.getElementById("results");

function showStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

function figure(item) {
  const fig = document.createElement("figure");
  fig.className = "result";
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
  return fig;
}

async function searchWith(file, galleryId, previewUrl) {
  const body = new FormData();
  if (file) body.append("image", file);
  else body.append("gallery_id", String(galleryId));
  body.append("k", document.getElementById("k").value);
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
  resultsBox.replaceChildren(...payload.map(figure));
  showStatus(`${payload.length} matches (distance = 1 - cosine similarity)`, false);
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = document.getElementById("query-file").files[0];
  if (!file) { showStatus("choose a query image first", true); return; }
  searchWith(file, null, URL.createObjectURL(file));
});

fetch("/api/health").then((r) => r.json()).then((h) => {
  document.getElementById("health").textContent = `${h.gallery_size} gallery images, ${h.dim}-d, ${h.backend}`;
  document.getElementById("k").max = h.max_k;
  if (h.eval_rows === null) document.getElementById("eval-link").hidden = true;
});
