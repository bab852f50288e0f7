// modalens search page: words, a photo (click or drag and drop), filters, paging, "more like this".
"use strict";

const PAGE_SIZE = 12;
const state = { mode: null, query: "", photo: null, similarTo: null, offset: 0 };
const $ = (id) => document.getElementById(id);

function filters() {
  const out = {};
  for (const select of document.querySelectorAll("#filters select")) {
    if (select.value) out[select.dataset.field] = [select.value];
  }
  return out;
}

async function fetchJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function request() {
  const k = PAGE_SIZE + 1; // one extra tells whether a next page exists
  if (state.mode === "similar") {
    return fetchJSON(`/api/products/${encodeURIComponent(state.similarTo)}/similar?k=${k}&offset=${state.offset}`);
  }
  if (state.mode === "photo") {
    const form = new FormData();
    form.append("image", state.photo);
    if (state.query) form.append("q", state.query);
    form.append("k", k);
    form.append("offset", state.offset);
    form.append("filters", JSON.stringify(filters()));
    return fetchJSON("/api/search/image", { method: "POST", body: form });
  }
  return fetchJSON("/api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ q: state.query, k, offset: state.offset, filters: filters() }),
  });
}

function describe() {
  if (state.mode === "similar") return `more like ${state.similarTo}`;
  const parts = [];
  if (state.photo) parts.push(`photo “${state.photo.name}”`);
  if (state.query) parts.push(`“${state.query}”`);
  return parts.join(" + ");
}

async function run() {
  if (!state.mode) return;
  const status = $("status");
  status.classList.remove("error");
  status.textContent = "Searching…";
  try {
    const data = await request();
    const results = data.results.slice(0, PAGE_SIZE);
    render(results);
    const first = state.offset + 1;
    status.textContent = results.length
      ? `Results ${first}–${state.offset + results.length} for ${describe()} (${data.took_ms} ms)`
      : `No results for ${describe()}`;
    $("pager").hidden = !(state.offset > 0 || data.results.length > PAGE_SIZE);
    $("prev").disabled = state.offset === 0;
    $("next").disabled = data.results.length <= PAGE_SIZE;
    $("page-label").textContent = `Page ${state.offset / PAGE_SIZE + 1}`;
  } catch (err) {
    status.classList.add("error");
    status.textContent = `Search failed — ${err.message}`;
  }
}

function render(results) {
  const grid = $("results");
  grid.replaceChildren();
  const template = $("card-template");
  for (const item of results) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = item.id;
    card.querySelector("img").src = item.image_url || "";
    card.querySelector("img").alt = item.title;
    card.querySelector(".title").textContent = item.title || item.id;
    card.querySelector(".attrs").textContent = ["gender", "article_type", "colour", "season", "usage"]
      .map((key) => item.attributes[key]).filter(Boolean).join(" · ");
    card.querySelector(".score").textContent = `score ${item.score.toFixed(3)}`;
    card.querySelector(".similar").addEventListener("click", () => {
      Object.assign(state, { mode: "similar", similarTo: item.id, offset: 0 });
      run();
    });
    grid.appendChild(card);
  }
}

function setPhoto(file) {
  state.photo = file;
  $("drop-zone").classList.toggle("has-photo", Boolean(file));
  $("photo-label").textContent = file ? `Photo: ${file.name.slice(0, 18)}` : "Search by photo";
  $("clear-photo").hidden = !file;
}

function submit() {
  state.query = $("query").value.trim();
  state.offset = 0;
  state.mode = state.photo ? "photo" : state.query ? "text" : null;
  if (!state.mode) {
    $("status").textContent = "Type some words or drop a photo to search the catalogue.";
    return;
  }
  run();
}

async function loadFacets() {
  try {
    const facets = await fetchJSON("/api/facets");
    for (const select of document.querySelectorAll("#filters select")) {
      for (const { value, count } of facets[select.dataset.field] || []) {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = `${value} (${count})`;
        select.appendChild(option);
      }
    }
  } catch (err) {
    $("status").textContent = `Filters unavailable — ${err.message}`;
  }
}

function wire() {
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("photo").addEventListener("change", (event) => { setPhoto(event.target.files[0] || null); submit(); });
  $("clear-photo").addEventListener("click", () => { $("photo").value = ""; setPhoto(null); submit(); });
  for (const select of document.querySelectorAll("#filters select")) {
    select.addEventListener("change", () => {
      if (state.mode === "similar") state.mode = state.photo ? "photo" : "text";
      state.offset = 0;
      run();
    });
  }
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); run(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; run(); });
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("drag"); });
  }
  for (const name of ["dragleave", "drop"]) {
    document.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove("drag"); });
  }
  document.addEventListener("drop", (event) => {
    const file = [...(event.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { setPhoto(file); submit(); }
  });
}

wire();
loadFacets();
