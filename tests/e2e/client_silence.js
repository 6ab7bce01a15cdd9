// A server that accepts and then says nothing, run in the browser by tests/e2e/test_client_browser.py:
// an async function of the module's URL; the client pings, gives up on the socket, reconnects.
(async (url) => {
  const { Client } = await import(url);
  // A server that accepts and then says nothing: the client pings, then gives up on it.
  const sockets = [];
  class SilentSocket extends EventTarget {
    constructor() { super(); this.sent = []; sockets.push(this); queueMicrotask(() => this.dispatchEvent(new Event("open"))); }
    send(data) { this.sent.push(JSON.parse(data)); }
    close(code, reason) { this.dispatchEvent(Object.assign(new Event("close"), { code, reason })); }
  }
  const client = new Client("/chat", { WebSocket: SilentSocket, silenceTimeout: 0.2, minReconnectDelay: 10 });
  const errors = [];
  const closes = [];
  const reconnected = new Promise((resolve, reject) => {
    client.addEventListener("error", ({ detail }) => errors.push(detail.kind));
    client.addEventListener("disconnected", ({ detail }) => closes.push([detail.code, detail.reconnect]));
    client.addEventListener("connected", () => { if (sockets.length === 2) resolve(); });
    setTimeout(() => reject(new Error(`no reconnection: ${errors} ${closes}`)), 10000);
  });
  client.connect();
  await reconnected;
  client.disconnect();
  return { pings: sockets[0].sent, errors, closes };
})
