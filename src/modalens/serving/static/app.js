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

function hideLook() {
  $("look").hidden = true;
  $("look").replaceChildren();
}

function render(results) {
  hideLook();
  const grid = $("results");
  grid.replaceChildren(...results.map(card));
}

function card(item) {
  const shown = facetNames.length ? facetNames : ["gender", "article_type", "colour", "season", "usage"];
  const element = $("card-template").content.firstElementChild.cloneNode(true);
  element.dataset.id = item.id;
  element.querySelector("img").src = item.image_url || "";
  element.querySelector("img").alt = item.title;
  element.querySelector(".title").textContent = item.title || item.id;
  element.querySelector(".brand").textContent = item.attributes.brand || "";
  element.querySelector(".attrs").textContent = shown
    .filter((key) => key !== "brand").map((key) => item.attributes[key]).filter(Boolean).join(" · ");
  element.querySelector(".price").textContent = typeof item.price === "number" ? item.price.toFixed(2) : "";
  element.querySelector(".score").textContent = `score ${item.score.toFixed(3)}`;
  element.querySelector(".similar").addEventListener("click", () => {
    Object.assign(state, { mode: "similar", similarTo: item.id, offset: 0 });
    run();
  });
  return element;
}

// Shop the look (POST /api/search/look): each product the instance decoder finds in the photo, where it looked
// (its attention over the 7×7 cells tinted on the photo, and its box), and its best catalogue matches.
async function runLook() {
  const status = $("status");
  status.classList.remove("error");
  status.textContent = "Looking for products in the photo…";
  $("results").replaceChildren();
  $("pager").hidden = true;
  const form = new FormData();
  form.append("image", state.photo);
  form.append("k", 4);
  form.append("filters", JSON.stringify(filters()));
  try {
    const data = await fetchJSON("/api/search/look", { method: "POST", body: form });
    const picture = await createImageBitmap(state.photo);
    const box = $("look");
    box.replaceChildren(...data.products.map((found) => lookItem(found, picture)));
    box.hidden = false;
    status.textContent = `${data.products.length} product${data.products.length === 1 ? "" : "s"} found in photo “${state.photo.name}” (${data.took_ms} ms)`;
  } catch (err) {
    status.classList.add("error");
    status.textContent = `Shop the look failed — ${err.message}`;
  }
}

function lookItem(found, picture) {
  const item = document.createElement("div");
  item.className = "look-item";
  item.dataset.testid = "look-product";
  const canvas = document.createElement("canvas");
  canvas.dataset.testid = "look-map";
  const scale = Math.min(1, 240 / Math.max(picture.width, picture.height));
  canvas.width = Math.round(picture.width * scale);
  canvas.height = Math.round(picture.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(picture, 0, 0, canvas.width, canvas.height);
  const side = Math.round(Math.sqrt(found.attention.length));
  const peak = Math.max(...found.attention);
  const cell = Math.max(canvas.width, canvas.height) / side; // the cells cover the letterboxed square
  const [left, top] = [(canvas.width - side * cell) / 2, (canvas.height - side * cell) / 2];
  found.attention.forEach((weight, i) => {
    ctx.fillStyle = `rgba(255, 120, 0, ${(0.55 * weight) / peak})`;
    ctx.fillRect(left + (i % side) * cell, top + Math.floor(i / side) * cell, cell, cell);
  });
  const [x0, y0, x1, y1] = found.box.map((v) => v * scale);
  ctx.strokeStyle = "#d33";
  ctx.lineWidth = 2;
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  canvas.title = `where this product's query looked (sure ${found.objectness.toFixed(2)})`;
  const matches = document.createElement("section");
  matches.className = "grid";
  matches.replaceChildren(...found.results.map(card));
  item.append(canvas, matches);
  return item;
}

function setPhoto(file) {
  state.photo = file;
  $("look-button").hidden = !file;
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
    hideLook();
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
  $("look-button").addEventListener("click", () => { if (state.photo) runLook(); });
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
