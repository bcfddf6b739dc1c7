"""Running the application as a PostgreSQL role that does not own the tables.

Migrations run as the owner (DATABASE_MIGRATE_URL); the application connects as another role
(DATABASE_URL) that may read and write what Django needs but, on the audit table, only SELECT
and INSERT. Owning a table is what allows ``ALTER TABLE … DISABLE TRIGGER`` and ``DROP
TRIGGER``, so the application's role must own none; without UPDATE, DELETE and TRUNCATE
privileges it cannot rewrite or empty the log even with the triggers gone."""

from __future__ import annotations

import re

from django.db import connections

AUDIT_TABLE = "audit_auditevent"
_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


class RoleError(Exception):
    pass


def grant_statements(role: str, schema: str) -> list[str]:
    role_q, schema_q = f'"{role}"', f'"{schema}"'
    return [
        f"GRANT USAGE ON SCHEMA {schema_q} TO {role_q}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_q} TO {role_q}",
        f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {schema_q} FROM {role_q}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_q} TO {role_q}",
        f"REVOKE ALL ON TABLE {schema_q}.{AUDIT_TABLE} FROM {role_q}",
        f"GRANT SELECT, INSERT ON TABLE {schema_q}.{AUDIT_TABLE} TO {role_q}",
    ]


def grant_app_role(role: str, *, using: str = "default") -> list[str]:
    """Give ``role`` what the application needs and no more; run as the tables' owner.
    Returns the statements executed. Idempotent: run after every migrate."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RoleError("database roles are a PostgreSQL feature; this database is " + connection.vendor)
    if not _ROLE_NAME.fullmatch(role or ""):
        raise RoleError(f"{role!r} is not a role name")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_schema()")
        owner, schema = cursor.fetchone()
        if role == owner:
            raise RoleError(
                f"the application role {role!r} is the role running the migrations: it would own the "
                "tables. Connect the application as another role (see README, 'Database roles')."
            )
        cursor.execute(
            "SELECT rolsuper OR pg_has_role(current_user, tableowner, 'USAGE') FROM pg_roles, pg_tables "
            "WHERE rolname = current_user AND schemaname = %s AND tablename = %s",
            [schema, AUDIT_TABLE],
        )
        may_grant = cursor.fetchone()
        # Run by anyone else, GRANT and REVOKE only warn and change nothing: say so instead.
        if may_grant is not None and not may_grant[0]:
            raise RoleError(
                f"{owner!r} does not own the tables: run grant_app_role as the owner "
                "(DATABASE_MIGRATE_URL), as migrate does."
            )
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            raise RoleError(f"there is no database role {role!r}: CREATE ROLE {role} LOGIN PASSWORD '…' first")
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tableowner = %s ORDER BY tablename",
            [schema, role],
        )
        owned = [name for (name,) in cursor.fetchall()]
        if owned:
            raise RoleError(
                f"role {role!r} owns {', '.join(owned[:5])}{'…' if len(owned) > 5 else ''}: "
                "an owner can switch the audit triggers off. Let the migrating role own them "
                f"(REASSIGN OWNED BY {role} TO {owner}, as a superuser) and run this again."
            )
        statements = grant_statements(role, schema)
        for statement in statements:
            cursor.execute(statement)
    return statements
