// The rsanet serve dashboard: camera grid (MJPEG live view, top classes, status badge with
// the outage reason), alert list (clip playback, acknowledge) and an error banner. Plain
// JS; the token, if any, travels as a cookie set when the page was opened with ?token=.
// Stable hooks (the browser tests use them): #camera-NAME.camera[data-camera] with .name,
// img.live, .status and .top; #event-ID.event[data-id] with .play, .ack and .evidence;
// #player video#clip; #error; #connection.
"use strict";

// the token is in the cookie now: keep it out of the address bar and the history
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);

const cameras = document.getElementById("cameras");
const eventsList = document.getElementById("events");
const unacked = document.getElementById("unacked");
const connection = document.getElementById("connection");
const errorBanner = document.getElementById("error");
const DOWN = ["outage", "unreachable", "ended"];
let stream = null;

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

class HttpError extends Error {
  constructor(path, status) {
    super(`${path}: HTTP ${status}`);
    this.status = status;
  }
}

async function getJSON(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (!response.ok) throw new HttpError(path, response.status);
  return response.json();
}

function setConnection(text, state) {
  connection.textContent = text;
  connection.className = `badge ${state}`;
}

function showError(error) {
  if (error && error.status === 401) {
    errorBanner.textContent =
      "Not authorised (HTTP 401): this server needs its token. Open the page as /?token=TOKEN.";
    setConnection("unauthorised", "outage");
  } else {
    errorBanner.textContent = `Cannot reach the server: ${error && error.message ? error.message : error}`;
    setConnection("offline", "outage");
  }
  errorBanner.hidden = false;
  document.body.classList.add("failed");
}

function clearError() {
  errorBanner.hidden = true;
  errorBanner.textContent = "";
  document.body.classList.remove("failed");
}

function topText(top) {
  return (top || []).slice(0, 3).map((t) => `${t.label} ${t.score.toFixed(2)}`).join(" | ");
}

function liveImage(name) {
  const image = element("img", { class: "live", alt: `live view of ${name}` });
  const source = `api/cameras/${encodeURIComponent(name)}/live.mjpg`;
  image.src = source;
  // a broken stream (the server restarted, a proxy timed out): try again a little later
  image.onerror = () => setTimeout(() => { image.src = `${source}?retry=${Date.now()}`; }, 3000);
  return image;
}

function cameraCard(name) {
  let card = document.getElementById(`camera-${name}`);
  if (!card) {
    card = element("div", { id: `camera-${name}`, class: "camera", "data-camera": name });
    const title = element("div", { class: "title" });
    title.append(element("strong", { class: "name" }, name), element("span", { class: "badge status" }, "…"));
    card.append(title, liveImage(name), element("div", { class: "top" }), element("div", { class: "outage" }));
    cameras.append(card);
  }
  return card;
}

// a camera from /api/cameras (name, status, outage, top...) or a "scores" message (camera,
// status, top): only what the message holds is updated
function showCamera(camera) {
  const name = camera.name || camera.camera;
  if (!name) return;
  const card = cameraCard(name);
  if (camera.status) {
    const badge = card.querySelector(".status");
    badge.textContent = camera.status;
    badge.className = `badge status ${camera.status}`;
    card.classList.toggle("down", DOWN.includes(camera.status));
  }
  if ("outage" in camera || "error" in camera) {
    const outage = camera.outage;
    const reason = outage ? `${outage.reason} (${outage.attempts} attempt(s))` : camera.error || "";
    card.querySelector(".outage").textContent = reason;
  }
  if (camera.top) card.querySelector(".top").textContent = topText(camera.top);
}

