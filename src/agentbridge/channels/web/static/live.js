// The live stream: one EventSource over ledger events; ids are ledger event ids.

import { conn } from "./util.js";

export class LiveStream {
  // One EventSource; the browser reconnects by itself with Last-Event-ID. If it gives up
  // (readyState CLOSED, e.g. the bridge restarted), we reopen with ?after=<last id seen>.
  constructor(params, cursor, handlers) {
    this.params = params;
    this.cursor = cursor;
    this.handlers = handlers;
    this.source = null;
    this.retryTimer = null;
    this.closed = false;
    this.open();
  }

  open() {
    const query = new URLSearchParams({ ...this.params, after: String(this.cursor) });
    const source = new EventSource(`/api/events?${query}`);
    this.source = source;
    source.addEventListener("open", () => conn.set("live"));
    source.addEventListener("ledger", (event) => {
      const id = Number(event.lastEventId);
      if (id <= this.cursor) return; // already applied (never render an event twice)
      this.cursor = id;
      this.handlers.ledger(JSON.parse(event.data), id);
    });
    source.addEventListener("receipt", (event) => this.handlers.receipt?.(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      if (this.closed) return;
      if (source.readyState === EventSource.CLOSED) {
        // the browser gave up (bridge down, or restarted with a new token): find out which
        clearTimeout(this.retryTimer);
        fetch("/api/status", { credentials: "same-origin" })
          .then((r) => r.status)
          .catch(() => 0)
          .then((status) => {
            conn.set(
              "offline",
              status === 401 ? "signed out – open the link agentbridge up printed" : "offline – retrying",
            );
            this.retryTimer = setTimeout(() => this.closed || this.open(), status === 401 ? 5000 : 2000);
          });
      } else {
        conn.set("reconnecting");
      }
    });
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.source?.close();
  }
}
