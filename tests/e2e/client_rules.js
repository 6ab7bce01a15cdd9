// The client's rules, run in the browser by tests/e2e/test_client_browser.py: an async function of
// the module's URL that returns what it saw (a fake socket stands in where no server is needed).
(async (url) => {
  const q = await import(url);
  const out = {};
  // Backoff: within [step/2, step], the step doubling from min up to max.
  out.low = [0, 1, 2, 3, 10, 50].map((n) => q.backoff(n, 500, 8000, () => 0));
  out.high = [0, 1, 2, 3, 10, 50].map((n) => q.backoff(n, 500, 8000, () => 0.999999));
  // Publications: duplicates dropped, a gap reported, a new epoch accepted.
  class FakeSocket extends EventTarget { constructor() { super(); this.sent = []; } send(d) { this.sent.push(JSON.parse(d)); } close() {} }
  const client = new q.Client("/chat", { WebSocket: FakeSocket });
  const room = client.room("general");
  const seen = [], gaps = [], outcomes = [];
  room.addEventListener("publication", ({ detail }) => seen.push(`${detail.epoch}:${detail.offset}`));
  room.addEventListener("gap", ({ detail }) => gaps.push([detail.from, detail.to]));
  room.addEventListener("recovered", ({ detail }) => outcomes.push(["recovered", detail.replayed]));
  room.addEventListener("unrecovered", ({ detail }) => outcomes.push(["unrecovered", detail.reason, detail.offset]));
  const pub = (epoch, offset) => client._dispatch({ type: "publication", room: "general", epoch, offset, data: {} });
  room.joined = true;
  for (const [e, o] of [["a", 1], ["a", 2], ["a", 2], ["a", 1], ["a", 5], ["b", 1], ["b", 1]]) pub(e, o);
  out.seen = seen;
  out.gaps = gaps;
  out.position = room.position;
  client._dispatch({ type: "recovery", room: "general", recovered: true, replayed: 3, epoch: "b", offset: 1 });
  client._dispatch({ type: "recovery", room: "general", recovered: false, replayed: 0, epoch: "c", offset: 9, reason: "another epoch" });
  out.outcomes = outcomes;
  out.afterUnrecovered = room.position;
  // The join after a reconnect carries the last position.
  client.state = "connected"; client.socket = new FakeSocket();
  room.join({ client: "x" });
  out.join = client.socket.sent[0];
  // Presence: joins and leaves keep the member list.
  client._dispatch({ type: "joined", room: "general", you: "1", members: [{ connection: "1", user: "ada", node: "n" }] });
  client._dispatch({ type: "presence", room: "general", joins: [{ connection: "2", user: "bob", node: "n" }], leaves: [], reason: "join" });
  client._dispatch({ type: "presence", room: "general", joins: [], leaves: [{ connection: "1", user: "ada", node: "n" }], reason: "node_down" });
  out.members = [...room.members.keys()];
  // Errors reach the "error" event.
  const errors = [];
  client.addEventListener("error", ({ detail }) => errors.push(detail.kind));
  client._dispatch({ type: "error", message: "nope" });
  client._dispatch({ type: "auth.error", reason: "user_mismatch" });
  client._dispatch({ type: "cluster_lost", lost: 2 });
  client.state = "disconnected"; client.socket = null;
  out.sent = client.send({ type: "say" });
  out.errors = errors;
  out.codes = [...q.NO_RECONNECT_CODES];
  out.expiry = q.tokenExpiry("x." + btoa(JSON.stringify({ exp: 123 })).replace(/=+$/, "") + ".y");
  out.notJwt = q.tokenExpiry("opaque");
  return out;
})
