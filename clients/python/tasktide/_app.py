"""App: a named set of tasks, the producer API (delay/apply_async) and what workers run."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

from tasktide._client import Client
from tasktide._exceptions import ConfigurationError
from tasktide._handle import TaskHandle
from tasktide._hooks import Hooks, default_hooks
from tasktide._periodic import PeriodicMixin
from tasktide._settings import ClientSettings
from tasktide._spec import SubmitOptions, TaskOptions, build_spec
from tasktide._workflow import Signature
from tasktide.v1 import task_pb2

P = ParamSpec("P")
R = TypeVar("R")

ExcTypes = tuple[type[BaseException], ...]


class Task(Generic[P, R]):
    """A function registered with an App. Calling it runs it here; delay() runs it on a worker."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        name: str,
        options: TaskOptions,
        autoretry_for: ExcTypes,
        dont_autoretry_for: ExcTypes,
        rate_limit: str = "",
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.autoretry_for = autoretry_for
        self.dont_autoretry_for = dont_autoretry_for
        self.rate_limit = rate_limit
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with these arguments, for chain(), group() and chord().

        Args:
            *args, **kwargs: the task's arguments.
        """
        return Signature(self, args, kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Run the task on a worker with these arguments, with the task's default options.

        Args:
            *args, **kwargs: the task's arguments, JSON-compatible.
        """
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> TaskHandle:
        """Run the task on a worker, with per-call options.

        Args:
            args, kwargs: the task's arguments, JSON-compatible.
            **options: queue, priority, countdown, eta, expires, idempotency_key... (SubmitOptions).
        """
        return self.app.client.submit_spec(self.spec(args, kwargs, **options))

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Like delay(), once the current Django transaction commits; nothing is sent if it rolls back.

        Args:
            *args, **kwargs: the task's arguments.
        """
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        using: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> None:
        """Like apply_async(), once the transaction on database `using` commits. Returns nothing, as in
        Celery: the task has no id until it is sent. Arguments are encoded now, so bad ones fail here.

        Args:
            args, kwargs: the task's arguments.
            using: the Django database alias whose transaction to wait for (default: "default").
            **options: as for apply_async.
        """
        from django.db import transaction  # Django is optional: imported only by these two methods

        spec = self.spec(args, kwargs, **options)
        transaction.on_commit(lambda: self.app.client.submit_spec(spec), using=using)

    def spec(
        self,
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SubmitOptions],
    ) -> task_pb2.TaskSpec:
        """The TaskSpec apply_async would send (for Client.submit_spec, submit_many or batches).

        Args:
            args, kwargs: the task's arguments.
            **options: as for apply_async.
        """
        return build_spec(self.name, args, kwargs, options=self.options, **options)

    def should_retry(self, exc: BaseException) -> bool:
        """Whether a worker retries the task after `exc` (autoretry_for, dont_autoretry_for)."""
        if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
            return False
        return bool(self.autoretry_for) and isinstance(exc, self.autoretry_for)


class App(PeriodicMixin):  # periodic tasks: _periodic.py
    """A named set of tasks. Configuration comes from TASKTIDE_* variables unless given."""

    def __init__(
        self,
        name: str,
        *,
        address: str | None = None,
        settings: ClientSettings | None = None,
        resolver: Callable[[str], Task[Any, Any] | None] | None = None,
        default_queue: str = "",
        hooks: Hooks | None = None,
    ) -> None:
        self.name = name
        self.hooks = hooks or default_hooks()  # a plugin (tracing) for this App's client and workers
        self._settings = settings
        self._address = address
        self._resolver = resolver
        self.default_queue = default_queue
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> ClientSettings:
        """The App's settings (read from the TASKTIDE_* variables on first use unless given)."""
        if self._settings is None:
            self._settings = ClientSettings.from_env(address=self._address or "")
        return self._settings

    @property
    def client(self) -> Client:
        """The App's blocking client, created on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(settings=self.settings, hooks=self.hooks)
        return self._client

    def close(self) -> None:
        """Close the App's client, if it has one (a later use makes a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...

    @overload
    def task(self, fn: None = None, **opts: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Any = None, **opts: Any) -> Any:
        """Register a task. Options: name, queue, priority, max_retries, retry_backoff,
        retry_backoff_max, retry_jitter, autoretry_for, dont_autoretry_for, soft_time_limit,
        time_limit, rate_limit."""
        if fn is not None:
            return self.register(fn, **opts)
        return lambda f: self.register(f, **opts)

    def register(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_retries: int = 0,
        retry_backoff: bool | float = True,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        autoretry_for: ExcTypes | None = None,
        dont_autoretry_for: ExcTypes = (),
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
        rate_limit: str | None = None,
    ) -> Task[P, R]:
        """Register `fn` as a task (what @app.task does).

        Args:
            fn: the function.
            name: the task's name (default: "<app name>.<function name>").
            queue: its default queue; priority: its default priority (-100..100).
            max_retries: attempts after the first; retry_backoff: True, or the first delay in seconds;
                retry_backoff_max, retry_jitter: the cap and jitter of exponential backoff.
            autoretry_for, dont_autoretry_for: exception types retried or not (default: any
                Exception when max_retries > 0).
            soft_time_limit, time_limit: seconds before the task is asked to stop, then stopped.
            rate_limit: starts allowed across workers, as "10/s", "100/m" or "1000/h".
        """
        task_name = name or f"{self.name}.{fn.__name__}"
        if task_name in self.tasks:
            raise ConfigurationError(f"task {task_name!r} is registered twice")
        base = 1.0 if retry_backoff is True else float(retry_backoff or 0.0)
        options = TaskOptions(
            queue=queue if queue is not None else self.default_queue,
            priority=priority,
            max_retries=max_retries,
            retry_backoff=base,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=retry_jitter,
            soft_time_limit=soft_time_limit or 0.0,
            time_limit=time_limit or 0.0,
            rate_limit=rate_limit or "",
        )
        # With retries allowed and no exception types named, any Exception is retried.
        if autoretry_for is None:
            autoretry_for = (Exception,) if max_retries > 0 else ()
        t: Task[P, R] = Task(self, fn, task_name, options, autoretry_for, dont_autoretry_for, rate_limit or "")
        self.tasks[task_name] = t
        return t

    def lookup(self, name: str) -> Task[Any, Any] | None:
        """The task registered as `name`, else the resolver's answer, else None."""
        t = self.tasks.get(name)
        if t is None and self._resolver is not None:
            t = self._resolver(name)
        return t
