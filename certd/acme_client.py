"""The ACME (RFC 8555) conversation for one order, HTTP-01 only, on the `acme` library.

Synchronous and blocking (the library uses `requests`): the service runs `AcmeIssuer.issue` in a
worker thread, one order at a time. Polling uses a bounded back-off (0.25 s doubling to 2 s, or the
server's Retry-After up to 10 s) within `order_timeout_s`; every wait checks the `abort` event so the
thread ends promptly when the service stops. Every failure becomes an `AcmeFailure` whose message is
the ACME server's own error text (or what went wrong reaching it) and which carries the server's
Retry-After when it rate-limited us.

ACME Renewal Information (RFC 9773): `renewal_info` fetches a certificate's suggested renewal window
when the directory offers `renewalInfo` (the `acme` library's `ClientV2.renewal_time` picks the time
itself with naive local datetimes and hides the window, and its `new_order` cannot send `replaces`,
so both are done here, the GET itself in `certd.ari_fetch`); a renewal's new-order names the certificate it
`replaces` when the CA offers ARI.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import josepy as jose
import requests
import structlog
from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization

from certd import ari, ari_fetch, files, pem
from certd.ari_fetch import AriFailure, root_cause

log = structlog.get_logger("certd.acme")

_POLL_FIRST_S = 0.25
_POLL_MAX_S = 2.0
_RETRY_AFTER_POLL_MAX_S = 10.0


class AcmeFailure(Exception):
    """An order did not produce a certificate. `message` is for people; `retry_after_s` is the
    server's Retry-After when it answered 429/rateLimited (or 503)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, acme_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.acme_type = acme_type


@dataclass(frozen=True)
class AriAnswer:
    window: ari.RenewalWindow
    retry_after_s: float | None  # the answer's Retry-After: when to ask again


