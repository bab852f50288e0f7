// modalens search page: words, a photo (button or drag and drop), filters built from the catalogue, paging, "more like this".
"use strict";

const PAGE_SIZE = 12;
const state = { mode: null, query: "", photo: null, similarTo: null, offset: 0 };
const facetNames = []; // the attributes the catalogue can be filtered by, in the server's order
const $ = (id) => document.getElementById(id);

const LABELS = { article_type: "type", master_category: "category", sub_category: "subcategory", colour: "colour" };
const label = (name) => LABELS[name] || name.replace(/_/g, " ");
const capitalised = (text) => text.charAt(0).toUpperCase() + text.slice(1);

function filters() {
  const out = {};
  for (const select of document.querySelectorAll("#filters select")) {
    if (select.value) out[select.dataset.field] = [select.value];
  }
  return out;
}

function priceBounds() {
  const bounds = {};
  for (const [key, id] of [["price_min", "price-min"], ["price_max", "price-max"]]) {
    const input = $(id);
    if (input && input.value !== "" && Number.isFinite(Number(input.value))) bounds[key] = Number(input.value);
  }
  return bounds;
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
  const bounds = priceBounds();
  if (state.mode === "photo") {
    const form = new FormData();
    form.append("image", state.photo);
    if (state.query) form.append("q", state.query);
    form.append("k", k);
    form.append("offset", state.offset);
    form.append("filters", JSON.stringify(filters()));
    for (const [key, value] of Object.entries(bounds)) form.append(key, value);
    return fetchJSON("/api/search/image", { method: "POST", body: form });
  }
  return fetchJSON("/api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ q: state.query, k, offset: state.offset, filters: filters(), ...bounds }),
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
    $("pager").hidden = true;
  }
}

function render(results) {
  const grid = $("results");
  grid.replaceChildren();
  const template = $("card-template");
  const shown = facetNames.length ? facetNames : ["gender", "article_type", "colour", "season", "usage"];
  for (const item of results) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = item.id;
    card.querySelector("img").src = item.image_url || "";
    card.querySelector("img").alt = item.title;
    card.querySelector(".title").textContent = item.title || item.id;
    card.querySelector(".brand").textContent = item.attributes.brand || "";
    card.querySelector(".attrs").textContent = shown
      .filter((key) => key !== "brand").map((key) => item.attributes[key]).filter(Boolean).join(" · ");
    card.querySelector(".price").textContent = typeof item.price === "number" ? item.price.toFixed(2) : "";
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
  $("photo-button").classList.toggle("has-photo", Boolean(file));
  $("photo-label").textContent = file ? `Photo: ${file.name.slice(0, 18)}` : "Search by photo";
  $("clear-photo").hidden = !file;
}

function submit() {
  state.query = $("query").value.trim();
  state.offset = 0;
  state.mode = state.photo ? "photo" : state.query ? "text" : null;
  if (!state.mode) {
    $("status").textContent = "Type some words or drop a photo to search the catalogue.";
    $("results").replaceChildren();
    $("pager").hidden = true;
    return;
  }
  run();
}

function refilter() {
  if (state.mode === "similar") state.mode = state.photo ? "photo" : state.query ? "text" : null;
  state.offset = 0;
  run();
}

// Filter menus from the catalogue itself (GET /api/facets): one per attribute worth choosing by, and a price range.
async function loadFacets() {
  let facets;
  try {
    facets = await fetchJSON("/api/facets");
  } catch (err) {
    $("status").textContent = `Filters unavailable — ${err.message}`;
    return;
  }
  const box = $("filters");
  for (const { name, values } of facets.fields) {
    facetNames.push(name);
    const select = document.createElement("select");
    select.id = `filter-${name}`;
    select.dataset.field = name;
    select.setAttribute("aria-label", capitalised(label(name)));
    const any = document.createElement("option");
    any.value = "";
    any.textContent = `Any ${label(name)}`;
    select.appendChild(any);
    for (const { value, count } of values) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = `${value} (${count})`;
      select.appendChild(option);
    }
    select.addEventListener("change", refilter);
    box.appendChild(select);
  }
  if (facets.price) {
    const range = document.createElement("span");
    range.className = "price-range";
    range.dataset.testid = "price-range";
    range.append("Price");
    for (const [id, text, bound] of [["price-min", "min", facets.price.min], ["price-max", "max", facets.price.max]]) {
      const input = document.createElement("input");
      input.type = "number";
      input.id = id;
      input.min = "0";
      input.step = "any";
      input.inputMode = "decimal";
      input.placeholder = `${text} ${bound}`;
      input.setAttribute("aria-label", `${capitalised(text)}imum price`);
      input.addEventListener("change", refilter);
      range.append(input);
      if (id === "price-min") range.append("–");
    }
    box.appendChild(range);
  }
  box.dataset.ready = "true";
}

function wire() {
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("photo-button").addEventListener("click", () => $("photo").click());
  $("photo").addEventListener("change", (event) => { setPhoto(event.target.files[0] || null); submit(); });
  $("clear-photo").addEventListener("click", () => { $("photo").value = ""; setPhoto(null); submit(); $("photo-button").focus(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); run(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; run(); });
  const zone = $("photo-button");
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
