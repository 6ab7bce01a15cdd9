// The demo chat's page. Everything the server or other people send is shown with textContent,
// never parsed as HTML. The WebSocket URL comes from the page's own location, so the demo runs
// on any host and port; a lost connection is retried with exponential backoff (and jitter).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_BACKOFF_MS = 8000;

  const saved = {
    get(key) { try { return localStorage.getItem(`qakeapi-demo-${key}`) || ""; } catch { return ""; } },
    set(key, value) { try { localStorage.setItem(`qakeapi-demo-${key}`, value); } catch { /* private mode */ } },
  };

  // The page's own id, kept across reconnections (and tabs of one browser share a name, not an id).
  const clientId = (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`)
    .replace(/[^A-Za-z0-9_-]/g, "").slice(0, 64);

  const state = { name: "", room: "general", rooms: [], members: [], socket: null, attempt: 0, timer: null, countdown: null };

  function chatUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/chat`;
  }

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

  // -- connection ------------------------------------------------------------------------------

  function connect() {
    clearTimeout(state.timer);
    clearInterval(state.countdown);
    state.timer = null;
    setStatus("connecting", "connecting…");
    const socket = new WebSocket(chatUrl());
    state.socket = socket;
    socket.addEventListener("open", () => {
      state.attempt = 0;
      setStatus("online", "online");
      join(state.room);
    });
    socket.addEventListener("message", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch { return; }
      if (data && typeof data === "object") handle(data);
    });
    socket.addEventListener("close", () => {
      if (state.socket !== socket) return;
      state.socket = null;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** state.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    state.attempt += 1;
    const due = Date.now() + delay;
    const show = () => setStatus("reconnecting", `reconnecting in ${Math.max(1, Math.ceil((due - Date.now()) / 1000))} s`);
    show();
    state.countdown = setInterval(show, 1000);
    state.timer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (state.name && !state.socket) connect();
  }

  function send(message) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
    state.socket.send(JSON.stringify(message));
    return true;
  }

  function join(room) {
    send({ type: "join", name: state.name, room, client: clientId });
  }

  // -- what the server says --------------------------------------------------------------------

  function handle(data) {
    switch (data.type) {
      case "welcome":
      case "rooms":
        state.rooms = Array.isArray(data.rooms) ? data.rooms : [];
        renderRooms();
        break;
      case "joined":
        state.room = data.room;
        saved.set("room", data.room);
        $("messages").replaceChildren();
        for (const message of data.history || []) addMessage(message);
        addSystem(`You joined #${data.room}`);
        state.members = data.members || [];
        renderRoom();
        break;
      case "presence":
        if (data.room === state.room) { state.members = data.members || []; renderMembers(); }
        break;
      case "message":
        if (data.room === state.room) addMessage(data);
        break;
      case "system":
        if (data.room === state.room) addSystem(data.text);
        break;
      case "error":
        addSystem(data.message, "error");
        break;
    }
  }

  // -- rendering -------------------------------------------------------------------------------

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
      button.addEventListener("click", () => { if (room.name !== state.room) join(room.name); });
      item.append(button);
      list.append(item);
    }
  }

  function renderMembers() {
    const list = $("members");
    list.replaceChildren();
    for (const member of state.members) {
      const mine = member.client === clientId;
      list.append(el("li", mine ? "me" : "", mine ? `${member.name} (you)` : member.name));
    }
    $("online-count").textContent = String(state.members.length);
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
    const mine = message.client === clientId;
    const item = el("li", mine ? "message mine" : "message");
    const meta = el("div", "meta");
    meta.append(el("span", "who", mine ? "You" : String(message.name)));
    const when = new Date(Number(message.ts) || Date.now());
    meta.append(el("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    item.append(meta, el("div", "text", String(message.text)));
    stickToBottom((box) => box.append(item));
  }

  function addSystem(text, kind) {
    stickToBottom((box) => box.append(el("li", kind ? `system ${kind}` : "system", String(text))));
  }

  // -- the page's forms ------------------------------------------------------------------------

  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!name) return;
    state.name = name;
    saved.set("name", name);
    $("welcome").hidden = true;
    $("chat").hidden = false;
    renderRoom();
    connect();
    $("text").focus();
  });

  $("say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (text && send({ type: "say", text })) input.value = "";
  });

  $("room-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("new-room");
    const room = input.value.trim().toLowerCase();
    if (room) { join(room); input.value = ""; }
  });

  $("status").addEventListener("click", reconnectNow);
  window.addEventListener("online", reconnectNow);

  $("name").value = saved.get("name");
  state.room = saved.get("room") || "general";
})();
