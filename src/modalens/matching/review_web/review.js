"use strict";
// Match review: lease a pair, show both offers, record a decision with a / r / s, undo with u.
// The reviewer signs in with their key (sent as X-API-Key); the server knows whose it is.
const $ = (id) => document.getElementById(id);
let current = null;
let busy = false;

function key() { return $("key").value.trim(); }
function headers(extra) { return Object.assign(key() ? {"X-API-Key": key()} : {}, extra || {}); }
function setStatus(text) { $("status").textContent = text; }

function showStats(s) {
  if (s) $("stats").textContent = `waiting ${s.pending} · decided ${s.decided} (${s.match} same, ${s["no-match"]} different)`;
  showAudit(false).catch(() => {});
}

// Running precision / NPV of the automatic decisions from answered audit items, with their 95% intervals.
// Refreshed at sign-in and then at most every few minutes: were it refreshed after every answer, a reviewer
// could tell from a count moving by one that the pair she just answered was an audit item.
const AUDIT_REFRESH_MS = 5 * 60 * 1000;
let auditShownAt = 0;

function pct(v) { return `${(100 * v).toFixed(2)}%`; }

function auditLine(name, a) {
  const li = document.createElement("span");
  const rate = a.audited ? `${pct(a.rate)} of ${a.audited} audited` : "none audited yet";
  const interval = a.audited ? ` (95% interval ${pct(a.lower_bound)} – ${pct(a.upper_bound)})` : "";
  const status = document.createElement("span");
  status.className = `status-${a.status}`;
  status.textContent = a.status;
  li.append(`${name}: ${rate}${interval}, target ${pct(a.target).replace(".00", "")}: `, status);
  return li;
}

async function showAudit(force) {
  if (!force && Date.now() - auditShownAt < AUDIT_REFRESH_MS) return;
  auditShownAt = Date.now();
  const a = await call("GET", "/review/api/audit");
  const any = a.precision.audited + a.npv.audited + a.audits_pending > 0;
  $("audit").hidden = !any;
  if (!any) return;
  $("audit-precision").replaceChildren(auditLine("auto-accept precision", a.precision));
  $("audit-npv").replaceChildren(auditLine("auto-reject NPV", a.npv));
  const low = [["auto-accept precision", a.precision], ["auto-reject NPV", a.npv]].filter(([, x]) => x.status === "alarm").map(([n]) => n);
  $("audit-alarm").hidden = !low.length;
  $("audit-alarm").textContent = low.length
    ? `Alarm: ${low.join(" and ")} below target with 95% confidence. Re-calibrate (modalens match retrain) or raise the thresholds.`
    : "";
}

function money(v) { return v === null || v === undefined ? "no price" : v.toLocaleString(undefined, {maximumFractionDigits: 2}); }

function renderOffer(el, offer) {
  el.replaceChildren();
  const photos = document.createElement("div");
  photos.className = "photos";
  for (const src of offer.images) {
    const img = document.createElement("img");
    img.alt = offer.title; img.loading = "eager";
    photos.append(img);
    loadPhoto(img, src);
  }
  if (!offer.images.length) photos.textContent = "no photo";
  const title = document.createElement("h2");
  title.textContent = offer.title || "(no title)";
  const price = document.createElement("div");
  price.className = "price"; price.dataset.testid = "price";
  price.textContent = money(offer.price);
  const meta = document.createElement("div");
  meta.className = "meta";
  const attrs = offer.attributes || {};
  meta.textContent = [offer.n_sizes && `${offer.n_sizes} sizes`, attrs.brand, attrs.colour, attrs.article_type, `id ${offer.id}`]
    .filter(Boolean).join(" · ");
  const source = document.createElement("p");
  source.className = "source"; source.dataset.testid = "source";
  source.textContent = offer.seller ? `from ${offer.seller}` : "";
  el.append(source, photos, title, price, meta);
  if (offer.description) {
    const d = document.createElement("p"); d.textContent = offer.description; el.append(d);
  }
}

// Photos may need the key too (MODALENS_READ_REQUIRES_KEY=1), and an <img> cannot send a header.
async function loadPhoto(img, src) {
  try {
    const res = await fetch(src, {headers: headers()});
    if (!res.ok) throw new Error(`${res.status}`);
    img.src = URL.createObjectURL(await res.blob());
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), {once: true});
  } catch (e) { img.alt = `photo not available (${e.message})`; }
}

function show(pair) {
  current = pair;
  if (!pair) {
    $("pair").hidden = true; $("empty").hidden = false;
    return;
  }
  $("empty").hidden = true; $("pair").hidden = false;
  $("pair").dataset.pairId = pair.id;
  $("score").textContent = pair.score.toFixed(3);
  $("probability").textContent = pair.probability === null ? "–" : pair.probability.toFixed(2);
  $("reason").textContent = pair.reason;
  renderOffer($("left"), pair.left);
  renderOffer($("right"), pair.right);
}

async function call(method, url, body) {
  const res = await fetch(url, {method, headers: headers({"Content-Type": "application/json"}), body: body ? JSON.stringify(body) : undefined});
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.detail || `${res.status} ${res.statusText}`);
  return data;
}

async function signIn() {
  $("reviewer").textContent = "";
  if (!key()) { setStatus("Enter your reviewer key to start."); return false; }
  const me = await call("GET", "/review/api/me");
  $("reviewer").textContent = `signed in as ${me.reviewer}`;
  return true;
}

async function next() {
  if (!key()) { setStatus("Enter your reviewer key to start."); return; }
  const data = await call("GET", "/review/api/next");
  show(data.pair); showStats(data.stats);
}

async function act(decision) {
  if (busy || !current) return;
  busy = true;
  const label = {match: "same product", "no-match": "different", skip: "skipped"}[decision];
  try {
    const data = await call("POST", "/review/api/decide", {pair_id: current.id, decision});
    showStats(data.stats);
    setStatus(`Saved: ${label}.`);
    await next();
  } catch (e) {
    setStatus(`Not saved: ${e.message}`);
    await next().catch(() => {});
  } finally { busy = false; }
}

async function undo() {
  if (busy || !key()) return;
  busy = true;
  try {
    const data = await call("POST", "/review/api/undo");
    showStats(data.stats);
    if (data.pair) { show(data.pair); setStatus("Undone: the last decision is back for review."); }
    else setStatus("Nothing to undo.");
  } catch (e) { setStatus(`Undo failed: ${e.message}`); }
  finally { busy = false; }
}

document.addEventListener("keydown", (e) => {
  if (e.target === $("key") || e.ctrlKey || e.metaKey || e.altKey) return;
  const pressed = e.key.toLowerCase();
  if (pressed === "a") act("match");
  else if (pressed === "r") act("no-match");
  else if (pressed === "s") act("skip");
  else if (pressed === "u") undo();
  else return;
  e.preventDefault();
});
$("accept").addEventListener("click", () => act("match"));
$("reject").addEventListener("click", () => act("no-match"));
$("skip").addEventListener("click", () => act("skip"));
$("undo").addEventListener("click", undo);
async function start() {
  try {
    if (!(await signIn())) return;
    await showAudit(true).catch(() => {});
    await next();
    setStatus(current ? "Same product? a = yes, r = no, s = skip, u = undo." : "");
  } catch (e) { setStatus(e.message); }
}

$("key").addEventListener("change", () => {
  sessionStorage.setItem("modalens-review-key", key());  // this tab only; never in the URL
  start();
  $("key").blur();
});

$("key").value = sessionStorage.getItem("modalens-review-key") || "";
if (key()) start();
