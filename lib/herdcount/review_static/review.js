// herdcount review: one photo in a deep-zoom view, its points edited through the server.
// The server holds the state: every answer carries the photo's points, which are redrawn.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const photo = config.photo;
  const top = config.max_zoom;
  const message = document.getElementById("message");
  const reviewerInput = document.getElementById("reviewer");
  reviewerInput.value = localStorage.getItem("herdcount-reviewer") || "";
  reviewerInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape") reviewerInput.blur();
  });
  reviewerInput.addEventListener("change", () => {
    localStorage.setItem("herdcount-reviewer", reviewerInput.value.trim());
  });

  let state = null;
  let selected = null;
  let current = config.classes[0];
  let mouse = null;
  const markers = new Map();

  const map = L.map("map", {
    crs: L.CRS.Simple,
    minZoom: 0,
    maxZoom: top + 2,
    zoomSnap: 0.25,
    keyboard: false,
    doubleClickZoom: false,
    boxZoom: false,
    attributionControl: false,
  });
  // (row, col) of the full-size photo <-> the map's coordinates at the full-size zoom level.
  const toLatLng = (row, col) => map.unproject([col, row], top);
  const toPixel = (latlng) => {
    const p = map.project(latlng, top);
    return { row: p.y, col: p.x };
  };
  const bounds = L.latLngBounds(toLatLng(config.height, 0), toLatLng(0, config.width));
  L.tileLayer(`/tiles/${encodeURIComponent(photo)}/{z}/{x}/{y}.jpg`, {
    tileSize: 256,
    minZoom: 0,
    maxZoom: top + 2,
    maxNativeZoom: top,
    bounds: bounds,
    noWrap: true,
  }).addTo(map);
  map.invalidateSize();
  map.fitBounds(bounds, { padding: [8, 8] });
  map.setMaxBounds(bounds.pad(0.25));
  const layer = L.layerGroup().addTo(map);
  // Scores are written beside the points once the view is close enough to read them.
  const near = () => map.getContainer().classList.toggle("near", map.getZoom() >= top - 1);
  map.on("zoomend", near);
  near();

  function say(text, ok) {
    message.textContent = text;
    message.className = ok ? "ok" : "";
  }

  function reviewer() {
    const name = reviewerInput.value.trim();
    if (!name) {
      say("type your name in 'reviewer' first: every change is kept with its reviewer");
      reviewerInput.focus();
    }
    return name;
  }

  function colour(cls) {
    return config.colours[config.classes.indexOf(cls)] || "#ffffff";
  }

  function seen(point) {
    return { class: point.class, row: point.row, col: point.col };
  }

  function draw() {
    layer.clearLayers();
    markers.clear();
    for (const p of state.points) {
      const marker = L.marker(toLatLng(p.row, p.col), {
        draggable: true,
        keyboard: false,
        title: `${p.class}${p.score === null ? "" : " " + p.score.toFixed(2)}`,
        icon: L.divIcon({
          className: "point " + p.source + (selected === p.id ? " selected" : ""),
          iconSize: [16, 16],
          html:
            `<div style="width:100%;height:100%;border-radius:50%;background:${colour(p.class)}"></div>` +
            (p.score === null ? "" : `<span class="score">${p.score.toFixed(2)}</span>`),
        }),
      });
      marker.on("click", () => select(p.id));
      marker.on("dragstart", () => select(p.id));
      marker.on("dragend", () => {
        const to = toPixel(marker.getLatLng());
        send("edits", { action: "move", point: p.id, seen: seen(p), row: to.row, col: to.col });
      });
      marker.addTo(layer);
      const el = marker.getElement();
      el.dataset.id = p.id;
      el.dataset.class = p.class;
      el.dataset.row = p.row;
      el.dataset.col = p.col;
      markers.set(p.id, marker);
    }
    for (const button of document.querySelectorAll("button.cls")) {
      button.classList.toggle("current", button.dataset.class === current);
      button.querySelector(".n").textContent = state.counts[button.dataset.class];
    }
    document.getElementById("state").textContent = state.done_by
      ? `done by ${state.done_by}`
      : `${state.points.length} points, not done`;
    document.getElementById("done").textContent = state.done_by ? "reopen" : "mark done";
    document.body.dataset.events = state.events;
  }

  function select(id) {
    selected = id;
    for (const [pid, marker] of markers) {
      marker.getElement().classList.toggle("selected", pid === id);
    }
  }

  function point(id) {
    return state.points.find((p) => p.id === id);
  }

  async function load() {
    const answer = await fetch(`/api/photos/${encodeURIComponent(photo)}`);
    state = await answer.json();
    draw();
  }

  async function send(verb, body) {
    const name = reviewer();
    if (!name) {
      draw();
      return;
    }
    const answer = await fetch(`/api/photos/${encodeURIComponent(photo)}/${verb}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, reviewer: name }),
    });
    const reply = await answer.json();
    if (answer.ok) {
      state = reply;
      say(`saved (${state.events} changes on this photo)`, true);
    } else if (answer.status === 409) {
      state = reply.state;
      say(reply.error + ": showing the photo as it is now");
    } else {
      say(reply.error || `refused (${answer.status})`);
    }
    if (selected !== null && !point(selected)) selected = null;
    draw();
  }

  function add(latlng) {
    const at = toPixel(latlng);
    if (at.row < 0 || at.col < 0 || at.row >= config.height || at.col >= config.width) return;
    send("edits", { action: "add", class: current, row: at.row, col: at.col });
  }

  map.on("click", (e) => add(e.latlng));
  map.on("mousemove", (e) => {
    mouse = e.latlng;
  });

  function chooseClass(k) {
    const cls = config.classes[k];
    if (cls === undefined) return;
    const p = selected === null ? null : point(selected);
    if (p && p.class !== cls) {
      send("edits", { action: "relabel", point: p.id, seen: seen(p), class: cls });
    } else {
      current = cls;
      draw();
    }
  }

  function nudge(drow, dcol) {
    const p = selected === null ? null : point(selected);
    if (!p) return;
    const row = Math.min(config.height - 0.1, Math.max(0, p.row + drow));
    const col = Math.min(config.width - 0.1, Math.max(0, p.col + dcol));
    send("edits", { action: "move", point: p.id, seen: seen(p), row: row, col: col });
  }

  function remove() {
    const p = selected === null ? null : point(selected);
    if (p) send("edits", { action: "delete", point: p.id, seen: seen(p) });
  }

  function toggleDone() {
    send("edits", { action: state.done_by ? "reopen" : "done" });
  }

  function go(to) {
    if (to) window.location.href = `/photo/${encodeURIComponent(to)}`;
  }

  document.getElementById("undo").addEventListener("click", () => send("undo", {}));
  document.getElementById("done").addEventListener("click", toggleDone);
  for (const [k, button] of document.querySelectorAll("button.cls").entries()) {
    button.addEventListener("click", () => chooseClass(k));
  }

  document.addEventListener("keydown", (e) => {
    if (e.target === reviewerInput) return;
    const step = e.shiftKey ? 10 : 1;
    if (/^[1-9]$/.test(e.key)) chooseClass(Number(e.key) - 1);
    else if (e.key === "Delete" || e.key === "Backspace" || e.key === "x") remove();
    else if (e.key === "z") send("undo", {});
    else if (e.key === "d") toggleDone();
    else if (e.key === "a" && mouse) add(mouse);
    else if (e.key === "Escape") select(null);
    else if (e.key === "n") go(config.next);
    else if (e.key === "p") go(config.previous);
    else if (e.key === "ArrowUp") nudge(-step, 0);
    else if (e.key === "ArrowDown") nudge(step, 0);
    else if (e.key === "ArrowLeft") nudge(0, -step);
    else if (e.key === "ArrowRight") nudge(0, step);
    else return;
    e.preventDefault();
  });

  load();
})();
