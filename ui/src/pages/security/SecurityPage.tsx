// Security: users, API tokens (the secret shown once), the person's own two-factor enrolment with a
// QR code, the host scan's findings, and the audit log with filters.
import { useEffect, useState, type FormEvent } from "react";
import QRCode from "qrcode";
import { api, ApiError, rawFetch, unwrap, type Schemas } from "../../api/client";
import { AdminOnly, useAuth } from "../../auth/AuthContext";
import { ActionButton, Badge, Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { dateTime } from "../../lib/format";
import { useAsync } from "../../lib/useAsync";

export default function SecurityPage() {
  const { isAdmin } = useAuth();
  return (
    <div className="stack">
      <div className="page-head"><h1>Security</h1></div>
      <div className="grid cols-2">
        <Users />
        <TwoFactor />
      </div>
      <Tokens />
      <Scan />
      {isAdmin && <Audit />}
    </div>
  );
}

function Users() {
  const users = useAsync(() => unwrap(api.GET("/api/users")));
  const { session } = useAuth();
  const [f, setF] = useState({ username: "", password: "", role: "viewer" as "viewer" | "admin" });
  const [error, setError] = useState<unknown>(null);
  async function add(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await unwrap(api.POST("/api/users", { body: f }));
      setF({ username: "", password: "", role: "viewer" });
      await users.reload();
    } catch (err) {
      setError(err);
    }
  }
  return (
    <Card title="Users">
      <ErrorBox error={users.error} />
      {!users.data ? <Spinner /> : (
        <table className="t"><tbody>
          {users.data.map((u) => (
            <tr key={u.id}><td>{u.username}</td><td><Badge status="info">{u.role}</Badge></td><td>{u.totp ? <Badge status="ok">2FA</Badge> : <span className="muted">no 2FA</span>}</td>
              <td><AdminOnly><div className="row">
                <ActionButton small onAction={async () => {
                  const pw = window.prompt(`New password for ${u.username} (at least 8 characters)`);
                  if (pw) await unwrap(api.PUT("/api/users/{name}/password", { params: { path: { name: u.username } }, body: { password: pw } }));
                }}>Reset password</ActionButton>
                {u.username !== session?.username && <ActionButton small kind="danger" confirm={`Remove ${u.username}?`} onAction={async () => {
                  await unwrap(api.DELETE("/api/users/{name}", { params: { path: { name: u.username } } }));
                  await users.reload();
                }}>Remove</ActionButton>}
              </div></AdminOnly></td></tr>
          ))}
        </tbody></table>
      )}
      <AdminOnly>
        <form className="row" onSubmit={add} style={{ marginTop: 10, alignItems: "end" }} aria-label="Add user">
          <label className="field">Username<input value={f.username} onChange={(e) => setF({ ...f, username: e.target.value })} required /></label>
          <label className="field">Password<input type="password" autoComplete="new-password" value={f.password} onChange={(e) => setF({ ...f, password: e.target.value })} required minLength={8} /></label>
          <label className="field">Role<select value={f.role} onChange={(e) => setF({ ...f, role: e.target.value as "viewer" | "admin" })}><option>viewer</option><option>admin</option></select></label>
          <button className="btn primary" type="submit">Add user</button>
        </form>
        <ErrorBox error={error} />
      </AdminOnly>
    </Card>
  );
}

function TwoFactor() {
  const { session } = useAuth();
  const me = useAsync(() => unwrap(api.GET("/api/users")).then((us) => us.find((u) => u.username === session?.username)), [session?.username]);
  const [pending, setPending] = useState<Schemas["TotpBegin"] | null>(null);
  const [qr, setQr] = useState("");
  const [code, setCode] = useState("");
  const [error, setError] = useState<unknown>(null);
  const name = session?.username ?? "";
  useEffect(() => {
    if (pending) QRCode.toDataURL(pending.otpauth_uri, { margin: 1, width: 180 }).then(setQr).catch(() => setQr(""));
  }, [pending]);
  return (
    <Card title="Your two-factor login">
      {me.data?.totp ? (
        <div className="stack">
          <p><Badge status="ok">on</Badge> Logins as {name} ask for a code from your authenticator app.</p>
          <div><ActionButton kind="danger" confirm="Turn two-factor login off?" onAction={async () => {
            await unwrap(api.DELETE("/api/users/{name}/totp", { params: { path: { name } } }));
            await me.reload();
          }}>Turn off</ActionButton></div>
        </div>
      ) : pending ? (
        <form className="stack" onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            await unwrap(api.POST("/api/users/{name}/totp/confirm", { params: { path: { name } }, body: { code } }));
            setPending(null);
            await me.reload();
          } catch (err) {
            setError(err);
          }
        }}>
          <p>Scan this with your authenticator app, then enter the code it shows.</p>
          {qr && <img src={qr} width={180} height={180} alt="QR code of the two-factor secret" />}
          <label className="field">Secret (to type in by hand)<input readOnly value={pending.secret} className="mono" data-testid="totp-secret" /></label>
          <label className="field">Code from the app<input inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required /></label>
          <ErrorBox error={error} />
          <div className="row"><button className="btn primary" type="submit">Confirm</button><button className="btn" type="button" onClick={() => setPending(null)}>Cancel</button></div>
          <p className="muted" style={{ fontSize: 12 }}>Recovery codes come with the server's recovery-code support; keep the secret somewhere safe meanwhile.</p>
        </form>
      ) : (
        <div className="stack">
          <p className="muted">Off. A code from an authenticator app will be asked at each login.</p>
          <div><ActionButton kind="primary" onAction={async () => setPending(await unwrap(api.POST("/api/users/{name}/totp", { params: { path: { name } } })))}>Set up two-factor login</ActionButton></div>
        </div>
      )}
    </Card>
  );
}