function play(event) {
  const video = document.getElementById("clip");
  video.src = event.clip_url.replace(/^\//, "");
  video.dataset.event = event.id;
  document.getElementById("player-caption").textContent =
    `#${event.id} ${event.camera}: ${event.label} ${event.score.toFixed(2)} at ${new Date(event.end * 1000).toLocaleString()}`;
  document.getElementById("player").hidden = false;
  video.play().catch(() => {});
}

async function acknowledge(id) {
  try {
    showEvent(await getJSON(`api/events/${id}/ack`, { method: "POST" }));
  } catch (error) {
    showError(error);
  }
}

function showEvent(event, prepend) {
  let item = document.getElementById(`event-${event.id}`);
  if (event.acknowledged && unacked.checked) {
    if (item) item.remove();
    return;
  }
  if (!item) {
    item = element("li", { id: `event-${event.id}`, "data-id": event.id });
    if (prepend) eventsList.prepend(item); else eventsList.append(item);
  }
  item.replaceChildren();
  item.className = event.acknowledged ? "event acked" : "event";
  const when = new Date(event.end * 1000).toLocaleTimeString();
  item.append(element("span", { class: "what" }, `${when} ${event.camera}: ${event.label} ${event.score.toFixed(2)}`));
  if (event.clip_url) {
    const button = element("button", { class: "play", type: "button" }, "play");
    button.onclick = () => play(event);
    item.append(button);
  } else {
    item.append(element("em", { class: "evidence" }, `evidence ${event.evidence}`));
  }
  if (event.acknowledged) {
    item.append(element("span", { class: "acked-mark" }, "acknowledged"));
  } else {
    const ack = element("button", { class: "ack", type: "button" }, "acknowledge");
    ack.onclick = () => acknowledge(event.id);
    item.append(ack);
  }
  countAlerts();
}

function countAlerts() {
  document.getElementById("alert-count").textContent =
    String(eventsList.querySelectorAll("li.event:not(.acked)").length);
}

async function refreshCameras() {
  try {
    (await getJSON("api/cameras")).forEach(showCamera);
    clearError();
    return true;
  } catch (error) {
    showError(error);
    return false;
  }
}

// the list from the API, merged with what the stream added meanwhile (newer events stay)
async function refreshEvents() {
  try {
    const query = unacked.checked ? "?acknowledged=false" : "";
    const events = await getJSON(`api/events${query}`);
    const fetched = new Set(events.map((event) => String(event.id)));
    const newest = events.length ? events[0].id : 0;
    for (const item of [...eventsList.children]) {
      const older = Number(item.dataset.id) <= newest;
      if (!fetched.has(item.dataset.id) && (older || (unacked.checked && item.classList.contains("acked")))) item.remove();
    }
    events.forEach((event) => showEvent(event, false));
    [...eventsList.children]
      .sort((a, b) => Number(b.dataset.id) - Number(a.dataset.id))
      .forEach((item) => eventsList.append(item));
    countAlerts();
  } catch (error) {
    showError(error);
  }
}

async function refreshEvent(id) {
  try {
    showEvent(await getJSON(`api/events/${id}`), true);
  } catch (error) {
    showError(error);
  }
}

function listen() {
  if (stream) return;
  stream = new EventSource("api/stream");
  // subscribed: the list from the API now (also after a reconnection) misses nothing
  stream.onopen = () => {
    setConnection("live", "live");
    refreshEvents();
  };
  stream.onerror = () => {
    if (stream.readyState === EventSource.CLOSED) {
      // refused (a 401) or gone: start again once the API answers
      stream = null;
      setConnection("disconnected", "outage");
      refreshCameras().then((ok) => { if (ok) setTimeout(listen, 1000); });
    } else {
      setConnection("reconnecting", "outage");
    }
  };
  stream.addEventListener("scores", (message) => showCamera(JSON.parse(message.data)));
  stream.addEventListener("alert", (message) => {
    const event = JSON.parse(message.data);
    if (event.id !== null) showEvent(event, true);
  });
  stream.addEventListener("evidence", (message) => refreshEvent(JSON.parse(message.data).id));
  stream.addEventListener("ack", (message) => refreshEvent(JSON.parse(message.data).id));
}

unacked.onchange = refreshEvents;
refreshCameras().then((ok) => (ok ? listen() : refreshEvents()));
setInterval(async () => {
  if (await refreshCameras() && !stream) listen();
}, 5000);
