// Settings: the running configuration as the server reports it (read-only: it is file- and
// flag-based), and the figures of the parts that have settings (collector, logs, limits).
import { api, unwrap } from "../../api/client";
import { Badge, Card, ErrorBox, Spinner } from "../../components/ui";
import { bytes, num } from "../../lib/format";
import { formatDuration } from "../../lib/timeWindow";
import { useAsync } from "../../lib/useAsync";

export default function SettingsPage() {
  const status = useAsync(() => unwrap(api.GET("/api/status")));
  const limits = useAsync(() => unwrap(api.GET("/api/orch/limits")));
  const probe = useAsync(() => unwrap(api.GET("/api/probe/status")));
  const logs = useAsync(() => unwrap(api.GET("/api/logs/status")));
  const s = status.data;
  return (
    <div className="stack">
      <div className="page-head"><h1>Settings</h1></div>
      <p className="muted">These come from <code>/etc/infracore/config.yaml</code>, <code>INFRACORE_*</code> variables and <code>fsctl serve</code> flags; change them there and restart.</p>
      <div className="grid cols-2">
        <Card title="Server">
          <ErrorBox error={status.error} />
          {!s ? <Spinner /> : (
            <table className="t"><tbody>
              <tr><th>Version</th><td>{s.version}</td></tr>
              <tr><th>Uptime</th><td>{formatDuration(s.uptime_s)}</td></tr>
              <tr><th>Data directory</th><td className="mono">{s.data_dir}</td></tr>
              {s.components.map((c) => <tr key={c.name}><th>{c.name}</th><td><Badge status={c.state} /></td></tr>)}
            </tbody></table>
          )}
        </Card>
        <Card title="Resource limits">
          {!limits.data ? <Spinner /> : (
            <table className="t"><tbody>
              <tr><th>cgroups</th><td>{limits.data.kind ?? "none"}</td></tr>
              <tr><th>Memory limits enforced</th><td>{limits.data.enforces_memory ? "yes" : "no"}</td></tr>
              <tr><th>CPU limits enforced</th><td>{limits.data.enforces_cpu ? "yes" : "no"}</td></tr>
              {limits.data.warning && <tr><th>Note</th><td>{limits.data.warning}</td></tr>}
            </tbody></table>
          )}
        </Card>
        <Card title="Metrics collector">
          {!probe.data ? <Spinner /> : (
            <table className="t"><tbody>
              <tr><th>Interval</th><td>{probe.data.interval_s} s</td></tr>
              <tr><th>Series</th><td>{probe.data.series}</td></tr>
              <tr><th>Points written</th><td>{probe.data.points}</td></tr>
              <tr><th>Errors</th><td>{probe.data.errors}</td></tr>
            </tbody></table>
          )}
          <p className="muted" style={{ fontSize: 12 }}>Retention: raw 1 s points 24 h, 5 s rollups 7 d, 1 min rollups 30 d (the defaults).</p>
        </Card>
        <Card title="Logs">
          {!logs.data ? <Spinner /> : (
            <table className="t"><tbody>
              {Object.entries(logs.data).filter(([k]) => k !== "at").map(([k, v]) => <tr key={k}><th>{k.replace(/_/g, " ")}</th><td>{typeof v === "number" && k.includes("bytes") ? bytes(v) : typeof v === "number" ? num(v, 0) : String(v)}</td></tr>)}
            </tbody></table>
          )}
        </Card>
        <Card title="ACME">
          <p className="muted">The ACME directory and account are set in the <code>certd</code> section of the configuration (Let's Encrypt by default). Certificates and their status are on the Gateway page.</p>
        </Card>
      </div>
    </div>
  );
}
