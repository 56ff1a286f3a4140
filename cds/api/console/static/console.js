/* The CDS operator console (README "Operator console"). Plain browser JavaScript over the vendored Leaflet;
   every request goes to this CDS's /console/api/ (same origin), nothing else is loaded unless the operator
   configured map tiles (CDS_CONSOLE_TILE_URL). */
"use strict";
(function () {
  const TYPE_COLOURS = { CCS2: "#1f77b4", Type2: "#2ca02c", CHAdeMO: "#ff7f0e", "DC-001": "#9467bd",
    "AC-001": "#8c564b", Type6: "#17becf", "15A": "#bcbd22", GB_T: "#393b79", Type1: "#637939", "": "#7f7f7f" };
  const OTHER_COLOUR = "#e377c2";
  const STATUS_COLOURS = { Available: "#2e7d32", Occupied: "#f9a825", Charging: "#f9a825", OutOfService: "#c62828",
    Faulted: "#c62828", Unavailable: "#c62828", Unknown: "#9e9e9e" };
  const REFRESH_MS = 10000;
  const MAX_POINTS = 500;

  const state = { bpp: null, colourBy: "type", rows: [], sort: { key: "items", dir: -1 }, mode: "point",
    centre: null, route: [], coverageSeq: 0 };
  const $ = (id) => document.getElementById(id);

  async function api(path, opts) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } },
      opts || {}));
    let body = {};
    try { body = await r.json(); } catch (e) { /* not JSON: reported below */ }
    if (!r.ok) throw new Error((body.error && body.error.message) || ("HTTP " + r.status));
    return body;
  }

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
      '"': "&quot;", "'": "&#39;" })[c]);
  }
  function age(s) {
    if (s == null) return "—";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }
  function ms(s) { return s == null ? "—" : (s * 1000 < 10 ? (s * 1000).toFixed(1) : Math.round(s * 1000)) + " ms"; }
  function colourOf(key) {
    const table = state.colourBy === "type" ? TYPE_COLOURS : STATUS_COLOURS;
    return table[key] || OTHER_COLOUR;
  }

  // ---- map ---------------------------------------------------------------------------------------
  const map = L.map("map", { minZoom: 3, maxZoom: 18, zoomSnap: 0.25, zoomControl: true }).setView([22.5, 80.5], 5);
  map.attributionControl.setPrefix(false);
  const coverageLayer = L.layerGroup().addTo(map);
  const shapeLayer = L.layerGroup().addTo(map);
  const resultLayer = L.layerGroup().addTo(map);
  map.createPane("results").style.zIndex = 650;     // tester results above the coverage markers

  async function drawBase(cfg) {
    if (cfg.tile_url) {
      L.tileLayer(cfg.tile_url, { maxZoom: 19, attribution: "tiles: " + esc(new URL(cfg.tile_url.replace(/[{}]/g, "")).host) })
        .addTo(map);
    }
    const r = await fetch("/console/static/vendor/india.geojson", { credentials: "same-origin" });
    const outline = L.geoJSON(await r.json(), { interactive: false, style: { color: "#5b7083", weight: 1,
      fillColor: "#fbfbf6", fillOpacity: cfg.tile_url ? 0 : 1 } }).addTo(map);
    map.attributionControl.addAttribution("outline: Natural Earth");
    map.fitBounds(outline.getBounds(), { padding: [4, 4] });
  }

  function clusterIcon(cell) {
    const parts = Object.entries(state.colourBy === "type" ? cell.types : cell.statuses).sort((a, b) => b[1] - a[1]);
    let at = 0;
    const stops = parts.map(([k, n]) => {
      const from = at; at += (n / cell.count) * 100;
      return colourOf(k) + " " + from.toFixed(1) + "% " + at.toFixed(1) + "%";
    });
    const size = Math.round(22 + 9 * Math.log10(cell.count));
    const title = parts.map(([k, n]) => (k || "none") + ": " + n).join(", ");
    return L.divIcon({ className: "", iconSize: [size, size],
      html: '<div class="cluster" data-count="' + cell.count + '" title="' + esc(title) + '" style="width:' + size +
        "px;height:" + size + "px;background:conic-gradient(" + stops.join(",") + ')">' + cell.count + "</div>" });
  }

  function drawCoverage(cov) {
    coverageLayer.clearLayers();
    for (const cell of cov.cells) {
      const m = L.marker([cell.lat, cell.lon], { icon: clusterIcon(cell), keyboard: false });
      m.on("click", () => map.setView([cell.lat, cell.lon], Math.min(map.getZoom() + 2, 18)));
      coverageLayer.addLayer(m);
    }
    for (const p of cov.points) {
      const key = state.colourBy === "type" ? (p.connector_type || "") : p.status;
      L.circleMarker([p.lat, p.lon], { radius: 6, color: "#fff", weight: 1, fillColor: colourOf(key),
        fillOpacity: 0.95, className: "cds-point" })
        .bindTooltip(esc(p.item_id) + "<br>" + esc(p.bpp_id) + " · " + esc(p.catalog_id) + "<br>" +
          esc(p.connector_type || "?") + (p.max_kw != null ? " · " + p.max_kw + " kW" : "") + " · " + esc(p.status))
        .addTo(coverageLayer);
    }
    const total = $("map-total");
    total.dataset.total = cov.total;
    total.textContent = cov.total.toLocaleString("en-IN") + " connectors in view" +
      (cov.cells.length ? " (" + cov.cells.length + " clusters)" : "");
    drawLegend();
  }

  function drawLegend() {
    const table = state.colourBy === "type" ? TYPE_COLOURS : STATUS_COLOURS;
    const seen = new Set();
    $("legend").innerHTML = Object.entries(table).filter(([k, c]) => !seen.has(c) && seen.add(c))
      .map(([k, c]) => '<span><i style="background:' + c + '"></i>' + esc(k || "none") + "</span>").join("") +
      '<span><i style="background:' + OTHER_COLOUR + '"></i>other</span>';
  }

  async function loadCoverage() {
    const seq = ++state.coverageSeq;
    const b = map.getBounds().pad(0.05);
    const q = new URLSearchParams({ precision: String(Math.min(Math.floor(map.getZoom()) + 2, 20)), max_points: String(MAX_POINTS),
      bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((x) => x.toFixed(5)).join(",") });
    if (state.bpp) q.set("bpp", state.bpp);
    try {
      const cov = await api("/console/api/coverage?" + q);
      if (seq === state.coverageSeq) drawCoverage(cov);
    } catch (e) { $("map-total").textContent = "coverage unavailable: " + e.message; }
  }

  // ---- header: index and ingest ------------------------------------------------------------------
  function stat(label, value, cls, key) {
    return '<span class="stat ' + (cls || "") + '" data-key="' + key + '">' + label + " <b>" + value + "</b></span>";
  }
  async function loadOverview() {
    try {
      const o = await api("/console/api/overview");
      const i = o.ingest, p = i.publish_to_searchable;
      $("who").textContent = o.subscriber_id + " · " + o.backend + (o.redis ? " · redis" : "");
      $("stats").innerHTML = [
        stat("catalogs", o.index.catalogs.toLocaleString("en-IN"), "", "index.catalogs"),
        stat("connectors", o.index.items.toLocaleString("en-IN"), "", "index.items"),
        stat("newest publish", age(o.index.freshness_lag_s) + " ago", o.index.freshness_lag_s > 3600 ? "warn" : "", "index.freshness_lag_s"),
        stat("ingest backlog", i.backlog, i.backlog > 100 ? "warn" : "", "ingest.backlog"),
        stat("undelivered (lag)", i.consumer_lag, i.consumer_lag > 100 ? "warn" : "", "ingest.consumer_lag"),
        stat("dead letters", i.dead_letters, i.dead_letters ? "bad" : "", "ingest.dead_letters"),
        stat("publish → searchable p50 / p95", ms(p.p50_s) + " / " + ms(p.p95_s) + " (" + p.count + ")", "", "ingest.publish_to_searchable"),
        stat("catalogs rejected", i.catalogs_rejected + " of " + (i.catalogs_accepted + i.catalogs_rejected),
          i.catalogs_rejected ? "warn" : "", "ingest.catalogs_rejected"),
      ].join("");
    } catch (e) { $("stats").innerHTML = stat("console API", esc(e.message), "bad", "error"); }
  }

  // ---- BPP table ---------------------------------------------------------------------------------
  function sortValue(r, key) {
    if (key === "reply_p50") return r.reply.p50_s == null ? -1 : r.reply.p50_s;
    if (key === "rejected_items") return r.rejected_items * 1e6 + r.rejected_catalogs;
    const v = r[key];
    return v == null ? -1 : v;
  }
  function renderTable() {
    const { key, dir } = state.sort;
    const needle = $("bpp-search").value.trim().toLowerCase();
    const rows = state.rows.filter((r) => !needle || r.bpp_id.toLowerCase().includes(needle)).sort((a, b) => {
      const x = sortValue(a, key), y = sortValue(b, key);
      return (x < y ? -1 : x > y ? 1 : a.bpp_id < b.bpp_id ? -1 : 1) * (x === y ? 1 : dir);
    });
    document.querySelectorAll("#bpps th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === key && dir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === key && dir < 0);
    });
    $("bpps").tBodies[0].innerHTML = rows.map((r) =>
      '<tr data-bpp="' + esc(r.bpp_id) + '"' + (r.bpp_id === state.bpp ? ' class="selected"' : "") + ">" +
      "<td>" + esc(r.bpp_id) + "</td><td>" + esc(r.role) + "</td>" +
      '<td class="num" data-col="catalogs">' + r.catalogs + "</td>" +
      '<td class="num" data-col="items">' + r.items + "</td>" +
      '<td class="num' + (r.last_publish_age_s > 86400 ? " stale" : "") + '">' + age(r.last_publish_age_s) + "</td>" +
      '<td class="num" data-col="rejected">' + r.rejected_catalogs + " / " + r.rejected_items + "</td>" +
      '<td class="circuit-' + esc(r.circuit || "none") + '" data-col="circuit">' + esc(r.circuit || "—") + "</td>" +
      '<td class="num" data-col="fanout_requests">' + r.fanout_requests + "</td>" +
      '<td class="num">' + ms(r.reply.p50_s) + "</td>" +
      '<td class="num' + (r.timeouts ? " bad" : "") + '" data-col="timeouts">' + r.timeouts + "</td>" +
      '<td class="num' + (r.errors ? " bad" : "") + '" data-col="errors">' + r.errors + "</td></tr>").join("");
  }
  async function loadBpps() {
    try {
      state.rows = (await api("/console/api/bpps")).bpps;
      renderTable();
      const targets = state.rows.filter((r) => r.role === "fan-out target");
      const open = targets.filter((r) => r.circuit && r.circuit !== "closed").length;
      $("fanout-summary").innerHTML = stat("fan-out targets", targets.length, "", "fanout.targets") +
        stat("circuits open", open, open ? "bad" : "", "fanout.open");
    }
    catch (e) { $("bpps").tBodies[0].innerHTML = '<tr><td colspan="11">BPPs unavailable: ' + esc(e.message) + "</td></tr>"; }
  }
  function selectBpp(bpp) {
    state.bpp = state.bpp === bpp ? null : bpp;
    $("map-filter").textContent = state.bpp ? "only " + state.bpp + " ✕" : "";
    renderTable();
    loadCoverage();
  }

  // ---- tester ------------------------------------------------------------------------------------
  function radius() { return Math.max(1, Number($("radius").value) || 10000); }
  function drawShape() {
    shapeLayer.clearLayers();
    if (state.mode === "point" && state.centre) {
      L.circle(state.centre, { radius: radius(), color: "#14324a", weight: 2, fillOpacity: 0.06 }).addTo(shapeLayer);
      L.circleMarker(state.centre, { radius: 3, color: "#14324a" }).addTo(shapeLayer);
    }
    if (state.mode === "route" && state.route.length) {
      L.polyline(state.route, { color: "#14324a", weight: 3 }).addTo(shapeLayer);
      state.route.forEach((p) => L.circleMarker(p, { radius: 3, color: "#14324a" }).addTo(shapeLayer));
    }
  }
  function setCentre(lat, lon) {
    state.centre = [lat, lon];
    $("centre").value = lat.toFixed(5) + ", " + lon.toFixed(5);
    drawShape();
  }
  function form() {
    const f = { radius_m: radius() };
    if (state.mode === "point" && state.centre) f.point = [state.centre[1], state.centre[0]];
    if (state.mode === "route" && state.route.length >= 2) f.route = state.route.map((p) => [p[1], p[0]]);
    if ($("connector").value.trim()) f.connector_type = $("connector").value.trim();
    if ($("min-kw").value) f.min_kw = Number($("min-kw").value);
    if ($("start").value) f.start = $("start").value;
    if ($("end").value) f.end = $("end").value;
    if ($("text").value.trim()) f.text = $("text").value.trim();
    return f;
  }
  async function runTester(ev) {
    ev.preventDefault();
    drawShape();
    const status = $("tester-status");
    status.className = ""; status.textContent = "running…";
    try {
      const r = await api("/console/api/discover", { method: "POST", body: JSON.stringify(form()),
        headers: { "Content-Type": "application/json", Accept: "application/json" } });
      resultLayer.clearLayers();
      r.items.forEach((it, n) => {
        if (it.lat == null) return;
        L.circleMarker([it.lat, it.lon], { radius: 8, color: "#000", weight: 2, fillColor: "#ffd54f", fillOpacity: 1,
          className: "cds-result", pane: "results" })
          .bindTooltip((n + 1) + ". " + esc(it.item_id) + " (" + esc(it.bpp_id) + ")" +
            (it.distance_m != null ? " · " + (it.distance_m / 1000).toFixed(2) + " km" : ""))
          .addTo(resultLayer);
      });
      status.textContent = r.items.length + " item(s) in " + r.took_ms + " ms";
      const shape = L.featureGroup(shapeLayer.getLayers().concat(resultLayer.getLayers()));
      if (shape.getLayers().length) map.fitBounds(shape.getBounds(), { padding: [30, 30], maxZoom: 14 });
      status.dataset.items = r.items.length;
      $("json").textContent = JSON.stringify(r.on_discover, null, 2);
      $("request-json").textContent = JSON.stringify(r.request, null, 2);
      $("json-box").open = true;
    } catch (e) {
      status.className = "error"; status.textContent = e.message;
    }
  }

  // ---- wiring ------------------------------------------------------------------------------------
  map.on("click", (e) => {
    if (state.mode === "point") setCentre(e.latlng.lat, e.latlng.lng);
    else { state.route.push([e.latlng.lat, e.latlng.lng]); drawShape(); }
  });
  map.on("moveend", loadCoverage);
  $("colour-by").addEventListener("change", (e) => { state.colourBy = e.target.value; loadCoverage(); });
  $("map-filter").addEventListener("click", () => state.bpp && selectBpp(state.bpp));
  $("bpp-search").addEventListener("input", renderTable);
  $("bpps").tHead.addEventListener("click", (e) => {
    const key = e.target.dataset && e.target.dataset.key;
    if (!key) return;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === "bpp_id" || key === "role" ? 1 : -1) };
    renderTable();
  });
  $("bpps").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-bpp]");
    if (tr) selectBpp(tr.dataset.bpp);
  });
  document.querySelectorAll('input[name="mode"]').forEach((r) => r.addEventListener("change", (e) => {
    state.mode = e.target.value; drawShape();
  }));
  $("radius").addEventListener("input", drawShape);
  $("centre").addEventListener("change", (e) => {
    const m = e.target.value.split(",").map(Number);
    if (m.length === 2 && m.every(Number.isFinite)) setCentre(m[0], m[1]);
  });
  $("clear-shape").addEventListener("click", () => { state.centre = null; state.route = []; $("centre").value = "";
    shapeLayer.clearLayers(); resultLayer.clearLayers(); });
  $("tester-form").addEventListener("submit", runTester);

  (async function start() {
    let cfg = {};
    try { cfg = await api("/console/api/config"); } catch (e) { /* the overview reports the API error */ }
    try { await drawBase(cfg); } catch (e) { /* no outline: the markers still show */ }
    await Promise.all([loadCoverage(), loadOverview(), loadBpps()]);
    document.body.dataset.ready = "1";
    setInterval(() => { loadOverview(); loadBpps(); }, REFRESH_MS);
  })();
})();
