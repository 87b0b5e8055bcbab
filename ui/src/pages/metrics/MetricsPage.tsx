// Metrics & alerts: a metric explorer (name, label filter, window) and alert rules (create, edit,
// delete, webhook) with their current state and recent history.
import { useState, type FormEvent } from "react";
import { api, unwrap, type Schemas } from "../../api/client";
import { AdminOnly } from "../../auth/AuthContext";
import { TimeChart } from "../../components/Chart";
import { ActionButton, Badge, Card, Empty, ErrorBox, Segmented, Spinner } from "../../components/ui";
import { dateTime, nowS, num } from "../../lib/format";
import { WINDOWS, windowRange, type WindowKey } from "../../lib/timeWindow";
import { useAsync, useInterval } from "../../lib/useAsync";
import { seriesName } from "../../lib/useMetric";
import { useEvent } from "../../live/LiveContext";

export default function MetricsPage() {
  return (
    <div className="stack">
      <div className="page-head"><h1>Metrics &amp; alerts</h1></div>
      <Explorer />
      <Rules />
    </div>
  );
}

function Explorer() {
  const names = useAsync(() => unwrap(api.GET("/api/metrics/names")));
  const [name, setName] = useState("host_cpu_percent");
  const [labels, setLabels] = useState("");
  const [win, setWin] = useState<WindowKey>("15m");
  const q = useAsync(() => {
    const r = windowRange(WINDOWS[win], nowS());
    return unwrap(api.GET("/api/metrics/query", { params: { query: { name, labels: labels || undefined, from: String(r.from), to: String(r.to), step: String(r.step) } } }));
  }, [name, labels, win]);
  useInterval(() => void q.reload(), win === "5m" || win === "15m" ? 5000 : 60000);
  return (
    <Card title="Explorer" actions={<Segmented label="Window" value={win} options={["5m", "15m", "1h", "24h", "7d"] as const} onChange={setWin} />}>
      <div className="row" style={{ marginBottom: 10, alignItems: "end" }}>
        <label className="field">Metric<select value={name} onChange={(e) => setName(e.target.value)}>
          {(names.data ?? [name]).map((n) => <option key={n}>{n}</option>)}
        </select></label>
        <label className="field">Labels<span className="hint">e.g. service=web</span><input value={labels} onChange={(e) => setLabels(e.target.value)} /></label>
        <span className="muted">{q.data ? `${q.data.resolution} · step ${q.data.step}s` : ""}</span>
      </div>
      <ErrorBox error={q.error} />
      <TimeChart label={`Explorer ${name}`} height={260} range={q.data ? [q.data.from, q.data.to] : undefined}
        series={(q.data?.series ?? []).map((s) => ({ name: seriesName(s.labels, name), points: s.points.map((p) => [p[0], p[1]] as [number, number | null]) }))} />
    </Card>
  );
}

type Rule = Schemas["AlertRule"];

function Rules() {
  const rules = useAsync(() => unwrap(api.GET("/api/alerts/rules")));
  const alerts = useAsync(() => unwrap(api.GET("/api/alerts")));
  const [editing, setEditing] = useState<Rule | "new" | null>(null);
  useEvent("alert.*", () => { void alerts.reload(); });
  const stateOf = (r: Rule) => alerts.data?.active.find((a) => a.rule_id === r.id)?.status ?? "ok";
  return (
    <>
      <Card title="Alert rules" actions={<AdminOnly><button type="button" className="btn primary" onClick={() => setEditing("new")}>New rule</button></AdminOnly>}>
        <ErrorBox error={rules.error} />
        {editing && <RuleForm initial={editing === "new" ? undefined : editing} onDone={() => { setEditing(null); void rules.reload(); }} />}
        {!rules.data ? <Spinner /> : rules.data.length === 0 ? <Empty>No rules.</Empty> : (
          <table className="t"><thead><tr><th>Name</th><th>Condition</th><th>For</th><th>Webhook</th><th>State</th><th /></tr></thead><tbody>
            {rules.data.map((r) => (
              <tr key={r.id}>
                <td>{r.name}{!r.enabled && <span className="muted"> (off)</span>}</td>
                <td className="mono">{r.metric}{Object.keys(r.labels).length ? `{${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(",")}}` : ""} {r.op} {r.threshold}</td>
                <td>{r.for_s}s</td><td className="muted">{r.webhook ?? "–"}</td><td><Badge status={stateOf(r)} /></td>
                <td><AdminOnly><div className="row">
                  <button type="button" className="btn small" onClick={() => setEditing(r)}>Edit</button>
                  <ActionButton small kind="danger" confirm={`Delete the rule ${r.name}?`} onAction={async () => { await unwrap(api.DELETE("/api/alerts/rules/{ref}", { params: { path: { ref: String(r.id) } } })); await rules.reload(); }}>Delete</ActionButton>
                </div></AdminOnly></td>
              </tr>
            ))}
          </tbody></table>
        )}
      </Card>
      <Card title="History">
        {(alerts.data?.recent ?? []).length === 0 ? <Empty>No transitions yet.</Empty> : (
          <table className="t"><tbody>
            {[...alerts.data!.recent].reverse().map((a, i) => (
              <tr key={i}><td className="muted">{dateTime(a.at)}</td><td>{a.rule}</td><td><code>{a.event}</code></td><td>{num(a.value, 2)}</td></tr>
            ))}
          </tbody></table>
        )}
      </Card>
    </>
  );
}

