"""Periodic audit work (Celery beat): anchor the log's newest event outside the database."""

import logging

from celery import shared_task

from . import anchors

logger = logging.getLogger(__name__)


@shared_task(name="cxr_platform.audit.tasks.write_audit_anchor", ignore_result=True)
def write_audit_anchor() -> str | None:
    """Verify the events since the last anchor and append a new anchor to AUDIT_ANCHOR_FILE.
    A broken chain is logged as an error and no anchor is written (it would bless the damage)."""
    try:
        anchor = anchors.write_anchor(incremental=True)
    except (anchors.ChainBroken, anchors.AnchorFileError) as exc:
        logger.error("%s. No audit anchor written; run manage.py verify_audit_log.", exc)
        raise
    if anchor is not None:
        logger.info("Audit anchor written: %s", anchor)
    return str(anchor) if anchor else None
