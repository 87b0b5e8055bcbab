// The browser session: who is logged in (from GET /api/auth/session, which also hands over the CSRF
// token kept in memory), login with the TOTP step, logout, and the way back after expiry.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { api, ApiError, setCsrfToken, setUnauthorizedHandler, unwrap, type Schemas } from "../api/client";

type Session = Schemas["Session"];

interface AuthValue {
  session: Session | null;
  checking: boolean;
  isAdmin: boolean;
  expired: boolean;
  login: (username: string, password: string, otp?: string) => Promise<void>;
  logout: () => Promise<void>;
}

const Ctx = createContext<AuthValue | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(true);
  const [expired, setExpired] = useState(false);

  const adopt = useCallback((s: Session | null) => {
    setCsrfToken(s?.csrf_token ?? "");
    setSession(s);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => {
      setExpired(true);
      adopt(null);
    });
    unwrap(api.GET("/api/auth/session"))
      .then((s) => adopt(s))
      .catch(() => adopt(null))
      .finally(() => setChecking(false));
    return () => setUnauthorizedHandler(null);
  }, [adopt]);

  const login = useCallback(async (username: string, password: string, otp?: string) => {
    const s = await unwrap(api.POST("/api/auth/session", { body: { username, password, otp: otp || null } }));
    setExpired(false);
    adopt(s);
  }, [adopt]);

  const logout = useCallback(async () => {
    try {
      await unwrap(api.DELETE("/api/auth/session"));
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e;
    }
    adopt(null);
  }, [adopt]);

  return (
    <Ctx.Provider value={{ session, checking, isAdmin: session?.role === "admin", expired, login, logout }}>
      {children}
    </Ctx.Provider>
  );
}

export function useAuth(): AuthValue {
  const v = useContext(Ctx);
  if (!v) throw new Error("useAuth outside AuthProvider");
  return v;
}

/** Renders its children for admins only: viewers never see mutating controls. */
export function AdminOnly({ children }: { children: ReactNode }) {
  return useAuth().isAdmin ? <>{children}</> : null;
}
