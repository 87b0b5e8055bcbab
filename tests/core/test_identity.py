import os
import stat

import pytest

from core.audit import redact
from core.clock import ManualClock
from core.errors import BadRequest, Conflict, Forbidden, Throttled, Unauthorized
from core.identity import Identity, LoginThrottle, Principal, check_password, hash_password


@pytest.mark.parametrize(
    ("failures_at", "now", "wait"),
    [
        ([], 0, 0),
        ([0, 1, 2, 3], 4, 0),  # under the limit
        ([0, 1, 2, 3, 4], 5, 29),  # locked 30 s after the 5th failure
        ([0, 1, 2, 3, 4, 5], 6, 59),  # each further failure doubles the lock
        ([0, 1, 2, 3, 4], 40, 0),  # the lock ran out
        ([0, 1, 2, 3, 4], 1000, 0),  # failures left the window
    ],
)
def test_throttle_table(failures_at, now, wait):
    t = LoginThrottle(limit=5, window_s=900, lock_s=30, max_lock_s=900)
    for at in failures_at:
        t.failed("user:a", at)
    assert t.retry_after("user:a", now) == pytest.approx(wait)


def test_throttle_lock_is_capped_and_success_clears():
    t = LoginThrottle(limit=2, window_s=10_000, lock_s=30, max_lock_s=100)
    for at in range(20):
        t.failed("k", at)
    assert t.retry_after("k", 20) == pytest.approx(99)
    t.succeeded("k")
    assert t.retry_after("k", 20) == 0


def test_password_hash_round_trip_and_long_passwords_not_truncated():
    long_a, long_b = "a" * 100, "a" * 99 + "b"  # differ after bcrypt's 72-byte limit
    h = hash_password(long_a, rounds=4)
    assert check_password(long_a, h)
    assert not check_password(long_b, h)
    assert not check_password("x", "not-a-hash")


def test_redact_hides_secret_fields_at_any_depth():
    assert redact({"name": "ci", "token": "ic_x", "nested": [{"password": "p", "ok": 1}]}) == {
        "name": "ci",
        "token": "[redacted]",
        "nested": [{"password": "[redacted]", "ok": 1}],
    }


@pytest.fixture
async def identity(store, bus):
    return Identity(store, bus, clock=ManualClock(), hash_rounds=4)


async def test_initial_admin_created_once_with_a_private_password_file(identity, tmp_path):
    pw = await identity.ensure_initial_admin(tmp_path)
    assert pw and len(pw) >= 20
    f = tmp_path / "initial-admin-password"
    assert f.read_text().strip() == pw
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert await identity.ensure_initial_admin(tmp_path) is None
    token, _, principal = await identity.login("admin", pw, "127.0.0.1")
    assert principal.role == "admin"
    assert (await identity.authenticate(token)).username == "admin"


async def test_login_throttles_per_user(identity, tmp_path):
    pw = await identity.ensure_initial_admin(tmp_path)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await identity.login("admin", "wrong-password", "10.0.0.1")
    with pytest.raises(Throttled) as info:
        await identity.login("admin", pw, "10.0.0.2")  # right password, other IP: the user is locked
    assert info.value.retry_after_s > 0


async def test_tokens_expire_and_revoke(identity, tmp_path):
    await identity.ensure_initial_admin(tmp_path)
    admin = Principal("admin", "admin", "session", user_id=1)
    token, rec = await identity.create_token(admin, "ci", "viewer", ttl_s=60)
    assert rec["state"] == "active" and "token" not in rec
    assert (await identity.authenticate(token)).role == "viewer"
    identity._clock.advance(61)
    with pytest.raises(Unauthorized, match="expired"):
        await identity.authenticate(token)
    token2, rec2 = await identity.create_token(admin, "ci2", "admin", ttl_s=600)
    await identity.revoke_token(rec2["id"])
    with pytest.raises(Unauthorized, match="revoked"):
        await identity.authenticate(token2)
    with pytest.raises(Unauthorized, match="not valid"):
        await identity.authenticate("ic_forged")


async def test_users_rules(identity, tmp_path):
    await identity.ensure_initial_admin(tmp_path)
    admin = Principal("admin", "admin", "session", user_id=1)
    await identity.add_user("viv", "viewer-password", "viewer")
    viv = Principal("viv", "viewer", "session", user_id=2)
    with pytest.raises(Conflict):
        await identity.add_user("viv", "another-password", "viewer")
    with pytest.raises(BadRequest, match="too short"):
        await identity.add_user("shorty", "abc", "viewer")
    with pytest.raises(BadRequest, match="invalid username"):
        await identity.add_user("bad name!", "long-enough-pw", "viewer")
    with pytest.raises(Forbidden):
        await identity.set_password(viv, "admin", "new-password-1")
    with pytest.raises(Forbidden):
        await identity.create_token(viv, "x", "admin", 60)
    await identity.set_password(viv, "viv", "new-password-2")  # own password: allowed
    with pytest.raises(BadRequest, match="cannot remove yourself"):
        await identity.remove_user(admin, "admin")
    await identity.remove_user(admin, "viv")
    assert [u["username"] for u in await identity.list_users()] == ["admin"]