function RuleForm({ initial, onDone }: { initial?: Rule; onDone: () => void }) {
  const [f, setF] = useState({
    name: initial?.name ?? "", metric: initial?.metric ?? "host_cpu_percent", labels: Object.entries(initial?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(","),
    op: initial?.op ?? ">", threshold: String(initial?.threshold ?? 90), for_s: String(initial?.for_s ?? 60), webhook: initial?.webhook ?? "",
    enabled: initial?.enabled ?? true,
  });
  const [error, setError] = useState<unknown>(null);
  const set = (k: keyof typeof f) => (e: { target: HTMLInputElement | HTMLSelectElement }) =>
    setF({ ...f, [k]: e.target instanceof HTMLInputElement && e.target.type === "checkbox" ? e.target.checked : e.target.value });
  async function submit(e: FormEvent) {
    e.preventDefault();
    const body = {
      name: f.name, metric: f.metric, op: f.op as Rule["op"], threshold: Number(f.threshold), for: Number(f.for_s),
      labels: Object.fromEntries(f.labels.split(",").map((x) => x.trim()).filter(Boolean).map((x) => x.split("=", 2) as [string, string])),
      webhook: f.webhook || null, enabled: f.enabled,
    } as unknown as Schemas["AlertRuleBody"];
    try {
      if (initial) await unwrap(api.PUT("/api/alerts/rules/{ref}", { params: { path: { ref: String(initial.id) } }, body }));
      else await unwrap(api.POST("/api/alerts/rules", { body }));
      onDone();
    } catch (err) {
      setError(err);
    }
  }
  return (
    <form className="stack card" onSubmit={submit} style={{ marginBottom: 12 }} aria-label="Alert rule">
      <div className="form-grid">
        <label className="field">Name<input value={f.name} onChange={set("name")} required /></label>
        <label className="field">Metric<input value={f.metric} onChange={set("metric")} required /></label>
        <label className="field">Labels<span className="hint">service=web,instance=web-1</span><input value={f.labels} onChange={set("labels")} /></label>
        <label className="field">Condition<span className="row"><select value={f.op} onChange={set("op")}>{[">", ">=", "<", "<="].map((o) => <option key={o}>{o}</option>)}</select>
          <input type="number" step="any" value={f.threshold} onChange={set("threshold")} aria-label="Threshold" /></span></label>
        <label className="field">For (seconds)<input type="number" min={0} value={f.for_s} onChange={set("for_s")} /></label>
        <label className="field">Webhook URL<input value={f.webhook} onChange={set("webhook")} placeholder="https://hooks.example.com/..." /></label>
        <label className="check"><input type="checkbox" checked={f.enabled} onChange={set("enabled")} /> Enabled</label>
      </div>
      <ErrorBox error={error} />
      <div className="row"><button className="btn primary" type="submit">{initial ? "Save rule" : "Create rule"}</button><button className="btn" type="button" onClick={onDone}>Cancel</button></div>
    </form>
  );
}
