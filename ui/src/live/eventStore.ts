// One live-event store over a single EventSource (`/api/events`). Every page subscribes here; the
// store reconnects after a drop, resuming after the last event it saw (`since`, the same id the
// browser's own retry would send as Last-Event-ID), with a capped back-off, and exposes a discreet
// connection state for the top bar. The EventSource and the timers are injected so tests drive them.

export type LiveState = "connecting" | "open" | "reconnecting" | "closed";

export interface LiveEvent {
  id: number;
  type: string;
  at: number;
  data: Record<string, unknown>;
}

/** The part of the browser's EventSource the store uses. */
export interface EventSourceLike {
  onopen: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: string; lastEventId?: string }) => void) | null;
  addEventListener(type: string, fn: (ev: { data: string; lastEventId?: string }) => void): void;
  close(): void;
}

export interface StoreOptions {
  url?: string;
  open: (url: string) => EventSourceLike;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** Event types the server sends with `event:` lines (EventSource only delivers named ones to listeners). */
  types?: string[];
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export const EVENT_TYPES = [
  "service.status.changed", "service.applied", "service.removed", "service.restart.requested",
  "service.instance.exited", "service.instance.health", "service.instance.adopted", "deploy.progress", "deploy.finished",
  "route.changed", "cert.issued", "cert.expiring", "cert.failed", "snap.started", "snap.done", "snap.failed", "alert.triggered",
  "alert.resolved", "alert.firing", "token.created", "user.added", "user.removed",
  "user.created", "user.updated", "security.finding",
];

/** Types delivered to their own subscribers but kept out of `recent` (lists every role sees): the host
 * scan's findings are for admins, as `/api/security/scan` is; a deploy's every step would push the other
 * events out of the list (its `deploy.finished` stays listed). */
export const UNLISTED_TYPES = new Set(["security.finding", "deploy.progress"]);

type Listener = (ev: LiveEvent) => void;

/** Delay before reconnect attempt `n` (0-based): doubling from base, capped. Pure. */
export function backoffMs(n: number, baseMs = 500, maxMs = 10_000): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, n));
}

export class EventStore {
  state: LiveState = "closed";
  lastId: number | null = null;
  /** The latest events seen (newest last), for "recent events" lists. */
  recent: LiveEvent[] = [];
  private source: EventSourceLike | null = null;
  private attempts = 0;
  private timer: unknown = null;
  private listeners = new Map<string, Set<Listener>>();
  private stateListeners = new Set<(s: LiveState) => void>();
  private readonly opts: Required<Omit<StoreOptions, "open">> & Pick<StoreOptions, "open">;

  constructor(opts: StoreOptions) {
    this.opts = {
      url: "/api/events",
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
      types: EVENT_TYPES,
      baseDelayMs: 500,
      maxDelayMs: 10_000,
      ...opts,
    };
  }

  start(): void {
    if (this.source || this.timer) return;
    this.connect(false);
  }

  stop(): void {
    if (this.timer) this.opts.clearTimer(this.timer);
    this.timer = null;
    this.source?.close();
    this.source = null;
    this.setState("closed");
  }

  /** Subscribe to one type ("service.status.changed"), a prefix ("service.*") or everything ("*"). */
  on(pattern: string, fn: Listener): () => void {
    let set = this.listeners.get(pattern);
    if (!set) this.listeners.set(pattern, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  onState(fn: (s: LiveState) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  private url(): string {
    return this.lastId == null ? this.opts.url : `${this.opts.url}?since=${this.lastId}`;
  }

  private connect(reconnecting: boolean): void {
    this.timer = null;
    this.setState(reconnecting ? "reconnecting" : "connecting");
    const src = this.opts.open(this.url());
    this.source = src;
    src.onopen = () => {
      this.attempts = 0;
      this.setState("open");
    };
    // We reconnect ourselves (the browser's retry gives up for good on some errors, e.g. a 401 or
    // a 502 from a proxy), so the URL always carries where to resume.
    src.onerror = () => {
      if (this.source !== src) return;
      src.close();
      this.source = null;
      this.setState("reconnecting");
      const delay = backoffMs(this.attempts++, this.opts.baseDelayMs, this.opts.maxDelayMs);
      this.timer = this.opts.setTimer(() => this.connect(true), delay);
    };
    const handle = (msg: { data: string; lastEventId?: string }) => {
      if (this.source !== src) return;
      let ev: LiveEvent;
      try {
        ev = JSON.parse(msg.data) as LiveEvent;
      } catch {
        return;
      }
      if (typeof ev.id !== "number") return;
      if (this.lastId != null && ev.id <= this.lastId) return; // a replay after reconnect overlapping
      this.lastId = ev.id;
      this.dispatch(ev);
    };
    src.onmessage = handle;
    for (const t of this.opts.types) src.addEventListener(t, handle);
  }

  /** Deliver an event to its subscribers (exposed for events learned another way, e.g. in tests). */
  dispatch(ev: LiveEvent): void {
    if (!UNLISTED_TYPES.has(ev.type)) {
      this.recent.push(ev);
      if (this.recent.length > 100) this.recent.splice(0, this.recent.length - 100);
    }
    for (const [pattern, set] of this.listeners) {
      const hit =
        pattern === "*" || pattern === ev.type || (pattern.endsWith(".*") && ev.type.startsWith(pattern.slice(0, -1)));
      if (hit) for (const fn of set) fn(ev);
    }
  }

  private setState(s: LiveState): void {
    if (s === this.state) return;
    this.state = s;
    for (const fn of this.stateListeners) fn(s);
  }
}