def test_totp_step_table():
    import pyotp

    secret = pyotp.random_base32()
    now = 1_700_000_015.0
    code = pyotp.TOTP(secret).at(now)
    from core.identity import totp_step

    assert totp_step(secret, code, now) == int(now // 30)
    assert totp_step(secret, code[:3] + " " + code[3:], now) == int(now // 30)  # spaces as apps show them
    assert totp_step(secret, code, now + 30) == int(now // 30)  # one step of clock drift is accepted
    assert totp_step(secret, code, now + 90) is None
    assert totp_step(secret, "12345", now) is None and totp_step(secret, "abcdef", now) is None


async def test_totp_enrol_login_and_replay(identity, tmp_path):
    import pyotp

    pw = await identity.ensure_initial_admin(tmp_path)
    admin = Principal("admin", "admin", "session", user_id=1)
    enrol = await identity.totp_begin(admin, "admin")
    assert enrol["otpauth_uri"].startswith("otpauth://totp/Infra-Core:admin?secret=")
    # Pending enrolment does not change login yet.
    await identity.login("admin", pw, "127.0.0.1")
    totp = pyotp.TOTP(enrol["secret"])
    with pytest.raises(BadRequest, match="does not match"):
        wrong = "000000" if totp.at(identity._clock.now()) != "000000" else "111111"
        await identity.totp_confirm(admin, "admin", wrong)
    await identity.totp_confirm(admin, "admin", totp.at(identity._clock.now()))
    with pytest.raises(Unauthorized) as info:
        await identity.login("admin", pw, "127.0.0.1")
    assert info.value.code == "otp_required"
    identity._clock.advance(30)
    code = totp.at(identity._clock.now())
    await identity.login("admin", pw, "127.0.0.1", otp=code)
    with pytest.raises(Unauthorized) as info:
        await identity.login("admin", pw, "127.0.0.1", otp=code)  # the same code twice: refused
    assert info.value.code == "otp_invalid"
    await identity.totp_disable(admin, "admin")
    await identity.login("admin", pw, "127.0.0.1")


async def test_a_success_does_not_reset_the_ip_counter(identity, tmp_path):
    pw = await identity.ensure_initial_admin(tmp_path)
    for i in range(19):
        with pytest.raises(Unauthorized):
            await identity.login(f"nobody{i}", "wrong-password", "10.0.0.9")
    await identity.login("admin", pw, "10.0.0.9")  # one good account from the spraying address...
    with pytest.raises(Unauthorized):
        await identity.login("nobody", "wrong-password", "10.0.0.9")
    with pytest.raises(Throttled):  # ...did not buy it another 20 tries
        await identity.login("nobody", "wrong-password", "10.0.0.9")
    await identity.login("admin", pw, "10.0.0.10")  # other addresses are not affected


async def test_a_recovery_code_is_spent_once_even_concurrently(identity, tmp_path):
    import asyncio

    import pyotp

    pw = await identity.ensure_initial_admin(tmp_path)
    admin = Principal("admin", "admin", "session", user_id=1)
    secret = (await identity.totp_begin(admin, "admin"))["secret"]
    codes = await identity.totp_confirm(admin, "admin", pyotp.TOTP(secret).at(identity._clock.now()))
    assert len(codes) == 10
    results = await asyncio.gather(
        *(identity.login("admin", pw, f"10.0.1.{i}", codes[3]) for i in range(4)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    assert all(isinstance(r, Unauthorized) for r in results if isinstance(r, BaseException))
    fresh = await identity.regenerate_recovery_codes(admin, "admin")
    with pytest.raises(Unauthorized):
        await identity.login("admin", pw, "10.0.2.1", codes[4])  # replaced
    await identity.login("admin", pw, "10.0.2.1", fresh[4])
    assert (await identity.get_user("admin"))["recovery_codes_left"] == 9
    await identity.totp_disable(admin, "admin")
    assert (await identity.get_user("admin"))["recovery_codes_left"] == 0
    row = await identity._store.fetchone("SELECT COUNT(*) FROM recovery_codes")
    assert row[0] == 0


async def test_password_work_runs_in_the_pool_and_a_full_pool_is_503(store, bus, tmp_path):
    """bcrypt (login, new user, new password) runs in the given worker pool — here a real process pool —
    and never on the loop; when the pool is full the call fails at once with 503 + Retry-After."""
    import threading

    from core.workers import PoolBusy, WorkerPool

    procs = WorkerPool("test-control", workers=1, backlog=1, kind="process")
    try:
        ident = Identity(store, bus, clock=ManualClock(), hash_rounds=4, workers=procs)
        pw = await ident.ensure_initial_admin(tmp_path)
        assert pw is not None
        token, _, principal = await ident.login("admin", pw, "127.0.0.1")
        assert principal.role == "admin" and token
        with pytest.raises(Unauthorized):
            await ident.login("nobody", "whatever-password", "127.0.0.1")  # the dummy hash, made in the pool
        assert ident._secrets.dummy_hash is not None
    finally:
        await procs.stop(10)

    busy = WorkerPool("test-busy", workers=1, backlog=0)
    gate = threading.Event()
    try:
        ident = Identity(store, bus, clock=ManualClock(), hash_rounds=4, workers=busy)
        blocker = busy.submit(gate.wait, 30)
        with pytest.raises(PoolBusy) as info:
            await ident.login("admin", "whatever-password", "127.0.0.1")
        assert info.value.status == 503 and info.value.retry_after_s >= 1
        with pytest.raises(PoolBusy):
            await ident.add_user("bob", "long-enough-pw", "viewer")
        gate.set()
        await blocker
        assert (await ident.add_user("bob", "long-enough-pw", "viewer"))["username"] == "bob"
    finally:
        gate.set()
        await busy.stop(10)