class _ReplacingOrder(messages.NewOrder):
    """A new-order naming the certificate it replaces (RFC 9773 §5)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


_DIRECTORY_TTL_S = 3600.0


class Aborted(Exception):
    """The service is stopping; the order was abandoned."""


@dataclass(frozen=True)
class Issued:
    fullchain_pem: bytes
    key_pem: bytes


ChallengeHook = Callable[[str, str], None]  # (token, key authorization)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from an HTTP Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # (str.isdigit accepts "²", which float() refuses)
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def describe(err: messages.Error) -> str:
    """One line from an ACME problem document: its detail, then its type."""
    text = err.detail or err.title or err.description or "no detail given"
    who = f"{err.identifier.value}: " if err.identifier is not None else ""
    line = f"{who}{text} [{err.typ}]"
    for sub in err.subproblems or ():
        line += f"; {describe(sub)}"
    return line


class AcmeIssuer:
    """An ACME account on one directory, and the orders placed with it."""

    def __init__(
        self,
        directory_url: str,
        account_dir: Path,
        *,
        ca_bundle: Path | None = None,
        email: str | None = None,
        request_timeout_s: float = 30,
        order_timeout_s: float = 120,
        abort: threading.Event | None = None,
    ) -> None:
        self.directory_url = directory_url
        self.account_dir = account_dir
        self.ca_bundle = ca_bundle
        self.email = email
        self.request_timeout_s = request_timeout_s
        self.order_timeout_s = order_timeout_s
        self.abort = abort or threading.Event()
        self._client: client.ClientV2 | None = None
        self._last_retry_after: float | None = None
        self._directory: dict[str, Any] | None = None
        self._directory_at = 0.0

    # --- account -----------------------------------------------------------------------------

    @property
    def account_key_path(self) -> Path:
        tag = hashlib.sha256(self.directory_url.encode()).hexdigest()[:12]
        return self.account_dir / f"account-{tag}.key"

    def _account_key(self) -> jose.JWKEC:
        path = self.account_key_path
        if path.exists():
            key_pem = path.read_bytes()
        else:
            key_pem = pem.generate_key()
            files.write_secret(path, key_pem)
            (path.with_suffix(".url")).write_text(self.directory_url + "\n")
            log.info("created ACME account key", directory=self.directory_url, path=str(path))
        key = serialization.load_pem_private_key(key_pem, password=None)
        return jose.JWKEC(key=key)

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code in (429, 503):
            self._last_retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())

    def _connect(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        net = client.ClientNetwork(
            self._account_key(),
            alg=jose.ES256,
            user_agent="infracore-certd",
            # acme types it bool, but hands it to requests' `verify`, which also takes a CA bundle path:
            verify_ssl=str(self.ca_bundle) if self.ca_bundle else True,  # type: ignore[arg-type]
            timeout=int(self.request_timeout_s),
        )
        net.session.hooks["response"].append(self._on_response)
        directory = client.ClientV2.get_directory(self.directory_url, net)
        acme = client.ClientV2(directory, net)
        try:
            regr = acme.new_account(messages.NewRegistration.from_data(email=self.email, terms_of_service_agreed=True))
            log.info("registered ACME account", directory=self.directory_url, account=regr.uri)
        except errors.ConflictError as e:
            # The key already has an account there: use it.
            net.account = messages.RegistrationResource(uri=str(e.location), body=messages.Registration())
        self._client = acme
        return acme

    # --- renewal information (RFC 9773) -------------------------------------------------------

    def _fetch(self, url: str) -> tuple[int, str | None, bytes]:
        """GET `url` within `request_timeout_s` in all (see `ari_fetch.fetch`)."""
        return ari_fetch.fetch(url, self.request_timeout_s, self.ca_bundle)

    def _renewal_info_base(self) -> str | None:
        """The directory's `renewalInfo` URL (None: the CA does not offer ARI); the directory is
        fetched at most once per `_DIRECTORY_TTL_S`."""
        if self._directory is None or time.monotonic() - self._directory_at > _DIRECTORY_TTL_S:
            status, _, body = self._fetch(self.directory_url)
            if status != 200:
                raise AriFailure(f"the ACME directory {self.directory_url} answered {status}")
            try:
                doc = json.loads(body)
            except ValueError as e:
                raise AriFailure(f"the ACME directory {self.directory_url} is not JSON: {e}") from None
            if not isinstance(doc, dict):
                raise AriFailure(f"the ACME directory {self.directory_url} is not a JSON object")
            self._directory, self._directory_at = doc, time.monotonic()
        url = self._directory.get("renewalInfo")
        if url is None:
            return None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise AriFailure(f"the ACME directory's renewalInfo is not a URL: {url!r:.100}")
        return url

    def offers_ari(self) -> bool:
        """Whether the directory has `renewalInfo`. Blocking; AriFailure when it cannot be read."""
        return self._renewal_info_base() is not None

    def renewal_info(self, ari_id: str) -> AriAnswer | None:
        """The CA's suggested renewal window for the certificate `ari_id` and its Retry-After, or None
        when the CA does not offer ARI. Blocking; AriFailure (with the server's Retry-After, if any)
        when the answer cannot be had or used."""
        base = self._renewal_info_base()
        if base is None:
            return None
        url = f"{base.rstrip('/')}/{ari_id}"
        try:
            status, retry_header, body = self._fetch(url)
        except AriFailure:
            self._directory = None
            raise
        retry_after = parse_retry_after(retry_header, time.time())
        if status != 200:
            self._directory = None  # the URL may have moved: read the directory again next time
            text = body[:200].decode("utf-8", "replace").strip()
            raise AriFailure(f"{url} answered {status}" + (f": {text}" if text else ""), retry_after_s=retry_after)
        try:
            window = ari.parse_renewal_info(body)
        except ari.AriMalformed as e:
            raise AriFailure(f"{url}: {e}", retry_after_s=retry_after) from e
        return AriAnswer(window, retry_after)

    # --- one order ---------------------------------------------------------------------------

    def issue(self, names: list[str], put: ChallengeHook, remove: Callable[[str], None], replaces: str = "") -> Issued:
        """Order a certificate for `names` (the first is the subject), answering HTTP-01 challenges by
        `put(token, key_authorization)`; every token put is `remove`d before returning. `replaces`:
        the ARI id of the certificate this one renews, sent when the CA offers ARI. Blocking."""
        self._last_retry_after = None
        try:
            return self._issue(names, put, remove, replaces)
        except Exception:
            # Start the next order from a fresh directory and account lookup: the server may have
            # changed under us (new directory, account gone, stale nonces).
            self._client = None
            raise

    def _issue(self, names: list[str], put: ChallengeHook, remove: Callable[[str], None], replaces: str) -> Issued:
        try:
            return self._order(names, put, remove, replaces)
        except AcmeFailure:
            raise
        except messages.Error as e:
            raise AcmeFailure(describe(e), retry_after_s=self._last_retry_after, acme_type=e.typ) from e
        except requests.exceptions.SSLError as e:
            raise AcmeFailure(
                f"TLS to the ACME server {self.directory_url} failed: {root_cause(e)} "
                "(for a private ACME server, pass its CA with --acme-ca-bundle)"
            ) from e
        except requests.exceptions.ConnectionError as e:
            raise AcmeFailure(f"cannot reach the ACME server {self.directory_url}: {root_cause(e)}") from e
        except requests.exceptions.Timeout as e:
            raise AcmeFailure(f"the ACME server {self.directory_url} did not answer in time: {e}") from e
        except errors.Error as e:
            raise AcmeFailure(f"ACME protocol error with {self.directory_url}: {e}") from e
        except (ValueError, KeyError) as e:  # malformed answers (not JSON, missing fields)
            raise AcmeFailure(f"unexpected answer from the ACME server {self.directory_url}: {e!r}") from e

    def _new_order(
        self, acme: client.ClientV2, names: list[str], csr_pem: bytes, replaces: str
    ) -> messages.OrderResource:
        """`acme.new_order`, with `replaces` when the CA offers ARI. A CA that refuses it (the old
        certificate was already replaced, or it does not know it) gets the order without it."""
        try:
            acme.directory["renewalInfo"]
        except KeyError:
            replaces = ""
        if not replaces:
            return acme.new_order(csr_pem)
        order = _ReplacingOrder(
            identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names], replaces=replaces
        )
        try:
            response = acme.net.post(acme.directory["newOrder"], order, new_nonce_url=acme.directory["newNonce"])
        except messages.Error as e:
            if str(e.typ).rsplit(":", 1)[-1] not in ("alreadyReplaced", "malformed", "conflict"):
                raise
            log.warning("the ACME server refused `replaces`; ordering without it", replaces=replaces, error=describe(e))
            return acme.new_order(csr_pem)
        body = messages.Order.from_json(response.json())
        authorizations = [
            messages.AuthorizationResource(
                body=messages.Authorization.from_json(self._post_as_get(acme, url).json()), uri=url
            )
            for url in body.authorizations or ()
        ]
        log.info("ordering a renewal that replaces the previous certificate", replaces=replaces, names=names)
        return messages.OrderResource(
            body=body, uri=response.headers.get("Location"), authorizations=authorizations, csr_pem=csr_pem
        )

    def _order(self, names: list[str], put: ChallengeHook, remove: Callable[[str], None], replaces: str) -> Issued:
        deadline = time.monotonic() + self.order_timeout_s
        acme = self._connect()
        key_pem = pem.generate_key()
        orderr = self._new_order(acme, names, pem.make_csr(key_pem, names), replaces)
        tokens: list[str] = []
        try:
            pending = []
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue  # reused authorization: nothing to prove
                challb = next((c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                if challb is None:
                    raise AcmeFailure(f"{authzr.body.identifier.value}: the ACME server offers no HTTP-01 challenge")
                response, validation = challb.response_and_validation(acme.net.key)
                token = challb.chall.encode("token")
                put(token, validation)
                tokens.append(token)
                acme.answer_challenge(challb, response)
                pending.append(authzr)
            for authzr in pending:
                self._wait_authorization(acme, authzr, deadline)
            fullchain = self._finalize(acme, orderr, deadline)
        finally:
            for token in tokens:
                remove(token)
        return Issued(fullchain.encode(), key_pem)

    def _sleep(self, seconds: float, deadline: float, what: str) -> None:
        if time.monotonic() + seconds > deadline:
            raise AcmeFailure(f"timed out after {self.order_timeout_s:g}s waiting for {what}")
        if self.abort.wait(seconds):
            raise Aborted()

    def _wait_authorization(
        self, acme: client.ClientV2, authzr: messages.AuthorizationResource, deadline: float
    ) -> None:
        delay = _POLL_FIRST_S
        name = authzr.body.identifier.value
        while True:
            authzr, response = acme.poll(authzr)
            status = authzr.body.status
            if status == messages.STATUS_VALID:
                return
            if status != messages.STATUS_PENDING:
                problems = [describe(c.error) for c in authzr.body.challenges if c.error is not None]
                detail = "; ".join(problems) or f"authorization is {status.name}"
                raise AcmeFailure(
                    f"validation of {name} failed: {detail}",
                    acme_type=next((c.error.typ for c in authzr.body.challenges if c.error), None),
                )
            self._sleep(self._poll_delay(response, delay), deadline, f"the validation of {name}")
            delay = min(delay * 2, _POLL_MAX_S)

    def _poll_delay(self, response: requests.Response, delay: float) -> float:
        server = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return min(server, _RETRY_AFTER_POLL_MAX_S) if server is not None else delay

    def _post_as_get(self, acme: client.ClientV2, url: str) -> requests.Response:
        return acme.net.post(url, None, new_nonce_url=acme.directory["newNonce"])

    def _finalize(self, acme: client.ClientV2, orderr: messages.OrderResource, deadline: float) -> str:
        try:
            orderr = acme.begin_finalization(orderr)
        except messages.Error as e:
            if e.code != "orderNotReady":
                raise
        delay = _POLL_FIRST_S
        finalized = True
        while True:
            body = orderr.body
            if body.status == messages.STATUS_VALID and body.certificate:
                return self._post_as_get(acme, body.certificate).text
            if body.status == messages.STATUS_INVALID:
                detail = describe(body.error) if body.error is not None else "no reason given"
                raise AcmeFailure(
                    f"the order was refused: {detail}", acme_type=body.error.typ if body.error is not None else None
                )
            if body.status == messages.STATUS_READY and not finalized:
                orderr = acme.begin_finalization(orderr)
                finalized = True
                continue
            self._sleep(delay, deadline, "the certificate")
            delay = min(delay * 2, _POLL_MAX_S)
            response = self._post_as_get(acme, orderr.uri)
            orderr = orderr.update(body=messages.Order.from_json(response.json()))
            if orderr.body.status == messages.STATUS_READY:
                finalized = False
