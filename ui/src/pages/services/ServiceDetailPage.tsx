// One service: state and actions, live resource curves (15 min to 7 days from the rollups),
// instances (runtime, container/unit/PID, image, ports host→container), health-check history, the spec editor,
// its releases (diff, rollback) and its live logs.
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { AdminOnly, useAuth } from "../../auth/AuthContext";
import { TimeChart, type SeriesData } from "../../components/Chart";
import { LiveTail } from "../../components/LogPanel";
import { SpecEditor } from "../../components/SpecEditor";
import { ActionButton, Badge, Card, Empty, ErrorBox, Segmented, Spinner, Tabs } from "../../components/ui";
import { bytes, dateTime, timeOf } from "../../lib/format";
import { WINDOWS, windowRange, type WindowKey } from "../../lib/timeWindow";
import { useAsync, useInterval } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";
import { ReleasesTab } from "./ReleasesTab";
import { portsText, RunsAs } from "./runtime";
import { nowS } from "../../lib/format";

type Tab = "overview" | "spec" | "releases" | "logs";

export default function ServiceDetailPage() {
  const { name = "" } = useParams();
  const navigate = useNavigate();
  const { isAdmin } = useAuth();
  const [tab, setTab] = useState<Tab>("overview");
  const svc = useAsync(() => unwrap(api.GET("/api/services/{name}", { params: { path: { name } } })), [name]);
  useEvent("service.*", (ev) => {
    if ((ev.data as { service?: string }).service === name) void svc.reload();
  });
  const act = (what: "start" | "stop" | "restart") => async () => {
    const path = `/api/services/{name}/${what}` as const;
    svc.setData(await unwrap(api.POST(path, { params: { path: { name } } })));
  };

  if (svc.error && !svc.data) return <ErrorBox error={svc.error} />;
  if (!svc.data) return <Spinner />;
  const s = svc.data;
  return (
    <div className="stack">
      <div className="page-head">
        <Link to="/services">Services</Link><span className="muted">/</span>
        <h1>{s.name}</h1>
        <span data-testid="service-status"><Badge status={s.status} /></span>
        <span className="muted">v{s.version} · <span data-testid="service-runtime">{s.runtime}</span> · desired {s.desired}</span>
        <span className="spacer" />
        <AdminOnly>
          <div className="row">
            <ActionButton onAction={act("start")} disabled={s.desired === "running" && s.status === "running"}>Start</ActionButton>
            <ActionButton onAction={act("stop")} disabled={s.desired === "stopped"}>Stop</ActionButton>
            <ActionButton onAction={act("restart")}>Restart</ActionButton>
            <ActionButton kind="danger" confirm={`Stop and remove ${s.name}? Its spec history stays.`} onAction={async () => {
              await unwrap(api.DELETE("/api/services/{name}", { params: { path: { name } } }));
              navigate("/services");
            }}>Remove</ActionButton>
          </div>
        </AdminOnly>
      </div>
      {s.reason && <p className="muted">{s.reason}</p>}
      <Tabs value={tab} onChange={setTab} options={[
        { key: "overview", label: "Overview" }, { key: "spec", label: isAdmin ? "Spec (edit)" : "Spec" }, { key: "releases", label: "Releases" }, { key: "logs", label: "Logs" },
      ]} />
      {tab === "overview" && (
        <>
          <Curves name={name} />
          <Card title="Instances">
            {s.instances.length === 0 ? <Empty>No instances.</Empty> : (
              <div className="table-wrap"><table className="t">
                <thead><tr><th>Instance</th><th>Phase</th><th>Healthy</th><th>Runtime</th><th>Runs as</th><th>Image</th><th>Ports</th><th>Restarts</th><th>Started</th><th>Memory</th></tr></thead>
                <tbody>
                  {s.instances.map((i) => (
                    <tr key={i.id} data-instance={i.id}>
                      <td>{i.id}</td><td><Badge status={i.phase} /></td>
                      <td>{i.healthy ? <Badge status="ok">healthy</Badge> : <Badge status="warn">not yet</Badge>}</td>
                      <td>{i.runtime}</td>
                      <td><RunsAs i={i} /></td>
                      <td className="mono" data-testid="image">{i.image ?? "–"}</td>
                      <td className="mono" data-testid="ports" title="host port → port inside the container">{portsText(i) || "–"}</td>
                      <td>{i.restarts}</td><td>{dateTime(i.started_at)}</td><td>{bytes(i.stats?.memory_bytes)}</td>
                    </tr>
                  ))}
                </tbody>
              </table></div>
            )}
          </Card>
          <Card title="Health checks">
            {s.instances.flatMap((i) => i.health.map((h) => ({ ...h, inst: i.id }))).length === 0 ? <Empty>No checks yet.</Empty> : (
              <table className="t"><tbody>
                {s.instances.flatMap((i) => i.health.map((h) => ({ ...h, inst: i.id }))).sort((a, b) => b.at - a.at).slice(0, 20).map((h, k) => (
                  <tr key={k}><td className="mono muted">{timeOf(h.at)}</td><td>{h.inst}</td><td><Badge status={h.ok ? "ok" : "failed"}>{h.ok ? "ok" : "fail"}</Badge></td><td>{h.detail}</td><td className="muted">{h.duration_ms} ms</td></tr>
                ))}
              </tbody></table>
            )}
          </Card>
        </>
      )}
      {tab === "spec" && <SpecTab name={name} editable={isAdmin} onApplied={() => void svc.reload()} />}
      {tab === "releases" && <ReleasesTab name={name} isAdmin={isAdmin} />}
      {tab === "logs" && <Card title="Logs"><LiveTail services={[name]} /></Card>}
    </div>
  );
}

