"""The example app, importable as `examples.app` from the repository root (docker compose and the
tests run `tasktide worker examples.app:app`). Its tasks live in `tasktide_services.demo_app`, which
`tasktide dev --demo` runs from any folder."""

from tasktide_services.demo_app import add, app, fail, fetch, flaky, resize

__all__ = ["add", "app", "fail", "fetch", "flaky", "resize"]
