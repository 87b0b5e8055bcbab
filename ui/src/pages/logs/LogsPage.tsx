// Logs: pick services and a time window, keyword or regex search with highlighted matches, a stream
// filter, live tail with pause/resume, and download of the window.
import { useMemo, useState, type FormEvent } from "react";
import { api, unwrap, type Schemas } from "../../api/client";
import { LiveTail, LogLines } from "../../components/LogPanel";
import { Card, Empty, ErrorBox, Segmented, Spinner } from "../../components/ui";
import { bytes } from "../../lib/format";
import { WINDOWS, type WindowKey } from "../../lib/timeWindow";
import { useAsync } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";

type Mode = "live" | WindowKey;

export function markPattern(q: string, regex: string): RegExp | null {
  try {
    if (regex) return new RegExp(regex, "g");
    if (q) return new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi");
  } catch {
    return null; // the server reports a bad regex with its own message
  }
  return null;
}

export default function LogsPage() {
  const known = useAsync(() => unwrap(api.GET("/api/logs/services")));
  useEvent("service.applied", () => void known.reload());
  const [picked, setPicked] = useState<string[]>([]);
  const [mode, setMode] = useState<Mode>("live");
  const [q, setQ] = useState("");
  const [regex, setRegex] = useState("");
  const [stream, setStream] = useState("");
  const [applied, setApplied] = useState({ q: "", regex: "", stream: "" });
  const [result, setResult] = useState<Schemas["LogPage"] | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const services = picked.length ? picked : (known.data ?? []).map((s) => s.service);
  const mark = useMemo(() => markPattern(applied.q, applied.regex), [applied]);

  async function search(e?: FormEvent) {
    e?.preventDefault();
    setApplied({ q, regex, stream });
    if (mode === "live") return;
    setBusy(true);
    setError(null);
    try {
      setResult(await unwrap(api.GET("/api/logs", { params: { query: {
        service: services.join(","), from: mode, q: q || undefined, regex: regex || undefined, stream: stream || undefined,
        limit: "1000", tail: "1",
      } } })));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const download = (svc: string) => {
    const p = new URLSearchParams({ service: svc, from: mode === "live" ? "1h" : mode });
    return `/api/logs/download?${p}`;
  };

  return (
    <div className="stack">
      <div className="page-head"><h1>Logs</h1></div>
      <Card>
        <form className="stack" onSubmit={search} aria-label="Log search">
          <div className="row">
            <span className="muted">Services:</span>
            {known.loading && <Spinner />}
            {(known.data ?? []).map((s) => (
              <label key={s.service} className="check">
                <input type="checkbox" checked={picked.includes(s.service)} onChange={(e) =>
                  setPicked(e.target.checked ? [...picked, s.service] : picked.filter((x) => x !== s.service))} />
                {s.service} <span className="muted">({bytes(s.bytes)})</span>
              </label>
            ))}
            {known.data?.length === 0 && <span className="muted">none yet</span>}
          </div>
          <div className="row">
            <Segmented label="Window" value={mode} options={["live", "15m", "1h", "24h", "7d"] as const} onChange={(m) => { setMode(m); setResult(null); }} />
            <label className="field" style={{ minWidth: 180 }}>Keyword<input name="q" value={q} onChange={(e) => setQ(e.target.value)} placeholder="error" /></label>
            <label className="field" style={{ minWidth: 180 }}>Regex<input name="regex" value={regex} onChange={(e) => setRegex(e.target.value)} placeholder="5\d\d" /></label>
            <label className="field">Stream<select value={stream} onChange={(e) => setStream(e.target.value)}>
              <option value="">both</option><option value="stdout">stdout</option><option value="stderr">stderr</option>
            </select></label>
            <button className="btn primary" type="submit" disabled={busy}>{busy && <Spinner />}{mode === "live" ? "Apply filter" : "Search"}</button>
          </div>
        </form>
      </Card>
      <ErrorBox error={error} />
      {services.length === 0 ? <Card><Empty>No service has logs yet.</Empty></Card> : mode === "live" ? (
        <Card title={`Live: ${services.join(", ")}`}>
          <LiveTail services={services} query={applied.q} regex={applied.regex} stream={applied.stream} mark={mark} />
        </Card>
      ) : (
        <Card title={`Last ${mode} (${WINDOWS[mode] / 60} min)`} actions={
          <span className="row">{services.map((s) => <a key={s} className="btn small" href={download(s)} download>Download {s}</a>)}</span>
        }>
          {!result ? <Empty>Press Search.</Empty> : (
            <>
              <p className="muted">{result.lines.length} lines{result.partial ? " (partial: narrow the window to see everything)" : ""}</p>
              <div className="logview"><LogLines lines={result.lines} mark={mark} /></div>
            </>
          )}
        </Card>
      )}
    </div>
  );
}
