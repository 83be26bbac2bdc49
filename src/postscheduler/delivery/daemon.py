"""``postscheduler run``: the long-running daemon, and ``run --once`` for cron.

The daemon holds the ledger's lock, recovers what a crash left in flight, then keeps one
APScheduler date job per (post, account) with something to send, under the id
``post_id@account``. It watches ``posts_dir`` and the configuration with watchfiles and
reconciles on every change: an edited post is rescheduled, a deleted one cancelled, a file
with errors has its posts held (the error is logged) while everything else goes on, and a
published post is never sent again.

On SIGTERM or SIGINT it takes no new deliveries, lets those in flight finish (for at most
``SHUTDOWN_GRACE``), and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..alerts import Alerter
from ..alerts import messages as alert_messages
from ..config import Settings, load_settings
from ..errors import ConfigError, LedgerError, LedgerUnreachableError
from ..ledger import (
    CLAIMABLE_STATES,
    Delivery,
    DeliveryKey,
    DeliveryState,
    Ledger,
    Pause,
    open_ledger,
)
from ..posts.cache import PostCache
from ..redact import Redactor
from .checks import posts_to_publish
from .engine import CLAIM_RETRY, Engine, utc_now
from .registration import registered

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("postscheduler")
T = TypeVar("T")

SHUTDOWN_GRACE = 30.0  # seconds in-flight deliveries get to finish after SIGTERM
# How often the daemon re-reads the ledger, to pick up what `publish --now`, `retry` and
# `resolve --resend` made due while it runs.
RESCAN_INTERVAL = 2.0
# How far back each rescan reads again: a row changed as the previous scan read is not missed.
RESCAN_OVERLAP = dt.timedelta(seconds=1)
WATCH_START_TIMEOUT = 10.0
# Only deliveries due this soon are APScheduler jobs; the rescan adds the others as their
# time nears, every half of it. Months of posts as 10,000 jobs took 1.5 s to schedule at each
# start, and memory for as long as the daemon ran.
SCHEDULE_AHEAD = dt.timedelta(minutes=10)
# Where a delivery waits for someone (retry --failed, resolve): run --once reports them.
NEEDS_A_PERSON = frozenset({DeliveryState.FAILED, DeliveryState.UNCONFIRMED})
JOB_ERROR_DELAY = 60.0  # seconds before a job that failed unexpectedly runs again
WATCH_RESTART_DELAY = 5.0
HEARTBEAT_INTERVAL = 1.0  # seconds between the loop's heartbeats (/healthz)
ALERT_FLUSH = 10.0  # seconds a stopping daemon gives the alerts still waiting


@dataclasses.dataclass(frozen=True, slots=True)
class RunReport:
    counts: dict[DeliveryState, int]  # the whole ledger
    errors: int  # findings that hold posts back
    done: dict[DeliveryKey, DeliveryState]  # what this run did to each delivery it touched
    reasons: dict[DeliveryKey, str]  # why, for those that failed or are unconfirmed
    # Pauses in force at the end, with how many due deliveries each holds back.
    paused: tuple[tuple[Pause, int], ...] = ()

    @property
    def left_problems(self) -> bool:
        """Whether this run left a delivery failed or unconfirmed (cron should say so)."""
        return any(state in NEEDS_A_PERSON for state in self.done.values())


def _log_account_problems(settings: Settings, alerter: Alerter | None = None) -> None:
    for finding in settings.shared_ledger_warnings():
        log.warning("account %s: %s (%s)", finding.account, finding.message, finding.hint)
    for finding in settings.missing_secrets():
        log.warning("account %s: %s (%s)", finding.account, finding.message, finding.hint)
        if alerter is not None and finding.account:
            alerter.notify(
                alert_messages.credential_alert(
                    finding.account, f"{finding.message}: {finding.hint}"
                )
            )


def _untouched(job: Any, jobs_before: dict[str, Any]) -> bool:
    """Whether ``job`` is the one scheduled before the rows were read (APScheduler replaces
    a job it reschedules): one added or moved meanwhile is newer than what they say."""
    return jobs_before.get(job.id) is job


def _log_findings(catalog: Any) -> int:
    errors = 0
    for finding in catalog.findings:
        if finding.is_error:
            errors += 1
            log.error("HELD %s", finding.as_text())
    return errors


def sync_posts_repo(settings: Settings, alerter: Alerter | None) -> dt.datetime | None:
    """Bring the daemon's clone of ``posts_repo`` up to date, if there is one. A clone that
    cannot be made raises (there is nothing to publish from); a fetch or fast-forward that
    fails is logged and alerted, and the checkout is used as it is. Returns when the sync
    that succeeded began: the checkout has everything pushed before then."""
    repo, checkout = settings.config.posts_repo, settings.checkout
    if repo is None or checkout is None:
        return None
    began = utc_now()
    from .gitsource import GitSource, GitSourceError

    source = GitSource(repo, checkout)
    try:
        synced = source.sync()
    except GitSourceError as exc:
        if source.head() is None:
            raise GitSourceError(f"posts_repo {repo.url}: {exc!s}") from None
        log.error("posts_repo %s not updated: %s", repo.url, str(exc))
        if alerter is not None:
            alerter.notify(
                alert_messages.trouble_alert(
                    "git",
                    f"POSTS REPO not updated: {repo.branch}",
                    f"The daemon could not bring its clone of {repo.url} ({repo.branch}) up "
                    f"to date:\n\n{exc!s}\n\nIt goes on publishing what it has; "
                    "merged changes wait until this is fixed.",
                    scope=utc_now().date().isoformat(),  # once a day while it lasts
                )
            )
        return None
    if synced.before is None:
        log.info("posts_repo: cloned %s (%s) at %s", repo.url, repo.branch, synced.after[:12])
    elif synced.changed:
        log.info("posts_repo: %s moved %s → %s", repo.branch, synced.before[:12], synced.after[:12])
    return began


async def run_once(
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] = utc_now,
    dry_run: bool = False,
    redactor: Redactor | None = None,
) -> RunReport:
    """Recover, send what is due now, and return: for cron, CI, or a manual catch-up."""
    redactor = redactor or Redactor.for_settings(settings)
    ledger = open_ledger(settings.config.ledger, settings.base_dir)
    with ledger, registered(settings, ledger, clock):
        alerter = Alerter(settings, ledger, clock=clock, redact=redactor)
        alerter.begin()
        _log_account_problems(settings, alerter)
        posts_as_of = await asyncio.to_thread(sync_posts_repo, settings, alerter)
        catalog = posts_to_publish(settings, clock(), PostCache(settings, settings.state_dir))
        errors = _log_findings(catalog)
        alerter.see_catalog(catalog)
        engine = Engine(
            settings, ledger, clock=clock, dry_run=dry_run, redact=redactor, notify=alerter.notify
        )
        engine.posts_as_of = posts_as_of
        engine.load(catalog)
        try:
            in_doubt = await engine.recover()
            if engine.recovered:
                alerter.notify(alert_messages.recovery_alert(clock(), engine.recovered))
            if in_doubt:
                log.warning(
                    "%d deliveries stay in doubt: their platform could not be asked; "
                    "the next run asks again",
                    in_doubt,
                )
            await engine.run_due()
        finally:
            await engine.aclose()
            await alerter.flush()
            await alerter.aclose()
        reasons = {
            key: row.reason
            for key, state in engine.outcomes.items()
            if state in NEEDS_A_PERSON and (row := ledger.get(key)) is not None and row.reason
        }
        now = clock()
        due = list(ledger.iter_due(now))
        paused = tuple(
            (p, sum(1 for row in due if p.covers(row.key.account, now))) for p in ledger.pauses(now)
        )
        return RunReport(ledger.counts(), errors, dict(engine.outcomes), reasons, paused)


async def rehearse(
    settings: Settings, until: dt.datetime | None = None, *, redactor: Redactor | None = None
) -> list[Delivery]:
    """Publish into the outbox every post due until ``until`` (None: the whole campaign, to
    its last post), each at its own time on a simulated clock, with a throw-away ledger: a
    rehearsal of the campaign, and what the quick start shows a newcomer, whatever today's
    date. Accounts on other platforms are left out; the real ledger is not touched. Returns
    the rehearsed deliveries, in the order they went out."""
    catalog = posts_to_publish(settings, utc_now())
    _log_findings(catalog)
    outbox = {n for n, a in settings.config.accounts.items() if a.platform == "outbox"}
    clock = SimulatedClock(utc_now())
    ledger = open_ledger(":memory:", settings.base_dir)
    engine = Engine(
        settings,
        ledger,
        clock=clock,
        redact=redactor or Redactor.for_settings(settings),
        sleep=clock.sleep,
    )
    engine.load(catalog)
    times = [
        row.due_at
        for row in ledger.deliveries(states=CLAIMABLE_STATES)
        if row.key.account in outbox
    ]
    clock.now = min([*times, clock.now])  # the rehearsal starts with the first post
    try:
        while True:
            due = [
                row.next_attempt_at
                for row in ledger.deliveries(states=CLAIMABLE_STATES)
                if row.key.account in outbox
            ]
            upcoming = [t for t in due if until is None or t <= until]
            if not upcoming:
                break
            clock.now = max(clock.now, min(upcoming))
            groups = [g for g in engine.due_groups(clock.now) if g[1] in outbox]
            if not groups:
                break
            await asyncio.gather(*(engine.deliver(p, a) for p, a in groups))
    finally:
        await engine.aclose()
    done = [r for r in ledger.deliveries() if r.state is DeliveryState.PUBLISHED]
    ledger.close()
    return sorted(done, key=lambda r: (r.updated_at or r.due_at, r.key))


class SimulatedClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class Daemon:
    """The scheduler loop. ``stop()`` (or a signal) ends ``run()``."""

    def __init__(
        self,
        config_path: Path | None,
        *,
        settings: Settings | None = None,
        dry_run: bool = False,
        clock: Callable[[], dt.datetime] = utc_now,
        metrics_address: str | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """``redactor``: the one the log handler masks with (``setup_logging``), which a
        reload widens to the new configuration's secrets."""
        self.config_path = config_path
        self.metrics_address = metrics_address
        self.metrics: Metrics | None = None
        self.settings = settings or load_settings(config_path)
        # What each reload need not read again, and each start need not parse again.
        self.posts = PostCache(self.settings, keep=self.settings.state_dir)
        self.dry_run = dry_run
        self.clock = clock
        self.redactor = redactor or Redactor.for_settings(self.settings)
        self._stop = asyncio.Event()
        self._watching = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._running: set[str] = set()  # job ids being delivered now
        self._rerun: dict[str, dt.datetime] = {}  # asked for while running
        self.failure: LedgerError | None = None  # why the daemon stopped by itself, if it did
        self.ledger: Ledger | None = None
        self.engine: Engine | None = None
        self._posts_as_of: dt.datetime | None = None  # see Engine.posts_as_of
        self.alerter: Alerter | None = None
        self.scheduler: Any = None

    def stop(self) -> None:
        self._stop.set()

    # --- reconciling ------------------------------------------------------------------------

    async def _survive(self, what: str, work: Awaitable[T]) -> T | None:
        """Run ``work``; an exception it raises is logged (redacted, with its traceback) as
        an error and the daemon goes on: no failure may end the watcher, a reload or a job
        silently."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except LedgerError as exc:  # its own words say it all: no traceback to read
            log.error("%s failed; the daemon goes on without it: %s", what, exc)
            return None
        except Exception:
            log.exception("%s failed; the daemon goes on without it", what)
            return None

    async def _sync(self) -> None:
        synced = await asyncio.to_thread(sync_posts_repo, self.settings, self.alerter)
        if synced is not None:
            self._posts_as_of = synced
            if self.engine is not None:
                self.engine.posts_as_of = synced

    def _new_engine(self, ledger: Ledger) -> Engine:
        assert self.alerter is not None
        engine = Engine(
            self.settings,
            ledger,
            clock=self.clock,
            dry_run=self.dry_run,
            redact=self.redactor,
            notify=self.alerter.notify,
            metrics=self.metrics,
        )
        engine.posts_as_of = self._posts_as_of
        engine.peers = self.engine.peers if self.engine is not None else []
        engine.claims_held = self.engine.claims_held if self.engine is not None else None
        return engine

    async def reload(self, *, config_changed: bool = False, recover_first: bool = False) -> None:
        """Re-read the posts (and the configuration) and reschedule to match.

        Validating and planning run on a worker thread, so deliveries due meanwhile still go
        out (thousands of files take seconds). ``recover_first``: at start-up, plan only;
        scheduling waits until the deliveries a crash left in flight are resolved. One
        reload at a time: an edit seen during the start-up's waits for it, rather than
        reading the same PostCache and planning on the same engine at once.
        """
        async with self._reloading:
            await self._reload(config_changed=config_changed, recover_first=recover_first)

    async def _reload(self, *, config_changed: bool, recover_first: bool) -> None:
        assert self.ledger is not None and self.engine is not None
        if config_changed:
            try:
                self.settings = load_settings(self.config_path)
            except ConfigError as exc:
                log.error("configuration not reloaded, keeping the previous one: %s", exc)
                return
            # Widened, not replaced: the log handler holds this one, and what was a secret
            # (a token rotated out, an account removed) stays masked.
            self.redactor.widen(Redactor.for_settings(self.settings))
            self.posts = PostCache(self.settings, keep=self.settings.state_dir)
            assert self.alerter is not None
            self._retiring.add(
                asyncio.get_running_loop().create_task(
                    self.alerter.reconfigure(self.settings, self.redactor)
                )
            )
            old, in_flight = self.engine, set(self._in_flight)
            self.engine = self._new_engine(self.ledger)
            if not recover_first:  # start-up prepares the engine it ends up with
                self.engine.prepare()

            async def retire() -> None:
                # Deliveries in flight finish with the engine (and publishers) they began with.
                if in_flight:
                    await asyncio.wait(in_flight)
                await old.aclose()

            self._retiring.add(asyncio.get_running_loop().create_task(retire()))
        engine, settings, posts = self.engine, self.settings, self.posts

        def load() -> tuple[Any, Any]:
            catalog = posts_to_publish(settings, self.clock(), posts)
            _log_findings(catalog)
            return catalog, engine.load(catalog)

        assert self.alerter is not None
        try:
            catalog, result = await asyncio.to_thread(load)
        except Exception as exc:
            self.alerter.notify(
                alert_messages.trouble_alert(
                    "posts",
                    "POSTS UNREADABLE: the schedule was not updated",
                    f"Reading the posts in {settings.posts_dir} failed: {exc!r}\n\nThe "
                    "daemon goes on with the deliveries it had planned; edits are not "
                    "picked up until the folder can be read. What to do: check the folder "
                    "(its permissions, the disk, the checkout) and the daemon's log.",
                )
            )
            raise
        self.alerter.see_catalog(catalog)
        if self.metrics is not None:
            self.metrics.reloaded()
        quiet = posts.last_read == 0 and result.touched == frozenset()
        (log.debug if quiet else log.info)(
            "loaded %d posts from %d files (%d read again): %d deliveries planned",
            len(catalog.posts),
            len(catalog.files),
            posts.last_read,
            result.planned,
        )
        if recover_first:
            return
        if result.touched is None:
            await self._schedule_all()
        else:
            await self._schedule_posts(result.touched)

    @contextlib.contextmanager
    def _adding_jobs(self) -> Iterator[None]:
        """Add many jobs with the scheduler paused, so that it wakes up once, not once per
        job: each wake-up is a byte on the event loop's self-pipe, and thousands of them
        (a start-up with 10,000 posts) fill it, after which a SIGTERM's byte is dropped and
        the daemon does not stop (seen in bench/daemon_bench.py startup)."""
        from apscheduler.schedulers.base import STATE_RUNNING

        running = self.scheduler.state == STATE_RUNNING
        if running:
            self.scheduler.pause()
        try:
            yield
        finally:
            if running:
                self.scheduler.resume()

    async def _schedule_all(self) -> None:
        # The rows are read on the ledger's thread: a database that does not answer must
        # not stall the loop, and with it every send in flight and the lease keeper.
        assert self.ledger is not None and self.engine is not None
        wanted: dict[str, dt.datetime] = {}
        soon = self.clock() + SCHEDULE_AHEAD
        # The rescan may schedule a row changed since while the rows are read (_untouched).
        jobs_before = {job.id: job for job in self.scheduler.get_jobs()}
        rows = await self.engine.db(
            functools.partial(self.ledger.deliveries, states=CLAIMABLE_STATES, due_by=soon)
        )
        for row in rows:
            when = self._first_look(row)
            job_id = f"{row.key.post_id}@{row.key.account}"
            wanted[job_id] = min(when, wanted.get(job_id, when))
        with self._adding_jobs():
            for job in self.scheduler.get_jobs():
                if job.id not in wanted and _untouched(job, jobs_before):
                    job.remove()
            for job_id, when in wanted.items():
                self._schedule(job_id, when)

    async def _schedule_posts(self, post_ids: Iterable[str]) -> None:
        """``_schedule_all`` for these posts alone: after a reload for one edit, the jobs of
        thousands of other posts need not be looked at."""
        assert self.ledger is not None and self.engine is not None
        ledger = self.ledger

        def read() -> list[tuple[str, list[Delivery]]]:
            return [(post_id, ledger.deliveries(post_id=post_id)) for post_id in post_ids]

        jobs_before = {job.id: job for job in self.scheduler.get_jobs()}  # as in _schedule_all
        read_rows = await self.engine.db(read)
        with self._adding_jobs():
            for post_id, rows in read_rows:
                self._schedule_post(post_id, rows, jobs_before)

    def _schedule_post(
        self, post_id: str, rows: list[Delivery], jobs_before: dict[str, Any]
    ) -> None:
        wanted: dict[str, dt.datetime] = {}
        jobs = set()
        for row in rows:
            job_id = f"{post_id}@{row.key.account}"
            jobs.add(job_id)
            if row.state in CLAIMABLE_STATES:
                when = self._first_look(row)
                wanted[job_id] = min(when, wanted.get(job_id, when))
        for job_id in jobs:
            if job_id in wanted:
                self._schedule(job_id, wanted[job_id])
            elif (job := self.scheduler.get_job(job_id)) is not None and _untouched(
                job, jobs_before
            ):
                job.remove()

    def _first_look(self, row: Delivery) -> dt.datetime:
        """When to run the job for ``row``: its next attempt, later on a shared ledger if
        another daemon has the first try at its account."""
        assert self.engine is not None
        return self.engine.first_look_at(row.key.account, row.next_attempt_at)

    def _schedule(self, job_id: str, when: dt.datetime) -> None:
        post_id, account = job_id.rsplit("@", 1)
        if when > self.clock() + SCHEDULE_AHEAD:
            # Not a job yet: the rescan makes it one when it nears (SCHEDULE_AHEAD).
            if (job := self.scheduler.get_job(job_id)) is not None:
                job.remove()
            return
        if job_id in self._running:
            # APScheduler would skip a second instance of a running job; run it again when
            # this one ends instead.
            self._rerun[job_id] = min(when, self._rerun.get(job_id, when))
            return
        run_at = max(when, self.clock())
        job = self.scheduler.get_job(job_id)
        if job is not None and job.next_run_time == run_at:
            return
        self.scheduler.add_job(
            self._run_job,
            "date",
            run_date=run_at,
            args=(post_id, account),
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,  # the engine decides what is late, not the scheduler
            coalesce=True,
            max_instances=1,
        )

    async def _run_job(self, post_id: str, account: str) -> None:
        if self._stop.is_set():
            return
        assert self.engine is not None
        task = asyncio.current_task()
        assert task is not None
        job_id = f"{post_id}@{account}"
        self._in_flight.add(task)
        self._running.add(job_id)
        try:
            again = await self.engine.deliver(post_id, account)
        except LedgerError as exc:
            # The database gone (said once, as LEDGER UNREACHABLE, by the lease keeper):
            # nothing was claimed or sent without its record; try again when it may be back.
            log.warning("%s → %s waits for the ledger: %s", post_id, account, exc)
            again = self.clock() + CLAIM_RETRY
        except Exception:
            log.exception(
                "delivering %s → %s failed unexpectedly; trying again in %g s",
                post_id,
                account,
                JOB_ERROR_DELAY,
            )
            again = self.clock() + dt.timedelta(seconds=JOB_ERROR_DELAY)
        finally:
            self._in_flight.discard(task)
            self._running.discard(job_id)
        rerun = self._rerun.pop(job_id, None)
        if self._stop.is_set():
            return
        times = [t for t in (again, rerun) if t is not None]
        if times:
            self._schedule(job_id, min(times))

    async def _take_ledger(self, stack: contextlib.ExitStack) -> bool:
        """Open the ledger and register on it (``stack`` holds both), once its database
        answers: a daemon started while PostgreSQL is down (a reboot of both), or losing it
        between the two, waits for it, saying so, instead of exiting. False if stopped
        meanwhile. A ledger that is wrong (not a database, too new) raises at once."""

        async def attempt() -> contextlib.ExitStack:
            with contextlib.ExitStack() as held:
                ledger = held.enter_context(
                    open_ledger(self.settings.config.ledger, self.settings.base_dir)
                )
                held.enter_context(registered(self.settings, ledger, self.clock))
                self.ledger = ledger
                return held.pop_all()

        taken = await self._until_reachable(attempt, LedgerUnreachableError)
        if taken is None:
            return False
        stack.enter_context(taken[0])
        return True

    async def _recover_at_start(self) -> bool:
        """Resolve what is in doubt before anything is scheduled. The database lost since
        it was opened (PostgreSQL restarted while this daemon starts) is waited for, saying
        so, as at the start; False if stopped meanwhile."""
        assert self.engine is not None
        recovered = await self._until_reachable(self.engine.recover, LedgerError)
        if recovered is None:
            return False
        if recovered[1]:
            log.warning("ledger reachable again: publishing goes on")
            await self._survive("loading the posts", self.reload(recover_first=True))
            await self._survive("seeing the other daemons", self._see_peers())
        return True

    async def _until_reachable(
        self, attempt: Callable[[], Awaitable[T]], unreachable: type[LedgerError]
    ) -> tuple[T, bool] | None:
        """``attempt()`` again every CLAIM_RETRY while it finds the database unreachable,
        said once: its result, and whether it had to wait. None if stopped meanwhile."""
        said = False
        while True:
            try:
                return await attempt(), said
            except unreachable as exc:
                if not said:
                    log.error(
                        "LEDGER UNREACHABLE at start: %s; trying again every %g s",
                        exc,
                        CLAIM_RETRY.total_seconds(),
                    )
                    said = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), CLAIM_RETRY.total_seconds())
            if self._stop.is_set():
                return None

    async def _check_clock(self) -> None:
        """Hold the claims (and the adoption of what other daemons left in doubt) while this
        machine's clock is more than a quarter lease off the database server's: leases are
        written and compared with each daemon's own clock, so a clock off by about a lease
        makes a live daemon look gone (its deliveries in flight adopted and sent again) or a
        gone one look alive. Said once, with an alert; claiming resumes by itself once the
        clock is back within half that."""
        assert self.engine is not None and self.ledger is not None
        skew = await self.engine.db(self.ledger.clock_skew, self.clock())
        if skew is None:
            return
        limit = self.settings.config.publishing.lease / 4
        seconds = skew.total_seconds()
        if abs(skew) > limit:
            if self.engine.claims_held is None:
                why = (
                    f"this machine's clock is {abs(seconds):.0f} s "
                    f"{'ahead of' if seconds > 0 else 'behind'} the database server's"
                )
                log.error(
                    "CLOCK SKEW: %s; nothing is claimed until it is within %g s (the daemons "
                    "compare leases across their clocks: a delivery in flight could be taken "
                    "for abandoned and sent twice). What to do: keep every host's clock in "
                    "sync (NTP: timedatectl set-ntp true, or chrony)",
                    why,
                    limit.total_seconds(),
                )
                assert self.alerter is not None
                self.alerter.notify(
                    alert_messages.trouble_alert(
                        "clock",
                        f"CLOCK SKEW on {self.ledger.owner}: nothing is published from it",
                        f"Daemon {self.ledger.owner}: {why}. It claims nothing until its "
                        "clock is back in step (the daemons compare leases across their "
                        "clocks, so a delivery in flight could otherwise be sent twice); "
                        "the other daemons go on.\n\nWhat to do: keep every host's clock in "
                        "sync with NTP (timedatectl set-ntp true, or chrony), on the database "
                        "server too.",
                        scope=self.ledger.owner or "",
                    )
                )
                self.engine.claims_held = why
        elif self.engine.claims_held is not None and abs(skew) <= limit / 2:
            log.warning("clock back in step with the database (%+.1f s): claiming again", seconds)
            self.engine.claims_held = None

    async def _see_peers(self) -> None:
        assert self.engine is not None and self.ledger is not None
        if self.ledger.shared:
            alive = await self.engine.db(self.ledger.daemons, self.clock())
            self.engine.peers = [d.id for d in alive]

    async def _keep_lease(self) -> None:
        """Renew this daemon's lease a quarter of it apart, and resolve what is in doubt:
        another daemon's deliveries once its lease has run out, and this one's whose platform
        could not be asked before. Losing the database stops the claims (they need the
        lease) and is said once; its return is said too, and publishing goes on by itself.
        Nothing ends this loop but the stop: a daemon whose lease lapses while it sends would
        have its deliveries in flight taken over by another, and sent twice."""
        every = self.settings.config.publishing.lease.total_seconds() / 4
        lost: str | None = None
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
            if self._stop.is_set():
                return
            try:
                lost = await self._renew_lease(lost)
            except Exception:
                log.exception("keeping the lease failed; trying again in %g s", every)

    async def _renew_lease(self, lost: str | None) -> str | None:
        """One round of ``_keep_lease``; ``lost``: why the database was unreachable at the
        last round, if it was. Returns the same for this round."""
        assert self.engine is not None and self.ledger is not None
        try:
            kept = await self.engine.db(self.ledger.heartbeat, self.clock())
            await self._check_clock()
            back = lost is not None or not kept
            if back:
                await self._schedule_all()
        except LedgerError as exc:
            if lost is None:
                log.error(
                    "LEDGER UNREACHABLE: %s; nothing new is claimed until it is back "
                    "(what is in flight is recorded when it returns)",
                    exc,
                )
            return lost or str(exc)
        if back:
            log.warning(
                "ledger reachable again%s: publishing goes on",
                "" if kept else " after the lease ran out (registered anew)",
            )
        before = self.engine.recovered[:]
        await self._survive("resolving deliveries in doubt", self.engine.recover())
        found = [r for r in self.engine.recovered if r not in before]
        if found:
            assert self.alerter is not None
            self.alerter.notify(alert_messages.recovery_alert(self.clock(), found))
            # Resolved ones may let later thread parts go; the database lost again meanwhile
            # is said at the next round, and the rescan sees the resolved rows anyway.
            with contextlib.suppress(LedgerError):
                await self._schedule_all()
        return None

    async def _rescan(self) -> None:
        """Schedule what changed in the ledger behind the daemon's back (publish --now...),
        and, every half of ``SCHEDULE_AHEAD``, what comes due within it.

        Only rows changed since the last scan are read: with thousands queued, a full scan
        every few seconds would stall the loop and make every delivery late.
        """
        assert self.ledger is not None
        since = self.clock()
        next_sweep = since + SCHEDULE_AHEAD / 2  # _schedule_all has just looked that far
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RESCAN_INTERVAL)
            if self._stop.is_set():
                return
            if self.ledger.replaced():
                log.critical(
                    "the ledger %s was removed or replaced while the daemon ran: stopping, so "
                    "that nothing is sent without a record (restore the ledger, then start "
                    "the daemon again)",
                    self.settings.ledger_name,
                )
                assert self.alerter is not None
                self.alerter.notify(
                    alert_messages.trouble_alert(
                        "ledger",
                        "DAEMON STOPPED: its ledger was removed or replaced",
                        f"The ledger {self.settings.ledger_name} was removed or replaced "
                        "while the daemon ran, so it stopped: sending on without a record "
                        "could post things twice. Nothing more is published.\n\nWhat to "
                        "do: restore the ledger from a backup, then start the daemon again.",
                    )
                )
                self.failure = LedgerError(f"the ledger {self.settings.ledger_name} was replaced")
                self.stop()
                return
            now = self.clock()
            try:
                # On the ledger's thread: a database that does not answer must not stall
                # the loop (and every send on it) for its connect timeout.
                assert self.engine is not None
                changed = await self.engine.db(
                    functools.partial(
                        self.ledger.deliveries,
                        states=CLAIMABLE_STATES,
                        changed_since=since - RESCAN_OVERLAP,
                    )
                )
                if now >= next_sweep:
                    changed += await self.engine.db(
                        functools.partial(
                            self.ledger.deliveries,
                            states=CLAIMABLE_STATES,
                            due_by=now + SCHEDULE_AHEAD,
                        )
                    )
                    next_sweep = now + SCHEDULE_AHEAD / 2
                await self._see_peers()  # who else shares the work, as often
            except LedgerError:
                continue  # the database gone: the lease keeper says so, once
            except Exception:
                log.exception("reading the ledger for new work failed; trying again")
                continue
            since = now
            if not changed:
                continue
            with self._adding_jobs():  # a `resume` may have let thousands go at once
                for row in changed:
                    when = self._first_look(row)
                    job_id = f"{row.key.post_id}@{row.key.account}"
                    job = self.scheduler.get_job(job_id)
                    if job is None or job.next_run_time > max(when, now):
                        self._schedule(job_id, when)

    # --- watching ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Follow edits for as long as the daemon runs: a watcher that fails (the folder
        replaced under it) is logged and started again."""
        while not self._stop.is_set():
            await self._survive("watching the posts", self._watch_once())
            if not self._stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), WATCH_RESTART_DELAY)

    async def _watch_once(self) -> None:
        import watchfiles

        posts_dir = self.settings.posts_dir
        paths = [posts_dir]
        config = self.settings.path.resolve() if self.settings.path else None
        dotenv = self.settings.dotenv_path.resolve()
        if config is not None:
            paths.append(config.parent)
            if not dotenv.is_relative_to(config.parent):  # a symlinked configuration
                paths.append(dotenv.parent)
        # yield_on_timeout: the first (empty) yield says the watcher is running, so start-up
        # can load the posts after it, and no edit falls between loading and watching.
        async for changes in watchfiles.awatch(
            *paths,
            stop_event=self._stop,
            debounce=200,
            step=50,
            rust_timeout=200,
            yield_on_timeout=True,
            recursive=True,
        ):
            self._watching.set()
            if not changes:
                continue
            changed = {Path(p).resolve() for _, p in changes}
            config_changed = config is not None and (config in changed or dotenv in changed)
            self.posts.forget(changed)
            if config_changed or any(p.is_relative_to(posts_dir) for p in changed):
                log.info("change seen in %d files: reloading", len(changed))
                await self._survive(
                    "reloading the posts", self.reload(config_changed=config_changed)
                )

    async def _first_clone(self) -> bool:
        """Sync ``posts_repo`` before anything is read; a clone that fails (the network not
        up yet after a reboot, a deploy key not yet added) is tried again every ``every``
        rather than ending the daemon. False: stopped meanwhile."""
        from .gitsource import GitSourceError

        while not self._stop.is_set():
            try:
                await self._sync()
            except GitSourceError as exc:
                repo = self.settings.config.posts_repo
                assert repo is not None and self.alerter is not None
                log.error("%s; trying again in %g s", exc, repo.every.total_seconds())
                self.alerter.notify(
                    alert_messages.trouble_alert(
                        "git",
                        "POSTS REPO cannot be cloned: nothing is published",
                        f"{exc}\n\nThe daemon has no posts to publish until it can clone "
                        "the repository; it tries again every "
                        f"{repo.every}. What to do: check the URL, the branch, and the "
                        "server's access (its SSH deploy key or credential helper).",
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), repo.every.total_seconds())
                continue
            return True
        return False

    async def _follow_repo(self) -> None:
        """Fetch ``posts_repo`` every ``every``; the watcher sees what a fast-forward
        changes and reloads it like any edit."""
        while not self._stop.is_set():
            repo = self.settings.config.posts_repo
            every = repo.every.total_seconds() if repo else RESCAN_INTERVAL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
            if self._stop.is_set() or repo is None:
                continue
            await self._survive("updating posts_repo", self._sync())

    # --- health -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _serving_metrics(self) -> Iterator[None]:
        if self.metrics_address is None:
            yield
            return
        from .metrics import Metrics, MetricsServer

        assert self.ledger is not None
        self.metrics = Metrics()
        self.metrics.watch_ledger(self.ledger)
        server = MetricsServer(self.metrics_address, self.metrics, self.health)
        log.info("metrics on http://%s/metrics, health on /healthz", server.address)
        try:
            yield
        finally:
            server.close()

    async def _heartbeat(self) -> None:
        """Beats while the event loop runs: a loop blocked or gone stops it."""
        while self.metrics is not None and not self._stop.is_set():
            self.metrics.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HEARTBEAT_INTERVAL)

    def health(self) -> str | None:
        """None while the daemon can publish; else why not. Asked from the metrics thread."""
        from .metrics import HEARTBEAT_STALE

        if self._stop.is_set():
            return "stopping"
        if self.scheduler is None or not self.scheduler.running:
            return "starting: the scheduler is not running yet"
        assert self.metrics is not None and self.ledger is not None
        age = self.metrics.since_heartbeat()
        if age > HEARTBEAT_STALE:
            return f"the scheduler loop has not run for {age:.0f} s"
        try:
            return self.ledger.writable()
        except LedgerError as exc:
            return str(exc)

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        with contextlib.ExitStack() as held:
            if not await self._take_ledger(held):
                return
            assert self.ledger is not None
            held.enter_context(self._serving_metrics())
            self.alerter = Alerter(
                self.settings,
                self.ledger,
                clock=self.clock,
                redact=self.redactor,
                on_sent=self.metrics.alert if self.metrics else None,
            )
            try:
                self.alerter.begin()
            except LedgerError as exc:  # the database lost since: its first scan begins
                log.error("alerts: cannot read the ledger yet: %s", exc)
            self.engine = self._new_engine(self.ledger)
            self.scheduler = AsyncIOScheduler(timezone=dt.UTC)
            self.scheduler.start()
            watcher: asyncio.Task[None] | None = None
            alerts = asyncio.create_task(self.alerter.run(self._stop))
            heart = asyncio.create_task(self._heartbeat())
            try:
                _log_account_problems(self.settings, self.alerter)
                if not await self._first_clone():
                    return
                posts_dir = self.settings.posts_dir
                if not posts_dir.is_dir():
                    posts_dir.mkdir(parents=True)
                    log.warning("posts_dir %s did not exist: created it, empty", posts_dir)
                watcher = asyncio.create_task(self._watch())
                # The posts are read while the watcher starts (its first wait takes a fifth
                # of a second), then read again once it watches, so that no edit falls
                # between the two: the second read takes only what changed meanwhile. A
                # reload that fails keeps what the ledger already has planned.
                await self._survive("loading the posts", self.reload(recover_first=True))
                try:
                    await asyncio.wait_for(self._watching.wait(), WATCH_START_TIMEOUT)
                except TimeoutError:
                    log.warning("the file watcher is slow to start; edits may wait for it")
                # The configuration was read before any of this (by the CLI): an edit
                # since then, before the watcher saw the file, would otherwise wait for
                # the next one.
                await self._survive(
                    "loading the posts",
                    self.reload(config_changed=self.settings.changed_on_disk(), recover_first=True),
                )
                self.engine.prepare()
                await self._survive("seeing the other daemons", self._see_peers())
                await self._survive("comparing the clocks", self._check_clock())
                if not await self._recover_at_start():
                    return
                if self.engine.recovered:
                    self.alerter.notify(
                        alert_messages.recovery_alert(self.clock(), self.engine.recovered)
                    )
                try:
                    await self._schedule_all()
                except LedgerError as exc:  # lost since the recovery: rescheduled when it is back
                    log.error("scheduling waits for the ledger: %s", exc)
                log.info("daemon started as %s: watching %s", self.ledger.owner, posts_dir)
                rescan = asyncio.create_task(self._rescan())
                follow = asyncio.create_task(self._follow_repo())
                again = asyncio.create_task(self._keep_lease())
                await self._stop.wait()
                await rescan
                await again
                await follow
                log.info(
                    "stopping: no new deliveries; waiting for %d in flight", len(self._in_flight)
                )
            finally:
                # Pause, not shut down: APScheduler's shutdown cancels the jobs still running,
                # which would leave their deliveries in doubt.
                self.scheduler.pause()
                if self._in_flight:
                    await asyncio.wait(set(self._in_flight), timeout=SHUTDOWN_GRACE)
                self.scheduler.shutdown(wait=False)
                self._stop.set()
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher
                if self._retiring:
                    await asyncio.wait(self._retiring)
                await self.engine.aclose()
                # The alerter's round may be waiting on a dead channel (a send has a minute):
                # it gets a moment, then the flush below has its own bound.
                await asyncio.wait({alerts}, timeout=ALERT_FLUSH / 2)
                alerts.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await alerts
                heart.cancel()
                await self.alerter.flush(ALERT_FLUSH)
                await self.alerter.aclose()
        log.info("daemon stopped")
        if self.failure is not None:
            raise self.failure
