// The demo chat's page, on qakeapi.js (the framework's browser client): the client connects with
// a token (refreshed in band before it expires), reconnects with backoff, and brings the room
// back after a lost connection with every message said meanwhile, once, in order. Everything
// the server or other people send is shown with textContent, never parsed as HTML.
import { Client } from "qakeapi";

const $ = (id) => document.getElementById(id);

const saved = {
  get(key) { try { return localStorage.getItem(`qakeapi-demo-${key}`) || ""; } catch { return ""; } },
  set(key, value) { try { localStorage.setItem(`qakeapi-demo-${key}`, value); } catch { /* private mode */ } },
};

// The page's own id, kept across reconnections: it tells the page's own messages.
const pageId = (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`)
  .replace(/[^A-Za-z0-9_-]/g, "").slice(0, 64);

const state = { name: "", room: "general", rooms: [], client: null, current: null, you: null, countdown: null };
window.demo = state; // for the browser tests (and the curious)

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(kind, text) {
  const status = $("status");
  status.dataset.state = kind;
  status.textContent = text;
  $("send").disabled = kind !== "online";
}

async function getToken() {
  const response = await fetch("/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: state.name }),
  });
  if (!response.ok) throw new Error(`POST /token: HTTP ${response.status}`);
  return (await response.json()).token;
}

// -- the connection ------------------------------------------------------------------------------

function start() {
  const client = new Client("/chat", { getToken, silenceTimeout: 30 });
  state.client = client;
  client.addEventListener("state", ({ detail }) => {
    clearInterval(state.countdown);
    if (detail.state === "connecting") setStatus("connecting", "connecting…");
    if (detail.state === "connected") setStatus("online", "online");
  });
  client.addEventListener("disconnected", ({ detail }) => {
    if (!detail.reconnect) {
      setStatus("offline", detail.code === 4003 ? "signed out" : "offline");
      return;
    }
    const due = Date.now() + detail.delay;
    const show = () => setStatus("reconnecting", `reconnecting in ${Math.max(1, Math.ceil((due - Date.now()) / 1000))} s`);
    show();
    state.countdown = setInterval(show, 1000);
  });
  client.addEventListener("message", ({ detail }) => {
    const data = detail.data;
    if (data.type === "welcome" || data.type === "rooms") {
      state.rooms = Array.isArray(data.rooms) ? data.rooms : [];
      renderRooms();
    }
  });
  client.addEventListener("error", ({ detail }) => {
    if (detail.kind === "server" || detail.kind === "closed" || detail.kind === "lost" || detail.kind === "auth") {
      addSystem(detail.error.message, "error");
    } else {
      console.warn("qakeapi:", detail.kind, detail.error.message);
    }
  });
  enter(state.room);
  client.connect();
}

function enter(name) {
  const client = state.client;
  const previous = state.current;
  const room = client.room(name);
  if (previous && previous !== room) {
    previous.wanted = false; // the server leaves it when the page joins another room
    previous.joined = false;
  }
  if (!room.listening) {
    room.listening = true;
    room.addEventListener("joined", ({ detail }) => {
      if (state.current !== room) return;
      state.you = detail.you;
      state.room = room.name;
      saved.set("room", room.name);
      if (!room.shown) {
        room.shown = true;
        addSystem(`You joined #${room.name}`);
      }
      renderRoom();
    });
    room.addEventListener("publication", ({ detail }) => {
      if (state.current === room && detail.data && detail.data.type === "said") addMessage(detail.data);
    });
    room.addEventListener("presence", ({ detail }) => {
      if (state.current !== room) return;
      const before = new Set(detail.joins.map((m) => m.connection));
      for (const member of detail.joins) if (member.connection !== state.you && detail.reason === "join") addSystem(`${member.user} joined`);
      for (const member of detail.leaves) if (!before.has(member.connection) && detail.reason !== "sync") addSystem(`${member.user} left`);
      renderMembers();
    });
    room.addEventListener("unrecovered", ({ detail }) => {
      if (state.current === room && room.shown) addSystem(`Some messages of #${room.name} could not be brought back (${detail.reason})`, "error");
    });
  }
  state.current = room;
  room.shown = false;
  $("messages").replaceChildren(); // the room's latest messages come with the join
  room.position = null; // a room entered anew starts from now
  room.join({ client: pageId });
}

// -- rendering -----------------------------------------------------------------------------------

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  const names = state.rooms.map((room) => room.name);
  const rooms = names.includes(state.room) ? state.rooms : [...state.rooms, { name: state.room, online: 0 }];
  for (const room of rooms) {
    const item = el("li", room.name === state.room ? "current" : "");
    const button = el("button");
    button.type = "button";
    button.dataset.room = room.name;
    button.append(el("span", "room-name", `# ${room.name}`), el("span", "count", String(room.online)));
    button.addEventListener("click", () => { if (room.name !== state.room) enter(room.name); });
    item.append(button);
    list.append(item);
  }
}

function renderMembers() {
  const list = $("members");
  list.replaceChildren();
  const members = state.current ? [...state.current.members.values()] : [];
  members.sort((a, b) => String(a.user).localeCompare(String(b.user)) || a.connection.localeCompare(b.connection));
  for (const member of members) {
    const mine = member.connection === state.you;
    list.append(el("li", mine ? "me" : "", mine ? `${member.user} (you)` : String(member.user)));
  }
  $("online-count").textContent = String(members.length);
}

function renderRoom() {
  $("room-title").textContent = `# ${state.room}`;
  $("text").placeholder = `Message #${state.room}`;
  renderRooms();
  renderMembers();
}

function stickToBottom(add) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  add(box);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function addMessage(message) {
  const mine = message.client === pageId;
  const item = el("li", mine ? "message mine" : "message");
  const meta = el("div", "meta");
  meta.append(el("span", "who", mine ? "You" : String(message.from)));
  const when = new Date(Number(message.ts) || Date.now());
  meta.append(el("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  item.append(meta, el("div", "text", String(message.text)));
  stickToBottom((box) => box.append(item));
}

function addSystem(text, kind) {
  stickToBottom((box) => box.append(el("li", kind ? `system ${kind}` : "system", String(text))));
}

// -- the page's forms ----------------------------------------------------------------------------

$("name-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) return;
  state.name = name;
  saved.set("name", name);
  $("welcome").hidden = true;
  $("chat").hidden = false;
  $("signout").hidden = false;
  renderRoom();
  start();
  $("text").focus();
});

$("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (text && state.client.send({ type: "say", room: state.room, text })) input.value = "";
});

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("new-room");
  const room = input.value.trim().toLowerCase();
  if (room) { enter(room); input.value = ""; }
});

$("signout").addEventListener("click", async () => {
  const response = await fetch("/api/revoke", { method: "POST", headers: { Authorization: `Bearer ${state.client.token}` } });
  if (!response.ok) addSystem(`could not sign out: HTTP ${response.status}`, "error");
});

$("status").addEventListener("click", () => {
  if (state.client && state.client.state === "disconnected") state.client.connect();
});

$("name").value = saved.get("name");
state.room = saved.get("room") || "general";
