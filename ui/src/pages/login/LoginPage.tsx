// Login: username and password, then the two-factor step when the account has it on. After login,
// back to where the person was (the `next` parameter, set when a session ended under them).
import { useState, type FormEvent } from "react";
import { Navigate, useNavigate, useSearchParams } from "react-router-dom";
import { ApiError } from "../../api/client";
import { useAuth } from "../../auth/AuthContext";
import { ErrorBox, Spinner } from "../../components/ui";

function safeNext(next: string | null): string {
  // Only paths of this console: never a full URL (an open redirect) nor a protocol-relative one.
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login") ? next : "/";
}

export function LoginPage() {
  const { login, session, expired } = useAuth();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [otp, setOtp] = useState("");
  const [needOtp, setNeedOtp] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const next = safeNext(params.get("next"));

  if (session && !busy) return <Navigate to={next} replace />;

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password, needOtp ? otp : undefined);
      navigate(next, { replace: true });
    } catch (err) {
      if (err instanceof ApiError && err.code === "otp_required") {
        setNeedOtp(true);
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="login-wrap">
      <form className="card login stack" onSubmit={submit} aria-label="Log in">
        <div className="brand" style={{ padding: 0 }}><img src="/favicon.svg" width={26} height={26} alt="" /> Infra-Core</div>
        {expired && <p className="muted" role="status">Your session has ended. Log in again to go back where you were.</p>}
        {!needOtp ? (
          <>
            <label className="field">Username
              <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
            </label>
            <label className="field">Password
              <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
            </label>
          </>
        ) : (
          <label className="field">Two-factor code
            <span className="hint">The 6-digit code from your authenticator app for {username} — or, without
              the app, one of your recovery codes (<span className="mono">xxxx-xxxx-xxxx-xxxx</span>, each works once).</span>
            <input name="otp" autoComplete="one-time-code" autoCapitalize="off" spellCheck={false}
              pattern="[0-9 ]{6,8}|[A-Za-z0-9 \-]{16,19}" title="6 digits, or a recovery code" value={otp}
              onChange={(e) => setOtp(e.target.value)} required autoFocus />
          </label>
        )}
        <ErrorBox error={error} />
        <button className="btn primary" type="submit" disabled={busy}>
          {busy && <Spinner label="Logging in" />} {needOtp ? "Verify" : "Log in"}
        </button>
        {needOtp && (
          <button type="button" className="btn" onClick={() => { setNeedOtp(false); setOtp(""); }}>Back</button>
        )}
      </form>
    </div>
  );
}
