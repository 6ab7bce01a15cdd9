// qakeapi.js: the browser client of a QakeAPI WebSocket server. One ES module, no dependencies.
//
//   import { Client } from "/qakeapi/qakeapi-<version>.js";  // the URL Application.serve_client() returns
//   const client = new Client("/chat", { getToken: async () => (await fetch("/token")).text() });
//   const room = client.room("general");
//   room.addEventListener("publication", (event) => show(event.detail.data));
//   room.join();
//   client.connect();
//
// The wire protocol (every frame a JSON object with a "type") is documented on the reference page
// "Browser client protocol" of QakeAPI's docs. Every failure reaches an "error" event; nothing is
// swallowed.

export const VERSION = "0.1.0";

/** Close codes after which the client does not reconnect by itself. */
export const NO_RECONNECT_CODES = Object.freeze([
  1008, // policy violation (the origin, or a message the server refuses)
  4001, // the token expired and was not refreshed in time (or the connection never authenticated)
  4003, // the user's sessions were revoked
]);

/** The close code the client uses when the server fell silent for longer than `silenceTimeout`. */
export const SILENCE_CLOSE_CODE = 4000;

export const State = Object.freeze({
  DISCONNECTED: "disconnected",
  CONNECTING: "connecting",
  CONNECTED: "connected",
});

const TRANSITIONS = {
  disconnected: ["connecting"],
  connecting: ["connected", "disconnected"],
  connected: ["disconnected"],
};

/**
 * The delay before reconnection attempt `attempt` (0 for the first), in milliseconds: exponential
 * from `min` up to `max`, with "equal jitter" (a random point in the upper half of the step).
 */
export function backoff(attempt, min = 500, max = 10000, random = Math.random) {
  const step = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}

/** The `exp` claim of a JWT, in seconds since the epoch; `null` when the token is not a JWT. */
export function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1];
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (payload.length % 4)) % 4));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

function absoluteUrl(url) {
  const resolved = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved;
}

/** One room of a client: join/leave, publications in offset order, recovery, presence. */
export class Room extends EventTarget {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.wanted = false; // the application asked to be in the room
    this.joined = false; // the server confirmed the join on the current connection
    this.position = null; // {epoch, offset}: the last publication seen
    this.members = new Map(); // connection id -> member
    this.you = null; // this client's connection id in the room, from "joined"
    this.extra = {};
  }

  /** Join the room (now, or as soon as the client is connected); rejoined after every reconnect. */
  join(extra = {}) {
    this.wanted = true;
    this.extra = { ...extra };
    if (this.client.state === State.CONNECTED) this._sendJoin();
  }

  /** Leave the room. */
  leave() {
    this.wanted = false;
    this.joined = false;
    this.members.clear();
    // Not connected: there is nothing to leave on the server, and no rejoin will be sent.
    if (this.client.state === State.CONNECTED) this.client.send({ type: "leave", room: this.name });
  }

  _sendJoin() {
    const message = { ...this.extra, type: "join", room: this.name };
    if (this.position) message.since = { epoch: this.position.epoch, offset: this.position.offset };
    this.client.send(message);
  }

  _publication(frame) {
    const { epoch, offset } = frame;
    if (typeof epoch === "string" && typeof offset === "number") {
      const last = this.position;
      if (last && last.epoch === epoch) {
        if (offset <= last.offset) {
          this.client._debug("duplicate publication dropped", this.name, offset);
          return; // seen already: no duplicates
        }
        if (offset > last.offset + 1 && this.joined) {
          emit(this, "gap", { room: this.name, from: last.offset + 1, to: offset - 1 });
        }
      }
      this.position = { epoch, offset };
    }
    emit(this, "publication", { room: this.name, data: frame.data, epoch, offset });
  }

  _recovery(frame) {
    if (frame.recovered) {
      emit(this, "recovered", { room: this.name, replayed: frame.replayed });
      return;
    }
    if (typeof frame.epoch === "string" && typeof frame.offset === "number") {
      this.position = { epoch: frame.epoch, offset: frame.offset };
    } else {
      this.position = null;
    }
    emit(this, "unrecovered", { room: this.name, reason: frame.reason, epoch: frame.epoch, offset: frame.offset });
  }

  _joined(frame) {
    this.joined = true;
    this.you = frame.you ?? null;
    this.members = new Map();
    for (const member of frame.members || []) this.members.set(member.connection, member);
    emit(this, "joined", { room: this.name, you: this.you, members: [...this.members.values()], frame });
    emit(this, "presence", { room: this.name, members: [...this.members.values()], joins: [], leaves: [] });
  }

  _presence(frame) {
    const joins = frame.joins || [];
    const leaves = frame.leaves || [];
    for (const member of leaves) this.members.delete(member.connection);
    for (const member of joins) this.members.set(member.connection, member);
    emit(this, "presence", {
      room: this.name,
      members: [...this.members.values()],
      joins,
      leaves,
      reason: frame.reason,
    });
  }

  _disconnected() {
    if (!this.joined) return;
    this.joined = false;
    this.members.clear();
    emit(this, "presence", { room: this.name, members: [], joins: [], leaves: [] });
  }
}

