// The rsanet serve dashboard: camera grid (MJPEG live view, top classes, outage badge),
// alert list (clip playback, acknowledge). Plain JS; the token, if any, travels as a
// cookie set when the page was opened with ?token=.
"use strict";

// the token is in the cookie now: keep it out of the address bar and the history
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);

const cameras = document.getElementById("cameras");
const eventsList = document.getElementById("events");
const unacked = document.getElementById("unacked");
const connection = document.getElementById("connection");

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function topText(top) {
  return (top || []).slice(0, 3).map((t) => `${t.label} ${t.score.toFixed(2)}`).join(" | ");
}

function cameraCard(camera) {
  let card = document.getElementById(`camera-${camera.name}`);
  if (!card) {
    card = element("div", { id: `camera-${camera.name}`, class: "camera" });
    const title = element("div", { class: "title" });
    title.append(element("strong", {}, camera.name), element("span", { class: "badge" }));
    const image = element("img", {
      src: `api/cameras/${encodeURIComponent(camera.name)}/live.mjpg`,
      alt: `live view of ${camera.name}`,
    });
    card.append(title, image, element("div", { class: "top" }));
    cameras.append(card);
  }
  return card;
}

function showCamera(camera) {
  const card = cameraCard(camera);
  const badge = card.querySelector(".badge");
  if (camera.status) {
    badge.textContent = camera.outage ? `${camera.status}: ${camera.outage.reason}` : camera.status;
    badge.className = `badge ${camera.status}`;
  }
  card.querySelector(".top").textContent = topText(camera.top);
}

function play(event) {
  const player = document.getElementById("player");
  const video = document.getElementById("clip");
  video.src = event.clip_url.replace(/^\//, "");
  document.getElementById("player-caption").textContent =
    `${event.camera}: ${event.label} ${event.score.toFixed(2)} at ${new Date(event.end * 1000).toLocaleString()}`;
  player.hidden = false;
  video.play().catch(() => {});
}

function showEvent(event, prepend) {
  let item = document.getElementById(`event-${event.id}`);
  if (!item) {
    item = element("li", { id: `event-${event.id}` });
    if (prepend) eventsList.prepend(item); else eventsList.append(item);
  }
  item.replaceChildren();
  item.className = event.acknowledged ? "acked" : "";
  const when = new Date(event.end * 1000).toLocaleTimeString();
  item.append(element("span", {}, `${when} ${event.camera}: ${event.label} ${event.score.toFixed(2)} `));
  if (event.clip_url) {
    const button = element("button", {}, "play");
    button.onclick = () => play(event);
    item.append(button);
  } else {
    item.append(element("em", {}, `evidence ${event.evidence}`));
  }
  if (!event.acknowledged) {
    const ack = element("button", {}, "acknowledge");
    ack.onclick = async () => showEvent(await getJSON(`api/events/${event.id}/ack`, { method: "POST" }));
    item.append(ack);
  }
}

async function refreshCameras() {
  try {
    (await getJSON("api/cameras")).forEach(showCamera);
  } catch (error) {
    connection.textContent = String(error);
  }
}

async function refreshEvents() {
  const query = unacked.checked ? "?acknowledged=false" : "";
  const events = await getJSON(`api/events${query}`);
  eventsList.replaceChildren();
  events.forEach((event) => showEvent(event, false));
}

function listen() {
  const stream = new EventSource("api/stream");
  stream.onopen = () => { connection.textContent = "live"; connection.className = "badge live"; };
  stream.onerror = () => { connection.textContent = "reconnecting"; connection.className = "badge outage"; };
  stream.addEventListener("scores", (message) => showCamera(JSON.parse(message.data)));
  stream.addEventListener("alert", (message) => {
    const event = JSON.parse(message.data);
    if (event.id !== null) showEvent(event, true);
  });
  stream.addEventListener("evidence", async (message) => {
    const data = JSON.parse(message.data);
    showEvent(await getJSON(`api/events/${data.id}`));
  });
}

unacked.onchange = refreshEvents;
refreshCameras().then(refreshEvents).then(listen);
setInterval(refreshCameras, 5000);
