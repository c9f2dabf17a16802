"""The exceptions ecosync raises, all rooted at EcosyncError.

    EcosyncError
    ├── ConfigError              the stores file or a setting is wrong
    │   ├── MissingToken         a store's token variable is unset
    │   ├── MissingWebhookSecret a store's webhook secret variable is unset (or not named)
    │   └── SecretFileError      a store's secret file is missing, unreadable or empty
    ├── ApiError                 EcoManager answered badly (carries store, page, order_id)
    │   ├── ApiAuthError         401/403: check the store's token variable
    │   ├── ApiRateLimited       429 after every retry (retryable)
    │   │   └── BudgetExhausted  the store's shared rate budget is spent for now
    │   │       └── ServerHoldOff  EcoManager's Retry-After ends later than the run waits
    │   ├── ApiUnavailable       5xx, timeouts, connection errors after every retry (retryable)
    │   ├── CallCapReached       the run's own call cap (--max-calls, a daily share) is spent
    │   ├── ResponseTooLarge     a page's body is larger than the store's cap
    │   └── MalformedPage        the payload breaks the contract
    │       └── ContractViolation  pages that contradict each other (served twice, ids back,
    │                              a cursor ended above the store's lowest id)
    ├── PositionError            a sync position could not be read or trusted
    │   └── BackupCorrupt        the JSON backup was unreadable (it was moved aside)
    ├── StorageError             the orders database failed
    │   └── DatabaseUnavailable  it cannot be reached, or the connection dropped (retryable)
    └── SyncError
        ├── StoreLocked          another run is syncing this store
        └── MirrorRefused        EcoManager served something the mirror will not act on

Library exceptions are converted where they enter our code (``raise X(...) from exc``),
and every message names the store, page or file and says what to do. ``retryable`` says
whether running the same thing again may succeed (a server or database that was away);
the Dagster layer retries only those.
"""

from __future__ import annotations

from datetime import datetime


class EcosyncError(Exception):
    """Root of every error ecosync raises on purpose."""

    retryable: bool = False
    """True when the same run may succeed later unchanged (an outage, not a defect)."""


class ConfigError(EcosyncError):
    """The configuration (stores file, environment) is invalid."""


class MissingToken(ConfigError):
    """A store's token environment variable is not set."""

    def __init__(self, store: str, variable: str) -> None:
        self.store = store
        self.variable = variable
        super().__init__(
            f"store {store}: environment variable {variable} is not set; "
            f"export {variable}=<the store's 80-character EcoManager token>"
        )


class MissingWebhookSecret(ConfigError):
    """A store's webhook secret is not configured: no webhook_secret_env (or _file), or
    its variable is unset."""

    def __init__(self, store: str, variable: str | None) -> None:
        self.store = store
        self.variable = variable
        if variable is None:
            remedy = (
                "add 'webhook_secret_env: <VARIABLE>' to the store in the stores file and "
                "export that variable (or 'webhook_secret_file: <PATH>', a file holding it)"
            )
        else:
            remedy = f"export {variable}=<the secret the store's webhooks are registered with>"
        super().__init__(f"store {store}: no webhook secret; {remedy}")


class SecretFileError(ConfigError):
    """A secret file a store names (token_file, webhook_secret_file) cannot give its secret."""

    def __init__(self, store: str, key: str, path: str, reason: str) -> None:
        self.store = store
        self.key = key
        self.path = path
        self.reason = reason
        super().__init__(
            f"store {store}: {key} {path} {reason}; write the store's secret alone in that "
            f"file, readable by ecosync (as Docker and Kubernetes mount secrets), or point "
            f"{key} at the right file in the stores file"
        )


class ApiError(EcosyncError):
    """EcoManager failed to answer a page request usefully."""

    def __init__(
        self,
        message: str,
        *,
        store: str,
        page: int | None = None,
        order_id: int | None = None,
    ) -> None:
        self.store = store
        self.page = page
        self.order_id = order_id
        super().__init__(message)