/**
 * A connection to a QakeAPI WebSocket endpoint that keeps itself up.
 *
 * Events (CustomEvent, details in `event.detail`): "state" {state, previous}, "connecting",
 * "connected", "disconnected" {code, reason, reconnect, delay}, "message" {data} for frames that
 * are not the protocol's own, "auth" {user, expiresAt}, "error" {kind, error, ...}.
 */
export class Client extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = {
      token: null,
      getToken: null,
      tokenCarrier: "subprotocol", // or "query"
      queryParam: "token",
      protocols: [],
      minReconnectDelay: 500,
      maxReconnectDelay: 10000,
      refreshBefore: 30, // seconds before `exp` the token is refreshed (at most a third of its life)
      silenceTimeout: 0, // seconds; 0: off (see the docs: the client pings after half of it)
      noReconnectCodes: NO_RECONNECT_CODES,
      WebSocket: globalThis.WebSocket,
      debug: false,
      ...options,
    };
    this.token = this.options.token;
    this.state = State.DISCONNECTED;
    this.rooms = new Map();
    this.attempt = 0;
    this.socket = null;
    this.wanted = false;
    this._timers = { reconnect: null, refresh: null, silence: null, ping: null };
    this._onOnline = () => this._networkOnline();
    this._onOffline = () => this._networkOffline();
  }

  // -- the application's calls -----------------------------------------------------------------

  /** Connect, and keep reconnecting until `disconnect()` or a close code that says not to. */
  connect() {
    this.wanted = true;
    if (globalThis.addEventListener) {
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
    }
    if (this.state === State.DISCONNECTED) this._open();
  }

  /** Close the connection and stop reconnecting. */
  disconnect(code = 1000, reason = "") {
    this.wanted = false;
    this._clear("reconnect");
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
    }
    const socket = this.socket;
    if (socket) socket.close(code, reason);
    else if (this.state !== State.DISCONNECTED) this._closed({ code, reason }, false);
  }

  /** The room `name` of this client (created on first use). */
  room(name) {
    let room = this.rooms.get(name);
    if (!room) {
      room = new Room(this, name);
      this.rooms.set(name, room);
    }
    return room;
  }

  /** Send `message` as JSON; `false` (and an "error" event) when not connected. */
  send(message) {
    if (this.state !== State.CONNECTED || !this.socket) {
      this._error("send", new Error(`not connected (state ${this.state})`), { message });
      return false;
    }
    this.socket.send(JSON.stringify(message));
    return true;
  }

  // -- the connection ----------------------------------------------------------------------------

  _transition(next) {
    const previous = this.state;
    if (previous === next) return;
    if (!TRANSITIONS[previous].includes(next)) {
      throw new Error(`qakeapi: cannot go from ${previous} to ${next}`);
    }
    this.state = next;
    emit(this, "state", { state: next, previous });
    if (next !== State.DISCONNECTED) emit(this, next, {}); // "disconnected" comes with its close code (_closed)
  }

  async _open() {
    this._transition(State.CONNECTING);
    let token = this.token;
    const expiry = token ? tokenExpiry(token) : null;
    const stale = !token || (expiry !== null && expiry * 1000 - Date.now() < 1000);
    if (stale && this.options.getToken) {
      try {
        token = this.token = await this.options.getToken();
      } catch (error) {
        this._error("token", error);
        this._closed({ code: 1006, reason: "no token" }, true);
        return;
      }
      if (!this.wanted || this.state !== State.CONNECTING) return;
    }
    const url = absoluteUrl(this.url);
    const protocols = [...this.options.protocols];
    if (token && this.options.tokenCarrier === "query") url.searchParams.set(this.options.queryParam, token);
    else if (token) protocols.unshift("bearer", token);
    let socket;
    try {
      socket = new this.options.WebSocket(url.toString(), protocols);
    } catch (error) {
      this._error("connect", error, { url: url.origin + url.pathname });
      this._closed({ code: 1006, reason: "cannot connect" }, true);
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      if (this.socket !== socket) return;
      opened = true;
      this.attempt = 0;
      this._transition(State.CONNECTED);
      this._heard();
      this._scheduleRefresh();
      for (const room of this.rooms.values()) if (room.wanted) room._sendJoin();
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      this._heard();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        this._error("decode", error, { data: String(event.data).slice(0, 200) });
        return;
      }
      this._dispatch(frame);
    });
    socket.addEventListener("error", () => {
      if (this.socket === socket) this._error("socket", new Error("WebSocket error"), { url: url.origin + url.pathname });
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      // A handshake that failed may have been refused for its token: ask for a new one next time.
      if (!opened && this.options.getToken) this.token = null;
      this._closed(event, true);
    });
  }

  _closed(event, mayReconnect) {
    for (const name of ["refresh", "silence", "ping"]) this._clear(name);
    for (const room of this.rooms.values()) room._disconnected();
    const code = event.code;
    const refused = this.options.noReconnectCodes.includes(code);
    const reconnect = mayReconnect && this.wanted && !refused && (globalThis.navigator?.onLine ?? true);
    const delay = reconnect ? backoff(this.attempt, this.options.minReconnectDelay, this.options.maxReconnectDelay) : null;
    if (refused) this.wanted = false;
    if (this.state !== State.DISCONNECTED) this._transition(State.DISCONNECTED);
    emit(this, "disconnected", { code, reason: event.reason, reconnect, delay });
    if (refused) this._error("closed", new Error(`closed with ${code} (${event.reason || "no reason"}): not reconnecting`), { code });
    if (reconnect) {
      this.attempt += 1;
      this._clear("reconnect");
      this._timers.reconnect = setTimeout(() => {
        this._timers.reconnect = null;
        if (this.wanted && this.state === State.DISCONNECTED) this._open();
      }, delay);
    }
  }

  _networkOnline() {
    if (!this.wanted || this.state !== State.DISCONNECTED) return;
    this._clear("reconnect");
    this.attempt = 0;
    this._open();
  }

  _networkOffline() {
    if (this.socket) this.socket.close(SILENCE_CLOSE_CODE, "offline");
  }

  // -- what the server says ----------------------------------------------------------------------

  _dispatch(frame) {
    if (!frame || typeof frame !== "object") {
      emit(this, "message", { data: frame });
      return;
    }
    const room = typeof frame.room === "string" ? this.rooms.get(frame.room) : undefined;
    switch (frame.type) {
      case "publication":
        if (room) room._publication(frame);
        return;
      case "recovery":
        if (room) room._recovery(frame);
        return;
      case "joined":
        if (room) room._joined(frame);
        else emit(this, "message", { data: frame });
        return;
      case "presence":
        if (room) room._presence(frame);
        return;
      case "left":
        if (room) emit(room, "left", { room: room.name });
        return;
      case "auth.ok":
        emit(this, "auth", { user: frame.user, expiresAt: frame.expires_at });
        this._scheduleRefresh(frame.expires_at);
        return;
      case "auth.expired":
        this._refresh("expired");
        return;
      case "auth.error":
        this._error("auth", new Error(`the server refused the token: ${frame.reason}`), { reason: frame.reason });
        return;
      case "error":
        this._error("server", new Error(String(frame.message ?? frame.detail ?? "error")), { frame });
        return;
      case "cluster_lost":
        this._error("lost", new Error(`${frame.lost} messages were lost between nodes`), { frame });
        return;
      case "pong":
        return;
      default:
        emit(this, "message", { data: frame });
    }
  }

  // -- tokens ------------------------------------------------------------------------------------

  _scheduleRefresh(expiresAt) {
    this._clear("refresh");
    if (!this.options.getToken || !this.token) return;
    const exp = typeof expiresAt === "number" ? expiresAt : tokenExpiry(this.token);
    if (exp === null) return;
    const left = exp * 1000 - Date.now();
    const ahead = Math.min(this.options.refreshBefore * 1000, left / 3);
    this._timers.refresh = setTimeout(() => this._refresh("before expiry"), Math.max(0, left - ahead));
  }

  async _refresh(why) {
    this._clear("refresh");
    if (!this.options.getToken) {
      this._error("token", new Error(`the token needs refreshing (${why}) and there is no getToken option`));
      return;
    }
    const socket = this.socket;
    let token;
    try {
      token = await this.options.getToken();
    } catch (error) {
      this._error("token", error, { why });
      return;
    }
    if (this.socket !== socket || this.state !== State.CONNECTED) return;
    this.token = token;
    this.send({ type: "auth", token });
  }

  // -- silence -----------------------------------------------------------------------------------

  _heard() {
    const seconds = this.options.silenceTimeout;
    if (!seconds) return;
    this._clear("silence");
    this._clear("ping");
    this._timers.ping = setTimeout(() => this.send({ type: "ping" }), (seconds * 1000) / 2);
    this._timers.silence = setTimeout(() => {
      this._error("silence", new Error(`the server said nothing for ${seconds} s`));
      if (this.socket) this.socket.close(SILENCE_CLOSE_CODE, "server silent");
    }, seconds * 1000);
  }

  // -- helpers -----------------------------------------------------------------------------------

  _clear(name) {
    if (this._timers[name] !== null) clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }

  _error(kind, error, extra = {}) {
    emit(this, "error", { kind, error, ...extra });
  }

  _debug(...args) {
    if (this.options.debug) console.debug("qakeapi:", ...args);
  }
}