function Curves({ name }: { name: string }) {
  const [win, setWin] = useState<WindowKey>("15m");
  const load = () => {
    const r = windowRange(WINDOWS[win], nowS());
    return unwrap(api.GET("/api/services/{id}/metrics", {
      params: { path: { id: name }, query: { from: String(r.from), to: String(r.to), step: String(r.step) } },
    }));
  };
  const m = useAsync(load, [name, win]);
  const range: [number, number] | undefined = m.data ? [m.data.from, m.data.to] : undefined;
  useInterval(() => void m.reload(), win === "15m" ? 5000 : 60000);
  const series = (metric: string, scale = 1): SeriesData[] =>
    (m.data?.metrics[metric] ?? []).map((s) => ({ name: s.labels.instance ?? metric, points: s.points.map((p) => [p[0], p[1] == null ? null : p[1] * scale]) }));
  return (
    <Card title="Resources" actions={<Segmented label="Time window" value={win} options={["15m", "1h", "24h", "7d"] as const} onChange={setWin} />}>
      <ErrorBox error={m.error} />
      <div className="grid cols-2">
        <div><h3>CPU %</h3><TimeChart label={`CPU of ${name}`} series={series("service_cpu_percent")} unit="%" range={range} /></div>
        <div><h3>Memory MiB</h3><TimeChart label={`Memory of ${name}`} series={series("service_memory_bytes", 1 / 2 ** 20)} unit="MiB" range={range} /></div>
      </div>
    </Card>
  );
}

function SpecTab({ name, editable, onApplied }: { name: string; editable: boolean; onApplied: () => void }) {
  const versions = useAsync(() => unwrap(api.GET("/api/services/{name}/versions", { params: { path: { name } } })), [name]);
  if (versions.error) return <ErrorBox error={versions.error} />;
  if (!versions.data) return <Spinner />;
  const latest = versions.data[versions.data.length - 1];
  return (
    <div className="grid cols-2" style={{ gridTemplateColumns: "minmax(0, 2fr) minmax(0, 1fr)" }}>
      <Card title={`Spec (version ${latest?.version ?? "?"})`}>
        {editable ? (
          <SpecEditor key={latest?.version} initial={latest?.source ?? ""} filename={latest?.filename ?? "spec.yaml"} onApplied={() => { onApplied(); void versions.reload(); }} />
        ) : <pre className="logview" style={{ height: "auto" }}>{latest?.source}</pre>}
      </Card>
      <Card title="Versions">
        <table className="t"><tbody>
          {[...versions.data].reverse().map((v) => (
            <tr key={v.version}><td>v{v.version}</td><td>{v.applied_by}</td><td className="muted">{dateTime(v.applied_at)}</td></tr>
          ))}
        </tbody></table>
      </Card>
    </div>
  );
}
