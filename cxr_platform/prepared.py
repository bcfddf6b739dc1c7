"""Reads made on every API request, compiled to SQL once per process instead of on every call.

Django builds and compiles a queryset each time it is evaluated. For the two reads every cohort API
request makes — the access policy's credentials and a cohort's progress — building and compiling
their subqueries cost several times what the database took to run them (bench/api.py, profiled:
about two thirds of a status request). A :class:`PreparedQuery` compiles its ``values()`` queryset
once per database connection settings and shape, remembers where each parameter landed, and then
only substitutes parameters. The queryset stays the one definition of the read: nothing is written
twice in SQL.
"""

from __future__ import annotations

import functools
import threading
import time
from datetime import date, datetime, timedelta, timezone as dt_timezone
from typing import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

# Values no real parameter takes, one per parameter of a query, to find where each one landed.
_SENTINEL_BASE = {
    int: lambda n: -7_314_159_265 - n,
    str: lambda n: f"\x1fprepared-query-parameter-{n}\x1f",
    date: lambda n: date(1901, 2, 3) + timedelta(days=n),
    datetime: lambda n: datetime(1901, 2, 3, 4, 5, 6, 789, tzinfo=dt_timezone.utc) + timedelta(seconds=n),
}


def _adapted(connection, value):
    """The form the backend's compiler gives a parameter of this type (e.g. text on SQLite)."""
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, date):
        return connection.ops.adapt_datefield_value(value)
    return value


MAX_SHAPES = 64  # compiled variants kept per query (e.g. page sizes and offsets)


class PreparedQuery:
    """``build(**parameters)`` returns a ``values()`` queryset; ``parameters`` maps each name to its
    type (int, str, date or datetime). ``shape`` names arguments that change the SQL itself (a
    slice's limit and offset, which Django writes into the SQL): each value compiles a variant,
    of which the last MAX_SHAPES are kept. ``key()`` names anything else the SQL depends on (a
    setting), so that a change compiles it again. :meth:`rows` returns dicts, as ``values()`` would."""

    def __init__(self, build: Callable, *, key: Callable[[], tuple] = tuple, shape: tuple = (), **parameters: type):
        self._build, self._key, self._shape, self._parameters = build, key, tuple(shape), parameters
        self._compiled: dict = {}
        self._lock = threading.Lock()

    def _compile(self, connection, shape: dict):
        sentinels = {name: _SENTINEL_BASE[kind](n) for n, (name, kind) in enumerate(self._parameters.items())}
        queryset = self._build(**sentinels, **shape)
        query = queryset.query
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        # The columns in the order of the SELECT (values() names each one), and the converters the
        # ORM applies to them (JSON text, SQLite's 0/1 booleans and datetime text).
        names = [alias for _, _, alias in compiler.select]
        if None in names or len(set(names)) != len(names):
            raise ImproperlyConfigured("PreparedQuery needs a values() queryset whose columns all have names.")
        converters = compiler.get_converters([column for column, _, _ in compiler.select])
        slots = []
        for position, param in enumerate(params):
            for name, sentinel in sentinels.items():
                if param == sentinel:
                    slots.append((position, name, False))
                elif param == _adapted(connection, sentinel):
                    slots.append((position, name, True))
        unplaced = set(self._parameters) - {name for _, name, _ in slots}
        if unplaced:
            raise ImproperlyConfigured(f"PreparedQuery: parameter(s) {sorted(unplaced)} do not appear in the SQL.")
        return sql, tuple(params), tuple(slots), names, converters

    def rows(self, *, using: str = DEFAULT_DB_ALIAS, **values) -> list[dict]:
        connection = connections[using]
        shape = {name: values.pop(name) for name in self._shape}
        key = (using, connection.vendor, connection.settings_dict.get("NAME"), self._key(), tuple(shape.values()))
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key) or self._compile(connection, shape)
                if len(self._compiled) >= MAX_SHAPES:
                    self._compiled.pop(next(iter(self._compiled)))
                self._compiled[key] = compiled
        sql, template, slots, names, converters = compiled
        params = list(template)
        for position, name, adapt in slots:
            params[position] = _adapted(connection, values[name]) if adapt else values[name]
        rows = _execute(connection, sql, params)
        result = []
        for row in rows:
            row = list(row)
            for position, (functions, expression) in converters.items():
                for convert in functions:
                    row[position] = convert(row[position], expression, connection)
            result.append(dict(zip(names, row)))
        return result


def _execute(connection, sql: str, params: list) -> list[tuple]:
    if connection.vendor == "postgresql" and getattr(settings, "DB_PREPARED_STATEMENTS", False):
        return _execute_prepared(connection, sql, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _execute_prepared(connection, sql: str, params: list) -> list[tuple]:
    """On PostgreSQL, as a server-side prepared statement: planned once per connection instead of on
    every request (planning these subqueries took longer than running them: 1.35 → 0.5 ms a query).
    Django's own cursors bind parameters on the client and never prepare; this cursor is wrapped the
    way Django wraps its own (errors translated, execute wrappers applied) and logged as Django logs."""
    import psycopg
    from psycopg.types.datetime import TimestamptzLoader

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = connection.connection
    with connection.wrap_database_errors:
        plain = psycopg.Cursor(raw)
        if connection.timezone == dt_timezone.utc:
            # psycopg's own timestamptz loader (in C with psycopg[binary]) instead of Django's Python
            # subclass, which exists only to set another time zone than the session's (UTC here):
            # the cohort list reads 150 timestamps a page and parsing them was a tenth of its time.
            plain.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor = connection.make_cursor(plain)
    previous = raw.prepare_threshold
    raw.prepare_threshold = 0  # this statement only: Django's queries keep the connection's setting
    started = time.monotonic()
    try:
        with cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        raw.prepare_threshold = previous
        if connection.queries_logged:  # as Django's debug cursor logs (CaptureQueriesContext, DEBUG)
            connection.queries_log.append({"sql": connection.ops.compose_sql(sql, params),
                                           "time": f"{time.monotonic() - started:.3f}"})


@functools.lru_cache(maxsize=None)
def _attnames(model, only: tuple) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields if not only or field.name in only)


def field_names(model, prefix: str = "", only: tuple = ()) -> list[str]:
    """The ``values()`` names of a model's columns (``prefix``: the path to a related model;
    ``only``: just these fields, the rest loading on first access as with ``only()``)."""
    return [prefix + name for name in _attnames(model, tuple(only))]


def instance(model, row: dict, prefix: str = "", only: tuple = (), *, using: str = DEFAULT_DB_ALIAS):
    """A model instance from a row that holds :func:`field_names` (as the ORM would load it).

    Model.__init__ sets each field through setattr and sends the init signals; with no receiver for
    them the instance is the same when its attributes are written directly, for a fifth of the cost
    (the cohort list builds 50 a page). A field left out of ``only`` is absent, which is what makes
    Django treat it as deferred."""
    names = _attnames(model, tuple(only))
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model.from_db(using, names, [row[prefix + name] for name in names])
    made = model.__new__(model)
    values = made.__dict__
    for name in names:
        values[name] = row[prefix + name]
    made._state = ModelState()
    made._state.adding, made._state.db = False, using
    return made
