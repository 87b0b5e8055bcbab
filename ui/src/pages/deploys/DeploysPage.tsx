// Deployments (deploys, rollbacks, applies): the list with a service filter, and one deployment's phases
// and step log. Both follow `deploy.progress` / `deploy.finished` live, without a reload.
import { useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { Badge, Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { dateTime, nowS, timeOf } from "../../lib/format";
import { asDeployEvent, deployTone, deploymentDuration, durationText, mergeDeployEvent, releaseRange, type Deployment } from "../../lib/deploys";
import { useAsync, useInterval } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";

export default function DeploysPage() {
  const { id } = useParams();
  return id ? <DeploymentDetail id={id} /> : <DeploymentList />;
}

function DeploymentList() {
  const [params, setParams] = useSearchParams();
  const service = params.get("service") ?? "";
  const services = useAsync(() => unwrap(api.GET("/api/services")), []);
  const list = useAsync(() => unwrap(api.GET("/api/deployments", { params: { query: service ? { service } : {} } })), [service]);
  const [now, setNow] = useState(nowS());
  useInterval(() => setNow(nowS()), 1000); // running durations tick
  useEvent("deploy.*", (ev) => {
    const d = asDeployEvent(ev.data);
    if (!d || (service && d.service !== service) || !list.data) return;
    if (!list.data.some((x) => x.id === d.deployment_id)) return void list.reload(); // one not seen yet
    // Functional: several events can arrive before the next render.
    list.setData((cur) => (cur ? mergeDeployEvent(cur, d, ev.at || nowS()) ?? cur : cur));
  });
  const names = [...new Set([...(services.data ?? []).map((s) => s.name), ...(service ? [service] : [])])].sort();
  return (
    <div className="stack">
      <div className="page-head">
        <h1>Deploys</h1>
        <span className="spacer" />
        <label className="field" style={{ minWidth: 200 }}>Service
          <select name="service" value={service} onChange={(e) => setParams(e.target.value ? { service: e.target.value } : {})}>
            <option value="">all services</option>
            {names.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
      </div>
      <Card>
        <ErrorBox error={list.error} />
        {!list.data ? <Spinner /> : list.data.length === 0 ? <Empty>No deployments yet. Applying a changed spec, a deploy or a rollback makes one.</Empty> : (
          <div className="table-wrap"><table className="t" aria-label="Deployments">
            <thead><tr><th>#</th><th>Service</th><th>Kind</th><th>Release</th><th>Strategy</th><th>Status</th><th>Who</th><th>When</th><th>Duration</th></tr></thead>
            <tbody>
              {list.data.map((d) => (
                <tr key={d.id} data-deployment={d.id}>
                  <td><Link to={`/deploys/${d.id}`}>#{d.id}</Link></td>
                  <td><Link to={`/services/${encodeURIComponent(d.service)}`}>{d.service}</Link></td>
                  <td>{d.kind}</td>
                  <td className="mono" data-testid="releases">{releaseRange(d)}</td>
                  <td>{d.strategy}</td>
                  <td data-testid="status"><Badge status={deployTone(d.status)}>{d.status.replace("_", " ")}</Badge></td>
                  <td>{d.actor ?? "–"}</td>
                  <td className="muted">{dateTime(d.created_at)}</td>
                  <td className="muted">{durationText(deploymentDuration(d, now))}</td>
                </tr>
              ))}
            </tbody>
          </table></div>
        )}
      </Card>
    </div>
  );
}

function DeploymentDetail({ id }: { id: string }) {
  const dep = useAsync(() => unwrap(api.GET("/api/deployments/{id}", { params: { path: { id } } })), [id]);
  const [now, setNow] = useState(nowS());
  useInterval(() => setNow(nowS()), 1000);
  useEvent("deploy.*", (ev) => {
    const d = asDeployEvent(ev.data);
    if (!d || String(d.deployment_id) !== id) return;
    dep.setData((cur) => (cur ? mergeDeployEvent([cur], d, ev.at || nowS())?.[0] ?? cur : cur));
    if (ev.type === "deploy.finished") void dep.reload(); // the server's phases and final log
  });
  if (dep.error && !dep.data) return <ErrorBox error={dep.error} />;
  if (!dep.data) return <Spinner />;
  const d = dep.data;
  return (
    <div className="stack">
      <div className="page-head">
        <Link to="/deploys">Deploys</Link><span className="muted">/</span>
        <h1>Deployment #{d.id}</h1>
        <span data-testid="deployment-status"><Badge status={deployTone(d.status)}>{d.status.replace("_", " ")}</Badge></span>
        <span className="muted">
          {d.kind} of <Link to={`/services/${encodeURIComponent(d.service)}`}>{d.service}</Link> · release <span className="mono">{releaseRange(d)}</span> · {d.strategy}
          {" "}· by {d.actor ?? "–"} · {dateTime(d.created_at)} · {durationText(deploymentDuration(d, now))}
        </span>
      </div>
      {d.error && <div className="error" role="alert">{d.error}</div>}
      <div className="grid cols-2" style={{ gridTemplateColumns: "minmax(0, 1fr) minmax(0, 2fr)" }}>
        <Card title="Phases"><Phases d={d} /></Card>
        <Card title="Step log">
          {d.log.length === 0 ? <Empty>No steps yet.</Empty> : (
            <table className="t" aria-label="Step log"><tbody>
              {d.log.map((s, k) => (
                <tr key={k} data-step={s.step}>
                  <td className="mono muted">{timeOf(s.at)}</td>
                  <td>{s.step}</td>
                  <td><Badge status={outcomeTone(s.outcome)}>{s.outcome}</Badge></td>
                  <td className="mono">{s.detail}</td>
                </tr>
              ))}
            </tbody></table>
          )}
        </Card>
      </div>
    </div>
  );
}

function Phases({ d }: { d: Deployment }) {
  const phases = Object.entries(d.phases).sort((a, b) => a[1] - b[1]);
  if (phases.length === 0) return <Empty>No phase reached yet.</Empty>;
  return (
    <table className="t" aria-label="Phases"><tbody>
      {phases.map(([name, at], k) => (
        <tr key={name} data-phase={name}>
          <td><Badge status={name}>{name.replace("_", " ")}</Badge></td>
          <td className="mono muted">{timeOf(at)}</td>
          <td className="muted">{k === 0 ? "" : `+${durationText(at - phases[k - 1][1])}`}</td>
        </tr>
      ))}
    </tbody></table>
  );
}

function outcomeTone(outcome: string): string {
  if (["ok", "done", "healthy", "succeeded"].includes(outcome)) return "ok";
  if (["failed", "error", "timeout", "unhealthy"].includes(outcome)) return "failed";
  return outcome;
}
