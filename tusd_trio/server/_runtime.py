"""Everything a configuration needs to serve tus, built once: :func:`build_runtime`.

The daemon (:class:`~._app.Server`) and the ASGI app share this; neither builds a
store, a locker or a hook dispatcher of its own, and the :class:`Config` they are
given is never changed (what it implies, e.g. the extensions the store supports,
goes into :attr:`Runtime.protocol`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import trio

from ..auth import Authenticator
from ..config import Config
from ..hooks.dispatcher import HookDispatcher
from ..hooks.factory import build_hooks, build_outbox
from ..hooks.outbox import HookOutbox
from ..lockers.base import Locker
from ..lockers.factory import build_locker
from ..protocol.config import ProtocolConfig
from ..protocol.cors import cors_origin_warning
from ..quotas.service import Quotas, build_ledger
from ..stores.base import ConsistencyCheckingStore, Store
from ..stores.factory import build_store
from ..stores.file import FileStore
from ._events import EventStream
from ._handler import TusHandler
from ._janitor import Janitor
from ._metrics import Metrics, MetricsSource
from ._operator import OperatorEndpoints
from ._state import ServerState
from ._supervisor import Supervisor
from ._timed_locker import TimedLocker
from ._uploads import HandlerParts

log = logging.getLogger("tusd_trio")


@dataclass(frozen=True)
class Runtime:
    """The parts one daemon process (or one ASGI app) serves with."""

    #: The configuration as given (never changed).
    config: Config
    #: The protocol settings in force: the configuration's, with what the store
    #: supports, the API key header allowed by CORS, and the metrics path left to
    #: the operator listener when there is one.
    protocol: ProtocolConfig
    store: Store
    #: The locker, timed (tusd_trio_lock_wait_seconds); ``locker.inner`` is the one built.
    locker: TimedLocker
    hooks: HookDispatcher | None
    #: The durable outbox of notification hooks, when on.
    outbox: HookOutbox | None
    auth: Authenticator
    #: Per-principal quotas (inert unless configured).
    quotas: Quotas
    state: ServerState
    metrics: Metrics
    events: EventStream
    supervisor: Supervisor
    janitor: Janitor
    operator: OperatorEndpoints
    handler: TusHandler

    @property
    def metrics_source(self) -> MetricsSource:
        return MetricsSource(
            self.metrics, self.state, self.events, self.config.metrics_dir, self.outbox
        )

    async def start_background(self, nursery: trio.Nursery) -> None:
        """Start the supervisor (hook notifications, locker tasks) and the expiry
        janitor in ``nursery``, and run the store's start-up consistency check."""
        await nursery.start(self.supervisor.run)
        if isinstance(self.store, ConsistencyCheckingStore):
            for message in await self.store.check_consistency(self.config.orphan_age):
                log.info("%s", message)
        # The quota ledger is rebuilt before the janitor starts: an upload it expired
        # meanwhile would be released from the old ledger and counted again by the new.
        if self.quotas.enabled:
            counted = await self.quotas.rebuild(self.store)
            if self.quotas.ledger is not None and self.quotas.ledger.kind == "memory":
                log.info("QuotaLedgerRebuilt", extra={"tus": {"uploads": counted}})
        if self.config.janitor_interval > 0:
            nursery.start_soon(self.janitor.run)

    async def aclose(self) -> None:
        """Let hook calls finish (bounded), then close the locker (the file locker
        removes its owner file, the Redis locker gives its leases back) and the store."""
        await self.supervisor.aclose()
        with trio.CancelScope(shield=True):
            await self.locker.aclose()
            await self.store.aclose()


def build_runtime(
    config: Config,
    *,
    store: Store | None = None,
    locker: Locker | None = None,
    hooks: HookDispatcher | None = None,
) -> Runtime:
    """Build the store, locker and hooks ``config`` asks for (unless given) and
    everything that serves with them.  Does no I/O."""
    if store is None:
        store = build_store(config.store_settings())
    upload_dir = store.directory if isinstance(store, FileStore) else None
    if locker is None:
        locker = build_locker(config.locker_settings(), upload_dir=upload_dir)
    if hooks is None:
        hooks = build_hooks(config)
    # What the store can do decides what is advertised (Tus-Extension) and allowed.
    protocol = config.served_protocol(store.capabilities)
    if config.listen_fd < 0:  # not once per worker process
        warning = cors_origin_warning(protocol.cors)
        if warning is not None:
            log.warning("%s", warning)
    timed_locker = TimedLocker(locker)
    auth = Authenticator(replace(config.auth, base_path=protocol.base_path))
    # The quota counts live with the locks: in Redis with the Redis locker.
    quotas = Quotas(
        config.quota, build_ledger(locker) if config.quota.enabled and auth.enabled else None
    )
    state = ServerState(request_completion_timeout=config.request_completion_timeout)
    metrics = Metrics()
    events = EventStream(
        auth=auth,
        cors=protocol.cors,
        state=state,
        network_timeout=config.network_timeout,
        api_key_header=config.auth.api_key_header,
    )
    supervisor = Supervisor(
        hooks=hooks,
        events=events,
        metrics=metrics,
        locker=locker,
        hooks_blocking_timeout=config.hooks_blocking_timeout,
    )
    outbox = build_outbox(
        config, hooks, upload_dir=upload_dir, on_attempt=supervisor.observe_outbox_attempt
    )
    supervisor.outbox = outbox
    janitor = Janitor(
        store=store,
        locker=timed_locker,
        protocol=protocol,
        metrics=metrics,
        notify=supervisor.notify,
        interval=config.janitor_interval,
        quotas=quotas,
    )
    operator = OperatorEndpoints(
        config,
        auth=auth,
        store=store,
        locker=locker,
        hooks=hooks,
        outbox=outbox,
        metrics=MetricsSource(metrics, state, events, config.metrics_dir, outbox),
    )
    handler = TusHandler(
        HandlerParts(
            protocol=protocol,
            store=store,
            locker=timed_locker,
            supervisor=supervisor,
            auth=auth,
            quotas=quotas,
            state=state,
            metrics=metrics,
            operator=operator,
            lock_timeout=config.acquire_lock_timeout,
            progress_interval=config.progress_hooks_interval,
            experimental_protocol=config.enable_experimental_protocol,
        )
    )
    return Runtime(
        config=config,
        protocol=protocol,
        store=store,
        locker=timed_locker,
        hooks=hooks,
        outbox=outbox,
        auth=auth,
        quotas=quotas,
        state=state,
        metrics=metrics,
        events=events,
        supervisor=supervisor,
        janitor=janitor,
        operator=operator,
        handler=handler,
    )
