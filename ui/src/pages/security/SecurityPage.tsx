// Security: users, API tokens (the secret shown once), the person's own two-factor enrolment with a
// QR code, the host scan's findings, and the audit log with filters.
import { useEffect, useState, type FormEvent } from "react";
import QRCode from "qrcode";
import { api, unwrap, type Schemas } from "../../api/client";
import { AdminOnly, useAuth } from "../../auth/AuthContext";
import { ActionButton, Badge, Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { dateTime } from "../../lib/format";
import { useAsync } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";
import { RecoveryCodesPanel } from "./RecoveryCodes";
import { ScanCard } from "./ScanCard";

/** Codes just made for a user: shown once, until the person says they saved them. */
interface ShownCodes { username: string; codes: string[] }

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
      {isAdmin ? <ScanCard /> : (
        <Card title="Host scan"><p className="muted" data-testid="scan-admin-only">The host scan's findings are for admins.</p></Card>
      )}
      {isAdmin && <Audit />}
    </div>
  );
}

function Users() {
  const users = useAsync(() => unwrap(api.GET("/api/users")));
  useEvent("user.*", () => void users.reload()); // 2FA on/off, codes used or renewed, users added elsewhere
  const { session } = useAuth();
  const [f, setF] = useState({ username: "", password: "", role: "viewer" as "viewer" | "admin" });
  const [error, setError] = useState<unknown>(null);
  const [shown, setShown] = useState<ShownCodes | null>(null);
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
            <tr key={u.id}><td>{u.username}</td><td><Badge status="info">{u.role}</Badge></td><td>{u.totp ? <><Badge status="ok">2FA</Badge> <span className={u.recovery_codes_left <= 2 ? "warn-text" : "muted"} data-testid="codes-left">{u.recovery_codes_left} recovery codes left</span></> : <span className="muted">no 2FA</span>}</td>
              <td><AdminOnly><div className="row">
                <ActionButton small onAction={async () => {
                  const pw = window.prompt(`New password for ${u.username} (at least 8 characters)`);
                  if (pw) await unwrap(api.PUT("/api/users/{name}/password", { params: { path: { name: u.username } }, body: { password: pw } }));
                }}>Reset password</ActionButton>
                {u.totp && u.username !== session?.username && <ActionButton small confirm={`Make new recovery codes for ${u.username}? Their current codes stop working.`} onAction={async () => {
                  const r = await unwrap(api.POST("/api/users/{name}/totp/recovery-codes", { params: { path: { name: u.username } } }));
                  setShown({ username: u.username, codes: r.recovery_codes });
                  await users.reload();
                }}>New recovery codes</ActionButton>}
                {u.username !== session?.username && <ActionButton small kind="danger" confirm={`Remove ${u.username}?`} onAction={async () => {
                  await unwrap(api.DELETE("/api/users/{name}", { params: { path: { name: u.username } } }));
                  await users.reload();
                }}>Remove</ActionButton>}
              </div></AdminOnly></td></tr>
          ))}
        </tbody></table>
      )}
      {shown && <RecoveryCodesPanel username={shown.username} codes={shown.codes} onDone={() => setShown(null)} />}
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
  useEvent("user.*", (ev) => { if (ev.data.username === session?.username) void me.reload(); });
  const [pending, setPending] = useState<Schemas["TotpBegin"] | null>(null);
  const [qr, setQr] = useState("");
  const [code, setCode] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [shown, setShown] = useState<ShownCodes | null>(null);
  const name = session?.username ?? "";
  useEffect(() => {
    if (pending) QRCode.toDataURL(pending.otpauth_uri, { margin: 1, width: 180 }).then(setQr).catch(() => setQr(""));
  }, [pending]);
  return (
    <Card title="Your two-factor login">
      {shown && <RecoveryCodesPanel username={shown.username} codes={shown.codes} onDone={() => setShown(null)} />}
      {me.data?.totp ? (
        <div className="stack">
          <p><Badge status="ok">on</Badge> Logins as {name} ask for a code from your authenticator app, or one of your recovery codes.</p>
          <p className="muted" data-testid="my-codes-left">{me.data.recovery_codes_left} of 10 recovery codes left.</p>
          <div className="row"><ActionButton confirm="Make new recovery codes? The ones you have now stop working." onAction={async () => {
            const r = await unwrap(api.POST("/api/users/{name}/totp/recovery-codes", { params: { path: { name } } }));
            setShown({ username: name, codes: r.recovery_codes });
            await me.reload();
          }}>New recovery codes</ActionButton>
          <ActionButton kind="danger" confirm="Turn two-factor login off?" onAction={async () => {
            await unwrap(api.DELETE("/api/users/{name}/totp", { params: { path: { name } } }));
            setShown(null);
            await me.reload();
          }}>Turn off</ActionButton></div>
        </div>
      ) : pending ? (
        <form className="stack" onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            const r = await unwrap(api.POST("/api/users/{name}/totp/confirm", { params: { path: { name } }, body: { code } }));
            setShown({ username: name, codes: r.recovery_codes });
            setPending(null);
            setCode("");
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
