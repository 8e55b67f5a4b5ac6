"""What the routes use, built once per process: the submit producer, the Postgres query pool,
the broker probe and the lazily loaded tagger. Routes reach it through `services(request)`;
tests build one with fakes through the constructor."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from fashionstream.app.api.failures import DeadLetterTail, RecentFailures
from fashionstream.core.metrics import Metrics
from fashionstream.core.records import ImageRequest
from fashionstream.core.settings import Settings
from producers.feed import FeedItem
from sinks.lookups import QueryPool
from sinks.postgres import Connection

if TYPE_CHECKING:  # the model stack is imported only when the tag endpoint is first used
    from fashionstream.app.similar import SimilarSearch
    from models.tags import Tagger

T = TypeVar("T")


class Submitter(Protocol):
    """What POST /v1/images needs of `producers.image_feed.FeedProducer`."""

    def send_one(self, item: FeedItem, feed: str) -> ImageRequest: ...

    def close(self) -> None: ...


class Services:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        submitter: Submitter,
        pool: QueryPool,
        kafka_ready: Callable[[], bool],
        tagger_factory: Callable[[], Tagger],
        failures: RecentFailures | None = None,
        dead_letter_tail: DeadLetterTail | None = None,
        similar: SimilarSearch | None = None,
    ) -> None:
        self.settings = settings
        self.failures = failures or RecentFailures()
        self.dead_letter_tail = dead_letter_tail
        self.metrics = metrics
        self.submitter = submitter
        self.pool = pool
        self._kafka_ready = kafka_ready
        self._tagger_factory = tagger_factory
        self._tagger: Tagger | None = None
        self._tagger_lock = threading.Lock()
        # one thread for the tagger: it loads once and runs one batch at a time (a model is not
        # made faster by concurrent calls on the same cores, and not every backend is reentrant)
        self._tagger_executor = ThreadPoolExecutor(1, thread_name_prefix="api-tagger")
        self._similar = similar
        self._similar_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Services:
        from infra.topics import kafka_ready
        from producers.image_feed import FeedProducer

        failures = RecentFailures()
        return cls(
            settings,
            metrics,
            submitter=FeedProducer.from_settings(settings, metrics),
            pool=QueryPool(settings.database_url, application_name="fashionstream-api"),
            kafka_ready=functools.partial(kafka_ready, settings.kafka_bootstrap, 3.0),
            tagger_factory=functools.partial(_real_tagger, settings),
            failures=failures,
            dead_letter_tail=DeadLetterTail.from_settings(settings, failures),
        )

    def start(self) -> None:
        """Background work that lives as long as the app: the dead-letter tail."""
        if self.dead_letter_tail is not None:
            self.dead_letter_tail.start()

    async def query(self, fn: Callable[[Connection], T]) -> T:
        """`fn(conn)` on a pooled connection in a worker thread (psycopg2 blocks)."""
        return await run_in_threadpool(self.pool.run, fn)

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(fn, *args)

    async def kafka_reachable(self) -> bool:
        return await run_in_threadpool(self._kafka_ready)

    def tag(self, fn: Callable[[Tagger], T]) -> Awaitable[T]:
        """`fn(tagger)` on the tagger's own thread; the tagger is built there on first use."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._tagger_executor, self._with_tagger, fn)

    def _with_tagger(self, fn: Callable[[Tagger], T]) -> T:
        return fn(self._shared_tagger())

    def _shared_tagger(self) -> Tagger:
        with self._tagger_lock:
            if self._tagger is None:
                self._tagger = self._tagger_factory()
            return self._tagger

    def similar(self) -> SimilarSearch:
        """The shop-the-look search, built on first use. It tags query photos with the one
        tagger the tag endpoint loads (one model in memory), so a photo search must run on the
        tagger's thread: `await svc.tag(lambda _: svc.similar().for_image(...))`."""
        with self._similar_lock:
            if self._similar is None:
                from fashionstream.app.similar import SimilarSearch

                self._similar = SimilarSearch.from_settings(
                    self.settings,
                    self._shared_tagger,  # type: ignore[arg-type]  # FashionTagger in practice
                    application_name="fashionstream-api-similar",
                )
            return self._similar

    def close(self) -> None:
        if self.dead_letter_tail is not None:
            self.dead_letter_tail.stop()
        self._tagger_executor.shutdown(wait=False, cancel_futures=True)
        self.submitter.close()
        self.pool.close()
        if self._similar is not None:
            self._similar.close()


def _real_tagger(settings: Settings) -> Tagger:
    from models.tagger import FashionTagger

    return FashionTagger.from_settings(settings)


def services(request: Request) -> Services:
    """The route dependency: the `Services` of the app serving `request`."""
    found: Services = request.app.state.services
    return found
