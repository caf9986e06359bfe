"use strict";
// Evaluation view: queries sorted by AP, each with its ranking row; click a row for its details.

const PAGE = 25;
let order = "ascending";
let rows = [];
let shown = 0;
const list = document.getElementById("eval-rows");
const moreButton = document.getElementById("more-button");

function cell(url, name, className, label) {
  const fig = document.createElement("figure");
  fig.className = className;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.src = url;
  img.alt = name;
  const caption = document.createElement("figcaption");
  caption.textContent = label;
  fig.append(img, caption);
  return fig;
}

function rowElement(row) {
  const div = document.createElement("div");
  div.className = "eval-row";
  div.dataset.row = row.row;
  const ap = document.createElement("div");
  ap.className = "ap";
  ap.textContent = `AP ${row.ap.toFixed(3)}` + (row.ap_source === "file" ? "" : "*");
  div.append(ap, cell(row.query_url, row.query_name, "query", "query"));
  for (const item of row.items) {
    div.append(cell(item.url, item.name, item.match ? "match" : "miss", item.distance.toFixed(3)));
  }
  div.addEventListener("click", () => showDetail(row, div));
  return div;
}

function showDetail(row, div) {
  for (const other of list.querySelectorAll(".selected")) other.classList.remove("selected");
  div.classList.add("selected");
  document.getElementById("detail-title").textContent =
    `${row.query_name} (id ${row.query_pid ?? "?"}), AP ${row.ap.toFixed(4)}`;
  const body = document.querySelector("#detail-table tbody");
  body.replaceChildren(...row.items.map((item) => {
    const tr = document.createElement("tr");
    for (const value of [item.rank, item.name, item.distance.toFixed(4), item.match ? "yes" : "no"]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
  document.getElementById("detail").hidden = false;
}

function showMore() {
  list.append(...rows.slice(shown, shown + PAGE).map(rowElement));
  shown = Math.min(rows.length, shown + PAGE);
  moreButton.hidden = shown >= rows.length;
}

async function load() {
  const response = await fetch(`/api/eval?order=${order}`);
  const payload = await response.json();
  const status = document.getElementById("status");
  if (!response.ok) { status.textContent = payload.detail; status.className = "error"; return; }
  rows = payload;
  shown = 0;
  list.replaceChildren();
  showMore();
  const mean = rows.reduce((s, r) => s + r.ap, 0) / Math.max(1, rows.length);
  document.getElementById("eval-summary").textContent = `${rows.length} queries, mean AP ${mean.toFixed(3)}`
    + (rows.some((r) => r.ap_source !== "file") ? " (* AP of the shown row only)" : "");
}

document.getElementById("sort-button").addEventListener("click", (event) => {
  order = order === "ascending" ? "descending" : "ascending";
  event.target.textContent = order === "ascending" ? "Sort: worst AP first" : "Sort: best AP first";
  load();
});
moreButton.addEventListener("click", showMore);
load();
