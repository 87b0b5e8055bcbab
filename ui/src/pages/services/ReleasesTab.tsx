// A service's releases (the serving one marked), the diff between any two, and for admins a rollback to
// an earlier release with the started deployment's progress followed live.
import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { api, unwrap, type Schemas } from "../../api/client";
import { ActionButton, Badge, Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { asDeployEvent, changeValue, deployTone, FINAL, unifiedLines, type DeployStatus } from "../../lib/deploys";
import { dateTime } from "../../lib/format";
import { useAsync } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";

type Started = { deployment: number; to: number; status: DeployStatus; step?: string; error?: string | null };

export function ReleasesTab({ name, isAdmin }: { name: string; isAdmin: boolean }) {
  const releases = useAsync(() => unwrap(api.GET("/api/services/{name}/releases", { params: { path: { name } } })), [name]);
  const [pair, setPair] = useState<{ from: number; to: number } | null>(null);
  const [started, setStarted] = useState<Started | null>(null);
  useEvent("deploy.*", (ev) => {
    const d = asDeployEvent(ev.data);
    if (!d || d.service !== name) return;
    // Functional: several events can arrive before the next render.
    setStarted((s) => (s && s.deployment === d.deployment_id
      ? { ...s, status: d.status, step: d.step ?? s.step, error: d.error ?? s.error } : s));
    if (ev.type !== "deploy.finished") return;
    void releases.reload(); // the serving release may have changed
    if (started?.deployment === d.deployment_id) void sync(d.deployment_id);
  });
  const list = releases.data ? [...releases.data].sort((a, b) => b.release - a.release) : [];
  // By default: the serving release against the one before it.
  useEffect(() => {
    if (pair || list.length < 2) return;
    const cur = list.find((r) => r.current) ?? list[0];
    const before = list.find((r) => r.release < cur.release) ?? list[1];
    setPair(cur.release === before.release ? null : { from: before.release, to: cur.release });
  }, [list, pair]);

  /** The started deployment as recorded (its final status and last step once it has finished). */
  async function sync(id: number) {
    const d = await unwrap(api.GET("/api/deployments/{id}", { params: { path: { id: String(id) } } }));
    setStarted((s) => (s && s.deployment === d.id && (s.status === "pending" || FINAL.includes(d.status))
      ? { ...s, status: d.status, step: d.log[d.log.length - 1]?.step ?? s.step, error: d.error } : s));
  }
  if (releases.error && !releases.data) return <ErrorBox error={releases.error} />;
  if (!releases.data) return <Spinner />;
  const rollback = (to: number) => async () => {
    const r = await unwrap(api.POST("/api/services/{name}/rollback", { params: { path: { name } }, body: { to } }));
    setStarted({ deployment: r.deployment_id, to, status: r.status });
    await sync(r.deployment_id); // events that came before this answer (later ones arrive live)
  };
  return (
    <div className="stack">
      {started && (
        <div className="card" role="status" aria-label="Rollback progress" data-testid="rollback-progress">
          <div className="row">
            <strong>Rolling back to release {started.to}</strong>
            <Badge status={deployTone(started.status)}>{started.status.replace("_", " ")}</Badge>
            {started.step && <span className="muted">last step: {started.step}</span>}
            <span className="spacer" style={{ flex: 1 }} />
            <Link to={`/deploys/${started.deployment}`}>Deployment #{started.deployment}</Link>
          </div>
          {started.error && <div className="error" role="alert">{started.error}</div>}
        </div>
      )}
      <Card title="Releases">
        {list.length === 0 ? <Empty>No releases yet.</Empty> : (
          <div className="table-wrap"><table className="t" aria-label="Releases">
            <thead><tr><th>Release</th><th>Version</th><th>Created</th><th>By</th><th>What changed</th><th /></tr></thead>
            <tbody>
              {list.map((r) => (
                <tr key={r.release} data-release={r.release}>
                  <td>#{r.release} {r.current && <Badge status="ok">current</Badge>}</td>
                  <td className="mono">{r.version}{r.image && <div className="muted">{r.image}</div>}</td>
                  <td className="muted">{dateTime(r.created_at)}</td>
                  <td>{r.created_by ?? "–"}</td>
                  <td className="mono" style={{ maxWidth: 420 }}>{r.release === 1 || !r.changes ? <span className="muted">first release</span> : r.changes}</td>
                  <td>
                    <div className="row">
                      {list.some((o) => o.release < r.release) && (
                        <button type="button" className="btn small" onClick={() => setPair({ from: Math.max(...list.filter((o) => o.release < r.release).map((o) => o.release)), to: r.release })}>
                          Diff
                        </button>
                      )}
                      {isAdmin && !r.current && (
                        <ActionButton small kind="danger" onAction={rollback(r.release)}
                          confirm={`Roll ${name} back to release ${r.release} (${r.version})? Its spec, config files and artifact are re-applied through a rolling deploy.`}>
                          Roll back to this release
                        </ActionButton>
                      )}
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table></div>
        )}
      </Card>
      {list.length >= 2 && pair && <DiffCard name={name} releases={list} pair={pair} onPair={setPair} />}
    </div>
  );
}

function DiffCard({ name, releases, pair, onPair }: {
  name: string; releases: Schemas["Release"][]; pair: { from: number; to: number }; onPair: (p: { from: number; to: number }) => void;
}) {
  const diff = useAsync(() => unwrap(api.GET("/api/services/{name}/diff", {
    params: { path: { name }, query: { from: String(pair.from), to: String(pair.to) } },
  })), [name, pair.from, pair.to]);
  const pick = (label: string, value: number, set: (n: number) => void) => (
    <label className="field">{label}
      <select aria-label={`Diff ${label.toLowerCase()}`} value={value} onChange={(e) => set(Number(e.target.value))}>
        {releases.map((r) => <option key={r.release} value={r.release}>#{r.release} · {r.version}</option>)}
      </select>
    </label>
  );
  return (
    <Card title={`Diff: release ${pair.from} → ${pair.to}`} actions={
      <div className="row">{pick("From", pair.from, (from) => onPair({ ...pair, from }))}{pick("To", pair.to, (to) => onPair({ ...pair, to }))}</div>
    }>
      <ErrorBox error={diff.error} />
      {!diff.data ? (diff.error ? null : <Spinner />) : diff.data.changes.length === 0 ? <Empty>These releases are the same.</Empty> : (
        <table className="t" aria-label="Release diff">
          <thead><tr><th>Field</th><th>Release {diff.data.from ?? "–"}</th><th>Release {diff.data.to}</th></tr></thead>
          <tbody>
            {diff.data.changes.map((c) => (
              <tr key={c.field} data-field={c.field}>
                <td className="mono">{c.field}</td>
                {c.diff ? (
                  <td colSpan={2}>
                    <pre className="logview" style={{ height: "auto", maxHeight: 300, margin: 0 }} aria-label={`Changes of ${c.field}`}>
                      {unifiedLines(c.diff).map((l, k) => (
                        <div key={k} className={l.kind === "hunk" ? "muted" : undefined}
                          style={{ color: l.kind === "add" ? "var(--ok)" : l.kind === "del" ? "var(--bad)" : undefined }}>
                          {l.kind === "add" ? "+ " : l.kind === "del" ? "- " : l.kind === "same" ? "  " : ""}{l.text}
                        </div>
                      ))}
                    </pre>
                  </td>
                ) : (
                  <>
                    <td className="mono" style={{ color: "var(--bad)" }}>{changeValue(c.from)}</td>
                    <td className="mono" style={{ color: "var(--ok)" }}>{changeValue(c.to)}</td>
                  </>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}
