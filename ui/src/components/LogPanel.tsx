// Live log lines of one or more services over SSE (`/api/logs/{service}/stream`), with pause/resume
// and auto-scroll that stops when the person scrolls up and resumes at the bottom.
import { useEffect, useRef, useState } from "react";
import type { Schemas } from "../api/client";
import { timeOf } from "../lib/format";

type Line = Schemas["LogLine"];
const MAX_LINES = 2000;

export function highlight(text: string, q: RegExp | null) {
  if (!q) return text;
  const out: (string | JSX.Element)[] = [];
  let last = 0;
  let i = 0;
  for (const m of text.matchAll(q)) {
    if (m.index == null || !m[0]) continue;
    out.push(text.slice(last, m.index), <mark key={i++}>{m[0]}</mark>);
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

export function LogLines({ lines, mark, height }: { lines: Line[]; mark: RegExp | null; height?: number }) {
  return (
    <>
      {lines.map((l, i) => (
        <div key={i} className={`logline ${l.stream}`}>
          <span className="ts">{timeOf(l.ts)}</span>
          <span className="svc">{l.instance}</span>
          <span className="text">{highlight(l.text, mark)}</span>
        </div>
      ))}
      {height == null ? null : null}
    </>
  );
}

export function LiveTail({ services, query = "", regex = "", stream = "", mark = null, tail = 200 }: {
  services: string[]; query?: string; regex?: string; stream?: string; mark?: RegExp | null; tail?: number;
}) {
  const [lines, setLines] = useState<Line[]>([]);
  const [paused, setPaused] = useState(false);
  const [follow, setFollow] = useState(true);
  const [notice, setNotice] = useState("");
  const [waiting, setWaiting] = useState(0);
  const buffer = useRef<Line[]>([]);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const view = useRef<HTMLDivElement>(null);

  useEffect(() => {
    setLines([]);
    buffer.current = [];
    const sources = services.map((svc) => {
      const params = new URLSearchParams({ tail: String(tail) });
      if (query) params.set("q", query);
      if (regex) params.set("regex", regex);
      if (stream) params.set("stream", stream);
      const es = new EventSource(`/api/logs/${encodeURIComponent(svc)}/stream?${params}`, { withCredentials: true });
      es.addEventListener("lines", (ev) => {
        const batch = JSON.parse((ev as MessageEvent).data) as Line[];
        buffer.current.push(...batch);
        if (!pausedRef.current) flush();
        else setWaiting(buffer.current.length);
      });
      es.addEventListener("skipped", (ev) => setNotice((JSON.parse((ev as MessageEvent).data) as { text: string }).text));
      return es;
    });
    return () => sources.forEach((s) => s.close());
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [services.join(","), query, regex, stream, tail]);

  function flush() {
    const batch = buffer.current;
    buffer.current = [];
    setWaiting(0);
    if (!batch.length) return;
    setLines((old) => {
      const merged = old.concat(batch);
      if (services.length > 1) merged.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
      return merged.length > MAX_LINES ? merged.slice(-MAX_LINES) : merged;
    });
  }

  useEffect(() => {
    if (follow && view.current) view.current.scrollTop = view.current.scrollHeight;
  }, [lines, follow]);

  return (
    <div className="stack">
      <div className="row">
        <button type="button" className="btn small" onClick={() => { setPaused(!paused); if (paused) flush(); }}>
          {paused ? "Resume" : "Pause"}
        </button>
        <span className="muted" data-testid="tail-state">{paused ? `paused (${waiting} waiting)` : follow ? "following" : "scrolled up: not following"}</span>
        <span className="muted">{lines.length} lines</span>
        {notice && <span className="badge warn">{notice}</span>}
      </div>
      <div
        className="logview"
        ref={view}
        data-testid="log-view"
        aria-label="Log lines"
        onScroll={(e) => {
          const el = e.currentTarget;
          setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
        }}
      >
        {lines.length === 0 ? <span className="muted">Waiting for lines…</span> : <LogLines lines={lines} mark={mark} />}
      </div>
    </div>
  );
}