function Tokens() {
  const tokens = useAsync(() => unwrap(api.GET("/api/tokens")));
  const [name, setName] = useState("");
  const [role, setRole] = useState<"viewer" | "admin">("viewer");
  const [created, setCreated] = useState<Schemas["TokenCreated"] | null>(null);
  return (
    <Card title="API tokens">
      <ErrorBox error={tokens.error} />
      {created && (
        <div className="card" style={{ background: "var(--ok-bg)", marginBottom: 10 }} role="status">
          Token <strong>{created.name}</strong> — copy it now, it is not shown again:
          <input readOnly value={created.token} className="mono" style={{ width: "100%", marginTop: 6 }} data-testid="new-token" onFocus={(e) => e.target.select()} />
        </div>
      )}
      {!tokens.data ? <Spinner /> : tokens.data.length === 0 ? <Empty>No API tokens.</Empty> : (
        <table className="t"><thead><tr><th>Name</th><th>Role</th><th>Owner</th><th>State</th><th>Expires</th><th>Last used</th><th /></tr></thead><tbody>
          {tokens.data.map((t) => (
            <tr key={t.id}><td>{t.name}</td><td>{t.role}</td><td>{t.owner}</td><td><Badge status={t.state === "active" ? "ok" : "stopped"}>{t.state}</Badge></td>
              <td>{dateTime(t.expires_at)}</td><td>{dateTime(t.last_used_at)}</td>
              <td><AdminOnly>{t.state === "active" && <ActionButton small kind="danger" confirm={`Revoke ${t.name}?`} onAction={async () => {
                await unwrap(api.DELETE("/api/tokens/{id}", { params: { path: { id: String(t.id) } } }));
                await tokens.reload();
              }}>Revoke</ActionButton>}</AdminOnly></td></tr>
          ))}
        </tbody></table>
      )}
      <AdminOnly>
        <div className="row" style={{ marginTop: 10, alignItems: "end" }}>
          <label className="field">Token name<input value={name} onChange={(e) => setName(e.target.value)} placeholder="ci-deploy" /></label>
          <label className="field">Role<select value={role} onChange={(e) => setRole(e.target.value as "viewer" | "admin")}><option>viewer</option><option>admin</option></select></label>
          <ActionButton kind="primary" disabled={!name} onAction={async () => {
            setCreated(await unwrap(api.POST("/api/tokens", { body: { name, role, expires_in_s: 90 * 86400 } })));
            setName("");
            await tokens.reload();
          }}>Create token</ActionButton>
        </div>
      </AdminOnly>
    </Card>
  );
}

interface Finding { id?: string; severity?: string; title?: string; message?: string; fix?: string; detail?: string }

function Scan() {
  const [state, setState] = useState<{ findings?: Finding[]; error?: unknown; missing?: boolean; busy?: boolean }>({});
  async function run() {
    setState({ busy: true });
    try {
      const r = await rawFetch("/api/security/scan");
      const body = (await r.json()) as { findings?: Finding[] } | Finding[];
      setState({ findings: Array.isArray(body) ? body : body.findings ?? [] });
    } catch (e) {
      setState(e instanceof ApiError && e.status === 404 && e.code === "not_found" && e.message.startsWith("no such API path")
        ? { missing: true } : { error: e });
    }
  }
  useEffect(() => { void run(); }, []);
  return (
    <Card title="Host scan" actions={<button type="button" className="btn small" onClick={run} disabled={state.busy}>{state.busy && <Spinner />}Scan again</button>}>
      <ErrorBox error={state.error} />
      {state.missing && <Empty>This server has no host scan yet (<code>/api/security/scan</code>).</Empty>}
      {state.findings && (state.findings.length === 0 ? <Empty>No findings.</Empty> : (
        <table className="t"><tbody>
          {state.findings.map((f, i) => (
            <tr key={i}><td><Badge status={f.severity === "high" || f.severity === "critical" ? "failed" : f.severity === "ok" ? "ok" : "pending"}>{f.severity ?? "info"}</Badge></td>
              <td>{f.title ?? f.id}<div className="muted">{f.message ?? f.detail}</div></td><td className="mono">{f.fix}</td></tr>
          ))}
        </tbody></table>
      ))}
    </Card>
  );
}

function Audit() {
  const [actor, setActor] = useState("");
  const [action, setAction] = useState("");
  const audit = useAsync(() => unwrap(api.GET("/api/audit", { params: { query: { limit: "100", actor: actor || undefined, action: action || undefined } } })), [actor, action]);
  return (
    <Card title="Audit log">
      <div className="row" style={{ marginBottom: 8 }}>
        <label className="field">Actor<input value={actor} onChange={(e) => setActor(e.target.value)} placeholder="admin" /></label>
        <label className="field">Action<input value={action} onChange={(e) => setAction(e.target.value)} placeholder="route.*" /></label>
      </div>
      <ErrorBox error={audit.error} />
      {!audit.data ? <Spinner /> : audit.data.length === 0 ? <Empty>Nothing recorded.</Empty> : (
        <div className="table-wrap"><table className="t"><thead><tr><th>When</th><th>Who</th><th>Action</th><th>Target</th><th>Outcome</th><th>From</th></tr></thead><tbody>
          {audit.data.map((a) => (
            <tr key={a.id}><td className="muted">{dateTime(a.at)}</td><td>{a.actor}</td><td><code>{a.action}</code></td><td>{a.target ?? "–"}</td>
              <td><Badge status={a.outcome === "ok" ? "ok" : "failed"}>{a.outcome} {a.status}</Badge></td><td className="muted">{a.client_ip}</td></tr>
          ))}
        </tbody></table></div>
      )}
    </Card>
  );
}
