"""The kernel's own tables: events, users, tokens, audit."""

from __future__ import annotations

from core.store import Migration

CORE_MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "events users tokens audit",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            at REAL NOT NULL,
            data TEXT NOT NULL
        );
        CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
            totp_secret TEXT,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            password_changed_at REAL NOT NULL
        );
        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
            name TEXT NOT NULL,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL,
            last_used_at REAL
        );
        CREATE INDEX tokens_user ON tokens(user_id);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            role TEXT,
            action TEXT NOT NULL,
            target TEXT,
            outcome TEXT NOT NULL,
            status INTEGER,
            client_ip TEXT,
            before TEXT,
            after TEXT
        );
        CREATE INDEX audit_at ON audit(at);
        """,
    ),
    Migration(
        2,
        "totp enrolment and replay guard",
        """
        ALTER TABLE users ADD COLUMN totp_pending TEXT;
        ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        3,
        "totp recovery codes",
        """
        CREATE TABLE recovery_codes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            code_hash TEXT NOT NULL,
            created_at REAL NOT NULL,
            used_at REAL
        );
        CREATE INDEX recovery_codes_user ON recovery_codes(user_id);
        """,
    ),
]
