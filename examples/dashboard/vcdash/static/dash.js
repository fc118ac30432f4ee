// vitalcore dashboard: live tiles over one WebSocket; waveforms drawn as a monitor sweep.
"use strict";
(() => {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = (sel, el = document) => el.querySelector(sel);
  const FT_ECG = 1, FT_PLETH = 2, LEADS_OFF = 0x02, PROBE_OFF = 0x04;
  const PRIO = {3: "high", 2: "medium", 1: "low"};
  const SWEEP_S = boot.view === "central" ? 4 : 6;   // seconds across a canvas
  // playback delay behind the newest data: the largest recent gap between two waveform
  // messages (the server flushes every 250 ms; a busy server or network makes gaps longer),
  // plus a margin, within 0.45..2 s
  let jitterUs = 450000, maxGapMs = 250, lastMsgMs = 0;
  const stats = {frames: 0, waveFrames: 0, fps: 0, waveFps: 0, packets: 0, bytes: 0,
                 messages: 0, connects: 0, state: "connecting", lastClose: null};
  window.__dash = stats;

  const conn = $("#conn");
  stats.log = [];  // the last banner texts (what the page told the user), for tests
  function banner(text, cls) {
    conn.textContent = text; conn.className = "conn " + (cls || "");
    if (stats.log[stats.log.length - 1] !== text) { stats.log.push(text); if (stats.log.length > 20) stats.log.shift(); }
  }

  // ---- tiles ----------------------------------------------------------------------------
  const tiles = new Map();   // dev hex -> {el, pid, ward, streams: Map(type -> stream)}
  const fmt = (v, d = 0) => (v === null || v === undefined) ? "--" : v.toFixed(d);
  const hhmm = (ms) => new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});

  function tileHtml(t) {
    const compact = boot.view === "central", big = boot.view === "patient";
    const ew = compact ? 150 : big ? 900 : 420, eh = compact ? 40 : big ? 140 : 70;
    const where = t.ward ? (t.bed || "") : `in transport ${t.from || ""} → ${t.to || "?"}`;
    return `<div class="head"><span class="bed">${esc(where)}</span>
      <a class="name" href="/patient/${encodeURIComponent(t.pid)}">${esc(t.name)}</a>
      <span class="devstate"></span></div>
      <div class="alarm" hidden><span class="amsg"></span><button class="ack">Acknowledge</button></div>
      <div class="body"><div class="waves">
        ${overlay ? `<div class="ecg wave" style="height:${eh}px"></div>`
                  : `<canvas class="ecg" width="${ew}" height="${eh}"></canvas>`}
        ${compact ? "" : overlay ? '<div class="pleth wave" style="height:44px"></div>'
                                 : `<canvas class="pleth" width="${ew}" height="${big ? 80 : 44}"></canvas>`}
      </div><div class="nums">
        <div class="hr"><span class="l">HR</span><b>--</b></div>
        <div class="spo2"><span class="l">SpO₂</span><b>--</b></div>
        ${compact ? "" : '<div class="pr"><span class="l">PR</span><b>--</b></div>'}
      </div></div>
      <div class="foot"><span class="nibp">NIBP --/--</span>
        ${compact ? "" : '<span class="next"></span><button class="bp">Measure BP</button>'}
        <span class="bpstate"></span></div>`;
  }
  function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`); }

  function buildTiles(list) {
    const root = $("#tiles");
    root.textContent = "";
    tiles.clear();
    const groups = new Map();
    for (const t of list) {
      const key = t.ward || "transport";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(t);
    }
    layoutDirty = true;
    for (const [key, ts] of groups) {
      let host = root;
      if (boot.view === "central") {
        const sec = document.createElement("section");
        sec.className = "wardgroup" + (key === "transport" ? " transport" : "");
        const label = key === "transport" ? "In transport" : (wardNames[key] || key);
        sec.innerHTML = key === "transport" ? `<h2>${esc(label)}</h2>`
          : `<h2><a href="/ward/${encodeURIComponent(key)}">${esc(label)}</a></h2>`;
        const grid = document.createElement("div"); grid.className = "grid";
        sec.appendChild(grid); root.appendChild(sec); host = grid;
      }
      for (const t of ts) {
        const el = document.createElement("div");
        el.className = "tile" + (t.ward ? "" : " transport");
        el.dataset.dev = t.dev; el.dataset.pid = t.pid;
        el.innerHTML = tileHtml(t);
        host.appendChild(el);
        const tile = {el, pid: t.pid, streams: new Map(), visible: true, alarm: null};
        for (const [cls, type] of [["ecg", FT_ECG], ["pleth", FT_PLETH]]) {
          const c = $("." + cls, el);
          if (c) tile.streams.set(type, newStream(c, type));
        }
        const bp = $("button.bp", el);
        if (bp) bp.addEventListener("click", () => post("/api/bp", {patient: t.pid})
          .then(r => { if (r) $(".bpstate", el).textContent = "BP requested"; }));
        $("button.ack", el).addEventListener("click", () => ack(tile));
        tiles.set(t.dev, tile);
        observer.observe(el);
      }
    }
  }
  let wardNames = {};
  const observer = new IntersectionObserver(entries => {
    for (const e of entries) {
      const tile = tiles.get(e.target.dataset.dev);
      if (tile) tile.visible = e.isIntersecting;
    }
  });

  // ---- waveforms ------------------------------------------------------------------------
  // Many tiles (central and ward views): every waveform is drawn on ONE fixed canvas over
  // the viewport at its placeholder's position (one composited surface instead of
  // hundreds of canvases); on scroll or layout change the overlay is cleared and each
  // visible sweep redrawn from the retained samples. Patient view: a canvas per waveform.
  const overlay = boot.view !== "patient" ? document.createElement("canvas") : null;
  let octx = null, layoutDirty = true;
  if (overlay) {
    overlay.id = "overlay"; document.body.appendChild(overlay);
    octx = overlay.getContext("2d");
    addEventListener("scroll", () => { layoutDirty = true; }, {passive: true});
    addEventListener("resize", () => { layoutDirty = true; });
  }
  function relayout(headUs) {
    layoutDirty = false;
    if (overlay.width !== innerWidth || overlay.height !== innerHeight) {
      overlay.width = innerWidth; overlay.height = innerHeight;
    } else octx.clearRect(0, 0, overlay.width, overlay.height);
    for (const tile of tiles.values()) for (const s of tile.streams.values()) {
      const r = s.el.getBoundingClientRect();
      s.ox = Math.round(r.left); s.oy = Math.round(r.top);
      s.W = Math.round(r.width); s.H = Math.round(r.height);
      s.vis = r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth && s.W > 0;
      s.lastX = -1; s.drawnT = headUs - SWEEP_S * 1e6 + 1;
      if (s.vis) { octx.fillStyle = "#000"; octx.fillRect(s.ox, s.oy, s.W, s.H); }
    }
  }
  function layoutMoved() {  // did a tile move (an alarm line appeared, text wrapped)?
    for (const tile of tiles.values()) for (const s of tile.streams.values()) {
      const r = s.el.getBoundingClientRect();
      if (Math.round(r.left) !== s.ox || Math.round(r.top) !== s.oy) return true;
    }
    return false;
  }
  function newStream(el, type) {
    let ctx = octx;
    if (!overlay) {
      ctx = el.getContext("2d", {alpha: false});
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, el.width, el.height);
    }
    return {el, ctx, type, chunks: [], drawnT: 0, lastX: -1, lastY: 0, vis: !overlay,
            ox: 0, oy: 0, W: overlay ? 0 : el.width, H: overlay ? 0 : el.height,
            lo: type === FT_ECG ? -1200 : 0, hi: type === FT_ECG ? 1600 : 1, auto: type !== FT_ECG};
  }
  let lagUs = null;   // device time behind the client clock (min seen, creeping up slowly)
  function onBinary(buf) {
    const nowMs = performance.now();
    if (lastMsgMs) maxGapMs = Math.max(nowMs - lastMsgMs, maxGapMs * 0.98);
    lastMsgMs = nowMs;
    jitterUs = Math.min(2e6, Math.max(450000, maxGapMs * 1250 + 100000));
    stats.jitterMs = jitterUs / 1000;
    const dv = new DataView(buf);
    if (dv.byteLength < 4 || dv.getUint8(0) !== 0x4c || dv.getUint8(1) !== 0x57 || dv.getUint8(2) !== 1) return;
    const count = dv.getUint8(3);
    let pos = 4;
    const nowUs = Date.now() * 1000;
    for (let i = 0; i < count; i++) {
      if (pos + 32 > dv.byteLength) return;
      const dev = dv.getBigUint64(pos, true).toString(16).padStart(16, "0");
      const t0 = Number(dv.getBigInt64(pos + 8, true));
      const type = dv.getUint8(pos + 16), fs = dv.getUint16(pos + 18, true);
      const n = dv.getUint16(pos + 20, true);
      const gain = dv.getFloat32(pos + 24, true), off = dv.getFloat32(pos + 28, true);
      pos += 32;
      if (pos + 2 * n > dv.byteLength || fs === 0) return;
      const vals = new Float32Array(n);
      for (let k = 0; k < n; k++) vals[k] = dv.getInt16(pos + 2 * k, true) * gain + off;
      pos += 2 * n;
      stats.packets++;
      const tEnd = t0 + n * 1e6 / fs;
      const lag = nowUs - tEnd;
      lagUs = lagUs === null || lag < lagUs ? lag : lagUs + (lag - lagUs) * 0.002;
      const tile = tiles.get(dev);
      const s = tile && tile.streams.get(type);
      if (!s) continue;
      s.chunks.push({t0, dt: 1e6 / fs, vals});
      if (s.chunks.length > 128) s.chunks.splice(0, s.chunks.length - 128);
    }
  }

  function drawStream(s, headUs) {
    if (!s.chunks.length) return false;
    const span = SWEEP_S * 1e6;
    if (s.drawnT === 0 || headUs - s.drawnT > span) s.drawnT = Math.max(s.chunks[0].t0, headUs - 1e6);
    const {ctx, ox, oy, W, H} = s;
    let drew = false;
    ctx.strokeStyle = s.type === FT_ECG ? "#3f3" : "#3cf";
    ctx.lineWidth = 1.2;
    ctx.beginPath();
    let consumed = 0;
    for (const c of s.chunks) {
      const tLast = c.t0 + (c.vals.length - 1) * c.dt;
      if (tLast <= s.drawnT) { consumed++; continue; }
      let k = Math.max(0, Math.ceil((s.drawnT - c.t0) / c.dt + 1e-6));
      for (; k < c.vals.length; k++) {
        const t = c.t0 + k * c.dt;
        if (t > headUs) break;
        const v = c.vals[k];
        if (s.auto) {  // follow the pleth amplitude: jump out, relax in slowly
          if (v < s.lo) s.lo = v; else s.lo += (v - s.lo) * 0.003;
          if (v > s.hi) s.hi = v; else s.hi -= (s.hi - v) * 0.003;
        }
        const x = ((t % span) / span) * W;
        const y = H - 2 - (H - 4) * Math.min(1, Math.max(0, (v - s.lo) / Math.max(1e-6, s.hi - s.lo)));
        ctx.fillStyle = "#000";
        if (s.lastX < 0 || x < s.lastX || x - s.lastX > 20) {
          ctx.stroke(); ctx.beginPath(); ctx.moveTo(ox + x, oy + y);
          ctx.fillRect(ox + x, oy, Math.min(14, W - x), H);
        } else {
          ctx.fillRect(ox + s.lastX + 1, oy, Math.min(Math.max(1, x - s.lastX) + 12, W - s.lastX - 1), H);
          ctx.moveTo(ox + s.lastX, oy + s.lastY); ctx.lineTo(ox + x, oy + y);
        }
        s.lastX = x; s.lastY = y; s.drawnT = t; drew = true;
      }
      if (k < c.vals.length) break;
      consumed++;
    }
    ctx.stroke();
    // keep one sweep of samples (a redraw after scrolling needs them)
    let old = 0;
    while (old < s.chunks.length - 1 && s.chunks[old].t0 + s.chunks[old].vals.length * s.chunks[old].dt < headUs - span) old++;
    if (old) s.chunks.splice(0, old);
    return drew;
  }

  let fpsT = performance.now(), fpsN = 0, waveN = 0;
  function frame() {
    const tf0 = performance.now();
    stats.frames++; fpsN++;
    if (lagUs !== null) {
      const head = Date.now() * 1000 - lagUs - jitterUs;
      if (overlay && layoutDirty) relayout(head);
      let any = false;
      for (const tile of tiles.values()) {
        if (!tile.visible) continue;
        for (const s of tile.streams.values()) if (s.vis) any = drawStream(s, head) || any;
      }
      if (any) { stats.waveFrames++; waveN++; }
    }
    stats.drawMs = (stats.drawMs || 0) + performance.now() - tf0;
    const now = performance.now();
    if (now - fpsT >= 1000) {
      stats.fps = fpsN * 1000 / (now - fpsT); stats.waveFps = waveN * 1000 / (now - fpsT);
      fpsT = now; fpsN = 0; waveN = 0;
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);

  // ---- snapshots ------------------------------------------------------------------------
  function onSnap(m) {
    for (const [dev, d] of Object.entries(m.devs)) {
      const tile = tiles.get(dev);
      if (!tile) continue;
      const el = tile.el;
      $(".hr b", el).textContent = fmt(d.hr);
      $(".spo2 b", el).textContent = fmt(d.spo2);
      const pr = $(".pr b", el); if (pr) pr.textContent = fmt(d.pr);
      $(".nibp", el).textContent = d.nibp
        ? `NIBP ${fmt(d.nibp[0])}/${fmt(d.nibp[1])} (${fmt(d.nibp[2])}) at ${hhmm(d.nibp[3])}` : "NIBP --/--";
      const nx = $(".next", el); if (nx) nx.textContent = d.next_bp ? `next ${hhmm(d.next_bp)}` : "";
      const bits = [];
      if (!d.online) bits.push("OFFLINE");
      if (d.flags & LEADS_OFF) bits.push("LEADS OFF");
      if (d.flags & PROBE_OFF) bits.push("PROBE OFF");
      if (d.bat !== null) bits.push(`bat ${d.bat}%`);
      if (d.rssi !== null) bits.push(`${d.rssi} dBm`);
      const ds = $(".devstate", el);
      ds.textContent = bits.join(" · ");
      el.classList.toggle("offline", !d.online);
      el.classList.toggle("leadsoff", !!(d.flags & LEADS_OFF));
    }
    const byDev = new Map();
    for (const a of m.alarms) {
      const cur = byDev.get(a.dev);
      const rank = x => x.prio * 2 + (x.state === "active" || x.state === "latched" ? 1 : 0);
      if (!cur || rank(a) > rank(cur)) byDev.set(a.dev, a);
    }
    for (const [dev, tile] of tiles) {
      const a = byDev.get(dev) || null;
      tile.alarm = a;
      const box = $(".alarm", tile.el);
      tile.el.classList.remove("a-high", "a-medium", "a-low", "a-acked");
      if (!a) { box.hidden = true; continue; }
      box.hidden = false;
      const acked = a.state === "acknowledged" || !!a.by;
      tile.el.classList.add("a-" + PRIO[a.prio]);
      if (acked) tile.el.classList.add("a-acked");
      box.dataset.alarm = a.id; box.dataset.state = a.state;
      $(".amsg", box).textContent = `${PRIO[a.prio].toUpperCase()} ${a.code}: ${a.msg}` +
        (acked ? ` (acknowledged by ${a.by} ${a.acked ? hhmm(a.acked) : ""})` : "");
      $("button.ack", box).hidden = acked;
    }
    const list = $("#alarms");
    if (list) {
      list.textContent = "";
      const sorted = [...m.alarms].sort((x, y) => y.prio - x.prio || y.raised - x.raised);
      for (const a of sorted) {
        const t = tiles.get(a.dev);
        const li = document.createElement("li");
        li.className = "p-" + PRIO[a.prio] + (a.by ? " acked" : "");
        li.dataset.alarm = a.id;
        li.innerHTML = `<a href="/patient/${encodeURIComponent(t ? t.pid : "")}">${esc(t ? t.pid : a.dev)}</a>
          ${esc(PRIO[a.prio])} ${esc(a.code)} · ${esc(a.msg)} · ${hhmm(a.raised)}${a.by ? " · ack " + esc(a.by) : ""}`;
        list.appendChild(li);
      }
    }
    for (const r of m.rounds) {
      if (r.ward && boot.view === "ward" && r.ward === boot.id) {
        const p = $("#bp-progress");
        if (p && r.id >= (p.dataset.round | 0)) {
          p.dataset.round = r.id;
          p.textContent = `BP round ${r.id} (${r.by}): ${r.done} of ${r.total} done, ${r.ok} measured`;
          p.classList.toggle("done", r.done === r.total);
        }
      }
      for (const [dev, status] of Object.entries(r.res)) {
        const tile = tiles.get(dev);
        if (tile) $(".bpstate", tile.el).textContent = status === "completed" ? "" : `BP ${status}`;
      }
    }
    if (overlay && layoutMoved()) layoutDirty = true;
    const left = m.session_s;
    stats.sessionS = left;
    if (stats.state === "live") banner(left < 120 ? `live · session ends in ${left} s` : "live", "ok");
  }

  // ---- actions --------------------------------------------------------------------------
  async function post(url, body) {
    let r;
    try {
      r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json",
        "X-CSRF": boot.csrf}, body: JSON.stringify(body), credentials: "same-origin"});
    } catch (e) { banner("request failed: server not reachable", "bad"); return null; }
    if (r.status === 401) { expired(); return null; }
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) { banner(doc.error || `request failed (${r.status})`, "bad"); return null; }
    return doc;
  }
  async function ack(tile) {
    const a = tile.alarm;
    if (!a) return;
    const r = await post("/api/alarms/ack", {alarm_id: a.id});
    if (r) { $(".amsg", tile.el).textContent += ` (acknowledged by ${r.by})`; $("button.ack", tile.el).hidden = true; }
  }
  const bpWard = $("#bp-ward");
  if (bpWard) bpWard.addEventListener("click", async () => {
    const r = await post("/api/bp", {ward: bpWard.dataset.ward});
    if (r) { const p = $("#bp-progress"); p.dataset.round = r.round; p.classList.remove("done");
             p.textContent = `BP round ${r.round}: 0 of ${r.total} done`; }
  });

  // ---- connection -----------------------------------------------------------------------
  let ws = null, backoff = 1, stopped = false, timer = null;
  function expired() {
    stopped = true;
    stats.state = "expired";
    conn.innerHTML = `Your session has ended (expired, logged out or the server restarted). <a id="relogin" href="/login?next=${encodeURIComponent(location.pathname)}&expired=1">Log in again</a>`;
    conn.className = "conn bad";
    if (ws) ws.close();
  }
  function connect() {
    if (stopped) return;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const q = new URLSearchParams({view: boot.view});
    if (boot.id) q.set("id", boot.id);
    ws = new WebSocket(`${proto}://${location.host}/ws?${q}`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { stats.connects++; };
    ws.onmessage = (ev) => {
      stats.messages++;
      if (typeof ev.data === "string") {
        stats.bytes += ev.data.length;
        const m = JSON.parse(ev.data);
        if (m.t === "hello") {
          wardNames = m.wards || {}; boot.csrf = m.csrf || boot.csrf;
          buildTiles(m.tiles); stats.state = "live"; backoff = 1; banner("live", "ok");
        } else if (m.t === "snap") onSnap(m);
        else if (m.t === "bye") stats.bye = m.why;
      } else { stats.bytes += ev.data.byteLength; onBinary(ev.data); }
    };
    ws.onclose = (ev) => {
      stats.lastClose = ev.code;
      if (ev.code === 4401 || stats.bye === "expired") return expired();
      if (ev.code === 4403 || stats.bye === "forbidden") {
        stopped = true; stats.state = "forbidden";
        banner("This view is no longer in your scope (access was revoked).", "bad"); return;
      }
      if (stopped) return;
      stats.state = "reconnecting";
      let wait = backoff;
      backoff = Math.min(30, backoff * 2);
      const tick = () => {
        banner(`Connection to the server lost; reconnecting in ${wait} s…`, "warn");
        if (wait-- <= 0) { banner("reconnecting…", "warn"); connect(); return; }
        timer = setTimeout(tick, 1000);
      };
      tick();
    };
  }
  addEventListener("online", () => { if (stats.state === "reconnecting") { clearTimeout(timer); backoff = 1; connect(); } });
  connect();

  // ---- patient view: trend and alarm history --------------------------------------------
  async function history() {
    if (boot.view !== "patient" || stopped) return;
    let r;
    try { r = await fetch(`/api/patient/${encodeURIComponent(boot.id)}/history`, {credentials: "same-origin"}); }
    catch (e) { return; }
    if (r.status === 401) return expired();
    if (!r.ok) return;
    const doc = await r.json();
    drawTrend($("#trend"), doc.trend);
    const body = $("#alarm-history tbody");
    body.textContent = "";
    for (const a of doc.alarms.slice().reverse()) {
      const tr = document.createElement("tr");
      tr.innerHTML = `<td>${new Date(a.ts_us / 1000).toLocaleTimeString()}</td><td>${esc(a.kind)}</td>
        <td>${esc(a.code)}</td><td>${esc(a.priority)}</td><td>${esc(a.user)}</td><td>${esc(a.message)}</td>`;
      body.appendChild(tr);
    }
    stats.historyLoaded = (stats.historyLoaded || 0) + 1;
  }
  function drawTrend(c, trend) {
    const ctx = c.getContext("2d"), W = c.width, H = c.height;
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H);
    // the last 24 h, or from the first minute shown (a young stay) with 10 min to spare
    let first = Infinity;
    for (const k of Object.keys(trend)) if (trend[k].length) first = Math.min(first, trend[k][0][0]);
    const t1 = Date.now() + 60e3, t0 = Math.max(t1 - 24 * 3600e3, Math.min(first, t1) - 600e3);
    const series = [["hr", "#3f3", 30, 200], ["spo2", "#3cf", 70, 100], ["sys", "#f8f", 40, 220], ["dia", "#f8f", 40, 220]];
    ctx.font = "11px sans-serif";
    series.forEach(([key, col, lo, hi], i) => {
      const pts = trend[key] || [];
      ctx.fillStyle = col; ctx.fillText(`${key} (${pts.length} min)`, 6 + i * 90, 12);
      ctx.strokeStyle = col; ctx.beginPath();
      pts.forEach(([t, v], j) => {
        const x = (t - t0) / (t1 - t0) * W, y = H - (v - lo) / (hi - lo) * H;
        if (key === "sys" || key === "dia") { ctx.fillRect(x - 1.5, y - 1.5, 3, 3); return; }
        j ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      ctx.stroke();
    });
  }
  if (boot.view === "patient") { history(); setInterval(history, 30000); }
})();