class ApiAuthError(ApiError):
    """401 or 403: the token is missing, malformed or refused. Never retried."""


class ApiRateLimited(ApiError):
    """429 persisted through every retry."""

    retryable = True


class BudgetExhausted(ApiRateLimited):
    """The store's shared rate budget has no call left for longer than the caller waits.

    ``retry_at`` is when the budget allows the next call (UTC).
    """

    retryable = False  # not before retry_at: the next scheduled run carries on

    def __init__(self, message: str, *, store: str, retry_at: datetime) -> None:
        super().__init__(message, store=store)
        self.retry_at = retry_at


class ServerHoldOff(BudgetExhausted):
    """EcoManager (429 or 503) asked for no call before ``retry_at``, later than this run
    waits (past its retry cap or its time budget): the run stops after its last commit."""

    def __init__(self, message: str, *, store: str, page: int | None, retry_at: datetime) -> None:
        super().__init__(message, store=store, retry_at=retry_at)
        self.page = page


class ApiUnavailable(ApiError):
    """5xx, timeouts or connection errors persisted through every retry."""

    retryable = True


class CallCapReached(ApiError):
    """The run spent the calls it was given (``--max-calls``, its daily share); not sent.

    The reconciliation and the status refresh stop there, keeping what they committed.
    """


class ResponseTooLarge(ApiError):
    """A response body grew past the store's cap (``max_page_bytes``); it was not read whole."""


class MalformedPage(ApiError):
    """The payload breaks the contract: data not a list, an order without an integer id."""


class ContractViolation(MalformedPage):
    """Pages that contradict each other: a page served twice, ids going back across pages, a
    newest-first cursor that ends above the lowest id the store serves."""


class PositionError(EcosyncError):
    """A sync position could not be read, written or trusted."""


class BackupCorrupt(PositionError):
    """The JSON backup file could not be parsed; it has been moved aside."""

    def __init__(self, path: str, moved_to: str | None, reason: str) -> None:
        self.path = path
        self.moved_to = moved_to
        self.reason = reason
        where = f"moved aside to {moved_to}" if moved_to else "left in place"
        super().__init__(
            f"backup file {path} is unreadable ({reason}); {where}. Positions will be "
            "recomputed from the orders database; inspect the moved file if you need it."
        )


class StorageError(EcosyncError):
    """The orders database failed."""


class DatabaseUnavailable(StorageError):
    """The orders database cannot be reached, or the connection dropped; a retry may work."""

    retryable = True


class SyncError(EcosyncError):
    """A store's sync could not run."""


class StoreLocked(SyncError):
    """Another run holds the store's lock (its sync's, or its repairs')."""

    def __init__(self, store: str, holder: str | None = None, *, what: str = "sync") -> None:
        self.store = store
        self.holder = holder
        self.what = what
        by = f" ({holder})" if holder else ""
        super().__init__(
            f"store {store}: another {what} is already running for this store{by}; "
            f"this run exits without a {what}. Wait for it to finish."
        )


class MirrorRefused(SyncError):
    """What EcoManager served would flag or skip orders on evidence the contract does not give.

    Raised before anything is written for the page concerned, naming the store and page.
    """

    def __init__(self, message: str, *, store: str, page: int | None = None) -> None:
        self.store = store
        self.page = page
        super().__init__(message)


class StoreLockLost(SyncError):
    """The run's store lock was lost (connection dropped, or another run took the store)."""

    def __init__(self, store: str, reason: str, *, what: str = "sync") -> None:
        self.store = store
        self.reason = reason
        super().__init__(
            f"store {store}: this run lost the store's {what} lock ({reason}) and stopped "
            "before writing anything more; what it committed is kept and its position "
            "is at or behind it. The run that holds the store now carries on; if none "
            f"does, run the {what} again."
        )
