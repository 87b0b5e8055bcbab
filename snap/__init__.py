"""Snap: content-addressed, deduplicated snapshots of declared directories, with cron plans,
retention, prune, scrub and verified restore."""
