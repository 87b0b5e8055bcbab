import { describe, expect, it } from "vitest";
import { backoffMs, EventStore, type EventSourceLike, type LiveEvent, type LiveState } from "./eventStore";

class FakeSource implements EventSourceLike {
  onopen: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  listeners = new Map<string, (ev: { data: string }) => void>();
  closed = false;
  constructor(readonly url: string) {}
  addEventListener(type: string, fn: (ev: { data: string }) => void) {
    this.listeners.set(type, fn);
  }
  close() {
    this.closed = true;
  }
  emit(ev: LiveEvent) {
    const fn = this.listeners.get(ev.type) ?? this.onmessage;
    fn?.({ data: JSON.stringify(ev) });
  }
}

function harness() {
  const sources: FakeSource[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const states: LiveState[] = [];
  const store = new EventStore({
    open: (url) => {
      const s = new FakeSource(url);
      sources.push(s);
      return s;
    },
    setTimer: (fn, ms) => {
      timers.push({ fn, ms });
      return timers.length;
    },
    clearTimer: () => {},
  });
  store.onState((s) => states.push(s));
  return { store, sources, timers, states };
}

const ev = (id: number, type = "service.status.changed", data = {}): LiveEvent => ({ id, type, at: id, data });

describe("EventStore", () => {
  it("opens one stream and delivers events by type, prefix and wildcard", () => {
    const { store, sources } = harness();
    const seen: string[] = [];
    store.on("service.status.changed", (e) => seen.push(`exact:${e.id}`));
    store.on("service.*", (e) => seen.push(`prefix:${e.id}`));
    store.on("*", (e) => seen.push(`all:${e.id}`));
    store.on("route.changed", (e) => seen.push(`route:${e.id}`));
    store.start();
    store.start(); // idempotent: still one connection
    expect(sources).toHaveLength(1);
    expect(sources[0].url).toBe("/api/events");
    sources[0].onopen?.({});
    expect(store.state).toBe("open");
    sources[0].emit(ev(1));
    sources[0].emit(ev(2, "route.changed"));
    expect(seen).toEqual(["exact:1", "prefix:1", "all:1", "all:2", "route:2"]);
  });

  it("reconnects after a drop, resuming after the last id, and skips replayed events", () => {
    const { store, sources, timers, states } = harness();
    const ids: number[] = [];
    store.on("*", (e) => ids.push(e.id));
    store.start();
    sources[0].onopen?.({});
    sources[0].emit(ev(5));
    sources[0].emit(ev(6));
    sources[0].onerror?.({});
    expect(sources[0].closed).toBe(true);
    expect(store.state).toBe("reconnecting");
    expect(timers).toHaveLength(1);
    timers[0].fn();
    expect(sources[1].url).toBe("/api/events?since=6");
    // An overlapping replay (the server resends 6) is not delivered twice.
    sources[1].emit(ev(6));
    sources[1].emit(ev(7));
    sources[1].onopen?.({});
    expect(ids).toEqual([5, 6, 7]);
    expect(states).toEqual(["connecting", "open", "reconnecting", "open"]);
    // Events arriving late on the dead source are ignored.
    sources[0].emit(ev(8));
    expect(ids).toEqual([5, 6, 7]);
  });

  it("backs off while the server stays away, and resets after a success", () => {
    const { store, sources, timers } = harness();
    store.start();
    for (let i = 0; i < 6; i++) {
      sources[sources.length - 1].onerror?.({});
      timers[timers.length - 1].fn();
    }
    expect(timers.map((t) => t.ms)).toEqual([500, 1000, 2000, 4000, 8000, 10000]);
    sources[sources.length - 1].onopen?.({});
    sources[sources.length - 1].onerror?.({});
    expect(timers[timers.length - 1].ms).toBe(500);
  });

  it("ignores malformed data and stops cleanly", () => {
    const { store, sources } = harness();
    const ids: number[] = [];
    store.on("*", (e) => ids.push(e.id));
    store.start();
    sources[0].onmessage?.({ data: "not json" });
    sources[0].onmessage?.({ data: JSON.stringify({ type: "x" }) });
    expect(ids).toEqual([]);
    store.stop();
    expect(sources[0].closed).toBe(true);
    expect(store.state).toBe("closed");
  });

  it("unsubscribes", () => {
    const { store, sources } = harness();
    const ids: number[] = [];
    const off = store.on("*", (e) => ids.push(e.id));
    store.start();
    sources[0].emit(ev(1));
    off();
    sources[0].emit(ev(2));
    expect(ids).toEqual([1]);
  });

  it("computes capped doubling delays", () => {
    expect([0, 1, 2, 3, 10].map((n) => backoffMs(n))).toEqual([500, 1000, 2000, 4000, 10000]);
  });
});

describe("unlisted types", () => {
  it("delivers security.finding to its subscribers but keeps it out of the recent list", () => {
    const { store, sources } = harness();
    store.start();
    const got: string[] = [];
    store.on("security.finding", (ev) => got.push(String(ev.data.id)));
    sources[0].emit({ id: 1, type: "security.finding", at: 0, data: { id: "platform.x" } });
    sources[0].emit({ id: 2, type: "route.changed", at: 0, data: {} });
    expect(got).toEqual(["platform.x"]);
    expect(store.recent.map((e) => e.type)).toEqual(["route.changed"]);
  });
});
